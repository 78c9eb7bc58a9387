import {join} from 'node:path';
import {fs} from '../common/node-builtins.js';

const {readFileSync, renameSync, writeFileSync} = fs;

export interface RunningEntry {
  jobId: string;
  command: string;
  pid?: number;
  startedAt: string;
}

/** How long changes wait before the file is written: a burst of commands costs one write. */
const WRITE_DELAY_MS = 100;

/**
 * The commands running now, kept in the service's state directory. A daemon killed without the
 * chance to drain (kill -9, the OOM killer) leaves it behind, and the next one logs those
 * commands as lost. Written atomically: a temporary file renamed over the old one.
 */
export class RunningFile {
  readonly path: string;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    stateDirectory: string,
    private readonly current: () => RunningEntry[],
  ) {
    this.path = join(stateDirectory, 'running.json');
  }

  /** What the previous daemon left running; nothing when it stopped cleanly or the file is unreadable. */
  takePrevious(): RunningEntry[] {
    let previous: RunningEntry[] = [];
    try {
      const parsed: unknown = JSON.parse(readFileSync(this.path, 'utf8'));
      if (Array.isArray(parsed)) previous = parsed.filter((entry): entry is RunningEntry => typeof entry?.jobId === 'string' && typeof entry?.command === 'string');
    } catch {
      // No file yet, or one cut short: nothing to report.
    }
    this.writeNow();
    return previous;
  }

  changed(): void {
    this.#timer ??= setTimeout(() => this.writeNow(), WRITE_DELAY_MS);
  }

  writeNow(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const temporary = `${this.path}.new`;
    try {
      // Command lines are the daemon's own business: owner only.
      writeFileSync(temporary, JSON.stringify(this.current()), {mode: 0o600});
      renameSync(temporary, this.path);
    } catch {
      // A full or read-only disk must not stop commands; the next change tries again.
    }
  }
}
