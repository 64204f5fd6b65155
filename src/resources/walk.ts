/**
 * Which files a set of config paths stands for: directories are walked in name order, depth first, reading
 * `.yaml`/`.yml`/`.json`; dot-entries are skipped, which also makes Kubernetes ConfigMap mounts work (the
 * `..data`/`..2024_*` entries are ignored and the top-level symlinks into them are followed, so each file is
 * read exactly once). A path given explicitly is always read, whatever its name. The walk keeps its own
 * stack (no recursion) and visits each real directory once, so symlinked directory loops end.
 * FIFOs, sockets, devices and symlink loops inside a directory are skipped and listed in `skipped`;
 * named explicitly they are errors. Nothing here opens a file.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { LoadError, SkippedPath } from './types.js';
import { specialKind } from './read.js';

export const RESOURCE_EXTENSIONS = /\.(ya?ml|json)$/i;

export interface ConfigScan {
  /** Files to read, in order; `-` is stdin. */
  files: string[];
  /** Real paths of every directory that holds something the scan depends on (what a watcher watches). */
  dirs: string[];
  errors: LoadError[];
  skipped: SkippedPath[];
}

/** Lists the resource files under the given files/directories; never throws on bad paths. */
export function scanConfigPaths(paths: string[]): ConfigScan {
  const out: ConfigScan = { files: [], dirs: [], errors: [], skipped: [] };
  const dirs = new Set<string>();
  const seenDirs = new Set<string>();
  const addDirOf = (file: string): void => {
    dirs.add(realOr(path.dirname(file)));
    dirs.add(path.dirname(realOr(file)));
  };
  for (const given of paths) {
    if (given === '-') {
      out.files.push('-');
      continue;
    }
    const stack: Array<{ p: string; explicit: boolean }> = [{ p: given, explicit: true }];
    while (stack.length > 0) {
      const { p, explicit } = stack.pop()!;
      let st: fs.Stats;
      try {
        st = fs.statSync(p); // follows symlinks (ConfigMap top-level entries are symlinks)
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (explicit) {
          out.errors.push({ file: p, violations: [{ field: '', message: `cannot read: ${err.message}` }] });
          // Watch where it would appear, so creating it later is seen at once.
          dirs.add(realOr(path.dirname(p)));
        } else if (err.code === 'ELOOP') {
          out.skipped.push({ file: p, reason: 'a symlink loop (too many levels of symbolic links)' });
        } else if (err.code !== 'ENOENT') {
          // ENOENT is a dangling symlink: nothing to read (a ConfigMap key mid-swap looks like this).
          out.skipped.push({ file: p, reason: `cannot stat: ${err.message}` });
        }
        continue;
      }
      if (st.isDirectory()) {
        const real = realOr(p);
        if (seenDirs.has(real)) continue; // symlink loop or the same dir given twice
        seenDirs.add(real);
        dirs.add(real);
        let entries: string[];
        try {
          entries = fs.readdirSync(p).sort();
        } catch (e) {
          out.errors.push({ file: p, violations: [{ field: '', message: `cannot list directory: ${(e as Error).message}` }] });
          continue;
        }
        // Reversed onto the stack, so they come off in name order.
        for (let i = entries.length - 1; i >= 0; i--) {
          const name = entries[i]!;
          if (!name.startsWith('.')) stack.push({ p: path.join(p, name), explicit: false });
        }
        continue;
      }
      const special = specialKind(st);
      if (special) {
        if (explicit) out.errors.push({ file: p, violations: [{ field: '', message: `not read: ${special} is not a config file (use - to read stdin)` }] });
        else out.skipped.push({ file: p, reason: `${special} is not a config file` });
        continue;
      }
      if (explicit || RESOURCE_EXTENSIONS.test(p)) {
        out.files.push(p);
        addDirOf(p);
      }
    }
  }
  out.dirs = [...dirs];
  return out;
}

function realOr(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return p;
  }
}
