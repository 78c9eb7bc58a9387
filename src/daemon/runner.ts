// Commands start through dffs-spawn.node or the dffs-spawn helper (both vfork) when one is there,
// and otherwise through node:child_process, whose fork() of the whole daemon blocks the event loop
// for about 1 ms per command (bench/results). Even that is cheaper than execa: measured on this
// project's 2-core machines (Node 20.20, 2026-11-24), `/bin/sh -c hostname` ran 466/s with spawn
// and 355/s with execa 9.
import {spawn, type ChildProcessByStdio} from 'node:child_process';
import type {Readable} from 'node:stream';

export interface CommandSpec {
  command: string;
  workdir?: string;
  env: Record<string, string>;
  timeoutMs: number;
  killGraceMs: number;
  /** Bytes kept of stdout, and again of stderr. */
  outputLimit: number;
}

export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  truncated: boolean;
  durationMs: number;
  stdoutBytes: number;
  stderrBytes: number;
  /** Set when the command could not be started at all. */
  error?: string;
}

export interface RunningCommand {
  /** Known once the command has started. */
  readonly pid: number | undefined;
  /** Signals the command's whole process group. */
  kill(signal: NodeJS.Signals): void;
}

export interface CommandHooks {
  /** The process id, once the command is running. */
  onStarted?(pid: number): void;
  /** Called once, as soon as the result is known: in the same turn as the exit, with no promise in between. */
  onFinished(result: CommandResult): void;
}

/** How long output is still read after the shell exits, for a child that keeps the pipe open. */
const OUTPUT_GRACE_MS = 200;

/** Keeps the first `limit` bytes of a stream and counts the rest. */
class CappedOutput {
  readonly #chunks: Buffer[] = [];
  #kept = 0;
  total = 0;

  constructor(readonly limit: number) {}

  get truncated(): boolean {
    return this.total > this.#kept;
  }

  push(chunk: Buffer): void {
    this.total += chunk.length;
    const room = this.limit - this.#kept;
    if (room <= 0) return;
    const kept = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.#chunks.push(kept);
    this.#kept += kept.length;
  }

