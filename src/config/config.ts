import {homedir} from 'node:os';
import {basename, dirname, extname, join, resolve} from 'node:path';
import {fs} from '../common/node-builtins.js';
import {AllowFromError, BindError, DEFAULT_BIND, parseAllowFrom, parseBindList, type BindAddress, type SourceNetwork} from './bind.js';
import {compilePolicy, DEFAULT_KEY_NAME, MAX_COMMAND_TIMEOUT, namedKeyProblem, secretKeyProblem, type CompiledPolicy, type NamedKey} from './keys.js';

const {readFileSync} = fs;

export const SYSTEM_CONFIG_PATH = '/etc/dataflux-func-sidecar';

/** The config file as stored: the manual's BIND and SECRET_KEY, plus tuning keys of our own. */
export interface StoredConfig {
  BIND?: string;
  SECRET_KEY?: string;
  /** ISO time the current key was set; shown as the secret's age. */
  SECRET_CREATED_AT?: string;
  /** The key before the last rotation, still accepted until OLD_SECRET_EXPIRES_AT. */
  OLD_SECRET_KEY?: string;
  OLD_SECRET_EXPIRES_AT?: string;
  /** PEM certificate chain and private key for the `https://` entries of BIND: absolute paths. */
  TLS_CERT?: string;
  TLS_KEY?: string;
  /** Addresses and networks requests may come from (comma-separated, CIDR); unset: any. */
  ALLOW_FROM?: string;
  /** Named keys beside SECRET_KEY, each with what it may run. */
  KEYS?: Record<string, NamedKey>;
  /** Where Prometheus metrics are served (one host:port, plain HTTP, no signature); unset: nowhere. */
  METRICS_BIND?: string;
  TIMESTAMP_TOLERANCE?: number;
  COMMAND_TIMEOUT?: number;
  KILL_GRACE?: number;
  OUTPUT_LIMIT?: number;
  OUTPUT_BUDGET?: number;
  BODY_LIMIT?: number;
  BODY_BUDGET?: number;
  MAX_CONNECTIONS?: number;
  MAX_RUNNING?: number;
  MAX_QUEUED?: number;
  DRAIN_TIMEOUT?: number;
  CALLBACK_RETRIES?: number;
  CALLBACK_TIMEOUT?: number;
  JOB_HISTORY?: number;
  JOB_HISTORY_SECONDS?: number;
  JOB_OUTPUT_KEPT?: number;
}

const TEXT_KEYS = ['BIND', 'SECRET_KEY', 'SECRET_CREATED_AT', 'OLD_SECRET_KEY', 'OLD_SECRET_EXPIRES_AT', 'TLS_CERT', 'TLS_KEY', 'ALLOW_FROM', 'METRICS_BIND'] as const;
type NumericKey = Exclude<keyof StoredConfig, (typeof TEXT_KEYS)[number] | 'KEYS'>;

