/** Dataplane outbound rules (Kuma dataplane_validator) for Universal without transparent proxy. */
import type { Violation } from './types.js';
import { isIpAddress } from './address.js';

const KINDS = ['MeshExternalService', 'MeshMultiZoneService', 'MeshService'];

/** Validates `networking.outbound[]`; `prefix` is `` (Universal) or `spec.` (Kubernetes). */
export function validateDataplane(spec: { networking?: { outbound?: unknown[] } }, prefix: string): Violation[] {
  const out: Violation[] = [];
  (spec.networking?.outbound ?? []).forEach((raw, i) => {
    const o = raw as { address?: string; tags?: Record<string, string>; backendRef?: { kind?: string; name?: string; labels?: Record<string, string> } };
    const f = `${prefix}networking.outbound[${i}]`;
    if (o.address !== undefined && !isIpAddress(o.address)) out.push({ field: `${f}.address`, message: 'address has to be valid IP address' });
    const ref = o.backendRef;
    if (!ref) {
      out.push({ field: `${f}.backendRef`, message: 'must be defined: meshext serves only backendRef outbounds of kind MeshExternalService (tag-based outbounds are not supported)' });
      return;
    }
    if (o.tags !== undefined) out.push({ field: `${f}.backendRef`, message: 'both backendRef and tags/service cannot be defined' });
    if (!KINDS.includes(ref.kind ?? '')) {
      out.push({ field: `${f}.backendRef.kind`, message: `invalid value. Available values are: ${KINDS.join(',')}` });
    } else if (ref.kind !== 'MeshExternalService') {
      out.push({ field: `${f}.backendRef.kind`, message: `meshext serves only MeshExternalService outbounds, got ${String(ref.kind)}` });
    }
    if (ref.name === undefined && ref.labels === undefined) out.push({ field: `${f}.backendRef`, message: "either 'name' or 'labels' should be specified" });
  });
  return out;
}
