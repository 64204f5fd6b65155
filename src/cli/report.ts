/** One line per violation, the format `meshext validate` and `meshext get` print. */
import type { LoadWarning, SkippedPath } from '../resources/types.js';
import type { RejectedResource } from '../snapshot/types.js';

/** `FILE: KIND/NAME: FIELD: message` for a resource, `FILE:LINE: message` for a file-level problem. */
export function violationLines(r: RejectedResource): string[] {
  return r.violations.map((v) => {
    const field = v.field ? `${v.field}: ` : '';
    if (r.kind && r.name) return `${r.file}: ${r.kind}/${r.name}: ${field}${v.message}`;
    const where = r.line !== undefined ? `${r.file}:${r.line}` : r.file;
    const what = r.kind ? `${r.kind}: ` : '';
    return `${where}: ${what}${field}${v.message}`;
  });
}

/** `FILE:LINE: warning: KIND/NAME: FIELD: message` (document N when the line is unknown). */
export function warningLine(w: LoadWarning): string {
  const where = w.line !== undefined ? `${w.file}:${w.line}` : `${w.file} (document ${w.index + 1})`;
  const what = w.name ? `${w.kind}/${w.name}` : `${w.kind} (unnamed)`;
  return `${where}: warning: ${what}: ${w.field ? `${w.field}: ` : ''}${w.message}`;
}

/** `FILE: skipped: reason` for a directory entry that was not read (a FIFO, a device, a symlink loop). */
export function skippedLine(s: SkippedPath): string {
  return `${s.file}: skipped: ${s.reason}`;
}
