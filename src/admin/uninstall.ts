// Removing the sidecar: the service, the units, the program; with --purge the config, state and
// users too; with --restore-original, the original Sidecar put back.
import {existsSync, readdirSync, rmSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {SYSTEM_CONFIG_PATH} from '../config/config.js';
import {BIN_DIR, COMMANDS_HOME, DAEMON_USER, LIB_DIR, ORIGINAL_BACKUP_DIR, RUNNER_SERVICE_PATH, RUNNER_SOCKET_PATH, SERVICE_NAME, SERVICE_USER, STATE_DIR, UNIT_PATH, WRAPPERS} from './paths.js';
import {loadSnapshots, restoreSnapshot, type PathSnapshot} from './snapshot.js';
import {run, SystemError, systemctl, unitState} from './systemd.js';
import {InstallError} from './preconditions.js';
import {LEGACY_BACKUP_PREFIX, stopRunner, type OriginalState} from './rollback.js';
import {userExists} from './users.js';

export interface UninstallResult {
  removed: string[];
  /** The original Sidecar's files put back, with --restore-original. */
  restored: string[];
}

/**
 * Stops and removes the service and the program; with purge, also the config, state, user and
 * the backup of the original Sidecar; with restoreOriginal, puts the original back as it was.
 */
export async function uninstall(options: {purge: boolean; restoreOriginal: boolean}): Promise<UninstallResult> {
  let original: {details: OriginalState; snapshots: PathSnapshot[]} | undefined;
  if (options.restoreOriginal) {
    if (!existsSync(ORIGINAL_BACKUP_DIR)) throw new InstallError(`there is no backup of the original Sidecar in ${ORIGINAL_BACKUP_DIR}: it is kept only when install replaced one`, 66);
    original = loadSnapshots<OriginalState>(ORIGINAL_BACKUP_DIR);
  }
  const removed: string[] = [];
  if ((await unitState()).loaded) {
    await systemctl('disable', '--now', '--quiet', SERVICE_NAME);
    removed.push(`service ${SERVICE_NAME}`);
  }
  await stopRunner();
  const paths = [UNIT_PATH, RUNNER_SOCKET_PATH, RUNNER_SERVICE_PATH, ...WRAPPERS.map((name) => join(BIN_DIR, name)), LIB_DIR];
  if (options.purge) {
    const etc = dirname(SYSTEM_CONFIG_PATH);
    paths.push(STATE_DIR, COMMANDS_HOME, SYSTEM_CONFIG_PATH, ORIGINAL_BACKUP_DIR, ...readdirSync(etc).filter((name) => name.startsWith(LEGACY_BACKUP_PREFIX)).map((name) => join(etc, name)));
  }
  for (const path of paths) {
    if (existsSync(path)) {
      rmSync(path, {recursive: true, force: true});
      removed.push(path);
    }
  }
  const restored: string[] = [];
  if (original) {
    for (const snapshot of original.snapshots) {
      restoreSnapshot(snapshot);
      if (snapshot.kind !== 'absent') restored.push(snapshot.path);
    }
    await systemctl('daemon-reload');
    if (original.details.enabled) await systemctl('enable', '--quiet', SERVICE_NAME);
    if (original.details.active) await systemctl('restart', SERVICE_NAME);
    rmSync(ORIGINAL_BACKUP_DIR, {recursive: true, force: true});
    return {removed, restored};
  }
  await systemctl('daemon-reload');
  for (const user of options.purge ? [SERVICE_USER, DAEMON_USER] : []) {
    if (!(await userExists(user))) continue;
    try {
      await run('userdel', [user]);
      removed.push(`user ${user}`);
    } catch (error) {
      throw new SystemError(`could not remove user ${user}: ${(error as Error).message}`);
    }
  }
  return {removed, restored};
}
