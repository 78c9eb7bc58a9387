import type {SidecarEvent} from './events.js';

function plainValue(value: unknown): string {
  if (typeof value === 'string') {
    // Quoting escapes newlines and control characters, so one event is always one line.
    return /^[\w./:@+-]+$/.test(value) ? value : JSON.stringify(value);
  }
  return JSON.stringify(value);
}

/** One line for an event: JSON for the journal and pipes, `key=value` text for a terminal. */
export function formatEvent(event: SidecarEvent, json: boolean): string {
  const {time, level, type, ...fields} = event;
  const iso = new Date(time).toISOString();
  if (json) return JSON.stringify({time: iso, level, event: type, ...fields});
  const rest = Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${plainValue(value)}`)
    .join(' ');
  return `${iso} ${level.toUpperCase().padEnd(5)} ${type}${rest ? ` ${rest}` : ''}`;
}
