import type {SidecarEvent} from './events.js';
import {isoTime} from './iso-time.js';

function plainValue(value: unknown): string {
  if (typeof value === 'string') {
    // Quoting escapes newlines and control characters, so one event is always one line.
    return /^[\w./:@+-]+$/.test(value) ? value : JSON.stringify(value);
  }
  return JSON.stringify(value);
}

/** An event's own fields as `key=value` text (values quoted when they need it). */
export function formatFields(event: SidecarEvent): string {
  const {time: _time, level: _level, type: _type, ...fields} = event;
  return Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${plainValue(value)}`)
    .join(' ');
}

/** One line for an event: JSON for the journal and pipes, `key=value` text for a terminal. */
export function formatEvent(event: SidecarEvent, json: boolean): string {
  const {time, level, type, ...fields} = event;
  const iso = isoTime(time);
  if (json) return JSON.stringify({time: iso, level, event: type, ...fields});
  const rest = formatFields(event);
  return `${iso} ${level.toUpperCase().padEnd(5)} ${type}${rest ? ` ${rest}` : ''}`;
}

/**
 * Writes events as log lines on the next turn of the event loop, all of that turn in one write:
 * formatting and writing stay off the path of a command's latency. What waits is written by
 * flush(), which serve calls once the daemon has stopped; a crash loses at most that turn's lines.
 */
export class EventLog {
  #pending: SidecarEvent[] = [];
  #scheduled = false;

  constructor(
    private readonly json: boolean,
    private readonly write: (text: string) => void,
  ) {}

  readonly add = (event: SidecarEvent): void => {
    this.#pending.push(event);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.flush());
  };

  flush(): void {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const text = this.#pending.map((event) => `${formatEvent(event, this.json)}\n`).join('');
    this.#pending = [];
    this.write(text);
  }
}
