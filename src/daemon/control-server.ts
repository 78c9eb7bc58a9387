import type {Server, Socket} from 'node:net';
import {dirname} from 'node:path';
import {fs, net} from '../node-builtins.js';
import type {ControlMessage} from '../control.js';
import type {Daemon} from './daemon.js';

const {chmodSync, mkdirSync, unlinkSync} = fs;
const {createConnection, createServer} = net;

/** Past this much unsent data a client is too slow, and is dropped rather than buffered. */
export const SLOW_CLIENT_BYTES = 1024 * 1024;

function send(socket: Socket, message: ControlMessage): void {
  if (socket.writableLength > SLOW_CLIENT_BYTES) {
    socket.destroy();
    return;
  }
  socket.write(`${JSON.stringify(message)}\n`);
}

/** Whether a process answers on a Unix socket. */
export function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.on('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.on('error', () => resolve(false));
  });
}

/**
 * Publishes the daemon's state and events on a Unix socket (mode 0660: the owner and its group,
 * dffs for the service). Clients get a snapshot line, then one line per event. Nothing secret is
 * in either: events carry env keys, never values, and the status never holds a key.
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
