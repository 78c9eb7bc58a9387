// The control socket's messages, which the daemon writes and the dashboard, tui and status read:
// the daemon's status, its events, and a job's output.
import type {Counters, SidecarEvent} from '../daemon/events.js';
import type {ListenerStatus} from '../daemon/listeners.js';
import type {OutputTextEvent} from './job-record.js';

export interface RunningJobStatus {
  jobId: string;
  command: string;
  pid: number | undefined;
  startedAt: string;
  remote: string;
  key: string;
}

export interface DaemonStatus {
  version: string;
  pid: number;
  startedAt: string;
  uptimeSeconds: number;
  configPath: string;
  bind: ListenerStatus[];
  secret: {configured: boolean; createdAt?: string; oldKeyAcceptedUntil?: string};
  counters: Counters;
  running: RunningJobStatus[];
  queued: number;
}

/** The first line a client reads: the daemon's state, then one `event` line per event. */
export interface Snapshot {
  type: 'snapshot';
  status: DaemonStatus;
  history: SidecarEvent[];
}

/** The daemon's state as a client follows it: the snapshot, then its events. */
export type StateMessage = Snapshot | {type: 'event'; event: SidecarEvent};

/** What the daemon sends: its state, and answers to a client's requests. */
export type ControlMessage =
  | StateMessage
  | {type: 'output'; jobId: string; output: OutputTextEvent}
  | {type: 'output-missing'; jobId: string}
  | {type: 'cancel-outcome'; jobId: string; outcome: 'cancelling' | 'finished' | 'not-found'};

/** What a client may ask, one JSON line each: a job's output (kept, then followed), to stop following it, or its cancel. */
export type ControlRequest = {type: 'follow-output' | 'unfollow-output' | 'cancel'; jobId: string};

/** The longest request line a client may send. */
export const CONTROL_REQUEST_BYTES = 1024;
