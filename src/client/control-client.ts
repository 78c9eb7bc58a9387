import {homedir, tmpdir} from 'node:os';
import {dirname, join, resolve} from 'node:path';
import {crypto, fs, net} from '../common/node-builtins.js';
import {SYSTEM_CONFIG_PATH} from '../config/config.js';
import {STATE_DIR} from '../admin/paths.js';
import type {DaemonStatus} from '../daemon/daemon.js';
import type {SidecarEvent} from '../daemon/events.js';
import type {OutputTextEvent} from '../daemon/jobs.js';

const {createConnection} = net;

/** Where the installed service's control socket is (its systemd RuntimeDirectory). */
export const SERVICE_CONTROL_SOCKET = '/run/dataflux-func-sidecar/control.sock';

/** A short name for a daemon's config file: two daemons with different configs never share a socket or state. */
function configId(configPath: string): string {
  return crypto.createHash('sha256').update(resolve(configPath)).digest('hex').slice(0, 12);
}

function isServiceConfig(configPath: string): boolean {
  return resolve(configPath) === SYSTEM_CONFIG_PATH;
}

/**
 * The control socket of the daemon that runs with this config: the service's for the system
 * config, else one of this user's own, named after the config, in a directory only this user can
 * use (see privateDirectoryProblem).
 */
export function controlSocketFor(configPath: string, uid = process.getuid?.() ?? -1, env = process.env): string {
  if (isServiceConfig(configPath)) return SERVICE_CONTROL_SOCKET;
  const directory = env.XDG_RUNTIME_DIR ? join(env.XDG_RUNTIME_DIR, 'dataflux-func-sidecar') : join(tmpdir(), `dataflux-func-sidecar-${uid}`);
  return join(directory, `control-${configId(configPath)}.sock`);
}

/** Where the daemon under systemd publishes its socket: the RuntimeDirectory systemd made for it. */
export function serveControlSocket(configPath: string, env = process.env): string {
  const runtimeDirectory = env.RUNTIME_DIRECTORY?.split(':')[0];
  return runtimeDirectory ? join(runtimeDirectory, 'control.sock') : controlSocketFor(configPath, process.getuid?.() ?? -1, env);
}

/** The daemon's state directory (replay journal, running commands): systemd's, the service's, or one per personal config. */
export function stateDirectoryFor(configPath: string, env = process.env): string {
  const fromSystemd = env.STATE_DIRECTORY?.split(':')[0];
  if (fromSystemd) return fromSystemd;
  if (isServiceConfig(configPath)) return STATE_DIR;
  const base = env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state');
  return join(base, 'dataflux-func-sidecar', configId(configPath));
}

/**
 * Why a directory of this user's own cannot be trusted: another user could have made it first (in
 * /tmp) to hide or swap what is in it. Undefined when it is a real directory, owned by this user,
 * that no one else may use.
 */
function privateDirectoryProblem(path: string, uid = process.getuid?.() ?? -1): string | undefined {
  let info;
  try {
    info = fs.lstatSync(path);
  } catch (error) {
    return `cannot use ${path}: ${(error as Error).message}`;
  }
  if (!info.isDirectory()) return `${path} is not a directory (a link or file put there by someone else?): ask root to remove it, or set XDG_RUNTIME_DIR to a directory of your own`;
  if (info.uid !== uid) return `${path} belongs to user ${info.uid}, not to you (${uid}): ask root to remove it, or set XDG_RUNTIME_DIR to a directory of your own`;
  if ((info.mode & 0o077) !== 0) return `${path} is open to other users (mode ${(info.mode & 0o777).toString(8)}): chmod 700 ${path}`;
  return undefined;
}

/**
 * Why a socket in this directory could be someone else's: a directory that a user other than
 * this one or root owns, or may write to, lets that user swap the socket and show a false status.
 */
function socketDirectoryProblem(directory: string, uid = process.getuid?.() ?? -1): string | undefined {
  let info;
  try {
    info = fs.lstatSync(directory);
  } catch {
    // No directory: the connection says that the sidecar is not running.
    return undefined;
  }
  if (!info.isDirectory()) return `${directory} is not a directory`;
  if (info.uid !== uid && info.uid !== 0) return `${directory} belongs to user ${info.uid}`;
  if ((info.mode & 0o022) !== 0) return `${directory} may be written by other users (mode ${(info.mode & 0o777).toString(8)})`;
  return undefined;
}

/** Creates a directory of this user's own (mode 0700) if needed; throws if it cannot be trusted. */
export function ensurePrivateDirectory(path: string): void {
  fs.mkdirSync(path, {recursive: true, mode: 0o700});
  const problem = privateDirectoryProblem(path);
  if (problem) throw new Error(problem);
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
    let buffered = '';
    let connected = false;
    signal?.addEventListener('abort', () => socket.destroy(), {once: true});
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      connected = true;
      onOpen?.((request) => socket.write(`${JSON.stringify(request)}\n`));
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
