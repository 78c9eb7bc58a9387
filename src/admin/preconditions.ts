// What an administrative command needs before it changes anything: root, and systemd.
import {UserError} from '../common/user-error.js';
import {systemdIsRunning} from './systemd.js';

export class InstallError extends UserError {}

export function requireRoot(command: string): void {
  if (process.getuid?.() !== 0) throw new InstallError(`must run as root: try sudo dffs-ctl ${command}`, 77);
}

export function requireSystemd(): void {
  if (!systemdIsRunning()) throw new InstallError('systemd is not running on this host: the sidecar is installed as a systemd service', 69);
}
