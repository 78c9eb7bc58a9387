// The job endpoints from the client's side: list, show, cancel, and the output followed as it comes.
import {ExecError, parseReply, send, unreachable, type ExecReply} from './exec-client.js';
import {LineBuffer} from '../common/line-buffer.js';
import {http, https} from '../common/node-builtins.js';
import {signRequest} from '../protocol/signature.js';
import type {SidecarTarget} from './target.js';
import type {JobRecordView, OutputStream} from '../protocol/job-record.js';
import {oneLine} from '../common/printable.js';

/** A signed GET or DELETE under /jobs (an empty body; the query is not signed, as Func signs the path only). */
export async function jobsRequest(target: SidecarTarget, method: 'GET' | 'DELETE', path: string, query = ''): Promise<ExecReply> {
  let reply;
  try {
    reply = await send(`${target.baseUrl}${path}${query ? `?${query}` : ''}`, method, signRequest(target.secretKey, method, path, ''), '', target.ca);
  } catch (error) {
    throw unreachable(target.baseUrl, error);
  }
  return parseReply(target.baseUrl, reply);
}

/** The reply's data, or an error carrying the sidecar's message and an exit code for it. */
export function dataOf<T>(reply: ExecReply, what: string): T {
  if (reply.status >= 200 && reply.status < 300 && reply.body.ok) return reply.body.data as T;
  const hint = reply.status === 401 ? ' (is the key right? see sudo dffs-ctl secret show)' : '';
  const exit = reply.status === 401 ? 77 : reply.status === 404 ? 66 : 1;
  throw new ExecError(`${what}: HTTP ${reply.status}: ${oneLine(String(reply.body.message))}${hint}`, exit);
}

export interface JobFilter {
  state?: string[];
  key?: string;
  limit?: number;
}

export async function listJobs(target: SidecarTarget, filter: JobFilter = {}): Promise<JobRecordView[]> {
  const query = new URLSearchParams();
  for (const state of filter.state ?? []) query.append('state', state);
  if (filter.key) query.set('key', filter.key);
  if (filter.limit) query.set('limit', String(filter.limit));
  return dataOf<{jobs: JobRecordView[]}>(await jobsRequest(target, 'GET', '/jobs', query.toString()), 'cannot list the jobs').jobs;
}

export async function showJob(target: SidecarTarget, id: string): Promise<JobRecordView> {
  return dataOf<JobRecordView>(await jobsRequest(target, 'GET', `/jobs/${id}`), `cannot show job ${id}`);
}

export async function cancelJob(target: SidecarTarget, id: string): Promise<JobRecordView> {
  return dataOf<JobRecordView>(await jobsRequest(target, 'DELETE', `/jobs/${id}`), `cannot cancel job ${id}`);
}

export interface OutputHandlers {
  data(stream: OutputStream, text: string): void;
  /** The middle of a long output, which the sidecar did not keep. */
  skipped?(stream: OutputStream, bytes: number): void;
}

type OutputLine = {stream: OutputStream; data: string} | {skipped: {stream: OutputStream; bytes: number}} | {result: JobRecordView};

const isStream = (value: unknown): value is OutputStream => value === 'stdout' || value === 'stderr';

/** A line as the sidecar writes them: anything else (a stream it has not, a count that is no count) is refused. */
function isOutputLine(line: unknown): line is OutputLine {
  if (typeof line !== 'object' || line === null) return false;
  const fields = line as Record<string, unknown>;
  if ('result' in fields) return typeof fields.result === 'object' && fields.result !== null;
  if ('skipped' in fields) {
    const skipped = fields.skipped as Record<string, unknown> | null;
    return typeof skipped === 'object' && skipped !== null && isStream(skipped.stream) && Number.isSafeInteger(skipped.bytes) && (skipped.bytes as number) >= 0;
  }
  return isStream(fields.stream) && typeof fields.data === 'string';
}

/** GET /jobs/{id}/output: what is kept, then (follow) the rest as it comes; resolves with the final record. */
export function readOutput(target: SidecarTarget, id: string, follow: boolean, handlers: OutputHandlers, signal?: AbortSignal): Promise<JobRecordView> {
  const path = `/jobs/${id}/output`;
  const url = `${target.baseUrl}${path}${follow ? '?follow=1' : ''}`;
  const secure = url.startsWith('https:');
  const request = secure ? https().request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(url, {method: 'GET', headers: signRequest(target.secretKey, 'GET', path, ''), signal, ...(secure && target.ca ? {ca: target.ca} : {})}, (res) => {
      res.setEncoding('utf8');
      let buffered = '';
      let result: JobRecordView | undefined;
      if (res.statusCode !== 200) {
        res.on('data', (chunk: string) => (buffered += chunk));
        res.on('end', () => {
          try {
            dataOf(parseReply(target.baseUrl, {status: res.statusCode ?? 0, text: buffered}), `cannot read the output of job ${id}`);
          } catch (error) {
            reject(error);
          }
        });
        return;
      }
      const lines = new LineBuffer();
      res.on('data', (chunk: string) =>
        lines.push(chunk, (text) => {
          let line: unknown;
          try {
            line = JSON.parse(text) as unknown;
          } catch {
            req.destroy();
            reject(new ExecError(`${target.baseUrl} sent a line of job ${id}'s output that is not JSON: ${oneLine(text.slice(0, 200))}`, 69));
            return false;
          }
          if (!isOutputLine(line)) {
            req.destroy();
            reject(new ExecError(`${target.baseUrl} sent a line of job ${id}'s output that is not the sidecar's: ${oneLine(text.slice(0, 200))}`, 69));
            return false;
          }
          if ('result' in line) result = line.result;
          else if ('skipped' in line) handlers.skipped?.(line.skipped.stream, line.skipped.bytes);
          else handlers.data(line.stream, line.data);
        }),
      );
      res.on('end', () => (result ? resolve(result) : reject(new ExecError(`the sidecar closed the output of job ${id} before its end`, 69))));
      res.on('error', reject);
    });
    req.on('error', (error) => reject(signal?.aborted ? error : unreachable(target.baseUrl, error)));
    req.end();
  });
}
