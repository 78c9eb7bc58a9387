import {SYSTEM_CONFIG_PATH} from '../config.js';
import {BIN_DIR, SERVICE_NAME, SERVICE_USER, STATE_DIR} from './paths.js';

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

/** The first words of each file install writes, by which it tells its own files from the original Sidecar's. */
export const INSTALL_MARK = '# Written by dffs-ctl install';

/** The systemd unit of the sidecar service. */
export function renderUnit(options: UnitOptions): string {
  return `${INSTALL_MARK}; re-running install rewrites it.
[Unit]
Description=DataFlux Func Sidecar
Documentation=man:systemd.exec(5)
Wants=network-online.target
After=network-online.target docker.service

[Service]
Type=simple
User=${SERVICE_USER}
Group=${SERVICE_USER}
ExecStart=${BIN_DIR}/dataflux-func-sidecar serve --config ${SYSTEM_CONFIG_PATH}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
# SIGTERM to the daemon alone: it drains its commands (each in its own process group) itself.
KillMode=mixed
TimeoutStopSec=${options.stopTimeoutSeconds}
# Caps fork bombs in commands: TasksMax through the cgroup, LimitNPROC also where the cgroup pids
# controller is not available (it counts every process of dffs, which runs nothing but this).
TasksMax=4096
LimitNPROC=4096
RuntimeDirectory=${SERVICE_NAME}
RuntimeDirectoryMode=0750
StateDirectory=${SERVICE_NAME}
StateDirectoryMode=0700
WorkingDirectory=${STATE_DIR}
Environment=NODE_ENV=production
# What the daemon writes (replay journal, the list of running commands) is its own; commands start
# with the usual 0022, so the files they create are as under the original Sidecar.
UMask=0077
Environment=DFFS_COMMAND_UMASK=0022
# Each command in a cgroup of its own below the service's, so that a timeout ends all it started,
# also what left its process group (setsid, daemons), with cgroup.kill. (This is why the cgroup
# tree is not read-only: ProtectControlGroups= would take the delegated subtree away too.)
Delegate=yes
Environment=DFFS_DELEGATED_CGROUP=1

${directives(ALWAYS)}
${options.allowSetuid ? '# --allow-setuid: no seccomp-based directives, so sudo works in commands.' : directives(NO_ESCALATION)}

[Install]
WantedBy=multi-user.target
`;
}
