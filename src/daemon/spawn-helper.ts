import {spawn, type ChildProcessWithoutNullStreams} from 'node:child_process';
import type {Socket} from 'node:net';
import type {Writable} from 'node:stream';
import {join} from 'node:path';
import {fs, net} from '../common/node-builtins.js';
import {constants as osConstants} from 'node:os';
import {PACKAGE_ROOT} from '../common/package-root.js';
import type {ShellEvents, Spawner} from './runner.js';
import {decodeWaitStatus, encodeSpawnRequest} from './spawn-request.js';

const {accessSync, constants} = fs;

/** Where `npm run build` and the offline bundle put the compiled native/dffs-spawn.c. */
export const SPAWN_HELPER_PATH = join(PACKAGE_ROOT, 'dist', 'dffs-spawn');

/** The spawn helper beside the program, if there is one this process may run. */
export function findSpawnHelper(path = SPAWN_HELPER_PATH): string | undefined {
  try {
    accessSync(path, constants.X_OK);
    return path;
  } catch {
    return undefined;
  }
}

/** The longest frame the helper sends (native/dffs-spawn.c relays output 64 KiB at a time). */
const MAX_FRAME = 1024 * 1024;

export interface SpawnHelperOptions {
  /** Called when the helper has gone, after each of its commands was told. */
  onExit(reason: string): void;
  /** An exception thrown while a command's events were handled: reported, never the daemon's end. */
  onHandlerError(error: unknown): void;
}

/**
 * The daemon's side of dffs-spawn (native/dffs-spawn.c): one long-lived helper that starts
 * commands with posix_spawn, so starting one does not fork the daemon. It runs with an empty
 * environment: each command gets exactly the variables the daemon passes.
 */
export class SpawnHelper implements Spawner {
  /** The helper as the daemon's child; undefined when it is reached through a socket. */
  readonly #process: ChildProcessWithoutNullStreams | undefined;
  readonly #input: Writable;
  /** The commands whose frames are still wanted, by id. */
  readonly #commands = new Map<number, ShellEvents>();
  #nextId = 1;
  #pending: Buffer = Buffer.alloc(0);
  #exited = false;
  #killedBecause: string | undefined;

  readonly startedAt = Date.now();

