import {SYSTEM_CONFIG_PATH} from '../config/config.js';
import {BIN_DIR, COMMANDS_HOME, CURRENT_LINK, DAEMON_USER, RUNNER_NAME, RUNNER_SOCKET, RUNNER_SOCKET_UNIT, SERVICE_NAME, SERVICE_USER, STATE_DIR} from './paths.js';

export interface UnitOptions {
  /** Leave out the directives that imply NoNewPrivileges, so that sudo and setuid programs work in commands. */
  allowSetuid: boolean;
  /** Seconds systemd waits on stop: the config's DRAIN_TIMEOUT plus a margin. */
  stopTimeoutSeconds: number;
}

/**
 * Hardening that leaves every purpose of the service intact: arbitrary commands, the host's /tmp,
 * files of the user's groups anywhere (including /home), `docker` through its socket, `ps` and
 * `free` on the whole host. Each one is a namespace or mount option: none implies NoNewPrivileges.
 */
const ALWAYS = [
  ['ProtectSystem', 'full', '/usr, /boot and /etc read-only: dffs cannot write there anyway'],
  ['PrivateMounts', 'yes', 'mounts made by commands stay inside the service'],
  ['PrivateIPC', 'yes', 'SysV IPC and POSIX queues are the service\'s own'],
  ['RemoveIPC', 'yes', 'IPC objects of dffs go when it stops'],
  ['CapabilityBoundingSet', '', 'no capabilities, ever'],
  ['AmbientCapabilities', '', ''],
  ['KeyringMode', 'private', ''],
] as const;

/**
 * Seccomp-based protection: under User= systemd implies NoNewPrivileges=yes for each of these,
 * so setuid and file-capability programs (sudo, su) cannot raise privileges from a command.
 * The syscalls denied all need capabilities dffs does not have; they fail with EPERM.
 */
const NO_ESCALATION = [
  ['ProtectKernelTunables', 'yes', ''],
  ['ProtectKernelModules', 'yes', ''],
  ['ProtectKernelLogs', 'yes', ''],
  ['ProtectClock', 'yes', ''],
  ['ProtectHostname', 'yes', ''],
  ['RestrictRealtime', 'yes', ''],
  ['RestrictSUIDSGID', 'yes', ''],
  ['LockPersonality', 'yes', ''],
  ['RestrictNamespaces', 'yes', ''],
  ['SystemCallArchitectures', 'native', ''],
  ['RestrictAddressFamilies', 'AF_UNIX AF_INET AF_INET6 AF_NETLINK', 'AF_NETLINK for ip(8) and ss(8)'],
  ['SystemCallFilter', '~@clock @module @mount @obsolete @raw-io @reboot @swap', ''],
  ['SystemCallErrorNumber', 'EPERM', 'a denied syscall fails instead of killing the command'],
] as const;

