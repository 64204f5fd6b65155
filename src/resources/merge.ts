/** Combines per-file results; the first definition of (kind, mesh, name) wins, later ones are rejected. */
import type { LoadError, LoadResult, LoadWarning, Resource, SkippedPath } from './types.js';

const GLOBAL_KINDS = new Set(['HostnameGenerator', 'Mesh']);

/** Concatenates per-file results in order and rejects later duplicates of (kind, mesh, name). */
export function mergeResults(results: LoadResult[], extraErrors: LoadError[] = []): LoadResult {
  const resources: Resource[] = [];
  const errors: LoadError[] = extraErrors.slice();
  const warnings: LoadWarning[] = [];
  const skipped: SkippedPath[] = [];
  const seen = new Map<string, Resource>();
  for (const r of results) {
    // Loops, not push(...x): a file may hold thousands of errors, more than a call's argument limit.
    for (const e of r.errors) errors.push(e);
    for (const w of r.warnings) warnings.push(w);
    for (const sk of r.skipped ?? []) skipped.push(sk);
    for (const res of r.resources) {
      const key = `${res.kind}\0${GLOBAL_KINDS.has(res.kind) ? '' : res.mesh}\0${res.name}`;
      const first = seen.get(key);
      if (first) {
        const where = GLOBAL_KINDS.has(res.kind) ? '' : ` in mesh "${res.mesh}"`;
        errors.push({
          file: res.source.file,
          ...(res.source.line !== undefined ? { line: res.source.line } : {}),
          kind: res.kind,
          name: res.name,
          ...(GLOBAL_KINDS.has(res.kind) ? {} : { mesh: res.mesh }),
          violations: [
            {
              field: 'name',
              message: `duplicate ${res.kind} "${res.name}"${where}: already defined in ${loc(first)}; this definition in ${loc(res)} is ignored`,
            },
          ],
        });
        continue;
      }
      seen.set(key, res);
      resources.push(res);
    }
  }
  return { resources, errors, warnings, ...(skipped.length ? { skipped } : {}) };
}

function loc(r: Resource): string {
  return `${r.source.file}${r.source.line !== undefined ? `:${r.source.line}` : ''} (document ${r.source.index + 1})`;
}