  /**
   * `path`: the helper program, run as the daemon's child; or, for `runner: 'socket'`, the socket
   * of the command runner, a helper systemd starts for each connection as the commands' user
   * (the daemon runs as another, so that no command can read its keys or signal it). Such a
   * helper gives commands cgroups of their own, and the daemon's signals go through it.
   */
  constructor(
    readonly path: string,
    private readonly options: SpawnHelperOptions,
    readonly runner: 'child' | 'socket' = 'child',
  ) {
    if (runner === 'socket') {
      const socket = net.connect(path);
      this.#input = socket;
      socket.on('data', (chunk: Buffer) => this.#receive(chunk));
      socket.on('error', (error) => this.#fail(`cannot reach the command runner at ${path}: ${error.message}`));
      socket.on('close', () => this.#fail(this.#killedBecause ?? `the command runner at ${path} closed the connection`));
      return;
    }
    // A session of its own: Ctrl-C or a hangup on the daemon's terminal reaches the daemon, which
    // drains, and not the helper, whose end would end every command.
    const child = spawn(path, [], {env: {}, stdio: ['pipe', 'pipe', 'pipe'], detached: true});
    this.#process = child;
    this.#input = child.stdin;
    child.stdout.on('data', (chunk: Buffer) => this.#receive(chunk));
    child.stderr.setEncoding('utf8');
    let stderr = '';
    child.stderr.on('data', (text: string) => (stderr = (stderr + text).slice(-2000)));
    child.stdin.on('error', () => {});
    child.on('error', (error) => this.#fail(`cannot run ${path}: ${error.message}`));
    // 'close', not 'exit': the frames it wrote before it went are read first.
    child.on('close', (code, signal) => this.#fail(this.#killedBecause ?? `${path} exited (${signal ?? `code ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`));
  }

  get pid(): number | undefined {
    return this.#process?.pid;
  }

  /** Whether the daemon's signals to commands go through the helper: it runs them as another user. */
  get signalsCommands(): boolean {
    return this.runner === 'socket';
  }

  /** Signals a command's process group; SIGKILL also ends its cgroup. */
  signal(id: number, signal: NodeJS.Signals): void {
    const payload = Buffer.alloc(4);
    payload.writeInt32LE(osConstants.signals[signal], 0);
    this.#send('K', id, payload);
  }

  get alive(): boolean {
    return !this.#exited;
  }

  spawn(command: string, workdir: string | undefined, env: Record<string, string>, outputLimit: number, cgroup: string | undefined, events: ShellEvents): number {
    const id = this.#nextId++;
    // The frame goes first: the helper's answers come in a later turn.
    this.#send('S', id, encodeSpawnRequest(command, workdir, env, outputLimit, cgroup));
    this.#commands.set(id, events);
    return id;
  }

  /**
   * Nothing more is wanted of a command: the helper stops reading its output. True when the helper
   * was told; a command it has finished with costs no wake-up of the helper.
   */
  release(id: number): boolean {
    if (!this.#commands.delete(id)) return false;
    this.#send('R', id, '');
    return true;
  }

  /** Kills a helper that no longer answers (stopped, or stuck in a spawn): its commands are ended and answered. */
  terminate(reason: string): void {
    if (this.#exited || this.#killedBecause) return;
    this.#killedBecause = reason;
    if (this.#process) this.#process.kill('SIGKILL');
    else (this.#input as Socket).destroy();
  }

  /** Ends the helper; the commands it started go on, as with a daemon that stops. */
  close(): void {
    this.#commands.clear();
    this.#input.end();
  }

  /** One frame in one buffer: header, then the payload encoded straight into it. */
  #send(type: 'S' | 'R' | 'K', id: number, payload: string | Buffer): void {
    if (this.#exited) return;
    const payloadLength = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    const frame = Buffer.allocUnsafe(9 + payloadLength);
    frame.writeUInt32LE(5 + payloadLength, 0);
    frame.write(type, 4, 'latin1');
    frame.writeUInt32LE(id, 5);
    if (typeof payload === 'string') frame.write(payload, 9, 'utf8');
    else payload.copy(frame, 9);
    this.#input.write(frame);
  }

  #receive(chunk: Buffer): void {
    let data = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    while (data.length >= 4) {
      const length = data.readUInt32LE(0);
      // The helper's frames carry at most a read of output: a longer one is not the helper speaking.
      if (length < 5 || length > MAX_FRAME) {
        this.terminate(`the helper sent a frame of ${length} bytes`);
        return;
      }
      if (data.length < 4 + length) break;
      try {
        this.#dispatch(String.fromCharCode(data[4]), data.readUInt32LE(5), data.subarray(9, 4 + length));
      } catch (error) {
        this.options.onHandlerError(error);
      }
      data = data.subarray(4 + length);
    }
    this.#pending = data;
  }

  #dispatch(type: string, id: number, payload: Buffer): void {
    const events = this.#commands.get(id);
    if (!events) return;
    switch (type) {
      case 'P':
        events.started(payload.readInt32LE(0));
        break;
      case 'O':
        events.stdout(payload);
        break;
      case 'E':
        events.stderr(payload);
        break;
      case 'X': {
        const {code, signal} = decodeWaitStatus(payload.readInt32LE(0));
        events.exited(code, signal);
        break;
      }
      case 'F':
        this.#commands.delete(id);
        events.failed(new Error(payload.toString('utf8')));
        break;
      case 'C':
        this.#commands.delete(id);
        events.closed({stdout: Number(payload.readBigUInt64LE(0)), stderr: Number(payload.readBigUInt64LE(8))});
        break;
    }
  }

  /**
   * The helper is gone: its commands can no longer be reaped or read, and each is told, to be
   * ended and answered for; then the daemon may start another helper.
   */
  #fail(reason: string): void {
    if (this.#exited) return;
    this.#exited = true;
    const stopped = [...this.#commands.values()];
    this.#commands.clear();
    // A new helper first: what these commands' ends start next (the queue) goes to it.
    this.options.onExit(reason);
    for (const events of stopped) {
      try {
        events.spawnerStopped(reason);
      } catch (error) {
        this.options.onHandlerError(error);
      }
    }
  }
}
