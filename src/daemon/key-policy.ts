import type {AcceptedKey, Settings} from '../config/config.js';
import {Refusal} from './refusal.js';
import {BadRequest, parseShellRequest, type ShellRequest} from './shell-request.js';

export class NotAllowed extends Error {}

/**
 * What the shell reads as more than words: the patterns see the text, the shell runs what it
 * means, and a pattern written naturally (`cat /var/log/app/.*`) would let `$(...)` through.
 */
const SHELL_SYNTAX = /[;&|$`()<>\\\n\r]/;
/** The longest command a key with patterns may send: its patterns take time in proportion. */
export const MAX_PATTERN_COMMAND = 2048;

/**
 * A request as its key may run it: refused (NotAllowed, naming the key, never its secret) when
 * the key's policy does not allow it; otherwise with the key's fixed workdir and its longest
 * timeout filled in where the request gave none.
 */
export function applyKeyPolicy(key: AcceptedKey, request: ShellRequest, defaultTimeoutSeconds: number): ShellRequest {
  const policy = key.policy;
  if (!policy) return request;
  const refuse = (why: string): never => {
    throw new NotAllowed(`key "${key.name}" may not run this: ${why}`);
  };
  if (policy.allow) {
    if (request.command.length > MAX_PATTERN_COMMAND) refuse(`its commands may be ${MAX_PATTERN_COMMAND} characters long at most`);
    if (!policy.shell && SHELL_SYNTAX.test(request.command)) refuse('the command has shell syntax (; & | $ ` ( ) < > \\ or a line break), which its "shell" setting does not allow');
    if (!policy.allow.some((pattern) => pattern.test(request.command))) refuse('the command matches none of its allow patterns (dffs-ctl keys lists them)');
    const callback = request.callbackURL?.href;
    if (callback !== undefined && !policy.callbacks?.some((prefix) => callback.startsWith(prefix))) refuse(`its callbacks may go only to ${policy.callbacks?.join(', ') || 'nowhere'}`);
  }
  if (policy.workdir !== undefined && request.workdir !== undefined && request.workdir !== policy.workdir) {
    refuse(`its commands run in ${policy.workdir}, not ${request.workdir}`);
  }
  const unwanted = Object.keys(request.envs).filter((name) => !policy.env?.has(name));
  if (policy.env !== undefined && unwanted.length > 0) refuse(`it may not set ${unwanted.join(', ')}`);
  if (policy.env === undefined && policy.allow && unwanted.length > 0) refuse(`it may set no variables, and the request sets ${unwanted.join(', ')}`);
  if (policy.maxTimeout !== undefined && (request.timeoutSeconds ?? 0) > policy.maxTimeout) {
    refuse(`its commands may run for ${policy.maxTimeout} s at most, and the request asks ${request.timeoutSeconds} s`);
  }
  return {
    ...request,
    ...(policy.workdir === undefined ? {} : {workdir: policy.workdir}),
    ...(policy.maxTimeout === undefined ? {} : {timeoutSeconds: request.timeoutSeconds ?? Math.min(policy.maxTimeout, defaultTimeoutSeconds)}),
  };
}

/** Stage 4 of POST /shell: a verified body as the request to run, within what its key may run; or a Refusal. */
export function requestToRun(body: Buffer, key: AcceptedKey, settings: Settings): ShellRequest {
  let request: ShellRequest;
  try {
    request = parseShellRequest(body, settings.COMMAND_TIMEOUT);
  } catch (error) {
    if (error instanceof BadRequest) throw new Refusal(400, 'bad-request', error.message);
    throw error;
  }
  try {
    return applyKeyPolicy(key, request, settings.COMMAND_TIMEOUT);
  } catch (error) {
    if (error instanceof NotAllowed) throw new Refusal(403, 'command-not-allowed', error.message, key.name);
    throw error;
  }
}
