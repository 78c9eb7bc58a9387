// Which spawner starts commands, kept alive: the command runner (the installed service: commands
// start no other way), else the dffs-spawn helper, started again at once when it stops, else
// Node's child_process where the helper cannot run (missing, or stopping as soon as it starts),
// which the log says at warn level.
import type {EventBus} from './events.js';
import {findSpawnHelper, SpawnHelper} from './spawn-helper.js';

/** Helpers that stop this soon after their start, this many times in a row, are given up for Node's child_process. */
const HELPER_QUICK_EXIT_MS = 1000;
const HELPER_QUICK_EXITS = 3;
const HELPER_RETRY_MS = 60_000;
/** How soon an unreachable command runner is tried again: without it no command can start. */
const RUNNER_RETRY_MS = 1_000;

export interface SpawnerOptions {
  /** The command runner's socket, where the unit gives one. */
  commandRunner: string | undefined;
  /** The dffs-spawn helper: default, the one beside the program; null, none. */
  spawnHelper: string | null | undefined;
  bus: EventBus;
  reportInternalError(where: string, error: unknown): void;
}

export class SpawnerSupervisor {
  #helper: SpawnHelper | undefined;
  #quickExits = 0;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(private readonly options: SpawnerOptions) {
    this.#start();
  }

  /** The spawner to start a command with now; undefined: Node's child_process (or, with a command runner, none). */
  get current(): SpawnHelper | undefined {
    return this.#helper;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#helper?.close();
  }

  #start(reason?: string): void {
    const {commandRunner, bus} = this.options;
    if (commandRunner) {
      this.#helper = this.#spawnHelper(commandRunner, 'socket');
      bus.emit({type: 'spawner', spawner: 'command-runner', path: commandRunner, ...(reason ? {reason} : {})});
      return;
    }
    const path = this.options.spawnHelper === null ? undefined : (this.options.spawnHelper ?? findSpawnHelper());
    if (path === undefined) {
      bus.emit({type: 'spawner', spawner: 'node', reason: reason ?? 'no dffs-spawn helper beside the program (no C compiler at build time?): commands fork the daemon'});
      return;
    }
    this.#helper = this.#spawnHelper(path);
    bus.emit({type: 'spawner', spawner: 'dffs-spawn', path, pid: this.#helper.pid, ...(reason ? {reason} : {})});
  }

  #spawnHelper(path: string, mode?: 'socket'): SpawnHelper {
    const helper: SpawnHelper = new SpawnHelper(path, {
      onExit: (exitReason) => this.#exited(helper, exitReason),
      onHandlerError: (error) => this.options.reportInternalError('spawner event', error),
    }, mode);
    return helper;
  }

  #exited(helper: SpawnHelper, reason: string): void {
    if (this.#helper === helper) this.#helper = undefined;
    if (this.#closed) return;
    const {bus, commandRunner} = this.options;
    this.#quickExits = Date.now() - helper.startedAt < HELPER_QUICK_EXIT_MS ? this.#quickExits + 1 : 0;
    if (commandRunner && this.#quickExits >= HELPER_QUICK_EXITS) {
      // No other way to start commands: they fail, saying why, until the runner answers again.
      bus.emit({type: 'spawner', spawner: 'none', reason: `the command runner stopped ${HELPER_QUICK_EXITS} times within ${HELPER_QUICK_EXIT_MS} ms (${reason}): commands cannot start; trying again in ${RUNNER_RETRY_MS / 1000} s`});
      this.#retry = setTimeout(() => this.#start('trying the command runner again'), RUNNER_RETRY_MS);
      return;
    }
    if (this.#quickExits >= HELPER_QUICK_EXITS) {
      bus.emit({
        type: 'spawner',
        spawner: 'node',
        reason: `${helper.path} stopped ${HELPER_QUICK_EXITS} times within ${HELPER_QUICK_EXIT_MS} ms of its start (${reason}): commands fork the daemon; trying the helper again in ${HELPER_RETRY_MS / 1000} s`,
      });
      this.#retry = setTimeout(() => {
        this.#quickExits = 0;
        this.#start('trying the helper again');
      }, HELPER_RETRY_MS);
      return;
    }
    this.#start(`the previous helper stopped: ${reason}`);
  }
}
