// Pure helpers for the benchmarks: order statistics, ratios, target verdicts and table text.
// Kept free of I/O so test/unit/bench-stats.test.ts can check them.

/** Median of a list of numbers (mean of the two middle values for an even count); NaN when empty. */
export function median(values) {
  const xs = finite(values).sort((a, b) => a - b);
  if (xs.length === 0) return NaN;
  const mid = xs.length >> 1;
  return xs.length % 2 === 1 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

/** Nearest-rank percentile (p in 0..100) of an unsorted list; NaN when empty. */
export function percentile(values, p) {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile: p must be within 0..100, got ${p}`);
  const xs = finite(values).sort((a, b) => a - b);
  return percentileSorted(xs, p);
}

/** Nearest-rank percentile of an already ascending list (avoids re-sorting large samples). */
export function percentileSorted(sorted, p) {
  if (sorted.length === 0) return NaN;
  if (p === 0) return sorted[0];
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** value / reference, NaN when either side is missing or the reference is zero. */
export function ratio(value, reference) {
  if (!Number.isFinite(value) || !Number.isFinite(reference) || reference === 0) return NaN;
  return value / reference;
}

/**
 * The best peer's value for a metric: the highest when higher is better, else the lowest.
 * Peers without a finite value are ignored; undefined when none has one.
 */
export function bestPeer(rows, metric, higherIsBetter) {
  let best;
  for (const row of rows) {
    if (!row.peer) continue;
    const v = row.values[metric];
    if (!Number.isFinite(v)) continue;
    if (best === undefined || (higherIsBetter ? v > best.value : v < best.value)) best = { name: row.name, value: v };
  }
  return best;
}

/**
 * Verdict of a target `value <op> factor × reference`: 'PASS', 'FAIL', or 'n/a' when a side is missing.
 * op is '>=' (throughput-like) or '<=' (latency/memory-like).
 */
export function verdict(value, op, factor, reference) {
  if (!Number.isFinite(value) || !Number.isFinite(reference)) return 'n/a';
  const bound = factor * reference;
  if (op === '>=') return value >= bound ? 'PASS' : 'FAIL';
  if (op === '<=') return value <= bound ? 'PASS' : 'FAIL';
  throw new Error(`verdict: unknown operator ${op}`);
}

/** Fixed-point text for a figure: three significant digits below 100, integers above; '-' for NaN. */
export function fmtNum(v) {
  if (!Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a >= 100) return Math.round(v).toString();
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

/** Ratio text such as `0.93x`; '-' for NaN. */
export function fmtRatio(r) {
  return Number.isFinite(r) ? `${r.toFixed(2)}x` : '-';
}

/**
 * Lay out rows of strings as an aligned text table (format 'text') or a GitHub Markdown table ('md').
 * The first row is the header. Numeric-looking cells are right-aligned in text mode.
 */
export function formatTable(rows, format = 'text') {
  if (rows.length === 0) return '';
  const width = Math.max(...rows.map((r) => r.length));
  const cells = rows.map((r) => Array.from({ length: width }, (_, i) => String(r[i] ?? '')));
  if (format === 'md') {
    const line = (r) => `| ${r.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
    return [line(cells[0]), line(cells[0].map(() => '---')), ...cells.slice(1).map(line)].join('\n') + '\n';
  }
  if (format !== 'text') throw new Error(`formatTable: unknown format ${format}`);
  const widths = cells[0].map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  const numeric = /^[-+]?[\d.]+(x|%)?$/;
  const out = cells.map((r, ri) =>
    r
      .map((c, i) => (ri > 0 && numeric.test(c) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd(),
  );
  out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  return out.join('\n') + '\n';
}

/**
 * Build the printable table of one scenario.
 * rows: [{name, peer: boolean, direct: boolean, values: {metric: number[] (one per run)}}]
 * metrics: [{key, label, higherIsBetter, noRatio?}]; targets: [{metric, op, factor, against: 'peer'|'direct'|'absolute'|<a row's name>, label}]
 * Returns {table: string[][], summary: [{target, metric, value, reference, verdict, label}]}.
 */
export function scenarioTable(rows, metrics, targets = [], subject = 'meshext') {
  const med = rows.map((r) => ({
    name: r.name,
    peer: Boolean(r.peer),
    direct: Boolean(r.direct),
    error: r.error,
    values: Object.fromEntries(metrics.map((m) => [m.key, median(r.values[m.key] ?? [])])),
  }));
  const direct = med.find((r) => r.direct);
  const header = ['target'];
  // A metric with `noRatio` (a context figure, such as the upstream's load) gets its value column only.
  for (const m of metrics) header.push(m.label, ...(m.noRatio ? [] : [...(direct ? ['vs direct'] : []), 'vs best peer']));
  const table = [header];
  for (const r of med) {
    const line = [r.name];
    for (const m of metrics) {
      const v = r.values[m.key];
      const best = bestPeer(med, m.key, m.higherIsBetter);
      line.push(fmtNum(v));
      if (m.noRatio) continue;
      if (direct) line.push(r.direct ? '' : fmtRatio(ratio(v, direct.values[m.key])));
      line.push(fmtRatio(ratio(v, best?.value)));
    }
    table.push(line);
  }
  const subjectRow = med.find((r) => r.name === subject);
  const summary = targets.map((t) => {
    const value = subjectRow?.values[t.metric];
    const m = metrics.find((x) => x.key === t.metric);
    let reference;
    if (t.against === 'absolute') reference = 1;
    else if (t.against === 'direct') reference = direct?.values[t.metric];
    else if (t.against !== 'peer') reference = med.find((r) => r.name === t.against)?.values[t.metric];
    else reference = bestPeer(med, t.metric, m ? m.higherIsBetter : true)?.value;
    const bound = Number.isFinite(reference) ? t.factor * reference : NaN;
    // A subject that failed to start or to finish a run fails its targets rather than dodging them.
    const v = subjectRow?.error && !Number.isFinite(value) ? 'FAIL (no result)' : verdict(value, t.op, t.factor, reference);
    return { label: t.label, metric: t.metric, value, reference, bound, verdict: v };
  });
  return { table, summary, medians: med };
}

function finite(values) {
  return values.filter((v) => typeof v === 'number' && Number.isFinite(v));
}
