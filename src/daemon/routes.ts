// Stage 2 of a request: its route. The greeting (GET or HEAD /, no signature), POST /shell, the
// job endpoints under /jobs; a request from outside ALLOW_FROM, or to anything else, is refused
// before its body is read.
import type {IncomingMessage, ServerResponse} from 'node:http';
import {greeting} from '../protocol/version.js';
import {jobRoute, RouteMismatch, type JobRoute} from './job-routes.js';
import {Refusal} from './refusal.js';

export const SHELL_PATH = '/shell';

export type Route = {kind: 'greeting'} | {kind: 'shell'} | {kind: 'job'; job: JobRoute; path: string; query: URLSearchParams} | {kind: 'refused'; refusal: Refusal; headers?: Record<string, string>};

export function route(req: IncomingMessage): Route {
  const [path, query] = (req.url ?? '/').split('?', 2);
  if (path === '/') {
    if (req.method === 'GET' || req.method === 'HEAD') return {kind: 'greeting'};
    return {kind: 'refused', refusal: new Refusal(405, 'method-not-allowed', `${req.method} is not allowed on /: use GET`), headers: {Allow: 'GET, HEAD'}};
  }
  const job = jobRoute(req.method ?? '', path);
  if (job instanceof RouteMismatch) {
    return {kind: 'refused', refusal: new Refusal(job.status, job.status === 404 ? 'not-found' : 'method-not-allowed', job.message), ...(job.allow ? {headers: {Allow: job.allow}} : {})};
  }
  if (job) return {kind: 'job', job, path, query: new URLSearchParams(query)};
  if (path !== SHELL_PATH) return {kind: 'refused', refusal: new Refusal(404, 'not-found', `no such path ${path.slice(0, 200)}: commands go to POST /shell, jobs are under /jobs`)};
  if (req.method !== 'POST') return {kind: 'refused', refusal: new Refusal(405, 'method-not-allowed', `${req.method} is not allowed on /shell: use POST`), headers: {Allow: 'POST'}};
  return {kind: 'shell'};
}

/** A request from an address outside ALLOW_FROM, refused before anything else is looked at. */
export function sourceRefusal(allowsSource: ((address: string) => boolean) | undefined, req: IncomingMessage): Refusal | undefined {
  const remote = req.socket.remoteAddress ?? '';
  if (!allowsSource || allowsSource(remote)) return undefined;
  // The config's path is for the log, not for a client from outside.
  return new Refusal(403, 'source-not-allowed', `requests from ${remote} are not allowed: the sidecar's ALLOW_FROM does not cover it`);
}

export function answerGreeting(req: IncomingMessage, res: ServerResponse): void {
  const text = greeting();
  res.writeHead(200, {'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text)});
  res.end(req.method === 'HEAD' ? undefined : text);
}

/**
 * Why a request that waits for `100 Continue` is refused before it sends its body: its source, its
 * route, or what `checkHeaders` (authenticate.ts) throws; undefined when it may send it.
 */
export function refusalBeforeBody(req: IncomingMessage, allowsSource: ((address: string) => boolean) | undefined, checkHeaders: () => void): {refusal: Refusal; headers?: Record<string, string>} | undefined {
  const source = sourceRefusal(allowsSource, req);
  if (source) return {refusal: source};
  const routed = route(req);
  if (routed.kind === 'refused') return routed;
  if (routed.kind === 'greeting') return undefined;
  try {
    checkHeaders();
  } catch (error) {
    if (error instanceof Refusal) return {refusal: error};
    throw error;
  }
  return undefined;
}
