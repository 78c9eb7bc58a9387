// Where a daemon keeps its control socket and its state, which follow from its config file: the
// service's under systemd's directories, a personal serve's in directories of the user's own.
import {homedir, tmpdir} from 'node:os';
import {join, resolve} from 'node:path';
import {crypto, fs} from '../common/node-builtins.js';
import {STATE_DIR} from '../admin/paths.js';
import {SYSTEM_CONFIG_PATH} from './config.js';

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
export function socketDirectoryProblem(directory: string, uid = process.getuid?.() ?? -1): string | undefined {
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
