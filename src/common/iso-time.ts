const two = (value: number): string => String(value).padStart(2, '0');

/** "00" to "59", and "000" to "999": made on the first call. */
let secondTexts: string[] | undefined;
let millisecondTexts: string[] | undefined;
/** The text up to the seconds of the minute last written: the daemon's times mostly fall in one. */
let minuteStart = Number.NaN;
let minuteText = '';

/**
 * A time as Date#toISOString writes it (years 0 to 9999), for log lines and status. Written out
 * because toISOString's first call maps almost 1 MB more of the node binary into the daemon, which
 * nothing else it does at idle needs (bench/results/2026-11-30.md). The minute's text is kept, so
 * that a log line's time costs one string, not a dozen.
 */
export function isoTime(milliseconds: number): string {
  const minute = Math.floor(milliseconds / 60_000) * 60_000;
  if (minute !== minuteStart) {
    const date = new Date(minute);
    const day = `${String(date.getUTCFullYear()).padStart(4, '0')}-${two(date.getUTCMonth() + 1)}-${two(date.getUTCDate())}`;
    minuteText = `${day}T${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:`;
    minuteStart = minute;
  }
  secondTexts ??= Array.from({length: 60}, (_, second) => two(second));
  millisecondTexts ??= Array.from({length: 1000}, (_, millisecond) => String(millisecond).padStart(3, '0'));
  const withinMinute = milliseconds - minute;
  return `${minuteText}${secondTexts[Math.floor(withinMinute / 1000)]}.${millisecondTexts[withinMinute % 1000]}Z`;
}
