// The control socket from a client's side (status, tui, the reload checks of bind and secret):
// the daemon's snapshot and events, and requests for a job's output or its cancel.
import {dirname} from 'node:path';
import {LineBuffer} from '../common/line-buffer.js';
import {net} from '../common/node-builtins.js';
import {SERVICE_CONTROL_SOCKET, socketDirectoryProblem} from '../config/runtime-paths.js';
import type {ControlMessage, ControlRequest, Snapshot} from '../protocol/control-messages.js';

const {createConnection} = net;

export class ControlUnavailable extends Error {}

/** Connects and calls back for the snapshot and each event; resolves when the daemon closes the stream. */
export function followControlSocket(
  path: string,
  onMessage: (message: ControlMessage) => void,
  signal?: AbortSignal,
  onOpen?: (send: (request: ControlRequest) => void) => void,
): Promise<void> {
  const untrusted = path === SERVICE_CONTROL_SOCKET ? undefined : socketDirectoryProblem(dirname(path));
  if (untrusted) return Promise.reject(new ControlUnavailable(`will not trust ${path}: ${untrusted}`));
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    const lines = new LineBuffer();
    let connected = false;
    signal?.addEventListener('abort', () => socket.destroy(), {once: true});
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      connected = true;
      onOpen?.((request) => socket.write(`${JSON.stringify(request)}\n`));
    });
    socket.on('data', (chunk: string) => lines.push(chunk, (line) => onMessage(JSON.parse(line) as ControlMessage)));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (connected) return;
      const why =
        error.code === 'EACCES'
          ? 'permission denied (run as root or as a member of the dffs-daemon group)'
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
