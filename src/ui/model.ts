import {countEvent, emptyCounters, type Counters, type RefusalReason, type SidecarEvent} from '../daemon/events.js';
import type {ListenerStatus} from '../daemon/listeners.js';
import type {StateMessage, DaemonStatus} from '../protocol/control-messages.js';

export interface CallbackAttemptRow {
  attempt: number;
  ok: boolean;
  status?: number;
  error?: string;
  time: number;
}

/** One request as the table shows it. */
export interface RequestRow {
  id: string;
  time: number;
  remote: string;
  /** The name of the key that signed it, once known. */
  key?: string;
  command: string;
  wait?: boolean;
  state: 'queued' | 'running' | 'finished' | 'refused';
  workdir?: string;
  envKeys: string[];
  callback?: string;
  timeoutSeconds?: number;
  pid?: number;
  startedAt?: number;
  finishedAt?: number;
  durationMs?: number;
  exitCode?: number | null;
  signal?: string | null;
  timedOut?: boolean;
  truncated?: boolean;
  /** Why the daemon ended it, other than its timeout. */
  ended?: 'spawner-stopped' | 'cancelled';
  stdoutBytes?: number;
  stderrBytes?: number;
  error?: string;
  refusal?: {status: number; reason: RefusalReason; message: string};
  callbacks: CallbackAttemptRow[];
}

export const RATE_BUCKET_MS = 10_000;
export const RATE_BUCKETS = 30;
const MAX_ROWS = 500;

export interface DashboardState {
  connection: {connected: boolean; reason?: string};
  status?: Pick<DaemonStatus, 'version' | 'pid' | 'startedAt' | 'configPath' | 'secret'>;
  binds: ListenerStatus[];
  counters: Counters;
  running: number;
  queued: number;
  /** Newest first. */
  rows: RequestRow[];
  /** Requests per RATE_BUCKET_MS, keyed by bucket number (time / RATE_BUCKET_MS). */
  rate: Map<number, number>;
}

export function initialState(): DashboardState {
  return {connection: {connected: false, reason: 'connecting'}, binds: [], counters: emptyCounters(), running: 0, queued: 0, rows: [], rate: new Map()};
}

function updateRow(state: DashboardState, id: string, change: (row: RequestRow) => RequestRow): RequestRow[] {
  return state.rows.map((row) => (row.id === id ? change(row) : row));
}

function upsertBind(binds: ListenerStatus[], status: ListenerStatus): ListenerStatus[] {
  return binds.some((bind) => bind.address === status.address)
    ? binds.map((bind) => (bind.address === status.address ? {...bind, ...status} : bind))
    : [...binds, status];
}

function countRate(rate: Map<number, number>, time: number): Map<number, number> {
  const bucket = Math.floor(time / RATE_BUCKET_MS);
  const next = new Map([...rate].filter(([key]) => key > bucket - RATE_BUCKETS));
  next.set(bucket, (next.get(bucket) ?? 0) + 1);
  return next;
}

