import {isUtf8} from 'node:buffer';
import {userInfo} from 'node:os';
import {isAbsolute} from 'node:path';
import {fs} from '../common/node-builtins.js';
import {Refusal} from './refusal.js';

/** A validated `POST /shell` body. */
export interface ShellRequest {
  command: string;
  wait: boolean;
  workdir?: string;
  envs: Record<string, string>;
  callbackURL?: URL;
  timeoutSeconds?: number;
}

export class BadRequest extends Error {}

const FIELDS = new Set(['command', 'wait', 'workdir', 'envs', 'callbackURL', 'timeout']);
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Variables that make the dynamic loader run code of the caller's choosing in every program. */
const LOADER_VARIABLE = /^(LD_|GCONV_PATH$|HOSTALIASES$|LOCPATH$|MALLOC_|NLSPATH$|RESOLV_HOST_CONF$|TMPDIR_PRELOAD$)/;
const MAX_URL_LENGTH = 8192;
/**
 * What execve takes: Linux refuses one argument or variable of 128 KiB or more (MAX_ARG_STRLEN),
 * and all of them together beyond ARG_MAX (2 MiB with the default stack limit; 1 MiB leaves room
 * for the base environment). Beyond these a command could not start at all.
 */
const MAX_ARGUMENT_BYTES = 128 * 1024 - 1;
const MAX_EXEC_BYTES = 1024 * 1024;

/** The envs of a request that sets none: shared, never changed (a plain object: no slow dictionary). */
const NO_ENVS: Record<string, string> = Object.freeze({});

function fail(message: string): never {
  throw new BadRequest(message);
}

function noNul(field: string, value: string): string {
  if (value.includes('\0')) fail(`${field} must not contain NUL characters`);
  return value;
}

function parseEnvs(value: unknown): Record<string, string> {
  const envs: Record<string, string> = Object.create(null);
  const add = (key: string, envValue: string, where: string) => {
    if (!ENV_KEY.test(key)) fail(`${where}: "${key}" is not a valid variable name (letters, digits and _, not starting with a digit)`);
    if (LOADER_VARIABLE.test(key)) fail(`${where}: ${key} is refused: dynamic loader variables could inject code into every program`);
    envs[key] = noNul(where, envValue);
  };
  if (Array.isArray(value)) {
    value.forEach((entry, index) => {
      const where = `envs[${index}]`;
      if (typeof entry !== 'string') fail(`${where} must be a "KEY=VALUE" string`);
      const equals = entry.indexOf('=');
      if (equals < 0) fail(`${where} must be a "KEY=VALUE" string, got "${entry.slice(0, 64)}"`);
      add(entry.slice(0, equals), entry.slice(equals + 1), where);
    });
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, envValue] of Object.entries(value)) {
      if (typeof envValue !== 'string') fail(`envs.${key} must be a string`);
      add(key, envValue, `envs.${key}`);
    }
  } else {
    fail('envs must be a list of "KEY=VALUE" strings or an object of strings');
  }
  return envs;
}

function parseCallbackURL(value: unknown): URL {
  if (typeof value !== 'string') fail('callbackURL must be a string');
  if (value.length > MAX_URL_LENGTH) fail(`callbackURL is longer than ${MAX_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    fail(`callbackURL "${value.slice(0, 200)}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail(`callbackURL must be http:// or https://, got ${url.protocol}`);
  if (url.username || url.password) fail('callbackURL must not carry a user name or password');
  return url;
}

function checkExecSize(request: ShellRequest): void {
  let total = Buffer.byteLength(request.command);
  if (total > MAX_ARGUMENT_BYTES) fail(`command is ${total} bytes; a command can have at most ${MAX_ARGUMENT_BYTES} (put a long script in a file)`);
  if (request.envs === NO_ENVS) return;
  for (const [key, value] of Object.entries(request.envs)) {
    const bytes = Buffer.byteLength(key) + 1 + Buffer.byteLength(value);
    if (bytes > MAX_ARGUMENT_BYTES) fail(`envs: ${key} is ${bytes} bytes with its name; a variable can have at most ${MAX_ARGUMENT_BYTES}`);
    total += bytes;
  }
  if (total > MAX_EXEC_BYTES) fail(`command and envs are ${total} bytes together; at most ${MAX_EXEC_BYTES} can be passed to a command`);
}

/** Parses the raw body (already authenticated) into a ShellRequest, or throws BadRequest naming the field. */
export function parseShellRequest(body: Uint8Array, maxTimeoutSeconds: number): ShellRequest {
  if (!isUtf8(body)) fail('the body is not valid UTF-8');
  // A byte order mark is skipped, as a UTF-8 decoder does.
  const start = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body.buffer, body.byteOffset + start, body.byteLength - start).toString('utf8'));
  } catch (error) {
    fail(`the body is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    fail('the body must be a JSON object such as {"command": "hostname"}');
  }
  const fields = parsed as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!FIELDS.has(key)) fail(`unknown field "${key.slice(0, 64)}" (known: ${[...FIELDS].join(', ')})`);
  }
  // A Python client passes None for an option it was not given: null means absent.
  const present = (key: string) => fields[key] !== undefined && fields[key] !== null;

  const {command} = fields;
  if (typeof command !== 'string') fail('command must be a string');
  if (command.trim() === '') fail('command must not be empty');
  const request: ShellRequest = {command: noNul('command', command), wait: true, envs: NO_ENVS};

  if (present('wait')) {
    if (typeof fields.wait !== 'boolean') fail('wait must be true or false');
    request.wait = fields.wait;
  }
  if (present('workdir')) {
    if (typeof fields.workdir !== 'string' || fields.workdir === '') fail('workdir must be a non-empty string');
    if (!isAbsolute(fields.workdir)) fail(`workdir "${fields.workdir}" must be an absolute path`);
    request.workdir = noNul('workdir', fields.workdir);
  }
  if (present('envs')) request.envs = parseEnvs(fields.envs);
  if (present('callbackURL')) request.callbackURL = parseCallbackURL(fields.callbackURL);
  checkExecSize(request);
  if (present('timeout')) {
    const {timeout} = fields;
    if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0 || timeout > maxTimeoutSeconds) {
      fail(`timeout must be a number of seconds above 0 and at most ${maxTimeoutSeconds}`);
    }
    request.timeoutSeconds = timeout;
  }
  return request;
}

/** A workdir the daemon's own user must enter: checked before the command is accepted. */
export async function checkWorkdir(workdir: string): Promise<void> {
  // fs.promises loads on the first request with a workdir, not at start.
  const {stat, access} = fs.promises;
  let info;
  try {
    info = await stat(workdir);
  } catch {
    throw new Refusal(400, 'bad-request', `workdir ${workdir} does not exist`);
  }
  if (!info.isDirectory()) throw new Refusal(400, 'bad-request', `workdir ${workdir} is not a directory`);
  try {
    await access(workdir, fs.constants.X_OK);
  } catch {
    throw new Refusal(400, 'bad-request', `workdir ${workdir} cannot be entered by user ${userInfo().username}`);
  }
}
