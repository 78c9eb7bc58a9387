// The job endpoints, signed exactly as POST /shell is (method and path in the string to sign, an
// empty body): GET /jobs, GET /jobs/{id}, GET /jobs/{id}/output[?follow=1], DELETE /jobs/{id}.
// A key with an allow list sees only the jobs it started; a key that may run anything sees all.
import type {ServerResponse} from 'node:http';
import type {Socket} from 'node:net';
import type {AcceptedKey} from '../config/config.js';
import type {JobRecord, JobStore} from './jobs.js';
import {drainedOrClosed} from '../common/drained.js';
import {readRecord} from './output-reader.js';
import type {CancelOutcome} from './job-queue.js';
import {Refusal} from './refusal.js';
import {sendJson} from './reply.js';
import {JOB_ID, type JobState} from '../protocol/job-record.js';

export type JobRoute =
  | {kind: 'list'}
  | {kind: 'show'; id: string}
  | {kind: 'output'; id: string}
  | {kind: 'cancel'; id: string};

/**
 * Connections reading jobs' output, all keys together and per key: a follower is held open as long
 * as its job runs, and each holds a piece of output and what it has not read of the live output.
 * Well under MAX_CONNECTIONS, so that readers never keep Func's requests out.
 */
export const FOLLOWERS_MAX = 256;
export const FOLLOWERS_PER_KEY_MAX = 32;
const LIST_LIMIT_MAX = 1000;
/** A command in a list is cut to this: GET /jobs/{id} has it (up to what the record keeps). */
const LIST_COMMAND_CHARS = 256;
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

/** The places for followers of running jobs' output, counted per key. */
export class FollowerSlots {
  readonly #byKey = new Map<string, number>();
  #total = 0;

  /** Why a key may not follow one more job now; undefined when it may. */
  refusal(key: string): string | undefined {
    if (this.#total >= FOLLOWERS_MAX) return `${FOLLOWERS_MAX} connections already follow jobs' output; try again later`;
    if ((this.#byKey.get(key) ?? 0) >= FOLLOWERS_PER_KEY_MAX) return `key "${key}" already follows ${FOLLOWERS_PER_KEY_MAX} jobs' output; close one first`;
    return undefined;
  }

  /** Takes a place; returns its release, which may be called more than once. */
  take(key: string): () => void {
    this.#total++;
    this.#byKey.set(key, (this.#byKey.get(key) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#total--;
      const left = (this.#byKey.get(key) ?? 1) - 1;
      if (left === 0) this.#byKey.delete(key);
      else this.#byKey.set(key, left);
    };
  }
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
  const limitText = query.get('limit') ?? '100';
  if (!/^\d{1,7}$/.test(limitText) || Number(limitText) < 1) {
    sendJson(res, 400, {ok: false, message: `limit must be a whole number from 1 to ${LIST_LIMIT_MAX}`, reason: 'bad-request'});
    return;
  }
  const limit = Math.min(Number(limitText), LIST_LIMIT_MAX);
  const keyName = query.get('key');
  const jobs = [];
  for (const record of store.list()) {
    if (jobs.length >= limit) break;
    if (!keySees(key, record)) continue;
    if (states.length > 0 && !states.includes(record.state)) continue;
    if (keyName !== null && record.job.key !== keyName) continue;
    const view = record.view();
    if (view.command.length > LIST_COMMAND_CHARS) {
      view.commandLength = view.commandLength ?? view.command.length;
      view.command = view.command.slice(0, LIST_COMMAND_CHARS);
    }
    jobs.push(view);
  }
  sendJson(res, 200, {ok: true, message: '', data: {jobs}});
}

/** The readers' ends to call when a connection closes: one listener per connection, however many answers wait on it. */
const readersByConnection = new WeakMap<Socket, Set<() => void>>();

function endWithConnection(connection: Socket, ended: () => void): void {
  const known = readersByConnection.get(connection);
  if (known) {
    known.add(ended);
    return;
  }
  const readers = new Set([ended]);
  readersByConnection.set(connection, readers);
  connection.once('close', () => {
    for (const end of readers) end();
  });
}

/**
 * GET /jobs/{id}/output: newline-delimited JSON, chunked, as output-reader.ts reads it: {"stream",
 * "data"} lines, {"skipped"} where output was not kept or a follower fell behind, and last
 * {"result": the record}. `release` gives back the reader's place when the answer ends.
 */
export function streamOutput(res: ServerResponse, record: JobRecord, follow: boolean, release: () => void, onError: (error: unknown) => void): void {
  res.writeHead(200, {'Content-Type': 'application/x-ndjson; charset=utf-8', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff'});
  // A silent job's follower sees the answer begin at once, not at the first line.
  res.flushHeaders();
  // Registered first: a reader's place comes back however its answer ends, a throw included. A
  // pipelined request's answer waits behind the one before it and never sees 'close' if the
  // connection goes first: the connection's own close ends it too.
  let stop = () => {};
  let done = false;
  const connection = res.req.socket;
  const ended = () => {
    if (done) return;
    done = true;
    res.off('close', ended);
    readersByConnection.get(connection)?.delete(ended);
    stop();
    release();
  };
  res.once('close', ended);
  if (connection.destroyed) {
    ended();
    return;
  }
  endWithConnection(connection, ended);
  stop = readRecord(
    record,
    follow,
    {
      write: (event) => {
        const room = res.write(`${JSON.stringify(event)}\n`);
        if ('result' in event) res.end();
        return room;
      },
      drained: () => drainedOrClosed(res),
      get closed() {
        return res.destroyed || res.writableEnded;
      },
    },
    (error) => {
      onError(error);
      res.destroy();
    },
  );
}

export interface JobRouteContext {
  jobs: JobStore;
  followers: FollowerSlots;
  cancel(id: string, by: string): CancelOutcome;
  reportInternalError(where: string, error: unknown): void;
}

/** A verified request under /jobs: the body must be empty; a job the key may not see is not found, as an unknown one. */
export function answerJob(res: ServerResponse, request: string, job: JobRoute, key: AcceptedKey, body: Buffer, query: URLSearchParams, context: JobRouteContext): void {
  if (body.length > 0) throw new Refusal(400, 'bad-request', `${request} takes no body: sign it with an empty one`, key.name);
  if (job.kind === 'list') {
    listJobs(res, context.jobs, key, query);
    return;
  }
  const record = context.jobs.get(job.id);
  if (!record || !keySees(key, record)) throw new Refusal(404, 'job-not-found', `no job ${job.id}: it is unknown, another key's, or older than the records kept (JOB_HISTORY)`, key.name);
  if (job.kind === 'show') sendJson(res, 200, {ok: true, message: '', data: record.view()});
  else if (job.kind === 'output') {
    // Every reader takes a place, following or not: each holds its connection while it is written.
    const full = context.followers.refusal(key.name);
    if (full) throw new Refusal(429, 'too-many-followers', full, key.name);
    const follow = query.get('follow') === '1' || query.get('follow') === 'true';
    streamOutput(res, record, follow, context.followers.take(key.name), (error) => context.reportInternalError('job output', error));
  } else if (context.cancel(job.id, key.name) === 'finished') {
    throw new Refusal(409, 'job-finished', `job ${job.id} has already ended or is ending (${record.state}): there is nothing to cancel`, key.name);
  } else sendJson(res, 202, {ok: true, message: `job ${job.id} is being cancelled`, data: record.view()});
}
