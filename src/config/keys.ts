// The keys requests are signed with: their secrets (what a new one must be), their names, and the
// policies of named keys (what each may run), validated and compiled.
import {crypto, v8} from '../common/node-builtins.js';

const {randomBytes} = crypto;

/** The longest COMMAND_TIMEOUT, and so the longest timeout a key's policy may allow. */
export const MAX_COMMAND_TIMEOUT = 7 * 86_400;

/** What a named key may run; a key without `allow` may run anything. */
export interface KeyPolicy {
  /** Patterns over the whole command (each anchored at both ends): the command must match one. */
  allow?: string[];
  /** The directory its commands run in; a request for another is refused. */
  workdir?: string;
  /** The variables a request may set. */
  env?: string[];
  /** The longest timeout, in seconds, its commands may have (and have when the request gives none). */
  maxTimeout?: number;
  /** With `allow`: commands may contain shell syntax (; & | $ ` ( ) < > \ or a line break). */
  shell?: boolean;
  /** With `allow`: the URLs its callbacks may go to, by prefix; without, it may ask for none. */
  callbacks?: string[];
}

export interface NamedKey extends KeyPolicy {
  secret: string;
  createdAt?: string;
}

const KEY_FIELDS = ['secret', 'createdAt', 'allow', 'workdir', 'env', 'maxTimeout', 'shell', 'callbacks'];

/** A key's name: what the log, the dashboard and refusals show in place of the key. */
export const KEY_NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
/** The name of SECRET_KEY, the manual's single key, among the named ones. */
export const DEFAULT_KEY_NAME = 'default';

/** The shortest key install, secret rotate and keys add accept; a config may keep a shorter one (the original's), with a warning. */
export const MIN_SECRET_LENGTH = 16;

/** Why a key in a config cannot be used at all, or undefined when it can. */
export function secretKeyProblem(key: string): string | undefined {
  if (!/^[\x21-\x7E]+$/.test(key)) return 'must be printable ASCII without spaces';
  return undefined;
}

/** Why a key cannot be set now, or undefined when it can: new keys must be long enough to resist guessing. */
export function newSecretKeyProblem(key: string): string | undefined {
  if (key.length < MIN_SECRET_LENGTH) return `is too short: use at least ${MIN_SECRET_LENGTH} characters (the generated ones have 32)`;
  return secretKeyProblem(key);
}

export function generateSecretKey(): string {
  // 24 random bytes as 32 URL-safe characters: what Func's connector form takes without escaping.
  return randomBytes(24).toString('base64url');
}

export interface CompiledPolicy {
  allow?: RegExp[];
  workdir?: string;
  env?: Set<string>;
  maxTimeout?: number;
  shell?: boolean;
  callbacks?: string[];
}

let linearRegExps = false;

/**
 * A pattern as a key's allow list means it: over the whole command, whatever anchors it was
 * written with. It must be a whole expression on its own, so that none of its groups can close
 * the anchoring one, and it runs on V8's linear-time engine, so that no command can make it
 * backtrack for long (no backreferences or lookarounds, then).
 */
export function compileAllowPattern(pattern: string): RegExp {
  if (!linearRegExps) {
    v8().setFlagsFromString('--enable-experimental-regexp-engine');
    linearRegExps = true;
  }
  new RegExp(pattern, 'l');
  return new RegExp(`^(?:${pattern})$`, 'l');
}

export function compilePolicy(key: NamedKey): CompiledPolicy | undefined {
  if (key.allow === undefined && key.workdir === undefined && key.env === undefined && key.maxTimeout === undefined) return undefined;
  return {
    ...(key.allow ? {allow: key.allow.map(compileAllowPattern)} : {}),
    ...(key.workdir ? {workdir: key.workdir} : {}),
    ...(key.env ? {env: new Set(key.env)} : {}),
    ...(key.maxTimeout ? {maxTimeout: key.maxTimeout} : {}),
    ...(key.shell ? {shell: true} : {}),
    ...(key.callbacks ? {callbacks: key.callbacks} : {}),
  };
}

/** Why a named key's entry cannot be used, naming the field; undefined when it can. */
export function namedKeyProblem(name: string, value: unknown): string | undefined {
  if (!KEY_NAME.test(name) || name === DEFAULT_KEY_NAME) return `"${name}" is not a key name: lower-case letters, digits, _ . - (up to 64), and not "${DEFAULT_KEY_NAME}" (SECRET_KEY's)`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return `${name} must be an object such as {"secret": "...", "allow": ["^uptime$"]}`;
  const key = value as Record<string, unknown>;
  for (const field of Object.keys(key)) {
    if (!KEY_FIELDS.includes(field)) return `${name}.${field} is not a key setting (known: ${KEY_FIELDS.join(', ')})`;
  }
  if (typeof key.secret !== 'string') return `${name}.secret must be a string`;
  const secretProblem = secretKeyProblem(key.secret);
  if (secretProblem) return `${name}.secret ${secretProblem}`;
  if (key.createdAt !== undefined && (typeof key.createdAt !== 'string' || Number.isNaN(Date.parse(key.createdAt)))) return `${name}.createdAt must be an ISO date string`;
  if (key.allow !== undefined) {
    if (!Array.isArray(key.allow) || !key.allow.every((pattern) => typeof pattern === 'string')) return `${name}.allow must be a list of patterns`;
    for (const pattern of key.allow as string[]) {
      try {
        compileAllowPattern(pattern);
      } catch (error) {
        return `${name}.allow has a pattern that is not a whole regular expression that can be checked in linear time (no backreferences or lookarounds): ${(error as Error).message}`;
      }
    }
  }
  if (key.workdir !== undefined && (typeof key.workdir !== 'string' || !key.workdir.startsWith('/'))) return `${name}.workdir must be an absolute path`;
  if (key.env !== undefined && (!Array.isArray(key.env) || !key.env.every((entry) => typeof entry === 'string' && /^[A-Za-z_][A-Za-z0-9_]*$/.test(entry)))) return `${name}.env must be a list of variable names`;
  if (key.shell !== undefined && typeof key.shell !== 'boolean') return `${name}.shell must be true or false`;
  if (key.callbacks !== undefined && (!Array.isArray(key.callbacks) || !key.callbacks.every((prefix) => typeof prefix === 'string' && /^https?:\/\/[^/]+\//.test(prefix)))) {
    return `${name}.callbacks must be a list of URL prefixes such as "http://172.17.0.1:8088/api/"`;
  }
  if (key.maxTimeout !== undefined && (typeof key.maxTimeout !== 'number' || !Number.isInteger(key.maxTimeout) || key.maxTimeout < 1 || key.maxTimeout > MAX_COMMAND_TIMEOUT)) {
    return `${name}.maxTimeout must be a whole number of seconds from 1 to ${MAX_COMMAND_TIMEOUT}`;
  }
  return undefined;
}
