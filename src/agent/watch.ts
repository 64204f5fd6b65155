/**
 * Watches resource directories for changes. Each directory the config depends on gets its own
 * (non-recursive) watch: the ones walked, the ones holding a file's real target, and the parent of a
 * path that does not exist yet. Directory watches see a file replaced by rename (editors, `kubectl cp`,
 * write-to-temp-and-rename) as well as edits in place, where a watch on the file itself would stay on the
 * old inode and go deaf. The set is recomputed after every check, so new and removed directories are
 * followed. Kubernetes ConfigMap volumes update by swapping a `..data` symlink in the watched directory.
 * Bursts are debounced, a content hash makes no-op events do nothing, and a periodic rescan catches
 * anything missed.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { scanConfigPaths } from '../resources/walk.js';
import { readConfigFile } from '../resources/read.js';
import { DEFAULT_LOAD_LIMITS } from '../resources/limits.js';

/** The content hash of what the paths stand for, and the directories to watch for it to change. */
export function scanForChanges(paths: string[], maxFileBytes = DEFAULT_LOAD_LIMITS.maxFileBytes): { hash: string; dirs: string[] } {
  const h = crypto.createHash('sha256');
  const scan = scanConfigPaths(paths.map((p) => path.resolve(p)));
  for (const e of scan.errors) h.update(`error:${e.file}:${e.violations[0]?.message ?? ''}\n`);
  for (const f of scan.files) {
    h.update(`file:${f}:${safeRealpath(f)}\n`);
    // Read as the loader reads (bounded, never blocking); a file over the limit hashes by inode, size and mtime.
    const r = readConfigFile(f, maxFileBytes);
    if (r.kind === 'text') h.update(r.text);
    else h.update(r.kind === 'error' ? `error:${r.signature}` : `special:${r.what}`);
    h.update('\n');
  }
  return { hash: h.digest('hex'), dirs: scan.dirs };
}

/** Hash of every resource file's path and bytes under the given paths (symlinks followed). */
export function contentHash(paths: string[]): string {
  return scanForChanges(paths).hash;
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
  private readonly watchers = new Map<string, fs.FSWatcher>();
  private timer: NodeJS.Timeout | undefined;
  private rescan: NodeJS.Timeout | undefined;
  private lastHash: string;
  private loadingHash: string | undefined;
  private dirs: string[];
  private stopped = false;

  constructor(private readonly opts: WatcherOptions) {
    const s = scanForChanges(opts.paths);
    this.lastHash = s.hash;
    this.dirs = s.dirs;
  }

  start(): void {
    this.arm(this.dirs);
    if (this.opts.rescanIntervalMs > 0) {
      this.rescan = setInterval(() => this.check('periodic rescan'), this.opts.rescanIntervalMs);
      this.rescan.unref();
    }
  }

  /** Directories watched now (for tests and diagnostics). */
  watchedDirs(): string[] {
    return [...this.watchers.keys()].sort();
  }

  /**
   * A load is about to read the files: the state it will read is at least this new. Recorded as loaded by
   * markLoaded, so an edit made while the load runs (read by it or not) still differs and reloads once more.
   */
  beginLoad(): void {
    this.loadingHash = scanForChanges(this.opts.paths).hash;
  }

  /** Records the files' state as of beginLoad (or now) as loaded, so the next event compares against it. */
  markLoaded(): void {
    const s = scanForChanges(this.opts.paths);
    this.lastHash = this.loadingHash ?? s.hash;
    this.loadingHash = undefined;
    this.arm(s.dirs);
    // A change that landed while loading has no event left to come: look now.
    if (this.lastHash !== s.hash) this.schedule('changed while loading');
  }

  /** Watches exactly `dirs`: new ones are added, ones no longer needed are closed. */
  private arm(dirs: string[]): void {
    if (this.stopped) return;
    const want = new Set(dirs);
    for (const [dir, w] of this.watchers) {
      if (!want.has(dir)) {
        w.close();
        this.watchers.delete(dir);
      }
    }
    for (const dir of want) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = fs.watch(dir, { persistent: false }, () => this.schedule('file event'));
        w.on('error', () => {
          // The directory went away (a ConfigMap's old timestamped directory, say): forget it; the check re-arms.
          w.close();
          if (this.watchers.get(dir) === w) this.watchers.delete(dir);
          this.schedule('file event');
        });
        this.watchers.set(dir, w);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // A directory that vanished between the scan and here is simply not watched; the next check re-arms.
        if (code !== 'ENOENT' && code !== 'ENOTDIR') {
          this.opts.onError(new Error(`cannot watch ${dir}: ${(err as Error).message}; relying on periodic rescan and SIGHUP`));
        }
      }
    }
  }

  private schedule(reason: string): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(reason), this.opts.debounceMs);
    this.timer.unref();
  }

  private check(reason: string): void {
    this.timer = undefined;
    if (this.stopped) return;
    const { hash, dirs } = scanForChanges(this.opts.paths);
    this.arm(dirs);
    if (hash === this.lastHash) return;
    this.lastHash = hash;
    this.opts.onChange(reason);
  }

  stop(): void {
    this.stopped = true;
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    if (this.timer) clearTimeout(this.timer);
    if (this.rescan) clearInterval(this.rescan);
  }
}
