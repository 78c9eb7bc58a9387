import {readConfig, SYSTEM_CONFIG_PATH, writeConfig, type StoredConfig} from '../config/config.js';
import {controlSocketFor, readSnapshot} from '../client/control-client.js';
import {reloadOutcome, reloadService, type ReloadOutcome} from './service.js';
import {requireRoot, writeSystemConfig} from './install.js';

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
