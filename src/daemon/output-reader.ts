// A job's output for one reader (GET /jobs/{id}/output, the control socket, the dashboard): what
// the job holds when the reader comes (a running job: all it printed, up to OUTPUT_LIMIT; a
// finished one: the head and tail its record kept), then, when following, each piece as it comes,
// then the result. Written in pieces of PIECE_BYTES, each after the reader has taken the last
// (drain), with a turn of the event loop between them: a reader of ten megabytes of output delays
// no other request, and holds no copy of it. A follower that falls behind the live output by more
// than LIVE_QUEUE_BYTES is told how much it missed, and goes on.
import {StringDecoder} from 'node:string_decoder';
import type {OutputStream, OutputTextEvent} from '../protocol/job-record.js';
import type {JobOutputEvent, JobRecord} from './jobs.js';

const PIECE_BYTES = 64 * 1024;
const LIVE_QUEUE_BYTES = 256 * 1024;
const STREAMS = ['stdout', 'stderr'] as const;

/** Where a reader's events go. */
export interface OutputSink {
  /** Takes one event; false when the reader is to wait for drained() before the next. */
  write(event: OutputTextEvent): boolean;
  drained(): Promise<void>;
  /** True once the reader has gone: reading stops. */
  readonly closed: boolean;
}

interface HeldStream {
  stream: OutputStream;
  /** The start of the stream, as it was held. */
  held: Buffer[];
  /** Bytes between the held start and the tail, which nothing kept. */
  gap: number;
  tail: Buffer;
}

/** What the record holds of each stream now: references only, nothing copied. */
function heldNow(record: JobRecord): HeldStream[] {
  const running = record.keptWhileRunning;
  return STREAMS.map((stream) => {
    const sample = record[stream];
    const {head, skippedBytes, tail} = sample.pieces();
    const kept = running?.(stream);
    // Both are the start of the stream: the budget may have taken back part of what the command held.
    if (!kept || kept.bytes <= head.length) return {stream, held: [head], gap: skippedBytes, tail};
    const tailStart = sample.total - tail.length;
    return {stream, held: kept.chunks, gap: Math.max(0, tailStart - kept.bytes), tail: tail.subarray(Math.max(0, kept.bytes - tailStart))};
  });
}

function* pieces(buffers: Buffer[]): Generator<Buffer> {
  for (const buffer of buffers) {
    for (let start = 0; start < buffer.length; start += PIECE_BYTES) yield buffer.subarray(start, start + PIECE_BYTES);
  }
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Reads a job's output into `sink` until its end (or, without `follow`, until what is held now),
 * then the result. Returns the stop, for a reader that goes; `onError` hears of a failure, after
 * which reading has stopped.
 */
export function readRecord(record: JobRecord, follow: boolean, sink: OutputSink, onError: (error: unknown) => void = () => {}): () => void {
  const held = heldNow(record);
  const running = record.keptWhileRunning !== undefined && !record.finished;
  // The live output not written yet; past LIVE_QUEUE_BYTES, what comes is counted, in place, not kept.
  const live: (JobOutputEvent | Extract<OutputTextEvent, {skipped: unknown}>)[] = [];
  let liveBytes = 0;
  let wake: (() => void) | undefined;
  let stopped = false;
  // Subscribed in the same turn as the snapshot: the live output starts where it ends.
  const unfollow = follow && !record.finished
    ? record.follow((event) => {
        if ('data' in event && liveBytes > LIVE_QUEUE_BYTES) {
          const last = live.at(-1);
          const bytes = Buffer.byteLength(event.data);
          if (last && 'skipped' in last && last.skipped.stream === event.stream) last.skipped.bytes += bytes;
          else live.push({skipped: {stream: event.stream, bytes}});
        } else {
          live.push(event);
          if ('data' in event) liveBytes += event.data.length;
        }
        wake?.();
      })
    : undefined;
  const stop = () => {
    stopped = true;
    unfollow?.();
    wake?.();
  };
  const put = async (event: OutputTextEvent) => {
    if ('data' in event && event.data === '') return;
    if (stopped || sink.closed) {
      stopped = true;
      return;
    }
    if (!sink.write(event)) await sink.drained();
    await nextTurn();
  };
  const read = async () => {
    for (const {stream, held: start, gap, tail} of held) {
      let decoder = new StringDecoder('utf8');
      for (const piece of pieces(start)) await put({stream, data: decoder.write(piece)});
      if (gap > 0 && tail.length > 0) {
        await put({stream, data: decoder.end()});
        await put({skipped: {stream, bytes: gap}});
        decoder = new StringDecoder('utf8');
      }
      for (const piece of pieces([tail])) await put({stream, data: decoder.write(piece)});
      // A running job's last character may be unfinished: the record's own decoding completes it.
      if (!unfollow || !running) await put({stream, data: decoder.end()});
    }
    if (!unfollow) {
      await put({result: record.view()});
      return;
    }
    while (!stopped) {
      const event = live.shift();
      if (!event) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      if ('end' in event) {
        await put({result: event.end});
        return;
      }
      if ('data' in event) liveBytes -= event.data.length;
      await put(event);
    }
  };
  read().then(stop, (error: unknown) => {
    stop();
    onError(error);
  });
  return stop;
}
