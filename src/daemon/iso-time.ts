const two = (value: number): string => String(value).padStart(2, '0');

/**
 * A time as Date#toISOString writes it (years 0 to 9999), for log lines and status. Written out
 * because toISOString's first call maps almost 1 MB more of the node binary into the daemon, which
 * nothing else it does at idle needs (bench/results/2026-11-30.md).
 */
export function isoTime(milliseconds: number): string {
  const date = new Date(milliseconds);
  const day = `${String(date.getUTCFullYear()).padStart(4, '0')}-${two(date.getUTCMonth() + 1)}-${two(date.getUTCDate())}`;
  return `${day}T${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())}.${String(date.getUTCMilliseconds()).padStart(3, '0')}Z`;
}