/** Bounds and defaults of the numeric keys; times in seconds, sizes in bytes. */
export const NUMERIC_SETTINGS: Record<NumericKey, {default: number; min: number; max: number; unit: string}> = {
  TIMESTAMP_TOLERANCE: {default: 300, min: 1, max: 86_400, unit: 'seconds'},
  COMMAND_TIMEOUT: {default: 3600, min: 1, max: MAX_COMMAND_TIMEOUT, unit: 'seconds'},
  KILL_GRACE: {default: 5, min: 0, max: 600, unit: 'seconds'},
  OUTPUT_LIMIT: {default: 10 * 1024 * 1024, min: 1024, max: 1024 * 1024 * 1024, unit: 'bytes'},
  /**
   * Output held in memory by all running commands together; past it, the largest holders are cut.
   * At most 256 MiB: one command's output becomes one string, and V8's longest is just under 512 Mi characters.
   */
  OUTPUT_BUDGET: {default: 64 * 1024 * 1024, min: 1024 * 1024, max: 256 * 1024 * 1024, unit: 'bytes'},
  BODY_LIMIT: {default: 1024 * 1024, min: 1024, max: 64 * 1024 * 1024, unit: 'bytes'},
  /** Request bodies held before their signature is checked, all connections together; at least BODY_LIMIT. */
  BODY_BUDGET: {default: 64 * 1024 * 1024, min: 1024 * 1024, max: 1024 * 1024 * 1024, unit: 'bytes'},
  /** Open connections per BIND address; more are answered 503. */
  MAX_CONNECTIONS: {default: 4096, min: 1, max: 65_536, unit: 'connections'},
  MAX_RUNNING: {default: 64, min: 1, max: 4096, unit: 'commands'},
  MAX_QUEUED: {default: 1024, min: 0, max: 100_000, unit: 'commands'},
  DRAIN_TIMEOUT: {default: 30, min: 0, max: 86_400, unit: 'seconds'},
  CALLBACK_RETRIES: {default: 5, min: 0, max: 20, unit: 'retries'},
  CALLBACK_TIMEOUT: {default: 10, min: 1, max: 600, unit: 'seconds'},
  /** Finished jobs whose records (GET /jobs/{id}) are kept, and for how long. */
  JOB_HISTORY: {default: 1000, min: 1, max: 100_000, unit: 'jobs'},
  JOB_HISTORY_SECONDS: {default: 3600, min: 1, max: 7 * 86_400, unit: 'seconds'},
  /** Output (the head and tail of each stream) that finished jobs' records keep together; past it, the oldest let go of theirs. */
  JOB_OUTPUT_KEPT: {default: 32 * 1024 * 1024, min: 0, max: 1024 * 1024 * 1024, unit: 'bytes'},
};

/** The settings the daemon runs with, after defaults and overrides. */
export interface Settings extends Record<NumericKey, number> {
  binds: BindAddress[];
  bindText: string;
  secretKey: string | undefined;
  secretCreatedAt: string | undefined;
  /** The previous key and when it stops being accepted, during a rotation's grace. */
  oldSecret: {key: string; expiresAt: string} | undefined;
  /** Where the certificate and key of the HTTPS listeners are read from, at start and on reload. */
  tls: {certPath: string; keyPath: string} | undefined;
  /** The networks requests may come from; undefined: any. */
  allowFrom: SourceNetwork[] | undefined;
  /** Every key a request may be signed with, SECRET_KEY (named "default") first. */
  keys: AcceptedKey[];
  /** Where /metrics is served; undefined: nowhere. */
  metricsBind: BindAddress | undefined;
}

/** A key requests are signed with, and what it may run (no policy: anything). */
export interface AcceptedKey {
  name: string;
  secret: string;
  /** The previous SECRET_KEY during a rotation's grace: accepted until then. */
  expiresAt?: number;
  /** ISO time the key was set (SECRET_CREATED_AT, or a named key's createdAt), when known: its age on /metrics. */
  createdAt?: string;
  policy?: CompiledPolicy;
}

export class ConfigError extends Error {}

export function defaultConfigPath(uid = process.getuid?.() ?? -1): string {
  if (uid === 0) return SYSTEM_CONFIG_PATH;
  const base = process.env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return join(base, 'dataflux-func-sidecar', 'config.json');
}

