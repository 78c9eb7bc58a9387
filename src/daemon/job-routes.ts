// The job endpoints, signed exactly as POST /shell is (method and path in the string to sign, an
// empty body): GET /jobs, GET /jobs/{id}, GET /jobs/{id}/output[?follow=1], DELETE /jobs/{id}.
// A key with an allow list sees only the jobs it started; a key that may run anything sees all.
import type {IncomingMessage, ServerResponse} from 'node:http';
import type {AcceptedKey} from '../config.js';
import {readRecord, type JobRecord, type JobState, type JobStore} from './jobs.js';
import {sendJson} from './reply.js';

export type JobRoute =
  | {kind: 'list'}
  | {kind: 'show'; id: string}
  | {kind: 'output'; id: string}
  | {kind: 'cancel'; id: string};

const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** A follower this far behind is dropped, not buffered without end. */
const SLOW_FOLLOWER_BYTES = 4 * 1024 * 1024;
const LIST_LIMIT_MAX = 1000;
const JOB_STATES: readonly JobState[] = ['queued', 'running', 'succeeded', 'failed', 'timed-out', 'cancelled', 'spawner-stopped'];

export class RouteMismatch {
  constructor(
    readonly status: 404 | 405,
    readonly message: string,
    readonly allow?: string,
  ) {}
}

/** The job route a method and path name, a RouteMismatch, or undefined when the path is not under /jobs. */
export function jobRoute(method: string, path: string): JobRoute | RouteMismatch | undefined {
  if (path !== '/jobs' && !path.startsWith('/jobs/')) return undefined;
  const [, , id, tail, ...more] = path.split('/');
  if (id === undefined) return method === 'GET' ? {kind: 'list'} : new RouteMismatch(405, `${method} is not allowed on /jobs: use GET`, 'GET');
  if (!JOB_ID.test(id) || more.length > 0 || (tail !== undefined && tail !== 'output')) {
    return new RouteMismatch(404, `no such path ${path.slice(0, 200)}: jobs are /jobs/{id} and /jobs/{id}/output`);
  }
  if (tail === 'output') return method === 'GET' ? {kind: 'output', id} : new RouteMismatch(405, `${method} is not allowed on a job's output: use GET`, 'GET');
  if (method === 'GET') return {kind: 'show', id};
  if (method === 'DELETE') return {kind: 'cancel', id};
  return new RouteMismatch(405, `${method} is not allowed on a job: use GET, or DELETE to cancel it`, 'GET, DELETE');
}

/** Whether a key may see and cancel a job: its own, or any for a key that may run anything. */
export function keySees(key: AcceptedKey, record: JobRecord): boolean {
  return key.policy?.allow === undefined || record.job.key === key.name;
}

/** GET /jobs: the newest first, those the key sees, filtered by ?state= and ?key=, at most ?limit= (default 100). */
export function listJobs(res: ServerResponse, store: JobStore, key: AcceptedKey, query: URLSearchParams): void {
  const states = query.getAll('state').flatMap((value) => value.split(','));
  const unknown = states.find((state) => !JOB_STATES.includes(state as JobState));
  if (unknown !== undefined) {
    sendJson(res, 400, {ok: false, message: `unknown state ${unknown.slice(0, 40)}: use ${JOB_STATES.join(', ')}`, reason: 'bad-request'});
    return;
  }
  const limit = Math.min(Number(query.get('limit') ?? 100) || 100, LIST_LIMIT_MAX);
  const keyName = query.get('key');
  const jobs = [];
  for (const record of store.list()) {
    if (jobs.length >= limit) break;
    if (!keySees(key, record)) continue;
    if (states.length > 0 && !states.includes(record.state)) continue;
    if (keyName !== null && record.job.key !== keyName) continue;
    jobs.push(record.view());
  }
  sendJson(res, 200, {ok: true, message: '', data: {jobs}});
}

/**
 * GET /jobs/{id}/output: newline-delimited JSON, chunked. What the record keeps of each stream
 * ({"stream", "data"} lines, with a {"skipped"} line where the middle of a long output is not
 * kept), then, with ?follow=1 and while the job runs, each piece as it comes; the last line is
 * {"result": the record}.
 */
export function streamOutput(req: IncomingMessage, res: ServerResponse, record: JobRecord, follow: boolean): void {
  res.writeHead(200, {'Content-Type': 'application/x-ndjson; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff'});
  let unfollow: (() => void) | undefined;
  unfollow = readRecord(record, follow, (event) => {
    if (res.writableLength > SLOW_FOLLOWER_BYTES) {
      unfollow?.();
      res.destroy();
      return;
    }
    res.write(`${JSON.stringify(event)}\n`);
    if ('result' in event) res.end();
  });
  req.socket.once('close', () => unfollow?.());
}
