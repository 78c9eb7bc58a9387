// The daemon's memory of its commands: one record per accepted request, from queued to its end and
// its callback's outcome, with the head and tail of its output, so that a caller who did not wait
// (Func with wait=false, `dffs-ctl exec`) can look the job up, follow its output and cancel it.
// Bounded three ways (config): a count and an age of finished records, and the bytes of output
// that finished records keep together; running and queued ones are bounded by MAX_RUNNING and
// MAX_QUEUED already.
import type {CommandResult} from './runner.js';
import type {JobRecordView, JobState, NewJob, OutputStream} from '../protocol/job-record.js';

/** Bytes kept of the start of each stream, and again of its end. */
export const OUTPUT_SAMPLE_BYTES = 64 * 1024;


/** What a follower of a job's output is told: each piece as it comes, as text, then the end. One object for every follower. */
export type JobOutputEvent = {stream: OutputStream; chunk: Buffer} | {end: JobRecordView};

/** What a running command holds of a stream: all of it from the start, up to OUTPUT_LIMIT and OUTPUT_BUDGET. */
export type KeptOutput = (stream: OutputStream) => {chunks: Buffer[]; bytes: number};

/** The longest command a record keeps (BODY_LIMIT allows a megabyte); its length says when it was cut. */
export const COMMAND_KEPT_CHARS = 4096;

/** The first and the last OUTPUT_SAMPLE_BYTES of one stream, and how much went by between them. */
export class OutputSample {
  readonly #head: Buffer[] = [];
  #headBytes = 0;
  readonly #tail: Buffer[] = [];
  #tailBytes = 0;
  total = 0;

  get keptBytes(): number {
    return this.#headBytes + this.#tailBytes;
  }

