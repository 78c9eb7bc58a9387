import {join} from 'node:path';
import {fs} from '../common/node-builtins.js';
import type {ReplayCache} from './replay-cache.js';

const {closeSync, openSync, readFileSync, renameSync, writeFileSync, writeSync} = fs;

/** Lines appended since the last rewrite, past which the file is rewritten with only live entries. */
const MIN_LINES_BEFORE_COMPACTION = 10_000;
const NONCE_LINE = /^(\d{1,12}) ([0-9A-Za-z_-]{1,64})$/;
const FLOOR_LINE = /^floor (-?\d{1,12})$/;

/**
 * The replay cache on disk, in the daemon's state directory, so that a daemon restarted on the same
 * config (systemd's Restart=, a crash, an upgrade) still refuses a request it accepted before. One
 * line per accepted nonce, written before its command starts; the page cache keeps it through a
 * crash of the process. Private to the daemon's user.
 */
export class ReplayJournal {
  readonly path: string;
  #fd: number | undefined;
  #linesSinceCompaction = 0;
  #failed = false;

  constructor(
    stateDirectory: string,
    private readonly onWriteError: (message: string) => void,
  ) {
    this.path = join(stateDirectory, 'replay.log');
  }

  /** Fills the cache with what the previous daemon accepted, then starts a fresh file. */
  load(cache: ReplayCache, oldestValid: number, now: number): void {
    let text = '';
    try {
      text = readFileSync(this.path, 'latin1');
    } catch {
      // No journal yet: nothing was accepted on this state directory.
    }
    for (const line of text.split('\n')) {
      const entry = NONCE_LINE.exec(line);
      if (entry) {
        const timestamp = Number(entry[1]);
        // Written from a cache of the same size, so what is still valid fits.
        if (timestamp >= oldestValid && !cache.has(entry[2])) cache.add(entry[2], timestamp, oldestValid, now);
        continue;
      }
      const floor = FLOOR_LINE.exec(line);
      if (floor) cache.raiseFloor(Number(floor[1]), now);
    }
    this.compact(cache);
  }

  record(nonce: string, timestamp: number, cache: ReplayCache): void {
    if (this.#linesSinceCompaction >= Math.max(MIN_LINES_BEFORE_COMPACTION, 2 * cache.size)) this.compact(cache);
    this.#write(`${timestamp} ${nonce}\n`);
  }

  /** Rewrites the file with the cache's live entries and floor (a new file renamed over the old). */
  compact(cache: ReplayCache): void {
    this.close();
    const lines = Number.isFinite(cache.floor) ? [`floor ${cache.floor}`] : [];
    for (const [nonce, timestamp] of cache.entries()) lines.push(`${timestamp} ${nonce}`);
    const temporary = `${this.path}.new`;
    try {
      writeFileSync(temporary, lines.length > 0 ? `${lines.join('\n')}\n` : '', {mode: 0o600});
      renameSync(temporary, this.path);
      this.#fd = openSync(this.path, 'a', 0o600);
      this.#linesSinceCompaction = 0;
    } catch (error) {
      this.#reportFailure(error);
    }
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
  }

  #write(line: string): void {
    if (this.#fd === undefined) return;
    try {
      writeSync(this.#fd, line);
      this.#linesSinceCompaction++;
    } catch (error) {
      this.#reportFailure(error);
    }
  }

  /** Reported once: requests are still served, with replays refused for this daemon's lifetime only. */
  #reportFailure(error: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.onWriteError(`cannot write ${this.path} (${(error as Error).message}): a request accepted now could be replayed once after a restart`);
  }
}
