import {ConfigError, type Settings} from '../config/config.js';
import {fs, tls} from '../common/node-builtins.js';
import type {TlsMaterial} from './listeners.js';

/**
 * The certificate and key of the HTTPS listeners, read and checked as a pair; none when no BIND
 * address is https://. Read at start and at each reload (SIGHUP), so a renewed certificate
 * applies without a restart.
 */
export function readTlsMaterial(settings: Settings): TlsMaterial | undefined {
  if (!settings.tls || !settings.binds.some((address) => address.tls)) return undefined;
  const read = (key: string, path: string): Buffer => {
    try {
      return fs.readFileSync(path);
    } catch (error) {
      throw new ConfigError(`cannot read ${key} ${path} (${(error as NodeJS.ErrnoException).code}): it must exist and be readable by the sidecar's user`);
    }
  };
  const material = {cert: read('TLS_CERT', settings.tls.certPath), key: read('TLS_KEY', settings.tls.keyPath)};
  try {
    tls().createSecureContext(material);
  } catch (error) {
    throw new ConfigError(`TLS_CERT ${settings.tls.certPath} and TLS_KEY ${settings.tls.keyPath} cannot be used: ${(error as Error).message}`);
  }
  return material;
}
