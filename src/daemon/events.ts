import type {EndReason} from './runner.js';
/** Everything the daemon reports: logged one line each, kept in a bounded history, counted. */
export type SidecarEventBody =
  | {type: 'started'; version: string; pid: number; config: string; bind: string}
  | {type: 'listening'; address: string; port: number}
  | {type: 'bind-waiting'; address: string; error: string; retryInMs: number}
  | {type: 'bind-failed'; address: string; error: string}
  | {type: 'bind-closed'; address: string}
  | {type: 'control-socket'; path: string; error?: string}
  /** Messages to systemd (a Type=notify unit): the helper that sends them, or why none can go. */
  | {type: 'systemd-notify'; helper?: string; pid?: number; watchdogMs?: number; error?: string}
  | {type: 'metrics'; address: string; state: 'listening' | 'failed' | 'closed'; port?: number; error?: string}
  | {type: 'spawner'; spawner: 'dffs-spawn' | 'node' | 'command-runner' | 'none'; path?: string; pid?: number; reason?: string}
  | {type: 'internal-error'; where: string; error: string}
  | {type: 'request-refused'; remote: string; status: number; reason: RefusalReason; message: string; key?: string}
  | {type: 'secret-weak'; key: string; message: string}
  | {
      type: 'request-accepted';
      jobId: string;
      remote: string;
      /** The name of the key that signed it. */
      key: string;
      command: string;
      wait: boolean;
      workdir?: string;
      envKeys: string[];
      callback?: string;
      timeoutSeconds: number;
    }
  | {type: 'command-queued'; jobId: string; queued: number}
  | {type: 'command-started'; jobId: string; pid: number}
  | {
      type: 'command-finished';
      jobId: string;
      exitCode: number | null;
      signal: string | null;
      timedOut: boolean;
      durationMs: number;
      stdoutBytes: number;
      stderrBytes: number;
      truncated: boolean;
      error?: string;
      ended?: EndReason;
    }
  | {type: 'job-cancel'; jobId: string; by: string; state: 'queued' | 'running'}
  | {type: 'callback-delivered'; jobId: string; attempt: number; status: number; durationMs: number}
  | {type: 'callback-failed'; jobId: string; attempt: number; error: string; retryInMs?: number}
  | {type: 'config-reloaded'; changed: string[]}
  | {type: 'reload-failed'; error: string}
  | {type: 'stopping'; running: number; queued: number; drainSeconds: number}
  | {type: 'commands-abandoned'; jobIds: string[]; commands: string[]}
  | {type: 'commands-lost'; jobIds: string[]; commands: string[]; pids: number[]}
  | {type: 'replay-journal-failed'; error: string}
  | {type: 'stopped'};

export type RefusalReason =
  | 'missing-header'
  | 'malformed-header'
  | 'bad-signature'
  | 'stale-timestamp'
  | 'replayed-nonce'
  | 'no-secret'
  | 'bad-request'
  | 'body-too-large'
  | 'body-budget'
  | 'too-many-connections'
  | 'replay-cache-full'
  | 'busy'
  | 'shutting-down'
  | 'not-found'
  | 'method-not-allowed'
  | 'source-not-allowed'
  | 'command-not-allowed'
  | 'job-not-found'
  | 'job-finished'
  | 'too-many-followers';

export type EventLevel = 'info' | 'warn' | 'error';
export type SidecarEvent = SidecarEventBody & {time: number; level: EventLevel};

const LEVELS: Partial<Record<SidecarEventBody['type'], EventLevel>> = {
  'bind-waiting': 'warn',
  'bind-failed': 'error',
  'request-refused': 'warn',
  'secret-weak': 'warn',
  'callback-failed': 'warn',
  'reload-failed': 'error',
  'commands-abandoned': 'error',
  'commands-lost': 'error',
  'replay-journal-failed': 'error',
  'internal-error': 'error',
};

export function levelOf(event: SidecarEventBody): EventLevel {
  if (event.type === 'command-finished' && (event.timedOut || event.error || event.ended)) return 'warn';
  if (event.type === 'callback-failed' && event.retryInMs === undefined) return 'error';
  if (event.type === 'control-socket' && event.error) return 'warn';
  if (event.type === 'systemd-notify' && event.error) return 'error';
  if (event.type === 'metrics' && event.state === 'failed') return 'warn';
  if (event.type === 'spawner' && event.reason) return 'warn';
  return LEVELS[event.type] ?? 'info';
}

