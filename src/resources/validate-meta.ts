/** Kuma's meta checks (name, mesh) and label checks, run after the kind-specific rules. */
import type { Violation } from './types.js';

const RFC1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const MESH_CHARS = /^[0-9a-z\-_.]+$/;
const ORIGINS = ['zone', 'global'];

/** `name`/`mesh` checks of Kuma's meta validator; `meshScoped` false for global kinds. */
export function validateMeta(name: string, mesh: string, meshScoped: boolean): Violation[] {
  const out: Violation[] = [];
  if (name === '') out.push({ field: 'name', message: 'cannot be empty' });
  else if (name.length > 253) out.push({ field: 'name', message: 'value length must less or equal 253' });
  else if (!RFC1123.test(name)) {
    out.push({
      field: 'name',
      message:
        "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
    });
  }
  if (meshScoped && !MESH_CHARS.test(mesh)) {
    out.push({ field: 'mesh', message: "invalid characters. Valid characters are numbers, lowercase latin letters and '-', '_', '.' symbols." });
  }
  return out;
}

/** Origin and zone label checks as a standalone zone CP applies them on write. */
export function validateLabels(labels: Record<string, string>, zone: string): Violation[] {
  const out: Violation[] = [];
  const origin = labels['kuma.io/origin'];
  if (origin !== undefined && !ORIGINS.includes(origin)) {
    out.push({ field: 'labels["kuma.io/origin"]', message: `unknown resource origin "${origin}"` });
  }
  const z = labels['kuma.io/zone'];
  if (origin !== 'global' && z !== undefined && z !== zone) {
    out.push({ field: 'labels["kuma.io/zone"]', message: `kuma.io/zone label should have ${zone} value` });
  }
  return out;
}
