// What a reload (SIGHUP) changed, by the names the config file gives the settings, for the log
// and for `bind` and `secret rotate`, which wait for the daemon to confirm.
import {type Settings} from '../config/config.js';
import {DEFAULT_KEY_NAME} from '../config/keys.js';

const NAMES: Partial<Record<keyof Settings, string>> = {
  secretKey: 'SECRET_KEY',
  bindText: 'BIND',
  oldSecret: 'OLD_SECRET_KEY',
  secretCreatedAt: 'SECRET_CREATED_AT',
  tls: 'TLS_CERT',
  allowFrom: 'ALLOW_FROM',
  keys: 'KEYS',
  metricsBind: 'METRICS_BIND',
};

/** The named keys and their policies as text: a change of any field of any policy is a change of KEYS. */
function namedKeysText(settings: Settings): string {
  return JSON.stringify(
    settings.keys
      .filter((key) => key.name !== DEFAULT_KEY_NAME)
      .map(({name, secret, policy}) => [name, secret, policy && {...policy, allow: policy.allow?.map((pattern) => pattern.source), env: policy.env && [...policy.env]}]),
  );
}

export function settingsChanged(previous: Settings, next: Settings): string[] {
  const changed = (Object.keys(next) as (keyof Settings)[]).filter(
    (key) => key !== 'binds' && key !== 'keys' && JSON.stringify(next[key]) !== JSON.stringify(previous[key]),
  );
  if (namedKeysText(next) !== namedKeysText(previous)) changed.push('keys');
  return changed.map((key) => NAMES[key] ?? key);
}
