import {join} from 'node:path';
import {PACKAGE_ROOT} from '../package-root.js';
import type {ShellEvents, Spawner} from './runner.js';
import {decodeWaitStatus, encodeSpawnRequest} from './spawn-request.js';

/** Where `npm run build` and the offline bundle put the compiled native/dffs-spawn-addon.c. */
export const SPAWN_ADDON_PATH = join(PACKAGE_ROOT, 'dist', 'dffs-spawn.node');

/** What native/dffs-spawn-addon.c exports. */
interface SpawnAddonBinding {
  init(
    onExited: (id: number, status: number) => void,
    onClosed: (id: number, status: number, stdout: Buffer, stderr: Buffer, stdoutTotal: number, stderrTotal: number) => void,
  ): void;
  /** The shell's pid; throws when it cannot start. */
  spawn(id: number, request: Buffer): number;
  /** Calls onClosed before it returns, if the command was not closed yet. */
  release(id: number): boolean;
}

/**
 * dffs-spawn.node: commands started with vfork inside the daemon, their exit and output watched in
 * its event loop, with no helper process in between (the fastest way; see the README). The
 * constructor throws when the addon is missing or cannot be loaded: the daemon then uses the helper.
 */
export class SpawnAddon implements Spawner {
  readonly alive = true;
  readonly #binding: SpawnAddonBinding;
  /** The commands not yet closed, by id. */
  readonly #commands = new Map<number, ShellEvents>();
  #nextId = 1;

  constructor(path = SPAWN_ADDON_PATH) {
    const addon = {exports: {}};
    process.dlopen(addon, path);
    this.#binding = addon.exports as SpawnAddonBinding;
    this.#binding.init(
      (id, status) => this.#exited(id, status),
      (id, status, stdout, stderr, stdoutTotal, stderrTotal) => this.#closed(id, status, stdout, stderr, stdoutTotal, stderrTotal),
    );
  }

  /** Starts `/bin/sh -c command`; its start or failure reaches `events` after this returns, as from the helper. */
  spawn(command: string, workdir: string | undefined, env: Record<string, string>, outputLimit: number, events: ShellEvents): number {
    const id = this.#nextId;
    this.#nextId = (this.#nextId % 0xffffffff) + 1;
    try {
      const pid = this.#binding.spawn(id, Buffer.from(encodeSpawnRequest(command, workdir, env, outputLimit)));
      this.#commands.set(id, events);
      queueMicrotask(() => events.started(pid));
    } catch (error) {
      queueMicrotask(() => events.failed(error as Error));
    }
    return id;
  }

  /** Nothing more is wanted of a command: its output so far is reported now, and reading stops. */
  release(id: number): boolean {
    return this.#commands.has(id) && this.#binding.release(id);
  }

  #exited(id: number, status: number): void {
    const {code, signal} = decodeWaitStatus(status);
    this.#commands.get(id)?.exited(code, signal);
  }

  #closed(id: number, status: number, stdout: Buffer, stderr: Buffer, stdoutTotal: number, stderrTotal: number): void {
    const events = this.#commands.get(id);
    if (!events) return;
    this.#commands.delete(id);
    if (stdout.length > 0) events.stdout(stdout);
    if (stderr.length > 0) events.stderr(stderr);
    if (status >= 0) {
      const {code, signal} = decodeWaitStatus(status);
      events.exited(code, signal);
    }
    events.closed({stdout: stdoutTotal, stderr: stderrTotal});
  }
}
