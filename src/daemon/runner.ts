// Commands start through the dffs-spawn helper (posix_spawn) when it is there, and otherwise
// through node:child_process, whose fork() of the whole daemon blocks the event loop for about
// 1 ms per command (bench/results). Even that is cheaper than execa: measured on this project's
// 2-core machines (Node 20.20, 2026-11-24), `/bin/sh -c hostname` ran 466/s with spawn and 355/s
// with execa 9.
import {spawn, type ChildProcessByStdio} from 'node:child_process';
import type {Readable} from 'node:stream';
import {CappedOutput, type OutputBudget} from './output-budget.js';
import {killGroupUntilEmpty, markedProcesses, signalGroup} from './process-group.js';

export interface CommandSpec {
  command: string;
  workdir?: string;
  env: Record<string, string>;
  timeoutMs: number;
  killGraceMs: number;
  /** Bytes kept of stdout, and again of stderr. */
  outputLimit: number;
  /** The output held in memory by every running command together. */
  outputBudget: OutputBudget;
  /** The name of the command's own cgroup, which the command runner makes where it can. */
  cgroup?: string;
  /** False when commands may start through the helper alone, never Node's child_process (the command runner). */
  fallback?: boolean;
  /** Its job id, also in its environment as SIDECAR_JOB_ID: how it is found if its pid never came. */
  jobId: string;
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
  /** Set when the command was ended by the daemon for a reason other than its timeout: its spawner stopped, or it was cancelled. */
  ended?: EndReason;
}

export type EndReason = 'spawner-stopped' | 'cancelled';

export interface RunningCommand {
  /** Known once the command has started. */
  readonly pid: number | undefined;
  /** Signals the command's whole process group; SIGKILL ends its cgroup too, where it has one. */
  kill(signal: NodeJS.Signals): void;
  /**
   * Ends the command as a timeout would (SIGTERM, then SIGKILL after the grace), its result marked
   * cancelled. False when it is already ending: its shell has exited, or its timeout came first.
   */
  cancel(): boolean;
  /** What it holds of a stream so far, from the start: the reply's output if it ended now. */
  keptOutput(stream: 'stdout' | 'stderr'): {chunks: Buffer[]; bytes: number};
}

export interface CommandHooks {
  /** The process id, once the command is running. */
  onStarted?(pid: number): void;
  /** Each piece of output as it comes, before it is counted against the limit (the helper has already cut it there). */
  onOutput?(stream: 'stdout' | 'stderr', chunk: Buffer): void;
  /** An exception thrown while the command's events were handled: reported, never the daemon's end. */
  onHandlerError(error: unknown): void;
  /** Called once, as soon as the result is known: in the same turn as the exit, with no promise in between. */
  onFinished(result: CommandResult): void;
}

/** How long output is still read after the shell exits, for a child that keeps the pipe open. */
const OUTPUT_GRACE_MS = 200;

/**
 * What a spawner reports of one command, as plain calls (no emitter, no stream objects): started,
 * then output, exited and closed, in that order; or failed, at any point.
 */
export interface ShellEvents {
  started(pid: number): void;
  stdout(chunk: Buffer): void;
  stderr(chunk: Buffer): void;
  exited(code: number | null, signal: NodeJS.Signals | null): void;
  /** The output is at its end. Totals come from the helper, which passes on only the kept part but counts it all. */
  closed(totals?: {stdout: number; stderr: number}): void;
  /** The command could not be started. */
  failed(error: Error): void;
  /** The spawner stopped while the command ran (or before it reported the start): the command must end. */
  spawnerStopped(reason: string): void;
}

/** The dffs-spawn helper (SpawnHelper). */
export interface Spawner {
  readonly alive: boolean;
  /**
   * Starts `/bin/sh -c command` (in `cgroup`, if given) and reports it to `events`, from a later
   * turn; of each output stream, only the first outputLimit bytes are passed on. Returns the
   * command's id, for release().
   */
  spawn(command: string, workdir: string | undefined, env: Record<string, string>, outputLimit: number, cgroup: string | undefined, events: ShellEvents): number;
  /** Nothing more is wanted of a command: reading its output stops. */
  release(id: number): boolean;
  /** Kills a spawner that no longer reports: its commands are then ended and answered. */
  terminate(reason: string): void;
  /** True when the daemon may not signal commands itself (they run as another user): signal() does. */
  readonly signalsCommands: boolean;
  signal(id: number, signal: NodeJS.Signals): void;
}

/** How long a command may go on unreported after its timeout's SIGKILL before its spawner is taken for stuck. */
const UNREPORTED_EXIT_MS = 5_000;

type NodeChild = ChildProcessByStdio<null, Readable, Readable>;