  text(): string {
    return Buffer.concat(this.#chunks, this.#kept).toString('utf8');
  }
}

/** Signals a process group; false when it is gone. */
function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILLs sent back to back, then again after a pause while the group is not empty, for up to a minute. */
const KILLS_PER_ROUND = 1000;
const KILL_ROUND_MS = 20;
const KILL_ROUNDS = 3000;

/**
 * SIGKILLs a process group until it is empty. One kill is not enough for a fork bomb: members
 * forked while the kernel walks the group escape it and fork again, so the kills come back to
 * back, before the survivors can. A group of zombies waiting to be reaped takes a few rounds.
 */
function killGroupUntilEmpty(pid: number, roundsLeft = KILL_ROUNDS): void {
  for (let kill = 0; kill < KILLS_PER_ROUND; kill++) {
    if (!signalGroup(pid, 'SIGKILL')) return;
  }
  if (roundsLeft > 0) setTimeout(() => killGroupUntilEmpty(pid, roundsLeft - 1), KILL_ROUND_MS).unref();
}

/**
 * What a spawner reports of one command, as plain calls (no emitter, no stream objects): started,
 * then output, exited and closed, in that order; or failed, at any point.
 */
export interface ShellEvents {
  started(pid: number): void;
  stdout(chunk: Buffer): void;
  stderr(chunk: Buffer): void;
  exited(code: number | null, signal: NodeJS.Signals | null): void;
  /** The output is at its end. Totals come from a native spawner, which passes on only the kept part but counts it all. */
  closed(totals?: {stdout: number; stderr: number}): void;
  failed(error: Error): void;
}

/** dffs-spawn.node (SpawnAddon) or the dffs-spawn helper (SpawnHelper). */
export interface Spawner {
  readonly alive: boolean;
  /**
   * Starts `/bin/sh -c command` and reports it to `events`, from a later turn; of each output
   * stream, only the first outputLimit bytes are passed on. Returns the command's id, for release().
   */
  spawn(command: string, workdir: string | undefined, env: Record<string, string>, outputLimit: number, events: ShellEvents): number;
  /** Nothing more is wanted of a command: reading its output stops. */
  release(id: number): boolean;
}

type NodeChild = ChildProcessByStdio<null, Readable, Readable>;

/** Node's own spawning, reported as ShellEvents: for hosts without a native spawner, or after the helper died. */
function spawnWithNode(spec: CommandSpec, events: ShellEvents): NodeChild {
  const child = spawn('/bin/sh', ['-c', spec.command], {
    cwd: spec.workdir,
    env: spec.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.once('spawn', () => {
    if (child.pid !== undefined) events.started(child.pid);
  });
  child.stdout.on('data', (chunk: Buffer) => events.stdout(chunk));
  child.stderr.on('data', (chunk: Buffer) => events.stderr(chunk));
  child.on('error', (error) => events.failed(error));
  child.on('exit', (code, signal) => events.exited(code, signal));
  child.on('close', () => events.closed());
  return child;
}

/** One command, from its start to its result. */
class CommandRun implements ShellEvents, RunningCommand {
  pid: number | undefined;
  readonly #startedAt = performance.now();
  readonly #stdout: CappedOutput;
  readonly #stderr: CappedOutput;
  /** How the command was started: a native spawner's id for it, or Node's child process. */
  #spawner: Spawner | undefined;
  #spawnerId = 0;
  #nodeChild: NodeChild | undefined;
  #exit: {code: number | null; signal: NodeJS.Signals | null} | undefined;
  #timedOut = false;
  #settled = false;
  /** A signal asked for before the pid is known, sent when it is. */
  #pendingSignal: NodeJS.Signals | undefined;
  #timeoutTimer: NodeJS.Timeout | undefined;
  #killTimer: NodeJS.Timeout | undefined;
  #graceTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly spec: CommandSpec,
    private readonly hooks: CommandHooks,
  ) {
    this.#stdout = new CappedOutput(spec.outputLimit);
    this.#stderr = new CappedOutput(spec.outputLimit);
  }

  start(spawner: Spawner | undefined): void {
    const {spec} = this;
    if (spawner?.alive) {
      this.#spawner = spawner;
      this.#spawnerId = spawner.spawn(spec.command, spec.workdir, spec.env, spec.outputLimit, this);
    } else {
      this.#nodeChild = spawnWithNode(spec, this);
    }
    this.#timeoutTimer = setTimeout(() => this.#timeOut(), spec.timeoutMs);
  }

  /** Signals the command's whole process group. */
  kill(signal: NodeJS.Signals): void {
    if (this.pid === undefined) this.#pendingSignal = signal;
    else if (signal === 'SIGKILL') killGroupUntilEmpty(this.pid);
    else signalGroup(this.pid, signal);
  }

  started(pid: number): void {
    this.pid = pid;
    this.hooks.onStarted?.(pid);
    if (this.#pendingSignal) this.kill(this.#pendingSignal);
  }

  stdout(chunk: Buffer): void {
    this.#stdout.push(chunk);
  }

  stderr(chunk: Buffer): void {
    this.#stderr.push(chunk);
  }

  exited(code: number | null, signal: NodeJS.Signals | null): void {
    this.#exit = {code, signal};
    // The shell is gone; what it left in its group after a timeout goes too.
    if (this.#timedOut) this.kill('SIGKILL');
    // A native spawner's close usually comes with the exit, in the same turn: no timer for that.
    queueMicrotask(() => {
      if (!this.#settled) this.#graceTimer = setTimeout(() => this.#finish(), OUTPUT_GRACE_MS);
    });
  }

  closed(totals?: {stdout: number; stderr: number}): void {
    if (totals) {
      this.#stdout.total = Math.max(this.#stdout.total, totals.stdout);
      this.#stderr.total = Math.max(this.#stderr.total, totals.stderr);
    }
    this.#finish();
  }

  failed(error: Error): void {
    this.#finish(`cannot start the command: ${error.message}`);
  }

  #timeOut(): void {
    this.#timedOut = true;
    this.kill('SIGTERM');
    this.#killTimer = setTimeout(() => this.kill('SIGKILL'), this.spec.killGraceMs);
  }

  #finish(error?: string): void {
    if (this.#settled) return;
    this.#settled = true;
    clearTimeout(this.#timeoutTimer);
    clearTimeout(this.#killTimer);
    clearTimeout(this.#graceTimer);
    // A background child may hold the pipes: stop reading, the reply does not wait for it.
    if (this.#nodeChild) {
      this.#nodeChild.stdout.destroy();
      this.#nodeChild.stderr.destroy();
    } else {
      this.#spawner?.release(this.#spawnerId);
    }
    const stdout = this.#stdout;
    const stderr = this.#stderr;
    const exit = this.#exit;
    this.hooks.onFinished({
      stdout: stdout.text(),
      stderr: error ? `${stderr.text()}sidecar: ${error}\n` : stderr.text(),
      exitCode: exit?.code ?? null,
      signal: exit?.signal ?? null,
      timedOut: this.#timedOut,
      truncated: stdout.truncated || stderr.truncated,
      durationMs: Math.round(performance.now() - this.#startedAt),
      stdoutBytes: stdout.total,
      stderrBytes: stderr.total,
      ...(error ? {error} : {}),
    });
  }
}

/**
 * Runs a command with `/bin/sh -c` in its own process group (its own session), through the native
 * spawner when one is given and alive.
 */
export function runCommand(spec: CommandSpec, spawner: Spawner | undefined, hooks: CommandHooks): RunningCommand {
  const run = new CommandRun(spec, hooks);
  run.start(spawner);
  return run;
}
