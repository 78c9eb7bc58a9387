import type {Server, Socket} from 'node:net';
import {dirname} from 'node:path';
import {LineBuffer} from '../common/line-buffer.js';
import {fs, net} from '../common/node-builtins.js';
import {drainedOrClosed} from '../common/drained.js';
import {readRecord} from './output-reader.js';
import type {OutputTextEvent} from '../protocol/job-record.js';
import {isLive} from './state-lock.js';
import type {Daemon} from './daemon.js';
import {CONTROL_REQUEST_BYTES, type ControlMessage, type ControlRequest} from '../protocol/control-messages.js';

const {chmodSync, mkdirSync, unlinkSync} = fs;
const {createServer} = net;

/** Jobs one client may follow at once. */
const FOLLOWED_JOBS_MAX = 16;

/** Past this much unsent data a client is too slow, and is dropped rather than buffered. */
export const SLOW_CLIENT_BYTES = 1024 * 1024;

function send(socket: Socket, message: ControlMessage): void {
  if (socket.writableLength > SLOW_CLIENT_BYTES) {
    socket.destroy();
    return;
  }
  socket.write(`${JSON.stringify(message)}\n`);
}


/**
 * A client's requests: a job's output, followed until it ends or the client lets go, and a job's
 * cancel. A line too long, or not a request, ends the connection.
 */
function serveRequests(daemon: Daemon, socket: Socket): void {
  const following = new Map<string, () => void>();
  const lines = new LineBuffer();
  const handle = (request: ControlRequest) => {
    const {jobId} = request;
    if (request.type === 'cancel') {
      send(socket, {type: 'cancel-outcome', jobId, outcome: daemon.cancelJob(jobId, 'control socket')});
      return;
    }
    following.get(jobId)?.();
    following.delete(jobId);
    if (request.type === 'unfollow-output') return;
    const record = daemon.jobs.get(jobId);
    if (!record) {
      send(socket, {type: 'output-missing', jobId});
      return;
    }
    // The dashboard follows one job at a time; a client that asks for many is not one.
    if (following.size >= FOLLOWED_JOBS_MAX) {
      socket.destroy();
      return;
    }
    const sink = {
      write: (output: OutputTextEvent) => {
        if ('result' in output) following.delete(jobId);
        return socket.write(`${JSON.stringify({type: 'output', jobId, output} satisfies ControlMessage)}\n`);
      },
      drained: () => drainedOrClosed(socket),
      get closed() {
        return socket.destroyed;
      },
    };
    following.set(jobId, readRecord(record, true, sink, (error) => daemon.bus.emit({type: 'internal-error', where: 'control socket output', error: String(error)})));
  };
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    lines.push(chunk, (line) => {
      let request: ControlRequest;
      try {
        request = JSON.parse(line) as ControlRequest;
      } catch {
        socket.destroy();
        return false;
      }
      if (!['follow-output', 'unfollow-output', 'cancel'].includes(request?.type) || typeof request.jobId !== 'string') {
        socket.destroy();
        return false;
      }
      handle(request);
    });
    if (lines.pending > CONTROL_REQUEST_BYTES) socket.destroy();
  });
  socket.on('close', () => {
    for (const unfollow of following.values()) unfollow();
    following.clear();
  });
}

/**
 * Publishes the daemon's state and events on a Unix socket (mode 0660: the owner and its group,
 * dffs-daemon for the service; commands, which run as dffs, cannot reach it). Clients get a
 * snapshot line, then one line per event; they may ask for a job's output and cancel a job.
 * Nothing secret is in the events: they carry env keys, never values, and the status never holds
 * a key; a job's output is what its command printed.
 */
export async function startControlServer(daemon: Daemon, path: string): Promise<{close(): Promise<void>}> {
  mkdirSync(dirname(path), {recursive: true, mode: 0o750});
  if (await isLive(path)) throw new Error(`${path} is in use by another running sidecar`);
  try {
    unlinkSync(path);
  } catch {
    // No stale socket to clear.
  }
  const clients = new Set<Socket>();
  const server: Server = createServer((socket) => {
    clients.add(socket);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => clients.delete(socket));
    send(socket, daemon.snapshot());
    serveRequests(daemon, socket);
  });
  const unsubscribe = daemon.bus.subscribe((event) => {
    for (const socket of clients) send(socket, {type: 'event', event});
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o660);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        unsubscribe();
        for (const socket of clients) socket.end();
        server.close(() => resolve());
      }),
  };
}
