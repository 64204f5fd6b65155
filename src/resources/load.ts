/**
 * Files and directories → LoadResult. Directories are walked recursively in name order, reading
 * `.yaml`/`.yml`/`.json`; dot-entries are skipped, which also makes Kubernetes ConfigMap mounts work:
 * the `..data`/`..2024_*` entries are ignored and the top-level symlinks into them are followed, so each
 * file is read exactly once. A path given explicitly is always read, whatever its name.
 */
import { readFile, readdir, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { LoadError, LoadOptions, LoadResult } from './types.js';
import { parseResourceText, resolveOptions } from './parse.js';
import { mergeResults } from './merge.js';

export { mergeResults } from './merge.js';

const EXTENSIONS = /\.(ya?ml|json)$/i;

/** Loads every resource from the given files/directories (`-` reads stdin); never throws on bad input. */
export async function loadResources(paths: string[], opts: LoadOptions = {}): Promise<LoadResult> {
  resolveOptions(opts); // a bad vipCidr is a caller error: fail before touching files
  const files: string[] = [];
  const errors: LoadError[] = [];
  const seenDirs = new Set<string>();
  for (const p of paths) await collect(p, true, files, errors, seenDirs);
  const results: LoadResult[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = f === '-' ? await readStdin() : await readFile(f, 'utf8');
    } catch (e) {
      errors.push({ file: f, violations: [{ field: '', message: `cannot read file: ${(e as Error).message}` }] });
      continue;
    }
    results.push(parseResourceText(text, f === '-' ? '<stdin>' : f, opts));
  }
  return mergeResults(results, errors);
}

async function collect(p: string, explicit: boolean, files: string[], errors: LoadError[], seenDirs: Set<string>): Promise<void> {
  if (p === '-') {
    files.push('-');
    return;
  }
  let st;
  try {
    st = await stat(p); // follows symlinks (ConfigMap top-level entries are symlinks)
  } catch (e) {
    errors.push({ file: p, violations: [{ field: '', message: `cannot read: ${(e as Error).message}` }] });
    return;
  }
  if (st.isDirectory()) {
    const real = await realpath(p);
    if (seenDirs.has(real)) return; // symlink loop or the same dir given twice
    seenDirs.add(real);
    let entries: string[];
    try {
      entries = (await readdir(p)).sort();
    } catch (e) {
      errors.push({ file: p, violations: [{ field: '', message: `cannot list directory: ${(e as Error).message}` }] });
      return;
    }
    for (const name of entries) {
      if (name.startsWith('.')) continue;
      const child = join(p, name);
      let cst;
      try {
        cst = await stat(child);
      } catch {
        continue; // dangling symlink: nothing to read
      }
      if (cst.isDirectory()) await collect(child, false, files, errors, seenDirs);
      else if (cst.isFile() && EXTENSIONS.test(name)) files.push(child);
    }
    return;
  }
  if (explicit || EXTENSIONS.test(p)) files.push(p);
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
