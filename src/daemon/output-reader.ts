// A job's output for one reader (GET /jobs/{id}/output, the control socket, the dashboard): what
// the job holds when the reader comes (a running job: all it printed, up to OUTPUT_LIMIT; a
// finished one: the head and tail its record kept), then, when following, each piece as it comes,
// then the result. Written in pieces of PIECE_BYTES, each after the reader has taken the last
// (drain), with a turn of the event loop between them: a reader of ten megabytes of output delays
// no other request. A reader holds references to the job's own buffers, never a copy: a slow one
// misses nothing the job held. What all readers hold of live output not yet written is bounded
// (LIVE_HELD_BYTES): past it, a reader is told how much it missed, in place, and goes on.
import {StringDecoder} from 'node:string_decoder';
import type {OutputStream, OutputTextEvent} from '../protocol/job-record.js';
import type {JobOutputEvent, JobRecord} from './jobs.js';

const PIECE_BYTES = 64 * 1024;
/** Live output that readers hold, not yet written, all together: stalled readers cannot hold memory without end. */
const LIVE_HELD_BYTES = 64 * 1024 * 1024;
let liveHeld = 0;
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
  // The live output not written yet: the job's own buffers, or what did not fit in LIVE_HELD_BYTES.
  const live: (JobOutputEvent | Extract<OutputTextEvent, {skipped: unknown}>)[] = [];
  let mine = 0;
  const decoders = {stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8')};
  let wake: (() => void) | undefined;
  let stopped = false;
  // Subscribed in the same turn as the snapshot: the live output starts where it ends.
  const unfollow = follow && !record.finished
    ? record.follow((event) => {
        if ('chunk' in event && liveHeld + event.chunk.length > LIVE_HELD_BYTES) {
          const last = live.at(-1);
          if (last && 'skipped' in last && last.skipped.stream === event.stream) last.skipped.bytes += event.chunk.length;
          else live.push({skipped: {stream: event.stream, bytes: event.chunk.length}});
        } else {
          live.push(event);
          if ('chunk' in event) {
            liveHeld += event.chunk.length;
            mine += event.chunk.length;
          }
        }
        wake?.();
      })
    : undefined;
  const stop = () => {
    stopped = true;
    unfollow?.();
    liveHeld -= mine;
    mine = 0;
    live.length = 0;
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
      for (const piece of pieces(start)) await put({stream, data: decoders[stream].write(piece)});
      if (gap > 0 && tail.length > 0) {
        await put({stream, data: decoders[stream].end()});
        await put({skipped: {stream, bytes: gap}});
      }
      for (const piece of pieces([tail])) await put({stream, data: decoders[stream].write(piece)});
    }
    // A follower's last characters may be finished by the live output, which the same decoders read.
    const flush = async () => {
      for (const stream of STREAMS) await put({stream, data: decoders[stream].end()});
    };
    if (!unfollow) {
      await flush();
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
        await flush();
        await put({result: event.end});
        return;
      }
      if ('skipped' in event) {
        await put({stream: event.skipped.stream, data: decoders[event.skipped.stream].end()});
        await put(event);
        continue;
      }
      liveHeld -= event.chunk.length;
      mine -= event.chunk.length;
      for (const piece of pieces([event.chunk])) await put({stream: event.stream, data: decoders[event.stream].write(piece)});
    }
  };
  read().then(stop, (error: unknown) => {
    stop();
    onError(error);
  });
  return stop;
}
