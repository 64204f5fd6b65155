/**
 * Watches resource directories for changes. Kubernetes ConfigMap volumes update by swapping a `..data`
 * symlink, so we watch directories (never single files), debounce bursts, compare a content hash so
 * no-op events do nothing, and rescan periodically in case an event was missed.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

const RESOURCE_EXT = /\.(ya?ml|json)$/i;

/** Hash of every resource file's path and bytes under the given paths (symlinks followed). */
export function contentHash(paths: string[]): string {
  const h = crypto.createHash('sha256');
  const seen = new Set<string>();
  const visit = (p: string, depth: number): void => {
    if (depth > 16) return;
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      h.update(`missing:${p}\n`);
      return;
    }
    if (st.isDirectory()) {
      let names: string[];
      try {
        names = fs.readdirSync(p).sort();
      } catch {
        h.update(`unreadable:${p}\n`);
        return;
      }
      for (const n of names) {
        // `..data` and `..2024_…` are the ConfigMap's internals; the top-level links point into them.
        if (n.startsWith('.')) continue;
        visit(path.join(p, n), depth + 1);
      }
    } else if (st.isFile() && RESOURCE_EXT.test(p)) {
      const real = safeRealpath(p);
      if (seen.has(p)) return;
      seen.add(p);
      h.update(`file:${p}:${real}\n`);
      try {
        h.update(fs.readFileSync(p));
      } catch {
        h.update('unreadable');
      }
    }
  };
  for (const p of paths) visit(path.resolve(p), 0);
  return h.digest('hex');
}

function safeRealpath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}

export interface WatcherOptions {
  paths: string[];
  debounceMs: number;
  rescanIntervalMs: number;
  onChange: (reason: string) => void;
  onError: (err: Error) => void;
}

/** Calls `onChange` once per settled change of the watched resource files. */
export class ConfigWatcher {
  private watchers: fs.FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private rescan: NodeJS.Timeout | undefined;
  private lastHash: string;

  constructor(private readonly opts: WatcherOptions) {
    this.lastHash = contentHash(opts.paths);
  }

  start(): void {
    for (const p of this.opts.paths) {
      const dir = safeIsDir(p) ? p : path.dirname(p);
      try {
        const w = fs.watch(dir, { recursive: true, persistent: false }, () => this.schedule('file event'));
        w.on('error', (err) => this.opts.onError(err));
        this.watchers.push(w);
      } catch (err) {
        this.opts.onError(new Error(`cannot watch ${dir}: ${(err as Error).message}; relying on periodic rescan and SIGHUP`));
      }
    }
    if (this.opts.rescanIntervalMs > 0) {
      this.rescan = setInterval(() => this.check('periodic rescan'), this.opts.rescanIntervalMs);
      this.rescan.unref();
    }
  }

  /** Records the hash of what was just loaded, so the next event compares against it. */
  markLoaded(): void {
    this.lastHash = contentHash(this.opts.paths);
  }

  private schedule(reason: string): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(reason), this.opts.debounceMs);
    this.timer.unref();
  }

  private check(reason: string): void {
    this.timer = undefined;
    const h = contentHash(this.opts.paths);
    if (h === this.lastHash) return;
    this.lastHash = h;
    this.opts.onChange(reason);
  }

  stop(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.timer) clearTimeout(this.timer);
    if (this.rescan) clearInterval(this.rescan);
  }
}

function safeIsDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
