import {spawn, type ChildProcessWithoutNullStreams} from 'node:child_process';
import {EventEmitter} from 'node:events';
import {constants as osConstants} from 'node:os';
import {join} from 'node:path';
import {fs} from '../node-builtins.js';
import {PACKAGE_ROOT} from '../package-root.js';

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

/** One output stream of a helper-started command, shaped like the part of a Readable the runner uses. */
class RelayedOutput extends EventEmitter {
  constructor(private readonly release: () => void) {
    super();
  }

  destroy(): void {
    this.release();
  }
}

/** A command started by the helper: the events and streams of a ChildProcess that the runner uses. */
export class HelperChild extends EventEmitter {
  pid: number | undefined;
  /** Bytes the command wrote, relayed or not; set before 'close'. */
  outputTotals: {stdout: number; stderr: number} | undefined;
  readonly stdout: RelayedOutput;
  readonly stderr: RelayedOutput;
  /** Released by the runner, or closed or failed in the helper: nothing more to tell it. */
  #done = false;

  constructor(release: () => void) {
    super();
    const releaseOnce = () => {
      if (this.#done) return;
      this.#done = true;
      release();
    };
    this.stdout = new RelayedOutput(releaseOnce);
    this.stderr = new RelayedOutput(releaseOnce);
  }

  /** The helper is done with this command: a release would be a wasted wake-up of the helper. */
  markDone(): void {
    this.#done = true;
  }
}

function waitStatus(status: number): {code: number | null; signal: NodeJS.Signals | null} {
  const signal = status & 0x7f;
  if (signal === 0) return {code: (status >> 8) & 0xff, signal: null};
  const name = Object.entries(osConstants.signals).find(([, number]) => number === signal)?.[0] as NodeJS.Signals | undefined;
  return {code: null, signal: name ?? null};
}

/**
 * The daemon's side of dffs-spawn (native/dffs-spawn.c): one long-lived helper that starts
 * commands with posix_spawn, so starting one does not fork the daemon. It runs with an empty
 * environment: each command gets exactly the variables the daemon passes.
 */
export class SpawnHelper {
  readonly #process: ChildProcessWithoutNullStreams;
  readonly #children = new Map<number, HelperChild>();
  #nextId = 1;
  #pending: Buffer = Buffer.alloc(0);
  #exited = false;

  constructor(readonly path: string, private readonly onExit: (reason: string) => void) {
    this.#process = spawn(path, [], {env: {}, stdio: ['pipe', 'pipe', 'pipe']});
    this.#process.stdout.on('data', (chunk: Buffer) => this.#receive(chunk));
    this.#process.stderr.setEncoding('utf8');
    let stderr = '';
    this.#process.stderr.on('data', (text: string) => (stderr = (stderr + text).slice(-2000)));
    this.#process.stdin.on('error', () => {});
    this.#process.on('error', (error) => this.#fail(`cannot run ${path}: ${error.message}`));
    this.#process.on('exit', (code, signal) => this.#fail(`${path} exited (${signal ?? `code ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`));
  }

  get pid(): number | undefined {
    return this.#process.pid;
  }

  get alive(): boolean {
    return !this.#exited;
  }

  /** Starts `/bin/sh -c command`; of each output stream, only the first outputLimit bytes are relayed. */
  spawn(command: string, workdir: string | undefined, env: Record<string, string>, outputLimit: number): HelperChild {
    const id = this.#nextId++;
    let payload = `${outputLimit}\0${command}\0${workdir ?? ''}\0`;
    for (const name in env) payload += `${name}=${env[name]}\0`;
    // The frame goes first: the helper's answers come in a later turn, when the child is known.
    this.#send('S', id, payload);
    const child = new HelperChild(() => this.#send('R', id, ''));
    this.#children.set(id, child);
    return child;
  }

  /** Ends the helper; the commands it started go on, as with a daemon that stops. */
  close(): void {
    this.#process.stdin.end();
  }

  /** One frame in one buffer: header, then the payload encoded straight into it. */
  #send(type: 'S' | 'R', id: number, payload: string): void {
    if (this.#exited) return;
    const payloadLength = Buffer.byteLength(payload);
    const frame = Buffer.allocUnsafe(9 + payloadLength);
    frame.writeUInt32LE(5 + payloadLength, 0);
    frame.write(type, 4, 'latin1');
    frame.writeUInt32LE(id, 5);
    frame.write(payload, 9, 'utf8');
    this.#process.stdin.write(frame);
  }

  #receive(chunk: Buffer): void {
    let data = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    while (data.length >= 4) {
      const length = data.readUInt32LE(0);
      if (data.length < 4 + length) break;
      this.#dispatch(String.fromCharCode(data[4]), data.readUInt32LE(5), data.subarray(9, 4 + length));
      data = data.subarray(4 + length);
    }
    this.#pending = data;
  }

  #dispatch(type: string, id: number, payload: Buffer): void {
    const child = this.#children.get(id);
    if (!child) return;
    switch (type) {
      case 'P':
        child.pid = payload.readInt32LE(0);
        child.emit('spawn');
        break;
      case 'O':
        child.stdout.emit('data', payload);
        break;
      case 'E':
        child.stderr.emit('data', payload);
        break;
      case 'X': {
        const {code, signal} = waitStatus(payload.readInt32LE(0));
        child.emit('exit', code, signal);
        break;
      }
      case 'F':
        this.#children.delete(id);
        child.markDone();
        child.emit('error', new Error(payload.toString('utf8')));
        break;
      case 'C':
        this.#children.delete(id);
        child.markDone();
        child.outputTotals = {stdout: Number(payload.readBigUInt64LE(0)), stderr: Number(payload.readBigUInt64LE(8))};
        child.emit('close');
        break;
    }
  }

  #fail(reason: string): void {
    if (this.#exited) return;
    this.#exited = true;
    for (const child of this.#children.values()) child.emit('error', new Error(`the spawn helper stopped: ${reason}`));
    this.#children.clear();
    this.onExit(reason);
  }
}
