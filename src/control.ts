import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {net} from './node-builtins.js';
import type {DaemonStatus} from './daemon/daemon.js';
import type {SidecarEvent} from './daemon/events.js';

const {createConnection} = net;

/** Where the installed service's control socket is (its systemd RuntimeDirectory). */
export const SERVICE_CONTROL_SOCKET = '/run/dataflux-func-sidecar/control.sock';

/** The control socket of a daemon run by this user, or of the service for root and under systemd. */
export function defaultControlSocketPath(uid = process.getuid?.() ?? -1, env = process.env): string {
  const runtimeDirectory = env.RUNTIME_DIRECTORY?.split(':')[0];
  if (runtimeDirectory) return join(runtimeDirectory, 'control.sock');
  if (uid === 0) return SERVICE_CONTROL_SOCKET;
  return join(env.XDG_RUNTIME_DIR || tmpdir(), `dataflux-func-sidecar-${uid}`, 'control.sock');
}

/** The first line a client reads: the daemon's state, then one `event` line per event. */
export interface Snapshot {
  type: 'snapshot';
  status: DaemonStatus;
  history: SidecarEvent[];
}

export type ControlMessage = Snapshot | {type: 'event'; event: SidecarEvent};

export class ControlUnavailable extends Error {}

/** Connects and calls back for the snapshot and each event; resolves when the daemon closes the stream. */
export function followControlSocket(
  path: string,
  onMessage: (message: ControlMessage) => void,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let buffered = '';
    let connected = false;
    signal?.addEventListener('abort', () => socket.destroy(), {once: true});
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      connected = true;
    });
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let newline;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        onMessage(JSON.parse(line) as ControlMessage);
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (connected) return;
      const why =
        error.code === 'EACCES'
          ? 'permission denied (run as root or as a member of the dffs group)'
          : error.code === 'ENOENT' || error.code === 'ECONNREFUSED'
            ? 'the sidecar is not running'
            : error.message;
      reject(new ControlUnavailable(`cannot open ${path}: ${why}`));
    });
    socket.on('close', () => resolve());
  });
}

/** Reads just the snapshot. */
export async function readSnapshot(path: string, timeoutMs = 3000): Promise<Snapshot> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let snapshot: Snapshot | undefined;
  try {
    await followControlSocket(
      path,
      (message) => {
        if (message.type === 'snapshot') {
          snapshot = message;
          controller.abort();
        }
      },
      controller.signal,
    );
  } finally {
    clearTimeout(timer);
  }
  if (!snapshot) throw new ControlUnavailable(`no answer on ${path} within ${timeoutMs} ms`);
  return snapshot;
}
