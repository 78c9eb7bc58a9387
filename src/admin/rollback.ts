// Putting back what an install replaced: after a failed install or upgrade, and for
// `uninstall --restore-original`, the original Sidecar's files and its service as they were found.
import {existsSync} from 'node:fs';
import {basename, join} from 'node:path';
import {SYSTEM_CONFIG_PATH} from '../config/config.js';
import {BIN_DIR, RUNNER_NAME, RUNNER_SERVICE_PATH, RUNNER_SOCKET_PATH, RUNNER_SOCKET_UNIT, SERVICE_NAME, UNIT_PATH, WRAPPERS} from './paths.js';
import {restoreSnapshot, type PathSnapshot} from './snapshot.js';
import {systemctl} from './systemd.js';
import {INSTALL_MARK} from './unit.js';


/** How an earlier version of install kept the original's config: beside it, as `<config>.orig-<time>`. */
export const LEGACY_BACKUP_PREFIX = `${basename(SYSTEM_CONFIG_PATH)}.orig-`;

/** What the original Sidecar's service was doing when we took its place, to leave it so again. */
export interface OriginalState {
  enabled: boolean;
  active: boolean;
  savedAt: string;
}

/** Paths an install writes over, whose previous content a rollback or restore puts back. */
export const REPLACED_PATHS = [...WRAPPERS.map((name) => join(BIN_DIR, name)), UNIT_PATH, SYSTEM_CONFIG_PATH, RUNNER_SOCKET_PATH, RUNNER_SERVICE_PATH];

/** True when a snapshot is a file of the original Sidecar's rather than one we wrote. */
export function isOriginalFile(snapshot: PathSnapshot): boolean {
  return snapshot.kind === 'file' && !snapshot.content.includes(INSTALL_MARK) && !(snapshot.path === SYSTEM_CONFIG_PATH && isJson(snapshot.content));
}

export function isJson(content: Buffer): boolean {
  try {
    JSON.parse(content.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

/** Stops the command runner: its socket, and every runner with what it still runs (stopped ones too). */
export async function stopRunner(): Promise<void> {
  await systemctl('disable', '--now', '--quiet', RUNNER_SOCKET_UNIT).catch(() => undefined);
  await systemctl('kill', '--signal=SIGKILL', `${RUNNER_NAME}@*.service`).catch(() => undefined);
  await systemctl('stop', `${RUNNER_NAME}@*.service`).catch(() => undefined);
}

/**
 * Puts back files and units as they were, the command runner's socket included: stopped and
 * disabled first (systemctl cannot once its file is gone), and started again if it was there.
 */
export async function restoreUnits(replaced: PathSnapshot[]): Promise<void> {
  await stopRunner();
  for (const snapshot of replaced) restoreSnapshot(snapshot);
  await systemctl('daemon-reload');
  if (existsSync(RUNNER_SOCKET_PATH)) await systemctl('enable', '--now', '--quiet', RUNNER_SOCKET_UNIT);
}

/** Stops our service and puts back the files it replaced; the original's service is left as it was found. */
export async function putBack(replaced: PathSnapshot[], original: OriginalState | undefined): Promise<void> {
  await systemctl('disable', '--now', '--quiet', SERVICE_NAME).catch(() => undefined);
  await restoreUnits(replaced);
  if (original?.enabled) await systemctl('enable', '--quiet', SERVICE_NAME);
  if (original?.active) await systemctl('restart', SERVICE_NAME);
}
