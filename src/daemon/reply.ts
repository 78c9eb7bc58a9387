// The replies of the HTTP interface: JSON, written whole or, for long command output, in pieces.
import type {ServerResponse} from 'node:http';
import {isShortString, JsonBody} from './json-body.js';
import type {CommandResult} from './runner.js';

export function sendJson(res: ServerResponse, status: number, body: unknown, extraHeaders: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...extraHeaders,
  });
  res.end(text);
}

/** A 200 reply with a long command output, escaped and written in pieces. */
export function sendJsonBody(res: ServerResponse, body: JsonBody): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(200, {'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.byteLength});
  // The headers are out: a reply that cannot be finished can only be cut short.
  body.writeTo(res).then(
    () => res.end(),
    (error: unknown) => res.destroy(error as Error),
  );
}

/** The answer to a request that waited for its command. */
export function replyWithResult(res: ServerResponse, jobId: string, result: CommandResult): void {
  if (result.error) {
    sendJson(res, 500, {ok: false, message: result.error, data: {jobId}});
    return;
  }
  const {stdout, stderr, exitCode, signal, timedOut, truncated, durationMs, ended} = result;
  const outcome = {exitCode, signal, timedOut, truncated, durationMs, ...(ended ? {ended} : {}), jobId};
  // Most output is short: one JSON.stringify, as for any other reply, in the same write as the headers.
  if (isShortString(stdout) && isShortString(stderr)) {
    sendJson(res, 200, {ok: true, message: '', data: {stdout, stderr, ...outcome}});
    return;
  }
  const rest = JSON.stringify(outcome).slice(1);
  sendJsonBody(res, new JsonBody(['{"ok":true,"message":"","data":{"stdout":', {string: stdout}, ',"stderr":', {string: stderr}, `,${rest}}`]));
}
