// Where the dashboard's data comes from: the daemon in this process (serve), or its control socket (tui).
import type {StateMessage} from '../protocol/control-messages.js';
import type {OutputTextEvent} from '../protocol/job-record.js';

export type FeedMessage = StateMessage | {type: 'disconnected'; reason: string};

/** A job's output as the details view follows it; `reset`: the connection came back, and it starts again. */
export type JobOutputMessage = OutputTextEvent | {missing: true} | {reset: true};

/** Where the dashboard's data comes from: the daemon in this process, or its control socket. */
export interface DashboardFeed {
  subscribe(listener: (message: FeedMessage) => void): () => void;
  /** A job's output: what is kept, then the rest as it comes, then its end. Returns the unsubscribe. */
  output(jobId: string, listener: (message: JobOutputMessage) => void): () => void;
  cancel(jobId: string): Promise<'cancelling' | 'finished' | 'not-found'>;
}
