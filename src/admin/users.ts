// The system users: dffs, whom commands run as (the manual's), and dffs-daemon, the daemon's own.
import {COMMANDS_HOME, DAEMON_USER, SERVICE_USER, STATE_DIR} from './paths.js';
import {run} from './systemd.js';


export async function userExists(name: string): Promise<boolean> {
  try {
    await run('getent', ['passwd', name]);
    return true;
  } catch {
    return false;
  }
}

/** The user commands run as (the manual's dffs, kept if it exists) and the daemon's own. */
export async function ensureServiceUsers(log: (line: string) => void): Promise<void> {
  for (const [user, home, comment] of [
    [SERVICE_USER, COMMANDS_HOME, 'DataFlux Func Sidecar commands'],
    [DAEMON_USER, STATE_DIR, 'DataFlux Func Sidecar'],
  ] as const) {
    if (await userExists(user)) continue;
    await run('useradd', ['--system', '--user-group', '--home-dir', home, '--no-create-home', '--shell', '/usr/sbin/nologin', '--comment', comment, user]);
    log(`Created system user ${user}`);
  }
}

export async function groupId(name: string): Promise<number> {
  return Number((await run('getent', ['group', name])).split(':')[2]);
}
