// The daemon's memory of its commands: one record per accepted request, from queued to its end and
// its callback's outcome, with the head and tail of its output, so that a caller who did not wait
// (Func with wait=false, `dffs-ctl exec`) can look the job up, follow its output and cancel it.
// Bounded three ways (config): a count and an age of finished records, and the bytes of output
// that finished records keep together; running and queued ones are bounded by MAX_RUNNING and
// MAX_QUEUED already.
import {StringDecoder} from 'node:string_decoder';
import type {CommandResult} from './runner.js';

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'timed-out' | 'cancelled' | 'spawner-stopped';

/** Bytes kept of the start of each stream, and again of its end. */
export const OUTPUT_SAMPLE_BYTES = 64 * 1024;

export type OutputStream = 'stdout' | 'stderr';

export interface CallbackAttempt {
  attempt: number;
  ok: boolean;
  status?: number;
  error?: string;
  durationMs?: number;
}

/** What a follower of a job's output is told: each piece as it comes, then the end. */
export type JobOutputEvent = {stream: OutputStream; chunk: Buffer} | {end: JobRecordView};

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

export interface NewJob {
  id: string;
  key: string;
  remote: string;
  command: string;
  wait: boolean;
  workdir?: string;
  /** The callback URL's origin: its path and query may hold a token. */
  callback?: string;
  timeoutSeconds: number;
}

/** A job record as the HTTP interface and the control socket show it. */
export interface JobRecordView extends NewJob {
  state: JobState;
  queuedAt: string;
  startedAt?: string;
  finishedAt?: string;
  pid?: number;
  exitCode?: number | null;
  signal?: string | null;
  timedOut?: boolean;
  truncated?: boolean;
  durationMs?: number;
  stdoutBytes: number;
  stderrBytes: number;
  error?: string;
  /** False once the store has let go of the output, to stay within JOB_OUTPUT_KEPT. */
  outputKept: boolean;
  callbackDelivery?: {outcome: 'pending' | 'delivered' | 'failed'; attempts: CallbackAttempt[]};
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
  readonly #followers = new Set<(event: JobOutputEvent) => void>();

  constructor(readonly job: NewJob) {
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
    for (const follower of this.#followers) follower({stream, chunk});
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
    const view = this.view();
    for (const follower of this.#followers) follower({end: view});
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

  constructor(public limits: JobStoreLimits) {}

  get size(): number {
    return this.#records.size;
  }

  get finishedOutputBytes(): number {
    return this.#finishedOutputBytes;
  }

  add(job: NewJob): JobRecord {
    const record = new JobRecord(job);
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

/** A job's output as text, for a reader: each piece, the bytes not kept between head and tail, then the end. */
export type OutputTextEvent = {stream: OutputStream; data: string} | {skipped: {stream: OutputStream; bytes: number}} | {result: JobRecordView};

/**
 * What a record keeps of its output, then (with `follow`, while the job runs) each piece as it
 * comes, then its end, as UTF-8 text: a character split between pieces is joined again. Returns the
 * unsubscribe; `emit` may be called before this returns.
 */
export function readRecord(record: JobRecord, follow: boolean, emit: (event: OutputTextEvent) => void): () => void {
  const decoders = {stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8')};
  const data = (stream: OutputStream, text: string) => {
    if (text) emit({stream, data: text});
  };
  for (const stream of ['stdout', 'stderr'] as const) {
    const {head, skippedBytes, tail} = record[stream].pieces();
    data(stream, decoders[stream].write(head));
    if (skippedBytes > 0 && tail.length > 0) {
      data(stream, decoders[stream].end());
      emit({skipped: {stream, bytes: skippedBytes}});
      decoders[stream] = new StringDecoder('utf8');
    }
    data(stream, decoders[stream].write(tail));
  }
  const finish = (view: JobRecordView) => {
    for (const stream of ['stdout', 'stderr'] as const) data(stream, decoders[stream].end());
    emit({result: view});
  };
  if (record.finished || !follow) {
    finish(record.view());
    return () => {};
  }
  return record.follow((event) => {
    if ('end' in event) finish(event.end);
    else data(event.stream, decoders[event.stream].write(event.chunk));
  });
}
