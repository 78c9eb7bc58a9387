/** Where an installed sidecar lives: the manual's names, plus a release directory of our own. */
export const SERVICE_NAME = 'dataflux-func-sidecar';
/** The user commands run as, as the manual says. */
export const SERVICE_USER = 'dffs';
/** The user the daemon runs as: no command can read its keys or signal it. */
export const DAEMON_USER = 'dffs-daemon';
/** The units of the command runner: a socket only the daemon may connect to, and a dffs-spawn per connection, as dffs. */
export const RUNNER_NAME = 'dataflux-func-sidecar-commands';
export const RUNNER_SOCKET_UNIT = `${RUNNER_NAME}.socket`;
export const RUNNER_SOCKET = `/run/${RUNNER_NAME}.sock`;
export const UNIT_DIR = '/etc/systemd/system';
export const UNIT_PATH = `${UNIT_DIR}/${SERVICE_NAME}.service`;
export const RUNNER_SOCKET_PATH = `${UNIT_DIR}/${RUNNER_NAME}.socket`;
export const RUNNER_SERVICE_PATH = `${UNIT_DIR}/${RUNNER_NAME}@.service`;
export const LIB_DIR = `/usr/local/lib/${SERVICE_NAME}`;
export const RELEASES_DIR = `${LIB_DIR}/releases`;
export const CURRENT_LINK = `${LIB_DIR}/current`;
export const BIN_DIR = '/usr/local/bin';
export const WRAPPERS = ['dataflux-func-sidecar', 'dffs-ctl'] as const;
export const STATE_DIR = `/var/lib/${SERVICE_NAME}`;
/** Where commands start, and their HOME: the runner's own state directory, dffs's. */
export const COMMANDS_HOME = `/var/lib/${RUNNER_NAME}`;
/** The original Sidecar's program, unit and config, as they were before an install replaced them: root's only. */
export const ORIGINAL_BACKUP_DIR = `/var/backups/${SERVICE_NAME}-original`;
