/**
 * Go's time.ParseDuration, which Kuma's policies use for their `k8s.Duration` fields: a signed sequence of
 * decimal numbers with units (`1h30m`, `1.5s`, `300ms`, `-1s`); `0` alone needs no unit. Errors read as Go's.
 */

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds (may be fractional or negative), or Go's error text for `text`. */
export function parseGoDuration(text: string): { ms: number } | { error: string } {
  const bad = { error: `time: invalid duration "${text}"` };
  let s = text;
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return { ms: 0 };
  if (s === '') return bad;
  let total = 0;
  const part = /^([0-9]*(?:\.[0-9]*)?)([^0-9.]*)/;
  while (s !== '') {
    const m = part.exec(s);
    if (!m || m[1] === '' || m[1] === '.') return bad;
    if (m[2] === '') return { error: `time: missing unit in duration "${text}"` };
    const unit = UNIT_MS[m[2] as string];
    if (unit === undefined) return { error: `time: unknown unit "${m[2]}" in duration "${text}"` };
    total += Number(m[1]) * unit;
    s = s.slice(m[0].length);
  }
  // Go's Duration is int64 nanoseconds.
  if (total > 9_223_372_036_854) return bad;
  return { ms: sign * total };
}
