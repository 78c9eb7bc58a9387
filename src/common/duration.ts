const UNITS: Record<string, number> = {s: 1, m: 60, h: 3600, d: 86_400, w: 604_800};

/** Parses `90`, `90s`, `15m`, `2h`, `1d`, `1w` or `1h30m` into seconds; undefined if it is none of those. */
export function parseDuration(text: string): number | undefined {
  if (/^\d+$/.test(text)) return Number(text);
  const parts = [...text.matchAll(/(\d+)([smhdw])/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join('') !== text) return undefined;
  return parts.reduce((total, [, amount, unit]) => total + Number(amount) * UNITS[unit], 0);
}

/** `3d 4h`, `12m`, `40s`: the largest two units of an age or a remaining time. */
export function formatDuration(seconds: number): string {
  const parts: string[] = [];
  let rest = Math.max(0, Math.round(seconds));
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    if (rest >= size || (unit === 's' && parts.length === 0)) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.slice(0, 2).join(' ');
}
