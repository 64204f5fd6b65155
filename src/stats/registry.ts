/**
 * One registry for every counter and gauge in the agent. Names follow Envoy's vocabulary under the
 * `meshext_` prefix; label sets are small and bounded (never client addresses or connection ids).
 */

export type Labels = Readonly<Record<string, string>>;

type Kind = 'counter' | 'gauge';

interface Family {
  name: string;
  help: string;
  kind: Kind;
  series: Map<string, { labels: Labels; value: number }>;
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

  private series(name: string, help: string, kind: Kind, labels: Labels): Series {
    const f = this.family(name, help, kind);
    const key = labelKey(labels);
    let cell = f.series.get(key);
    if (!cell) {
      cell = { labels: { ...labels }, value: 0 };
      f.series.set(key, cell);
    }
    return new Series(cell);
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
      for (const s of f.series.values()) {
        const keys = Object.keys(s.labels).sort();
        const l = keys.length ? `{${keys.map((k) => `${k}="${escapeLabel(s.labels[k] ?? '')}"`).join(',')}}` : '';
        out.push(`${f.name}${l} ${s.value}`);
      }
    }
    return out.join('\n') + '\n';
  }

  /** Envoy-like `name{labels}: value` lines, sorted, one per series. */
  text(): string {
    this.collect();
    const out: string[] = [];
    for (const f of this.families.values()) {
      for (const s of f.series.values()) {
        const keys = Object.keys(s.labels).sort();
        const l = keys.length ? `{${keys.map((k) => `${k}=${s.labels[k]}`).join(',')}}` : '';
        out.push(`${f.name}${l}: ${s.value}`);
      }
    }
    return out.sort().join('\n') + '\n';
  }

  /** Plain object form for JSON dumps. */
  json(): Array<{ name: string; labels: Labels; value: number }> {
    this.collect();
    const out: Array<{ name: string; labels: Labels; value: number }> = [];
    for (const f of this.families.values()) for (const s of f.series.values()) out.push({ name: f.name, labels: s.labels, value: s.value });
    return out;
  }
}