/** Node's own spawning, reported as ShellEvents: for hosts where the helper cannot run. */
function spawnWithNode(spec: CommandSpec, events: ShellEvents, onHandlerError: (error: unknown) => void): NodeChild {
  // Each handler runs from an event of Node's: what it throws is reported, as the helper's are.
  const guarded = <A extends unknown[]>(handle: (...args: A) => void) => (...args: A) => {
    try {
      handle(...args);
    } catch (error) {
      onHandlerError(error);
    }
  };
  const child = spawn('/bin/sh', ['-c', '--', spec.command], {
    cwd: spec.workdir,
    env: spec.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.once('spawn', guarded(() => {
    if (child.pid !== undefined) events.started(child.pid);
  }));
  child.stdout.on('data', guarded((chunk: Buffer) => events.stdout(chunk)));
  child.stderr.on('data', guarded((chunk: Buffer) => events.stderr(chunk)));
  child.on('error', guarded((error: Error) => events.failed(error)));
  child.on('exit', guarded((code: number | null, signal: NodeJS.Signals | null) => events.exited(code, signal)));
  child.on('close', guarded(() => events.closed()));
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
  #ended: EndReason | undefined;
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
    this.#stdout = new CappedOutput(spec.outputLimit, spec.outputBudget);
    this.#stderr = new CappedOutput(spec.outputLimit, spec.outputBudget);
  }

  start(spawner: Spawner | undefined): void {
    const {spec} = this;
    if (spawner?.alive) {
      this.#spawner = spawner;
      this.#spawnerId = spawner.spawn(spec.command, spec.workdir, spec.env, spec.outputLimit, spec.cgroup, this);
    } else if (spec.fallback === false) {
      queueMicrotask(() => this.failed(new Error('the command runner is not reachable (sudo systemctl status dataflux-func-sidecar-commands.socket)')));
    } else {
      this.#nodeChild = spawnWithNode(spec, this, (error) => this.hooks.onHandlerError(error));
    }
    this.#timeoutTimer = setTimeout(() => this.#timeOut(), spec.timeoutMs);
  }

  /** Signals the command's whole process group; SIGKILL ends its cgroup too, where it has one. */
  kill(signal: NodeJS.Signals): void {
    if (this.#spawner?.signalsCommands && this.#spawnerId !== undefined) {
      this.#spawner.signal(this.#spawnerId, signal);
      return;
    }
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
    this.hooks.onOutput?.('stdout', chunk);
    this.#stdout.push(chunk);
  }

  stderr(chunk: Buffer): void {
    this.hooks.onOutput?.('stderr', chunk);
    this.#stderr.push(chunk);
  }

  exited(code: number | null, signal: NodeJS.Signals | null): void {
    this.#exit = {code, signal};
    // The shell is gone; what it left in its group after a timeout or a cancel goes too.
    if (this.#timedOut || this.#ended === 'cancelled') this.kill('SIGKILL');
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

  spawnerStopped(reason: string): void {
    if (this.#settled) return;
    this.#ended = 'spawner-stopped';
    // The helper no longer reaps the command or reads its output: the command goes, now. Without
    // its pid (the helper died before reporting it), it is found by the mark in its environment.
    if (this.pid === undefined) {
      for (const pid of markedProcesses(this.spec.jobId)) {
        signalGroup(pid, 'SIGKILL');
        this.pid ??= pid;
      }
    }
    if (this.pid === undefined && !this.spec.cgroup) this.#ended = undefined;
    this.kill('SIGKILL');
    this.#finish(undefined, this.#ended ? `ended: the spawner stopped (${reason})` : `the spawner stopped before the command started (${reason})`);
  }

  cancel(): boolean {
    if (this.#settled || this.#ended || this.#timedOut || this.#exit) return false;
    this.#ended = 'cancelled';
    clearTimeout(this.#timeoutTimer);
    this.#endTree();
    return true;
  }

  keptOutput(stream: 'stdout' | 'stderr'): {chunks: Buffer[]; bytes: number} {
    return (stream === 'stdout' ? this.#stdout : this.#stderr).held();
  }

  #timeOut(): void {
    this.#timedOut = true;
    this.#endTree();
  }

  /** SIGTERM to the whole tree, SIGKILL after the grace; a spawner that then reports no exit is taken for stuck. */
  #endTree(): void {
    this.kill('SIGTERM');
    this.#killTimer = setTimeout(() => {
      this.kill('SIGKILL');
      // A killed command's exit is reported within moments; if not, its spawner is stuck.
      this.#killTimer = setTimeout(() => this.#spawner?.terminate(`no exit reported ${UNREPORTED_EXIT_MS / 1000} s after a timed-out command was killed`), UNREPORTED_EXIT_MS);
    }, this.spec.killGraceMs);
  }

  /** `error`: the command never started; `note`: why it ended, for its stderr. */
  #finish(error?: string, note?: string): void {
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
    const said = error ?? note;
    const truncated = stdout.truncated || stderr.truncated;
    const stdoutText = stdout.take();
    const stderrText = stderr.take();
    // From a timer or a spawner's event: what the daemon's handling throws is reported, not fatal.
    try {
      this.hooks.onFinished({
        stdout: stdoutText,
        stderr: said ? `${stderrText}sidecar: ${said}\n` : stderrText,
        exitCode: exit?.code ?? null,
        // Without an exit (the spawner stopped), the kill is what ended it.
        signal: exit ? exit.signal : this.#ended ? 'SIGKILL' : null,
        timedOut: this.#timedOut,
        truncated,
        durationMs: Math.round(performance.now() - this.#startedAt),
        stdoutBytes: stdout.total,
        stderrBytes: stderr.total,
        ...(error ? {error} : {}),
        ...(this.#ended ? {ended: this.#ended} : {}),
      });
    } catch (thrown) {
      this.hooks.onHandlerError(thrown);
    }
  }
}

/**
 * Runs a command with `/bin/sh -c` in its own process group (its own session), through the helper
 * when one is given and alive.
 */
export function runCommand(spec: CommandSpec, spawner: Spawner | undefined, hooks: CommandHooks): RunningCommand {
  const run = new CommandRun(spec, hooks);
  run.start(spawner);
  return run;
}
