import type {StoredConfig} from '../config/config.js';

/**
 * Reads a config left by the original Sidecar, written as `KEY: value` or `KEY=value` lines
 * (values optionally quoted). Keeps BIND and SECRET_KEY; returns undefined when the text has
 * neither, so that a file which is nothing of the kind is not mistaken for one.
 */
export function parseLegacyConfig(text: string): Pick<StoredConfig, 'BIND' | 'SECRET_KEY'> | undefined {
  const found: Pick<StoredConfig, 'BIND' | 'SECRET_KEY'> = {};
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*(BIND|SECRET_KEY)\s*[:=]\s*(.*?)\s*$/.exec(line);
    if (!match) continue;
    const [, key, raw] = match;
    const value = /^(["']).*\1$/.test(raw) ? raw.slice(1, -1) : raw;
    if (value !== '') found[key as 'BIND' | 'SECRET_KEY'] = value;
  }
  return found.BIND === undefined && found.SECRET_KEY === undefined ? undefined : found;
}
