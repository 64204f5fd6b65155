/**
 * One registry for every counter and gauge in the agent. Names follow Envoy's vocabulary under the
 * `meshext_` prefix; label sets are small and bounded (never client addresses or connection ids).
 */

export type Labels = Readonly<Record<string, string>>;

type Kind = 'counter' | 'gauge' | 'histogram';

/** A histogram's state: finite bucket bounds, cumulative counts per bound (+Inf last, = the count) and the sum. */
interface HistogramCell {
  bounds: readonly number[];
  cumulative: number[];
  sum: number;
}

interface Cell {
  labels: Labels;
  /** Counters and gauges: the value; histograms: the count of observations. */
  value: number;
  hist?: HistogramCell;
}

interface Family {
  name: string;
  help: string;
  kind: Kind;
  series: Map<string, Cell>;
}

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.map((k) => `${k}=${labels[k]}`).join(',');
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/** A counter or gauge bound to one label set; hot paths keep this and call inc() directly. */
export class Series {
  constructor(private readonly cell: { value: number }) {}
  inc(by = 1): void {
    this.cell.value += by;
  }
  dec(by = 1): void {
    this.cell.value -= by;
  }
  set(v: number): void {
    this.cell.value = v;
  }
  get value(): number {
    return this.cell.value;
  }
}

/** A histogram bound to one label set, set from counts kept elsewhere (the engine's atomics). */
export class HistogramSeries {
  constructor(private readonly cell: Cell) {}
  /** Replaces the state: `perBucket` counts per bucket (not cumulative), one more than `boundsMs` (+Inf last). */
  set(boundsMs: readonly number[], perBucket: readonly number[], sum: number): void {
    if (perBucket.length !== boundsMs.length + 1) throw new Error(`histogram has ${boundsMs.length} bounds but ${perBucket.length} bucket counts (expected bounds + 1 for +Inf)`);
    let running = 0;
    const cumulative = perBucket.map((n) => (running += n));
    this.cell.hist = { bounds: boundsMs, cumulative, sum };
    this.cell.value = running;
  }
  /** Observations so far. */
  get count(): number {
    return this.cell.value;
  }
  /** Cumulative count of observations at most `le` (a bound of the histogram, or Infinity). */
  bucket(le: number): number | undefined {
    const h = this.cell.hist;
    if (!h) return undefined;
    if (le === Infinity) return this.cell.value;
    const i = h.bounds.indexOf(le);
    return i < 0 ? undefined : h.cumulative[i];
  }
  get sum(): number {
    return this.cell.hist?.sum ?? 0;
  }
}

/** Prometheus's rendering of a bucket bound (`le`). */
function leText(b: number): string {
  return b === Infinity ? '+Inf' : String(b);
}

/** The rows a histogram cell exposes: `_bucket` per bound (cumulative, `le` label), `_sum`, `_count`. */
function histogramRows(name: string, cell: Cell): Array<{ name: string; labels: Labels; value: number }> {
  const h = cell.hist ?? { bounds: [], cumulative: [0], sum: 0 };
  const rows: Array<{ name: string; labels: Labels; value: number }> = [];
  h.bounds.forEach((b, i) => rows.push({ name: `${name}_bucket`, labels: { ...cell.labels, le: leText(b) }, value: h.cumulative[i] ?? 0 }));
  rows.push({ name: `${name}_bucket`, labels: { ...cell.labels, le: '+Inf' }, value: cell.value });
  rows.push({ name: `${name}_sum`, labels: cell.labels, value: h.sum });
  rows.push({ name: `${name}_count`, labels: cell.labels, value: cell.value });
  return rows;
}

/** The rows of every series of a family (a histogram's expanded). */
function rowsOf(f: Family): Array<{ name: string; labels: Labels; value: number }> {
  const out: Array<{ name: string; labels: Labels; value: number }> = [];
  for (const s of f.series.values()) {
    if (f.kind === 'histogram') out.push(...histogramRows(f.name, s));
    else out.push({ name: f.name, labels: s.labels, value: s.value });
  }
  return out;
}

