import {render} from 'ink';
import {followControlSocket} from '../control.js';
import type {Daemon} from '../daemon/daemon.js';
import {Dashboard, type DashboardFeed, type DashboardProps} from './Dashboard.js';

/** The daemon in this process: its snapshot, then its events as they come. */
export function daemonFeed(daemon: Daemon): DashboardFeed {
  return {
    subscribe(listener) {
      listener(daemon.snapshot());
      return daemon.bus.subscribe((event) => listener({type: 'event', event}));
    },
  };
}

/** A daemon's control socket, reconnecting every second while it is away. */
export function socketFeed(path: string, retryMs = 1000): DashboardFeed {
  return {
    subscribe(listener) {
      const controller = new AbortController();
      void (async () => {
        while (!controller.signal.aborted) {
          try {
            await followControlSocket(path, listener, controller.signal);
            if (!controller.signal.aborted) listener({type: 'disconnected', reason: 'the sidecar closed the connection'});
          } catch (error) {
            listener({type: 'disconnected', reason: (error as Error).message});
          }
          // A client dropped for reading too slowly, or a restarted daemon: start again from a snapshot.
          await new Promise((resolve) => setTimeout(resolve, retryMs));
        }
      })();
      return () => controller.abort();
    },
  };
}

/** Draws the dashboard until it ends. */
export async function runDashboard(props: DashboardProps): Promise<void> {
  const instance = render(<Dashboard {...props} />, {exitOnCtrlC: false});
  await instance.waitUntilExit();
}
