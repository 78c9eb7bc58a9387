import {funcJson} from '../protocol/func-json.js';
import {http, https} from '../common/node-builtins.js';
import {signRequest} from '../protocol/signature.js';
import {UserError} from '../common/user-error.js';
import {oneLine} from '../common/printable.js';

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

/** Sends a signed `POST /shell` exactly as DataFlux Func does, and reads the JSON reply. `ca`: PEM of a private CA for https:// URLs. */
export async function sendShell(baseUrl: string, secretKey: string, request: ExecRequest, ca?: Buffer): Promise<ExecReply> {
  const body = execBody(request);
  let reply: {status: number; text: string};
  try {
    reply = await send(`${baseUrl}/shell`, 'POST', {'Content-Type': 'application/json', ...signRequest(secretKey, 'POST', '/shell', body)}, body, ca);
  } catch (error) {
    throw unreachable(baseUrl, error);
  }
  return parseReply(baseUrl, reply);
}

/** A request to the sidecar, its reply read whole. */
export function send(url: string, method: string, headers: Record<string, string>, body: string, ca: Buffer | undefined): Promise<{status: number; text: string}> {
  const secure = url.startsWith('https:');
  const request = secure ? https().request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(url, {method, headers: {...headers, ...(body ? {'Content-Length': String(Buffer.byteLength(body))} : {})}, ...(secure && ca ? {ca} : {})}, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8')}));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The error for a sidecar that cannot be reached, with what to check. */
export function unreachable(baseUrl: string, error: unknown): ExecError {
  const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  const hint = /CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS/.test(code)
    ? ': the certificate is not trusted; give its CA with --ca (or DFFS_CA)'
    : ': is it running? Try: sudo systemctl status dataflux-func-sidecar';
  return new ExecError(`cannot reach the sidecar at ${baseUrl} (${code})${hint}`, 69);
}

/** A reply as the sidecar's JSON, or an error saying what came instead. */
export function parseReply(baseUrl: string, reply: {status: number; text: string}): ExecReply {
  try {
    return {status: reply.status, body: JSON.parse(reply.text) as ExecReply['body']};
  } catch {
    throw new ExecError(`${baseUrl} answered HTTP ${reply.status} with something that is not the sidecar's JSON: ${oneLine(reply.text.slice(0, 200))}`, 69);
  }
}
