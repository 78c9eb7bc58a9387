// Commands start through the dffs-spawn helper (posix_spawn) when it is there, and otherwise through
// node:child_process, whose fork() of the whole daemon blocks the event loop for about 1 ms per
// command (bench/results). Both are cheaper than execa: measured on this project's 2-core machines
// (Node 20.20, 2026-11-24), `/bin/sh -c hostname` ran 466/s with spawn and 355/s with execa 9.
import {spawn} from 'node:child_process';
import type {EventEmitter} from 'node:events';
import type {SpawnHelper} from './spawn-helper.js';

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

/** What the runner uses of a started command, from either spawner. */
interface ShellChild extends EventEmitter {
  readonly pid: number | undefined;
  /** Set by the helper, which relays only the kept part of the output but counts it all. */
  readonly outputTotals?: {stdout: number; stderr: number};
  readonly stdout: EventEmitter & {destroy(): void};
  readonly stderr: EventEmitter & {destroy(): void};
}

function startShell(spec: CommandSpec, helper: SpawnHelper | undefined): ShellChild {
  if (helper?.alive) return helper.spawn(spec.command, spec.workdir, spec.env, spec.outputLimit);
  return spawn('/bin/sh', ['-c', spec.command], {
    cwd: spec.workdir,
    env: spec.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  }) as ShellChild;
}

/**
 * Runs a command with `/bin/sh -c` in its own process group (its own session), through the spawn
 * helper when one is given and alive.
 */
export function runCommand(spec: CommandSpec, helper: SpawnHelper | undefined, hooks: CommandHooks): RunningCommand {
  const started = performance.now();
  // First: everything else here can happen while the command starts.
  const child = startShell(spec, helper);
  const stdout = new CappedOutput(spec.outputLimit);
  const stderr = new CappedOutput(spec.outputLimit);
  let timedOut = false;
  let killTimer: NodeJS.Timeout | undefined;
  // A signal asked for before the helper has reported the pid is sent when it does.
  let pendingSignal: NodeJS.Signals | undefined;
  const killGroup = (signal: NodeJS.Signals) => {
    if (child.pid === undefined) pendingSignal = signal;
    else if (signal === 'SIGKILL') killGroupUntilEmpty(child.pid);
    else signalGroup(child.pid, signal);
  };
  child.once('spawn', () => {
    if (child.pid === undefined) return;
    hooks.onStarted?.(child.pid);
    if (pendingSignal) killGroup(pendingSignal);
  });

  let exit: {code: number | null; signal: string | null} | undefined;
  let settled = false;
  let graceTimer: NodeJS.Timeout | undefined;
  const finish = (error?: string) => {
    if (settled) return;
    settled = true;
    clearTimeout(timeoutTimer);
    clearTimeout(killTimer);
    clearTimeout(graceTimer);
    // A background child may hold the pipes: stop reading, the reply does not wait for it.
    child.stdout.destroy();
    child.stderr.destroy();
    if (child.outputTotals) {
      stdout.total = Math.max(stdout.total, child.outputTotals.stdout);
      stderr.total = Math.max(stderr.total, child.outputTotals.stderr);
    }
    hooks.onFinished({
      stdout: stdout.text(),
      stderr: error ? `${stderr.text()}sidecar: ${error}\n` : stderr.text(),
      exitCode: exit?.code ?? null,
      signal: exit?.signal ?? null,
      timedOut,
      truncated: stdout.truncated || stderr.truncated,
      durationMs: Math.round(performance.now() - started),
      stdoutBytes: stdout.total,
      stderrBytes: stderr.total,
      ...(error ? {error} : {}),
    });
  };
  const timeoutTimer = setTimeout(() => {
    timedOut = true;
    killGroup('SIGTERM');
    killTimer = setTimeout(() => killGroup('SIGKILL'), spec.killGraceMs);
  }, spec.timeoutMs);

  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  child.on('error', (error) => finish(`cannot start the command: ${error.message}`));
  child.on('exit', (code, signal) => {
    exit = {code, signal};
    // The shell is gone; what it left in its group after a timeout goes too.
    if (timedOut) killGroup('SIGKILL');
    // The helper's close usually comes with the exit, in the same turn: no timer for that.
    queueMicrotask(() => {
      if (!settled) graceTimer = setTimeout(() => finish(), OUTPUT_GRACE_MS);
    });
  });
  child.on('close', () => finish());

  return {
    get pid() {
      return child.pid;
    },
    kill: killGroup,
  };
}
