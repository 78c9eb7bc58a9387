import type {Server} from 'node:net';
import {join} from 'node:path';
import {fs, net} from '../common/node-builtins.js';

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * One daemon per state directory: a second one on the same config would overwrite the first's
 * replay journal and list of running commands. The lock is a Unix socket in the directory: bound
 * by the daemon that holds it, and gone with its process, however that ends (a stale file is
 * cleared when nothing answers on it).
 */
export async function lockStateDirectory(directory: string): Promise<{release(): void}> {
  const path = join(directory, 'daemon.lock');
  const server = net.createServer((socket) => socket.destroy());
  try {
    await listen(server, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    if (await isLive(path)) throw new Error(`another sidecar is running with the state directory ${directory} (the same config): stop it first`);
    fs.unlinkSync(path);
    await listen(server, path);
  }
  fs.chmodSync(path, 0o600);
  return {release: () => server.close()};
}

/** Whether a process answers on a Unix socket. */
export function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createConnection(path);
    probe.on('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.on('error', () => resolve(false));
  });
}
