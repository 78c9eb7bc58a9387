// Which sidecar a client command talks to, and with which key: the flags, else the config's first
// BIND address and its SECRET_KEY (or a named key).
import {readFileSync} from 'node:fs';
import {parseBindList} from '../config/bind.js';
import {ConfigError, defaultConfigPath, readConfig} from '../config/config.js';
import {keySecret} from '../admin/keys.js';
import {baseUrl} from './probe.js';
import {UserError} from '../common/user-error.js';

export interface SidecarTarget {
  baseUrl: string;
  secretKey: string;
  /** PEM of a private CA, for https:// URLs. */
  ca?: Buffer;
}

export interface TargetFlags {
  url?: string;
  'secret-key'?: string;
  config?: string;
  key?: string;
  ca?: string;
}

export function resolveTarget(flags: TargetFlags): SidecarTarget {
  let {url, 'secret-key': secretKey} = flags;
  if (url === undefined || secretKey === undefined) {
    const configPath = flags.config ?? defaultConfigPath();
    let config;
    try {
      config = readConfig(configPath);
    } catch (error) {
      if (error instanceof ConfigError) throw new UserError(`${error.message}; or give --url and --secret-key`, 77);
      throw error;
    }
    url ??= baseUrl(parseBindList(config.BIND ?? '127.0.0.1:8099')[0]);
    secretKey ??= flags.key === undefined ? config.SECRET_KEY : keySecret(config, flags.key);
    if (secretKey === undefined) {
      throw new UserError(flags.key === undefined ? `${configPath} has no SECRET_KEY: give --secret-key` : `${configPath} has no key named ${flags.key}: dffs-ctl keys lists them`, 78);
    }
  }
  let ca: Buffer | undefined;
  try {
    ca = flags.ca === undefined ? undefined : readFileSync(flags.ca);
  } catch (error) {
    throw new UserError(`cannot read --ca ${flags.ca}: ${(error as NodeJS.ErrnoException).code}`, 66);
  }
  return {baseUrl: url.replace(/\/+$/, ''), secretKey, ...(ca ? {ca} : {})};
}
