import {Chalk} from 'chalk';
import type {EventLevel, SidecarEvent} from '../daemon/events.js';
import {formatFields} from '../daemon/log.js';
import {oneLine} from '../common/printable.js';
import {SERVICE_NAME} from './paths.js';

export interface LogQuery {
  follow: boolean;
  lines: number;
  since?: string;
  refused: boolean;
  failed: boolean;
}

/** Journal patterns (PCRE2, on MESSAGE) for the filters, so that `-n` counts matching lines. */
const REFUSED = '"event":"request-refused"';
const FAILED =
  '"event":"(command-finished"(?=.*"exitCode":(?!0,))|callback-failed"(?!.*"retryInMs")|bind-failed"|reload-failed"|commands-abandoned"|commands-lost")';

export function journalArgs(query: LogQuery): string[] {
  const args = ['-u', SERVICE_NAME, '-o', 'json', '--no-pager', '-n', String(query.lines)];
  if (query.since) args.push('--since', query.since);
  const patterns = [...(query.refused ? [REFUSED] : []), ...(query.failed ? [FAILED] : [])];
  if (patterns.length > 0) args.push('--grep', patterns.length === 1 ? patterns[0] : `(${patterns.join('|')})`);
  if (query.follow) args.push('--follow');
  return args;
}

export interface LogEntry {
  /** ISO time the journal received the line. */
  time: string;
  /** The daemon's event, when the line is one. */
  event?: SidecarEvent;
  /** The text of any other line (systemd's own, or output that is not an event). */
  message?: string;
  pid?: number;
}

function messageText(message: unknown): string {
  // The journal gives non-UTF-8 or binary messages as byte arrays.
  return Array.isArray(message) ? Buffer.from(message as number[]).toString('utf8') : String(message ?? '');
}

/** One line of `journalctl -o json`. */
export function parseJournalLine(line: string): LogEntry | undefined {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const time = new Date(Number(record.__REALTIME_TIMESTAMP) / 1000).toISOString();
  const text = messageText(record.MESSAGE);
  const pid = record._PID ? Number(record._PID) : undefined;
  if (text.startsWith('{"time":')) {
    try {
      const {time: eventTime, event: type, ...fields} = JSON.parse(text) as Record<string, unknown>;
      const event = {...fields, type, time: Date.parse(String(eventTime))} as SidecarEvent;
      // Drawn as an event only when it is one in every part that is drawn.
      if (typeof type === 'string' && Number.isFinite(event.time) && Object.hasOwn(LEVEL_COLOURS, String(event.level))) return {time, event, ...(pid ? {pid} : {})};
    } catch {
      // Not one of ours after all: shown as text.
    }
  }
  return {time, message: text, ...(pid ? {pid} : {})};
}

const LEVEL_COLOURS: Record<EventLevel, 'green' | 'yellow' | 'red'> = {info: 'green', warn: 'yellow', error: 'red'};

/** A readable line: the event as `key=value` text, coloured by level when `colour` is on. */
export function renderEntry(entry: LogEntry, colour: boolean): string {
  const chalk = new Chalk({level: colour ? 1 : 0});
  if (!entry.event) return `${chalk.dim(entry.time)} ${oneLine(entry.message ?? '')}`;
  const {event} = entry;
  const level = chalk[LEVEL_COLOURS[event.level]](event.level.toUpperCase().padEnd(5));
  return `${chalk.dim(new Date(event.time).toISOString())} ${level} ${chalk.bold(oneLine(event.type))} ${formatFields(event)}`.trimEnd();
}