/** Conf, loaded only to write: reading needs none of it, and serve starts faster without it. */
async function store(path: string) {
  const {default: Conf} = await import('conf');
  const absolute = resolve(path);
  const extension = extname(absolute);
  return new Conf<StoredConfig>({
    cwd: dirname(absolute),
    configName: basename(absolute, extension),
    fileExtension: extension.slice(1),
    clearInvalidConfig: false,
    accessPropertiesByDotNotation: false,
    // The file holds the secret key: owner only (install widens it to the dffs-daemon group).
    configFileMode: 0o600,
  });
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Reads and validates a config file; a missing file is an empty config. Throws ConfigError naming file and field. */
export function readConfig(path: string): StoredConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return {};
    if (code === 'EACCES') {
      throw new ConfigError(`cannot read ${path}: permission denied (run as root, e.g. with sudo, or pass --config)`);
    }
    throw new ConfigError(`cannot read ${path}: ${describe(error)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    // Where, not what: V8's message quotes the text around the error, which may be a key.
    const position = Number(/position (\d+)/.exec(describe(error))?.[1]);
    const where = Number.isInteger(position) ? ` at line ${text.slice(0, position).split('\n').length}` : '';
    throw new ConfigError(`${path} is not valid JSON${where}; fix or remove the file`);
  }
  return validateConfig(raw, path);
}

export function validateConfig(raw: unknown, path: string): StoredConfig {
  const fail = (field: string, problem: string): never => {
    throw new ConfigError(`${path}: ${field} ${problem}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return fail('(whole file)', 'must be a JSON object such as {"BIND": "127.0.0.1:8099", "SECRET_KEY": "..."}');
  }
  const config = raw as Record<string, unknown>;
  /** A string setting read by `parse`, whose own error (`ParseError`) says what is wrong with it. */
  const parsed = <T>(key: string, example: string, parse: (text: string) => T, ParseError: typeof BindError | typeof AllowFromError): T => {
    const value = config[key];
    if (typeof value !== 'string') return fail(key, `must be a string such as "${example}"`);
    try {
      return parse(value);
    } catch (error) {
      if (error instanceof ParseError) fail(key, `is invalid: ${error.message}`);
      throw error;
    }
  };
  for (const [key, value] of Object.entries(config)) {
    if (key === 'BIND') {
      parsed(key, '127.0.0.1:8099,172.17.0.1:8099', parseBindList, BindError);
    } else if (key === 'SECRET_KEY' || key === 'OLD_SECRET_KEY') {
      if (typeof value !== 'string') fail(key, 'must be a string');
      const problem = secretKeyProblem(value as string);
      if (problem) fail(key, problem);
    } else if (key === 'TLS_CERT' || key === 'TLS_KEY') {
      if (typeof value !== 'string' || !value.startsWith('/')) fail(key, 'must be the absolute path of a PEM file');
    } else if (key === 'ALLOW_FROM') {
      parsed(key, '127.0.0.0/8,::1,172.16.0.0/12', parseAllowFrom, AllowFromError);
    } else if (key === 'METRICS_BIND') {
      const addresses = parsed(key, '127.0.0.1:9464', parseBindList, BindError);
      if (addresses.length !== 1 || addresses[0].tls) fail(key, 'must be one plain host:port, such as "127.0.0.1:9464" (Prometheus scrapes it over HTTP; keep it on loopback or a private network)');
    } else if (key === 'SECRET_CREATED_AT' || key === 'OLD_SECRET_EXPIRES_AT') {
      if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) fail(key, 'must be an ISO date string');
    } else if (key === 'KEYS') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(key, 'must be an object of named keys, such as {"ops": {"secret": "...", "allow": ["^uptime$"]}}');
      for (const [name, entry] of Object.entries(value as object)) {
        const problem = namedKeyProblem(name, entry);
        if (problem) fail(key, problem);
      }
      const secrets = [config.SECRET_KEY, config.OLD_SECRET_KEY, ...Object.values(value as Record<string, NamedKey>).map((entry) => entry.secret)].filter((secret) => secret !== undefined);
      if (new Set(secrets).size !== secrets.length) fail(key, 'has a secret used twice: each key needs its own, or requests could not be told apart');
    } else if (key in NUMERIC_SETTINGS) {
      const {min, max, unit} = NUMERIC_SETTINGS[key as NumericKey];
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
        fail(key, `must be a whole number of ${unit} from ${min} to ${max}`);
      }
    } else {
      fail(key, `is not a known setting (known: ${[...TEXT_KEYS, ...Object.keys(NUMERIC_SETTINGS)].join(', ')})`);
    }
  }
  const bodyLimit = (config.BODY_LIMIT as number | undefined) ?? NUMERIC_SETTINGS.BODY_LIMIT.default;
  const bodyBudget = (config.BODY_BUDGET as number | undefined) ?? NUMERIC_SETTINGS.BODY_BUDGET.default;
  if (bodyBudget < bodyLimit) fail('BODY_BUDGET', `(${bodyBudget}) must be at least BODY_LIMIT (${bodyLimit}): one request's body must fit`);
  if ((config.TLS_CERT === undefined) !== (config.TLS_KEY === undefined)) fail('TLS_CERT', 'and TLS_KEY must be set together');
  if (config.TLS_CERT === undefined && typeof config.BIND === 'string' && parseBindList(config.BIND).some((address) => address.tls)) {
    fail('BIND', 'has https:// addresses: set TLS_CERT and TLS_KEY to the PEM files of their certificate and key');
  }
  if ((config.OLD_SECRET_KEY === undefined) !== (config.OLD_SECRET_EXPIRES_AT === undefined)) {
    fail('OLD_SECRET_KEY', 'and OLD_SECRET_EXPIRES_AT must be set together');
  }
  return config as StoredConfig;
}

