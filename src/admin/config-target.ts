import {readConfig, SYSTEM_CONFIG_PATH, writeConfig, type StoredConfig} from '../config/config.js';
import {readSnapshot} from '../client/control-client.js';
import {SERVICE_CONTROL_SOCKET} from '../config/runtime-paths.js';
import {SERVICE_NAME} from './paths.js';
import {systemctl, unitState} from './systemd.js';
import {writeSystemConfig} from './install.js';
import {controlSocketFor} from '../config/runtime-paths.js';
import {requireRoot} from './preconditions.js';

/** A config that a command changes, and the daemon that runs with it, told to re-read it. */
export interface ConfigTarget {
  path: string;
  read(): StoredConfig;
  write(config: StoredConfig): Promise<void>;
  /** Has the daemon running with this config re-read it, without a restart. */
  reload(): Promise<ReloadOutcome>;
}

/** The installed service's config (root only), or the config of a personal `serve` given with --config. */
export function configTarget(command: string, path = SYSTEM_CONFIG_PATH): ConfigTarget {
  if (path === SYSTEM_CONFIG_PATH) {
    requireRoot(command);
    return {path, read: () => readConfig(path), write: writeSystemConfig, reload: () => reloadService()};
  }
  return {path, read: () => readConfig(path), write: (config) => writeConfig(path, config), reload: () => reloadServe(path)};
}

/** SIGHUP to the `serve` running with this config, found through its control socket; then its outcome. */
async function reloadServe(path: string, timeoutMs = 10_000): Promise<ReloadOutcome> {
  const socket = controlSocketFor(path);
  let pid: number;
  try {
    pid = (await readSnapshot(socket, 1000)).status.pid;
  } catch {
    return {applied: false, reason: `no serve runs with ${path}; it applies when one starts`};
  }
  const since = Date.now() - 1;
  process.kill(pid, 'SIGHUP');
  return reloadOutcome(socket, since, timeoutMs, `serve (pid ${pid}) did not confirm the reload within ${timeoutMs / 1000} s`);
}

async function serviceIsActive(): Promise<boolean> {
  return (await unitState()).activeState === 'active';
}

/** `refused`: the daemon read the new config and kept its previous one (it says why). */
export type ReloadOutcome = {applied: true; changed: string[]} | {applied: false; reason: string; refused?: true};

/** Reloads the running service (SIGHUP, no restart) and waits for it to report the outcome. */
export async function reloadService(timeoutMs = 10_000): Promise<ReloadOutcome> {
  if (!(await serviceIsActive())) return {applied: false, reason: `${SERVICE_NAME} is not running; the new config applies when it starts`};
  const since = Date.now() - 1;
  await systemctl('reload', SERVICE_NAME);
  return reloadOutcome(SERVICE_CONTROL_SOCKET, since, timeoutMs, `the service did not confirm the reload within ${timeoutMs / 1000} s`);
}

/** What a daemon says of the reload asked of it at `since`, through its control socket. */
export async function reloadOutcome(socket: string, since: number, timeoutMs: number, silence: string): Promise<ReloadOutcome> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const {history} = await readSnapshot(socket);
    const outcome = history.findLast((event) => event.time >= since && (event.type === 'config-reloaded' || event.type === 'reload-failed'));
    if (outcome?.type === 'config-reloaded') return {applied: true, changed: outcome.changed};
    if (outcome?.type === 'reload-failed') return {applied: false, reason: outcome.error, refused: true};
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {applied: false, reason: silence};
}
