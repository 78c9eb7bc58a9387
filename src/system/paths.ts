/** Where an installed sidecar lives: the manual's names, plus a release directory of our own. */
export const SERVICE_NAME = 'dataflux-func-sidecar';
export const SERVICE_USER = 'dffs';
export const UNIT_PATH = `/etc/systemd/system/${SERVICE_NAME}.service`;
export const LIB_DIR = `/usr/local/lib/${SERVICE_NAME}`;
export const RELEASES_DIR = `${LIB_DIR}/releases`;
export const CURRENT_LINK = `${LIB_DIR}/current`;
export const BIN_DIR = '/usr/local/bin';
export const WRAPPERS = ['dataflux-func-sidecar', 'dffs-ctl'] as const;
export const STATE_DIR = `/var/lib/${SERVICE_NAME}`;
/** The original Sidecar's program, unit and config, as they were before an install replaced them: root's only. */
export const ORIGINAL_BACKUP_DIR = `/var/backups/${SERVICE_NAME}-original`;