/** Validates and writes a config atomically (a temporary file renamed over the old one). */
export async function writeConfig(path: string, config: StoredConfig): Promise<void> {
  validateConfig(config, path);
  try {
    (await store(path)).store = config;
  } catch (error) {
    throw new ConfigError(`cannot write ${path}: ${describe(error)}; the previous file is unchanged`);
  }
}

export interface ConfigOverrides {
  bind?: string;
  secretKey?: string;
}

/** Settings from a stored config with defaults applied and command-line overrides on top. */
export function resolveSettings(config: StoredConfig, overrides: ConfigOverrides = {}, path = 'command line'): Settings {
  const checked = validateConfig(
    {
      ...config,
      ...(overrides.bind === undefined ? {} : {BIND: overrides.bind}),
      ...(overrides.secretKey === undefined ? {} : {SECRET_KEY: overrides.secretKey}),
    },
    overrides.bind === undefined && overrides.secretKey === undefined ? path : `${path} (with flags)`,
  );
  const bindText = checked.BIND ?? DEFAULT_BIND;
  const numeric = Object.fromEntries(
    Object.entries(NUMERIC_SETTINGS).map(([key, spec]) => [key, checked[key as NumericKey] ?? spec.default]),
  ) as Record<NumericKey, number>;
  return {
    ...numeric,
    binds: parseBindList(bindText),
    bindText,
    secretKey: checked.SECRET_KEY,
    secretCreatedAt: checked.SECRET_CREATED_AT,
    oldSecret:
      checked.OLD_SECRET_KEY && checked.OLD_SECRET_EXPIRES_AT
        ? {key: checked.OLD_SECRET_KEY, expiresAt: checked.OLD_SECRET_EXPIRES_AT}
        : undefined,
    tls: checked.TLS_CERT && checked.TLS_KEY ? {certPath: checked.TLS_CERT, keyPath: checked.TLS_KEY} : undefined,
    allowFrom: checked.ALLOW_FROM === undefined ? undefined : parseAllowFrom(checked.ALLOW_FROM),
    metricsBind: checked.METRICS_BIND === undefined ? undefined : parseBindList(checked.METRICS_BIND)[0],
    keys: [
      ...(checked.SECRET_KEY === undefined ? [] : [{name: DEFAULT_KEY_NAME, secret: checked.SECRET_KEY, ...(checked.SECRET_CREATED_AT ? {createdAt: checked.SECRET_CREATED_AT} : {})}]),
      ...(checked.OLD_SECRET_KEY && checked.OLD_SECRET_EXPIRES_AT ? [{name: DEFAULT_KEY_NAME, secret: checked.OLD_SECRET_KEY, expiresAt: Date.parse(checked.OLD_SECRET_EXPIRES_AT)}] : []),
      ...Object.entries(checked.KEYS ?? {}).map(([name, entry]) => {
        const policy = compilePolicy(entry);
        return {name, secret: entry.secret, ...(entry.createdAt ? {createdAt: entry.createdAt} : {}), ...(policy ? {policy} : {})};
      }),
    ],
  };
}