function directives(list: readonly (readonly [string, string, string])[]): string {
  return list.map(([key, value, why]) => `${why ? `# ${why}\n` : ''}${key}=${value}`).join('\n');
}

/** How long the daemon's event loop may stand still before systemd restarts it (it pings at half that). */
const DAEMON_WATCHDOG_SECONDS = 30;

/** The first words of each file install writes, by which it tells its own files from the original Sidecar's. */
export const INSTALL_MARK = '# Written by dffs-ctl install';

/**
 * The daemon holds the keys and faces the network; nothing it does needs the host beyond its own
 * files, so it gets the strict set. (MemoryDenyWriteExecute would stop V8's compiler.)
 */
const DAEMON_HARDENING = [
  ['NoNewPrivileges', 'yes', ''],
  ['ProtectSystem', 'strict', 'read-only but for its state and runtime directories'],
  ['ProtectHome', 'read-only', ''],
  ['PrivateTmp', 'yes', ''],
  ['PrivateDevices', 'yes', ''],
  ['ProtectControlGroups', 'yes', ''],
  ['ProtectProc', 'invisible', 'no other process of the host to see, commands included'],
  ['ProcSubset', 'pid', ''],
  ['SystemCallFilter', '@system-service', ''],
  ...NO_ESCALATION.filter(([key]) => key !== 'SystemCallFilter'),
  ...ALWAYS.filter(([key]) => key !== 'ProtectSystem'),
] as const;

export interface Units {
  /** The daemon, as DAEMON_USER. */
  daemon: string;
  /** The socket the daemon reaches the command runner through. */
  runnerSocket: string;
  /** The command runner: dffs-spawn, as dffs, one per connection of the daemon. */
  runner: string;
}

/**
 * The sidecar as systemd runs it: the daemon as its own user, and commands as dffs through a
 * command runner that systemd starts for the daemon's connection, so that no command can read
 * the daemon's keys, inspect it or signal it.
 */
export function renderUnits(options: UnitOptions): Units {
  const daemon = `${INSTALL_MARK}; re-running install rewrites it.
[Unit]
Description=DataFlux Func Sidecar
Documentation=man:systemd.exec(5)
Wants=network-online.target
Requires=${RUNNER_SOCKET_UNIT}
After=network-online.target docker.service ${RUNNER_SOCKET_UNIT}

[Service]
# Started once it serves (READY=1), so that systemctl start returns only then.
Type=notify
# Its messages to systemd go through a child of its own, dffs-spawn --notify (Node has no datagram
# sockets). Only the daemon and that child run in this unit: commands run in the runner's.
NotifyAccess=all
# The daemon pings from its event loop: one that stands still (stopped, stuck) is restarted.
WatchdogSec=${DAEMON_WATCHDOG_SECONDS}
User=${DAEMON_USER}
Group=${DAEMON_USER}
ExecStart=${BIN_DIR}/dataflux-func-sidecar serve --config ${SYSTEM_CONFIG_PATH}
# It says RELOADING=1 and READY=1 around the reload.
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
# SIGTERM to the daemon: it drains its commands, which run in the command runner's units.
TimeoutStopSec=${options.stopTimeoutSeconds}
TasksMax=256
RuntimeDirectory=${SERVICE_NAME}
RuntimeDirectoryMode=0750
StateDirectory=${SERVICE_NAME}
StateDirectoryMode=0700
WorkingDirectory=${STATE_DIR}
Environment=NODE_ENV=production
# Its own files (replay journal, running commands) are its alone.
UMask=0077
Environment=DFFS_COMMAND_RUNNER=${RUNNER_SOCKET}
Environment=DFFS_COMMAND_USER=${SERVICE_USER}
Environment=DFFS_COMMAND_HOME=${COMMANDS_HOME}

${directives(DAEMON_HARDENING)}

[Install]
WantedBy=multi-user.target
`;
  const runnerSocket = `${INSTALL_MARK}; re-running install rewrites it.
[Unit]
Description=DataFlux Func Sidecar command runner (its socket, for the daemon only)

[Socket]
ListenStream=${RUNNER_SOCKET}
SocketUser=${DAEMON_USER}
SocketGroup=${DAEMON_USER}
SocketMode=0600
# A runner for each connection: the daemon has one, a new one after a restart.
Accept=yes
MaxConnections=16
RemoveOnStop=yes

[Install]
WantedBy=sockets.target
`;
  const runner = `${INSTALL_MARK}; re-running install rewrites it.
[Unit]
Description=DataFlux Func Sidecar command runner
Documentation=man:systemd.exec(5)
CollectMode=inactive-or-failed

[Service]
User=${SERVICE_USER}
Group=${SERVICE_USER}
ExecStart=${CURRENT_LINK}/dist/dffs-spawn --own-cgroup
# A runner that stops pinging (a command stopped it: it runs as the commands' user) is ended, and
# its commands with it; the daemon, another user, cannot.
WatchdogSec=10
WatchdogSignal=SIGKILL
NotifyAccess=main
StandardInput=socket
StandardOutput=socket
StandardError=journal
# Its commands go with it: the daemon has gone, or restarts (as when the sidecar was one unit).
KillMode=control-group
# Caps fork bombs in commands: TasksMax through the cgroup, LimitNPROC also where the cgroup pids
# controller is not available (it counts every process of dffs, which runs nothing but this).
TasksMax=4096
LimitNPROC=4096
StateDirectory=${RUNNER_NAME}
WorkingDirectory=${COMMANDS_HOME}
# Commands create files as under the original Sidecar.
UMask=0022
# Each command in a cgroup of its own below the runner's, so that a timeout ends all it started,
# also what left its process group (setsid, daemons), with cgroup.kill. (This is why the cgroup
# tree is not read-only: ProtectControlGroups= would take the delegated subtree away too.)
Delegate=yes

${directives(ALWAYS)}
${options.allowSetuid ? '# --allow-setuid: no seccomp-based directives, so sudo works in commands.' : directives(NO_ESCALATION)}
`;
  return {daemon, runnerSocket, runner};
}
