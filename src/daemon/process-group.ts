// Ending a command's processes from the daemon, where it may signal them itself (a personal serve;
// the command runner signals them for the installed service).
import {fs} from '../common/node-builtins.js';

/** The variable that marks every command's processes with their job id. */
export const JOB_ID_VARIABLE = 'SIDECAR_JOB_ID';

/** Signals a process group; false when it is gone. */
export function signalGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILLs sent back to back, then again after a pause while the group is not empty, for up to 2 s. */
const KILLS_PER_ROUND = 100;
const KILL_ROUND_MS = 100;
const KILL_ROUNDS = 20;

/**
 * SIGKILLs a process group until it is empty. One kill is not enough for a fork bomb: members
 * forked while the kernel walks the group escape it and fork again, so the kills come back to
 * back, before the survivors can. Bounded, and stopped at the first sign of an empty group: once
 * it is empty its id may be given to another process's group.
 */
export function killGroupUntilEmpty(pid: number, roundsLeft = KILL_ROUNDS): void {
  for (let kill = 0; kill < KILLS_PER_ROUND; kill++) {
    if (!signalGroup(pid, 'SIGKILL')) return;
  }
  if (roundsLeft > 0) setTimeout(() => killGroupUntilEmpty(pid, roundsLeft - 1), KILL_ROUND_MS).unref();
}

/**
 * The processes that carry a job's mark in their environment: the command of a helper that died
 * before it reported the pid, and what that command started. Read only then, from /proc.
 */
export function markedProcesses(jobId: string): number[] {
  const mark = Buffer.from(`${JOB_ID_VARIABLE}=${jobId}\0`);
  const found: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (fs.readFileSync(`/proc/${name}/environ`).includes(mark)) found.push(Number(name));
    } catch {
      // Gone, or another user's: not ours.
    }
  }
  return found;
}