function labelText(labels: Labels, quote: boolean): string {
  const keys = Object.keys(labels).sort((a, b) => (a === 'le' ? 1 : b === 'le' ? -1 : a < b ? -1 : a > b ? 1 : 0));
  if (!keys.length) return '';
  return `{${keys.map((k) => (quote ? `${k}="${escapeLabel(labels[k] ?? '')}"` : `${k}=${labels[k]}`)).join(',')}}`;
}

export class Registry {
  private readonly families = new Map<string, Family>();
  private readonly collectors: Array<() => void> = [];

  private family(name: string, help: string, kind: Kind): Family {
    let f = this.families.get(name);
    if (!f) {
      f = { name, help, kind, series: new Map() };
      this.families.set(name, f);
    } else if (f.kind !== kind) {
      throw new Error(`metric ${name} registered as ${f.kind}, requested as ${kind}`);
    }
    return f;
  }

  private cell(name: string, help: string, kind: Kind, labels: Labels): Cell {
    const f = this.family(name, help, kind);
    const key = labelKey(labels);
    let cell = f.series.get(key);
    if (!cell) {
      cell = { labels: { ...labels }, value: 0 };
      f.series.set(key, cell);
    }
    return cell;
  }

  private series(name: string, help: string, kind: Kind, labels: Labels): Series {
    return new Series(this.cell(name, help, kind, labels));
  }

  /** A histogram (exposed as `_bucket{le}`, `_sum`, `_count`); get() and sum() read its count. */
  histogram(name: string, help: string, labels: Labels = {}): HistogramSeries {
    if (labels.le !== undefined) throw new Error(`histogram ${name} must not have an le label of its own`);
    return new HistogramSeries(this.cell(name, help, 'histogram', labels));
  }

  /** A monotonically increasing counter; `name` must end in `_total`. */
  counter(name: string, help: string, labels: Labels = {}): Series {
    if (!name.endsWith('_total')) throw new Error(`counter ${name} must end in _total`);
    return this.series(name, help, 'counter', labels);
  }

  /** A value that goes up and down. */
  gauge(name: string, help: string, labels: Labels = {}): Series {
    return this.series(name, help, 'gauge', labels);
  }

  /** Registers a callback run before every read (for values sampled from elsewhere, e.g. BPF maps). */
  onCollect(fn: () => void): void {
    this.collectors.push(fn);
  }

  /** Drops every series of a family whose labels match `match` (e.g. a removed service). */
  remove(match: Labels): void {
    for (const f of this.families.values()) {
      for (const [k, s] of f.series) {
        if (Object.entries(match).every(([mk, mv]) => s.labels[mk] === mv)) f.series.delete(k);
      }
    }
  }

  /** Current value of one series, or undefined. */
  get(name: string, labels: Labels = {}): number | undefined {
    this.collect();
    return this.families.get(name)?.series.get(labelKey(labels))?.value;
  }

  /** Sum over all series of a family whose labels include `match`. */
  sum(name: string, match: Labels = {}): number {
    this.collect();
    let total = 0;
    for (const s of this.families.get(name)?.series.values() ?? []) {
      if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
    }
    return total;
  }

  private collect(): void {
    for (const fn of this.collectors) fn();
  }

  /** Prometheus text exposition format 0.0.4. */
  prometheus(): string {
    this.collect();
    const out: string[] = [];
    for (const f of [...this.families.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      out.push(`# HELP ${f.name} ${f.help}`);
      out.push(`# TYPE ${f.name} ${f.kind}`);
      for (const r of rowsOf(f)) out.push(`${r.name}${labelText(r.labels, true)} ${r.value}`);
    }
    return out.join('\n') + '\n';
  }

  /** Envoy-like `name{labels}: value` lines, sorted, one per series. */
  text(): string {
    this.collect();
    const out: string[] = [];
    for (const f of this.families.values()) for (const r of rowsOf(f)) out.push(`${r.name}${labelText(r.labels, false)}: ${r.value}`);
    return out.sort().join('\n') + '\n';
  }

  /** Plain object form for JSON dumps. */
  json(): Array<{ name: string; labels: Labels; value: number }> {
    this.collect();
    const out: Array<{ name: string; labels: Labels; value: number }> = [];
    for (const f of this.families.values()) out.push(...rowsOf(f));
    return out;
  }
}