/** Folds one daemon event into the state. `live` is false while replaying the snapshot's history. */
export function applyEvent(state: DashboardState, event: SidecarEvent, live: boolean): DashboardState {
  let next = state;
  if (live) {
    const counters = structuredClone(state.counters);
    countEvent(counters, event);
    next = {...next, counters};
  }
  switch (event.type) {
    case 'request-accepted': {
      const row: RequestRow = {
        id: event.jobId,
        time: event.time,
        remote: event.remote,
        key: event.key,
        command: event.command,
        wait: event.wait,
        state: 'queued',
        ...(event.workdir ? {workdir: event.workdir} : {}),
        envKeys: event.envKeys,
        ...(event.callback ? {callback: event.callback} : {}),
        timeoutSeconds: event.timeoutSeconds,
        callbacks: [],
      };
      return {...next, rows: [row, ...next.rows].slice(0, MAX_ROWS), rate: countRate(next.rate, event.time)};
    }
    case 'request-refused': {
      const row: RequestRow = {
        id: `refused-${event.time}-${next.rows.length}`,
        time: event.time,
        remote: event.remote,
        ...(event.key ? {key: event.key} : {}),
        command: '',
        state: 'refused',
        envKeys: [],
        refusal: {status: event.status, reason: event.reason, message: event.message},
        callbacks: [],
      };
      return {...next, rows: [row, ...next.rows].slice(0, MAX_ROWS), rate: countRate(next.rate, event.time)};
    }
    case 'command-queued':
      return live ? {...next, queued: event.queued} : next;
    case 'command-started': {
      const wasQueued = next.rows.find((row) => row.id === event.jobId)?.state === 'queued' && next.queued > 0 && live;
      return {
        ...next,
        running: live ? next.running + 1 : next.running,
        queued: wasQueued ? next.queued - 1 : next.queued,
        rows: updateRow(next, event.jobId, (row) => ({...row, state: 'running', pid: event.pid, startedAt: event.time})),
      };
    }
    case 'command-finished': {
      const {type: _type, level: _level, jobId, time, ...outcome} = event;
      // A job cancelled in the queue never ran.
      const wasQueued = next.rows.find((row) => row.id === jobId)?.state === 'queued';
      return {
        ...next,
        running: live && !wasQueued ? Math.max(0, next.running - 1) : next.running,
        queued: live && wasQueued ? Math.max(0, next.queued - 1) : next.queued,
        rows: updateRow(next, jobId, (row) => ({...row, ...outcome, state: 'finished', finishedAt: time})),
      };
    }
    case 'callback-delivered':
    case 'callback-failed': {
      const attempt: CallbackAttemptRow =
        event.type === 'callback-delivered'
          ? {attempt: event.attempt, ok: true, status: event.status, time: event.time}
          : {attempt: event.attempt, ok: false, error: event.error, time: event.time};
      return {...next, rows: updateRow(next, event.jobId, (row) => ({...row, callbacks: [...row.callbacks, attempt]}))};
    }
    case 'listening':
      return {...next, binds: upsertBind(next.binds, {address: event.address, state: 'listening', port: event.port})};
    case 'bind-waiting':
      return {...next, binds: upsertBind(next.binds, {address: event.address, state: 'waiting', error: event.error})};
    case 'bind-failed':
      return {...next, binds: upsertBind(next.binds, {address: event.address, state: 'failed', error: event.error})};
    case 'bind-closed':
      return {...next, binds: next.binds.filter((bind) => bind.address !== event.address)};
    default:
      return next;
  }
}

/** Folds a control message: a snapshot starts over from the daemon's state; an event updates it. */
export function applyMessage(state: DashboardState, message: StateMessage): DashboardState {
  if (message.type === 'event') return applyEvent(state, message.event, true);
  const {status, history} = message;
  let next: DashboardState = {...initialState(), connection: {connected: true}};
  for (const event of history) next = applyEvent(next, event, false);
  return {
    ...next,
    status: {version: status.version, pid: status.pid, startedAt: status.startedAt, configPath: status.configPath, secret: status.secret},
    binds: status.bind,
    counters: status.counters,
    running: status.running.length,
    queued: status.queued,
  };
}

export function disconnected(state: DashboardState, reason: string): DashboardState {
  return {...state, connection: {connected: false, reason}};
}

/** The state column's text, readable without colour. */
export function rowStateText(row: RequestRow): string {
  switch (row.state) {
    case 'refused':
      return `refused: ${row.refusal?.reason ?? ''}`;
    case 'finished':
      if (row.ended) return row.ended === 'cancelled' ? 'cancelled' : 'spawner stopped';
      if (row.timedOut) return 'timed out';
      if (row.error) return 'error';
      return row.exitCode === null ? `killed ${row.signal ?? ''}`.trim() : `exit ${row.exitCode}`;
    default:
      return row.state;
  }
}

export function callbackText(row: RequestRow): string {
  if (!row.callback) return '-';
  const last = row.callbacks.at(-1);
  if (!last) return row.state === 'finished' ? 'sending' : 'pending';
  return last.ok ? `ok ${last.status}` : `fail #${last.attempt}`;
}

export function matchesFilter(row: RequestRow, filter: string): boolean {
  if (filter === '') return true;
  const needle = filter.toLowerCase();
  return [row.command, row.remote, rowStateText(row), row.id].some((text) => text.toLowerCase().includes(needle));
}

/** Requests per bucket for the last RATE_BUCKETS buckets, oldest first. */
export function rateSeries(rate: Map<number, number>, now: number): number[] {
  const last = Math.floor(now / RATE_BUCKET_MS);
  return Array.from({length: RATE_BUCKETS}, (_, index) => rate.get(last - RATE_BUCKETS + 1 + index) ?? 0);
}

const BARS = ' ▁▂▃▄▅▆▇█';

export function sparkline(values: number[]): string {
  const max = Math.max(...values, 1);
  return values.map((value) => BARS[Math.round((value / max) * (BARS.length - 1))]).join('');
}
