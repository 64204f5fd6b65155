/**
 * Files and directories → LoadResult: `scanConfigPaths` says which files, `readConfigFile` reads each
 * within the size limit without blocking, `parseResourceText` parses within the other limits.
 */
import type { LoadError, LoadOptions, LoadResult } from './types.js';
import { parseResourceText, resolveOptions } from './parse.js';
import { mergeResults } from './merge.js';
import { loadLimits } from './limits.js';
import { readConfigFile, readStdinLimited } from './read.js';
import { scanConfigPaths } from './walk.js';

export { mergeResults } from './merge.js';

/** Loads every resource from the given files/directories (`-` reads stdin); never throws on bad input. */
export async function loadResources(paths: string[], opts: LoadOptions = {}): Promise<LoadResult> {
  resolveOptions(opts); // a bad vipCidr is a caller error: fail before touching files
  const limits = loadLimits(opts);
  const scan = scanConfigPaths(paths);
  const errors: LoadError[] = scan.errors;
  const results: LoadResult[] = [];
  for (const f of scan.files) {
    const read = f === '-' ? await readStdinLimited(limits.maxFileBytes) : readConfigFile(f, limits.maxFileBytes);
    const file = f === '-' ? '<stdin>' : f;
    if (read.kind === 'special') errors.push({ file, violations: [{ field: '', message: `not read: ${read.what} is not a config file` }] });
    else if (read.kind === 'error') errors.push({ file, violations: [{ field: '', message: read.message }] });
    else results.push(parseResourceText(read.text, file, opts));
  }
  return mergeResults([...results, { resources: [], errors: [], warnings: [], skipped: scan.skipped }], errors);
}
