/** One line per violation, the format `meshext validate` and `meshext get` print. */
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
