import {render} from 'ink';
import {followControlSocket} from '../client/control-client.js';
import type {Daemon} from '../daemon/daemon.js';
import {readRecord} from '../daemon/output-reader.js';
import type {OutputTextEvent} from '../protocol/job-record.js';
import {Dashboard, type DashboardProps} from './Dashboard.js';
import type {ControlRequest} from '../protocol/control-messages.js';
import type {DashboardFeed, JobOutputMessage} from './feed.js';

/** The daemon in this process: its snapshot, then its events as they come. */
export function daemonFeed(daemon: Daemon): DashboardFeed {
  return {
    subscribe(listener) {
      listener(daemon.snapshot());
      return daemon.bus.subscribe((event) => listener({type: 'event', event}));
    },
    output(jobId, listener) {
      const record = daemon.jobs.get(jobId);
      if (!record) {
        listener({missing: true});
        return () => {};
      }
      const sink = {
        write: (event: OutputTextEvent) => {
          listener(event);
          return true;
        },
        drained: () => Promise.resolve(),
        closed: false,
      };
      return readRecord(record, true, sink, (error) => daemon.bus.emit({type: 'internal-error', where: 'dashboard output', error: String(error)}));
    },
    cancel: (jobId) => Promise.resolve(daemon.cancelJob(jobId, 'dashboard')),
  };
}

type CancelOutcome = Awaited<ReturnType<DashboardFeed['cancel']>>;

/** A daemon's control socket, reconnecting every second while it is away; followed outputs start again on reconnection. */
export function socketFeed(path: string, retryMs = 1000): DashboardFeed {
  let send: ((request: ControlRequest) => void) | undefined;
  const outputs = new Map<string, (message: JobOutputMessage) => void>();
  const cancels = new Map<string, ((outcome: CancelOutcome) => void)[]>();
  return {
    subscribe(listener) {
      const controller = new AbortController();
      void (async () => {
        while (!controller.signal.aborted) {
          try {
            await followControlSocket(
              path,
              (message) => {
                if (message.type === 'output') outputs.get(message.jobId)?.(message.output);
                else if (message.type === 'output-missing') outputs.get(message.jobId)?.({missing: true});
                else if (message.type === 'cancel-outcome') {
                  for (const resolve of cancels.get(message.jobId) ?? []) resolve(message.outcome);
                  cancels.delete(message.jobId);
                } else listener(message);
              },
              controller.signal,
              (sender) => {
                send = sender;
                for (const [jobId, onOutput] of outputs) {
                  onOutput({reset: true});
                  sender({type: 'follow-output', jobId});
                }
              },
            );
            if (!controller.signal.aborted) listener({type: 'disconnected', reason: 'the sidecar closed the connection'});
          } catch (error) {
            listener({type: 'disconnected', reason: (error as Error).message});
          }
          send = undefined;
          // A client dropped for reading too slowly, or a restarted daemon: start again from a snapshot.
          await new Promise((resolve) => setTimeout(resolve, retryMs));
        }
      })();
      return () => controller.abort();
    },
    output(jobId, listener) {
      outputs.set(jobId, listener);
      send?.({type: 'follow-output', jobId});
      return () => {
        outputs.delete(jobId);
        send?.({type: 'unfollow-output', jobId});
      };
    },
    cancel(jobId) {
      if (!send) return Promise.reject(new Error('not connected to the sidecar'));
      const waiting = new Promise<CancelOutcome>((resolve) => cancels.set(jobId, [...(cancels.get(jobId) ?? []), resolve]));
      send({type: 'cancel', jobId});
      return waiting;
    },
  };
}

/** Draws the dashboard until it ends. */
export async function runDashboard(props: DashboardProps): Promise<void> {
  const instance = render(<Dashboard {...props} />, {exitOnCtrlC: false});
  await instance.waitUntilExit();
}