export type EventListener = (event: SidecarEvent) => void;

/** Events that come with requests: however many of them come, they do not push the daemon's own out of the history. */
const REQUEST_EVENT_TYPES: ReadonlySet<SidecarEventBody['type']> = new Set([
  'request-refused',
  'request-accepted',
  'command-queued',
  'command-started',
  'command-finished',
  'callback-delivered',
  'callback-failed',
  'job-cancel',
]);

/** The last `size` events put in, each with its number in the order of emission. */
class EventRing {
  readonly #events: SidecarEvent[] = [];
  readonly #numbers: number[] = [];
  #start = 0;

  constructor(readonly size: number) {}

  put(event: SidecarEvent, number: number): void {
    if (this.#events.length < this.size) {
      this.#events.push(event);
      this.#numbers.push(number);
    } else {
      this.#events[this.#start] = event;
      this.#numbers[this.#start] = number;
      this.#start = (this.#start + 1) % this.size;
    }
  }

  /** Oldest first. */
  entries(): {event: SidecarEvent; number: number}[] {
    const count = this.#events.length;
    return Array.from({length: count}, (_, offset) => {
      const index = (this.#start + offset) % count;
      return {event: this.#events[index], number: this.#numbers[index]};
    });
  }
}

/**
 * An in-process event bus with a bounded history of recent events: the last `historySize` of
 * requests and commands, and apart from them the last `daemonHistorySize` of the daemon's own
 * (start, binds, reloads, spawner, stop), which `secret rotate` and the dashboard look for there
 * whatever the traffic.
 */
export class EventBus {
  readonly #listeners = new Set<EventListener>();
  readonly #requestHistory: EventRing;
  readonly #daemonHistory: EventRing;
  #emitted = 0;

  constructor(historySize = 1000, daemonHistorySize = 200) {
    this.#requestHistory = new EventRing(historySize);
    this.#daemonHistory = new EventRing(daemonHistorySize);
  }

  emit(body: SidecarEventBody): SidecarEvent {
    // time, level and type first: the log writes the JSON of an event with those three rewritten.
    const event = {time: Date.now(), level: levelOf(body), ...body} as SidecarEvent;
    (REQUEST_EVENT_TYPES.has(event.type) ? this.#requestHistory : this.#daemonHistory).put(event, this.#emitted++);
    for (const listener of this.#listeners) listener(event);
    return event;
  }

  subscribe(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Recent events, oldest first. */
  history(): SidecarEvent[] {
    return [...this.#requestHistory.entries(), ...this.#daemonHistory.entries()].sort((a, b) => a.number - b.number).map((entry) => entry.event);
  }
}

export interface Counters {
  requests: number;
  accepted: number;
  succeeded: number;
  failed: number;
  timedOut: number;
  cancelled: number;
  refused: number;
  refusedByReason: Partial<Record<RefusalReason, number>>;
  callbacksDelivered: number;
  callbacksFailed: number;
}

export function emptyCounters(): Counters {
  return {
    requests: 0,
    accepted: 0,
    succeeded: 0,
    failed: 0,
    timedOut: 0,
    cancelled: 0,
    refused: 0,
    refusedByReason: {},
    callbacksDelivered: 0,
    callbacksFailed: 0,
  };
}

/** Folds one event into the counters; the single place that defines what each counter means. */
export function countEvent(counters: Counters, event: SidecarEventBody): void {
  switch (event.type) {
    case 'request-accepted':
      counters.requests++;
      counters.accepted++;
      break;
    case 'request-refused':
      counters.requests++;
      counters.refused++;
      counters.refusedByReason[event.reason] = (counters.refusedByReason[event.reason] ?? 0) + 1;
      break;
    case 'command-finished':
      if (event.ended === 'cancelled') counters.cancelled++;
      else if (event.timedOut) counters.timedOut++;
      else if (event.exitCode === 0) counters.succeeded++;
      else counters.failed++;
      break;
    case 'callback-delivered':
      counters.callbacksDelivered++;
      break;
    case 'callback-failed':
      if (event.retryInMs === undefined) counters.callbacksFailed++;
      break;
    default:
      break;
  }
}