  push(chunk: Buffer): void {
    this.total += chunk.length;
    let rest = chunk;
    if (this.#headBytes < OUTPUT_SAMPLE_BYTES) {
      const piece = rest.subarray(0, OUTPUT_SAMPLE_BYTES - this.#headBytes);
      this.#head.push(Buffer.from(piece));
      this.#headBytes += piece.length;
      rest = rest.subarray(piece.length);
    }
    if (rest.length === 0) return;
    // Copied: a piece of a large read buffer would otherwise keep all of it.
    this.#tail.push(Buffer.from(rest.subarray(Math.max(0, rest.length - OUTPUT_SAMPLE_BYTES))));
    this.#tailBytes += Math.min(rest.length, OUTPUT_SAMPLE_BYTES);
    while (this.#tailBytes - this.#tail[0].length >= OUTPUT_SAMPLE_BYTES) this.#tailBytes -= this.#tail.shift()!.length;
    const over = this.#tailBytes - OUTPUT_SAMPLE_BYTES;
    if (over > 0) {
      this.#tail[0] = this.#tail[0].subarray(over);
      this.#tailBytes -= over;
    }
  }

  /** The kept bytes as they came, with how many were skipped between the head and the tail. */
  pieces(): {head: Buffer; skippedBytes: number; tail: Buffer} {
    return {head: Buffer.concat(this.#head), skippedBytes: this.total - this.keptBytes, tail: Buffer.concat(this.#tail)};
  }

  drop(): void {
    this.#head.length = 0;
    this.#tail.length = 0;
    this.#headBytes = 0;
    this.#tailBytes = 0;
  }
}



function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export class JobRecord {
  state: JobState = 'queued';
  readonly queuedAt = Date.now();
  startedAt: number | undefined;
  finishedAt: number | undefined;
  pid: number | undefined;
  result: Omit<CommandResult, 'stdout' | 'stderr'> | undefined;
  readonly stdout = new OutputSample();
  readonly stderr = new OutputSample();
  outputKept = true;
  callback: JobRecordView['callbackDelivery'];
  /** The running command's own hold on its output, from its start: what a late follower is given first. */
  keptWhileRunning: KeptOutput | undefined;
  readonly #followers = new Set<(event: JobOutputEvent) => void>();

  constructor(
    readonly job: NewJob,
    private readonly onFollowerError: (error: unknown) => void = () => {},
  ) {
    if (job.callback) this.callback = {outcome: 'pending', attempts: []};
  }

  get finished(): boolean {
    return this.finishedAt !== undefined;
  }

  view(): JobRecordView {
    const result = this.result;
    return {
      ...this.job,
      state: this.state,
      queuedAt: iso(this.queuedAt),
      ...(this.startedAt === undefined ? {} : {startedAt: iso(this.startedAt)}),
      ...(this.finishedAt === undefined ? {} : {finishedAt: iso(this.finishedAt)}),
      ...(this.pid === undefined ? {} : {pid: this.pid}),
      ...(result
        ? {exitCode: result.exitCode, signal: result.signal, timedOut: result.timedOut, truncated: result.truncated, durationMs: result.durationMs, ...(result.error ? {error: result.error} : {})}
        : {}),
      stdoutBytes: this.stdout.total,
      stderrBytes: this.stderr.total,
      outputKept: this.outputKept,
      ...(this.callback ? {callbackDelivery: structuredClone(this.callback)} : {}),
    };
  }

  output(stream: OutputStream, chunk: Buffer): void {
    this[stream].push(chunk);
    if (this.#followers.size > 0) this.#tell({stream, chunk});
  }

  /** A follower that throws is dropped and reported: the job's end must still reach the daemon. */
  #tell(event: JobOutputEvent): void {
    for (const follower of this.#followers) {
      try {
        follower(event);
      } catch (error) {
        this.#followers.delete(follower);
        this.onFollowerError(error);
      }
    }
  }

  /** Calls back for each piece of output from now on, then for the end; returns the unsubscribe. */
  follow(follower: (event: JobOutputEvent) => void): () => void {
    this.#followers.add(follower);
    return () => this.#followers.delete(follower);
  }

  end(state: JobState, result: CommandResult): void {
    this.state = state;
    this.finishedAt = Date.now();
    const {stdout: _stdout, stderr: _stderr, ...outcome} = result;
    this.result = outcome;
    // The helper counts what it did not pass on; the record's totals say what the command printed.
    this.stdout.total = Math.max(this.stdout.total, result.stdoutBytes);
    this.stderr.total = Math.max(this.stderr.total, result.stderrBytes);
    this.keptWhileRunning = undefined;
    // A view costs three dates and a copy: made only for a follower (most jobs have none).
    if (this.#followers.size > 0) this.#tell({end: this.view()});
    this.#followers.clear();
  }

  dropOutput(): number {
    const freed = this.stdout.keptBytes + this.stderr.keptBytes;
    this.stdout.drop();
    this.stderr.drop();
    this.outputKept = false;
    return freed;
  }
}

/** The state a finished command's result stands for. */
export function stateOf(result: CommandResult): JobState {
  if (result.ended) return result.ended;
  if (result.timedOut) return 'timed-out';
  return result.exitCode === 0 && !result.error ? 'succeeded' : 'failed';
}

export interface JobStoreLimits {
  /** Finished records kept at most. */
  count: number;
  /** Seconds a finished record is kept. */
  seconds: number;
  /** Bytes of output that finished records keep together; past it, the oldest let go of theirs. */
  outputBytes: number;
}

export class JobStore {
  /** In order of arrival: the oldest first. */
  readonly #records = new Map<string, JobRecord>();
  /** Finished records, oldest finish first. */
  readonly #finished = new Set<JobRecord>();
  /** Those of them that still keep their output. */
  readonly #holding = new Set<JobRecord>();
  #finishedOutputBytes = 0;

  constructor(
    public limits: JobStoreLimits,
    private readonly onFollowerError?: (error: unknown) => void,
  ) {}

  get size(): number {
    return this.#records.size;
  }

  get finishedOutputBytes(): number {
    return this.#finishedOutputBytes;
  }

  add(job: NewJob): JobRecord {
    const command = job.command.length > COMMAND_KEPT_CHARS ? {command: job.command.slice(0, COMMAND_KEPT_CHARS), commandLength: job.command.length} : {};
    const record = new JobRecord({...job, ...command}, this.onFollowerError);
    this.#records.set(job.id, record);
    return record;
  }

  get(id: string): JobRecord | undefined {
    this.prune();
    return this.#records.get(id);
  }

  /** Newest first. */
  list(): JobRecord[] {
    this.prune();
    return [...this.#records.values()].reverse();
  }

  finish(record: JobRecord, result: CommandResult): void {
    record.end(stateOf(result), result);
    this.#finished.add(record);
    this.#holding.add(record);
    this.#finishedOutputBytes += record.stdout.keptBytes + record.stderr.keptBytes;
    this.prune();
  }

  /** Lets go of what is over the limits: records too old or too many, then the output of the oldest. */
  prune(now = Date.now()): void {
    const oldest = now - this.limits.seconds * 1000;
    for (const record of this.#finished) {
      if (this.#finished.size <= this.limits.count && record.finishedAt! >= oldest) break;
      this.#finished.delete(record);
      this.#records.delete(record.job.id);
      if (this.#holding.delete(record)) this.#finishedOutputBytes -= record.dropOutput();
    }
    for (const record of this.#holding) {
      if (this.#finishedOutputBytes <= this.limits.outputBytes) break;
      this.#holding.delete(record);
      this.#finishedOutputBytes -= record.dropOutput();
    }
  }
}
