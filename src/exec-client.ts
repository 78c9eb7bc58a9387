import {funcJson} from './func-json.js';
import {signRequest} from './signature.js';
import {UserError} from './user-error.js';

export interface ExecRequest {
  command: string;
  wait: boolean;
  workdir?: string;
  envs?: string[];
  callbackURL?: string;
  timeout?: number;
}

export interface ExecReply {
  status: number;
  body: {ok: boolean; message: string; reason?: string; data?: Record<string, unknown>};
}

export class ExecError extends UserError {}

/** The body Func's client would send for these options, in its field order and encoding. */
export function execBody(request: ExecRequest): string {
  return funcJson({
    command: request.command,
    wait: request.wait,
    ...(request.workdir === undefined ? {} : {workdir: request.workdir}),
    ...(request.envs === undefined ? {} : {envs: request.envs}),
    ...(request.callbackURL === undefined ? {} : {callbackURL: request.callbackURL}),
    ...(request.timeout === undefined ? {} : {timeout: request.timeout}),
  });
}

/** Sends a signed `POST /shell` exactly as DataFlux Func does, and reads the JSON reply. */
export async function sendShell(baseUrl: string, secretKey: string, request: ExecRequest): Promise<ExecReply> {
  const body = execBody(request);
  let res: Response;
  try {
    res = await fetch(`${baseUrl}/shell`, {
      method: 'POST',
      headers: {'Content-Type': 'application/json', ...signRequest(secretKey, 'POST', '/shell', body)},
      body,
    });
  } catch (error) {
    const cause = (error as {cause?: NodeJS.ErrnoException}).cause;
    throw new ExecError(
      `cannot reach the sidecar at ${baseUrl} (${cause?.code ?? (error as Error).message}): is it running? Try: sudo systemctl status dataflux-func-sidecar`,
      69,
    );
  }
  const text = await res.text();
  try {
    return {status: res.status, body: JSON.parse(text) as ExecReply['body']};
  } catch {
    throw new ExecError(`${baseUrl} answered HTTP ${res.status} with something that is not the sidecar's JSON: ${text.slice(0, 200)}`, 69);
  }
}

/** The process exit code that stands for a command's result, as a shell would report it. */
export function exitCodeOf(data: Record<string, unknown>): number {
  if (data.timedOut === true) return 124;
  if (typeof data.exitCode === 'number') return data.exitCode;
  const signals: Record<string, number> = {SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15};
  return 128 + (signals[String(data.signal)] ?? 0);
}
