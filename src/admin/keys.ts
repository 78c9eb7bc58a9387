import {type StoredConfig} from '../config/config.js';
import {UserError} from '../common/user-error.js';
import {DEFAULT_KEY_NAME, generateSecretKey, KEY_NAME, namedKeyProblem, newSecretKeyProblem, type KeyPolicy, type NamedKey} from '../config/keys.js';

export class KeysError extends UserError {}

/** A key as `dffs-ctl keys` lists it: what it may run, never its secret. */
export interface KeyListing extends KeyPolicy {
  name: string;
  createdAt?: string;
  /** True when the key may run any command. */
  unrestricted: boolean;
}

export function listKeys(config: StoredConfig): KeyListing[] {
  const listing: KeyListing[] = [];
  if (config.SECRET_KEY !== undefined) listing.push({name: DEFAULT_KEY_NAME, ...(config.SECRET_CREATED_AT ? {createdAt: config.SECRET_CREATED_AT} : {}), unrestricted: true});
  for (const [name, {secret: _secret, ...rest}] of Object.entries(config.KEYS ?? {})) listing.push({name, ...rest, unrestricted: rest.allow === undefined});
  return listing;
}

/** The config with a new named key; its secret is generated unless given. */
export function addKey(config: StoredConfig, name: string, policy: KeyPolicy, secret: string | undefined, now = new Date()): {config: StoredConfig; secret: string} {
  if (name === DEFAULT_KEY_NAME || config.KEYS?.[name]) throw new KeysError(`there is already a key named ${name}: remove it first, or rotate it with "secret rotate --name ${name}"`, 2);
  if (!KEY_NAME.test(name)) throw new KeysError(`"${name}" is not a key name: lower-case letters, digits, _ . - (up to 64)`, 2);
  const newSecret = secret ?? generateSecretKey();
  const secretProblem = newSecretKeyProblem(newSecret);
  if (secretProblem) throw new KeysError(`--secret-key ${secretProblem}`, 2);
  const entry: NamedKey = {secret: newSecret, createdAt: now.toISOString(), ...policy};
  const problem = namedKeyProblem(name, entry);
  if (problem) throw new KeysError(problem, 2);
  return {config: {...config, KEYS: {...config.KEYS, [name]: entry}}, secret: newSecret};
}

export function removeKey(config: StoredConfig, name: string): StoredConfig {
  if (name === DEFAULT_KEY_NAME) throw new KeysError(`"${DEFAULT_KEY_NAME}" is SECRET_KEY, which Func's connector uses: replace it with "secret rotate" instead`, 2);
  if (!config.KEYS?.[name]) throw new KeysError(`there is no key named ${name} (dffs-ctl keys lists them)`, 2);
  const {[name]: _removed, ...rest} = config.KEYS;
  const {KEYS: _keys, ...others} = config;
  return Object.keys(rest).length === 0 ? others : {...others, KEYS: rest};
}

/** The config with a named key's secret replaced, its policy kept. */
export function rotateKey(config: StoredConfig, name: string, secret: string | undefined, now = new Date()): {config: StoredConfig; secret: string} {
  const entry = config.KEYS?.[name];
  if (!entry) throw new KeysError(`there is no key named ${name} (dffs-ctl keys lists them)`, 2);
  const newSecret = secret ?? generateSecretKey();
  const problem = newSecretKeyProblem(newSecret);
  if (problem) throw new KeysError(`--secret-key ${problem}`, 2);
  if (newSecret === entry.secret) throw new KeysError('the new key is the same as the current one', 2);
  return {config: {...config, KEYS: {...config.KEYS, [name]: {...entry, secret: newSecret, createdAt: now.toISOString()}}}, secret: newSecret};
}

/** A named key's secret, or SECRET_KEY for "default". */
export function keySecret(config: StoredConfig, name: string): string | undefined {
  return name === DEFAULT_KEY_NAME ? config.SECRET_KEY : config.KEYS?.[name]?.secret;
}
