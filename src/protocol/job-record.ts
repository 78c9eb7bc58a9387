// A job as the daemon shows it (GET /jobs, the control socket) and the clients read it.

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'timed-out' | 'cancelled' | 'spawner-stopped';

export type OutputStream = 'stdout' | 'stderr';

/** A job's id, as the daemon makes them (randomUUID): anything else is no job's. */
export const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface CallbackAttempt {
  attempt: number;
  ok: boolean;
  status?: number;
  error?: string;
  durationMs?: number;
}

export interface NewJob {
  id: string;
  key: string;
  remote: string;
  command: string;
  /** Set when the command is longer than COMMAND_KEPT_CHARS: its whole length. */
  commandLength?: number;
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

/** A job's output as text, for a reader: each piece, the bytes not kept between head and tail, then the end. */
export type OutputTextEvent = {stream: OutputStream; data: string} | {skipped: {stream: OutputStream; bytes: number}} | {result: JobRecordView};
