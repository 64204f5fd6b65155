/**
 * MeshTrafficPermission rules: Kuma 2.12+'s validator (pkg/plugins/policies/meshtrafficpermission/api/v1alpha1/
 * validator.go and mesh.ValidateMatch) with its paths and messages, read as the permission to connect to
 * MeshExternalServices: the top-level targetRef selects services (kind Mesh: all of the mesh's; kind
 * MeshExternalService by name or labels) and clients are matched by SPIFFE ID. What a node agent cannot do is
 * refused by name: `from` selects clients by Dataplane tags and `sni` matches a destination, neither of which a
 * process on a node has.
 */
import type { MeshTrafficPermissionSpec, PermissionMatch, Violation } from './types.js';
import { validateToTargetRef } from './validate-policy.js';

const LISTS = ['allow', 'allowWithShadowDeny', 'deny'] as const;

/** Validates a MeshTrafficPermission spec; paths start at `spec`. */
export function validateMeshTrafficPermission(spec: MeshTrafficPermissionSpec): Violation[] {
  const out: Violation[] = [];
  const ref = spec.targetRef;
  if (ref !== undefined) {
    if (ref.kind === 'Mesh' || ref.kind === 'MeshExternalService') validateToTargetRef(ref, 'spec.targetRef', out);
    else
      out.push({
        field: 'spec.targetRef.kind',
        message: `${ref.kind} is not supported by meshext: a MeshTrafficPermission here governs connections to MeshExternalServices; use kind MeshExternalService (name or labels) or Mesh (all of the mesh's)`,
      });
  }
  const rules = spec.rules ?? [];
  const from = spec.from ?? [];
  if (from.length > 0 && rules.length > 0) out.push({ field: 'spec', message: "field 'from' must be empty when 'rules' is defined" });
  if (from.length === 0 && rules.length === 0) out.push({ field: 'spec', message: "at least one of 'from' or 'rules' has to be defined" });
  if (from.length > 0) {
    out.push({
      field: 'spec.from',
      message: "not supported by meshext: 'from' selects clients by Dataplane tags, which processes on a node do not have; use 'rules' with spiffeID matchers (Kuma 2.12+)",
    });
  }
  rules.forEach((rule, i) => {
    const path = `spec.rules[${i}]`;
    const conf = rule.default ?? {};
    if (LISTS.every((l) => (conf[l] ?? []).length === 0)) out.push({ field: path, message: "at least one of 'allow', 'allowWithShadowDeny', 'deny' has to be defined" });
    for (const l of LISTS) (conf[l] ?? []).forEach((m, j) => validateMatch(m, `${path}.${l}[${j}]`, out));
  });
  return out;
}

function validateMatch(m: PermissionMatch, path: string, out: Violation[]): void {
  if (m.sni !== undefined) {
    out.push({ field: `${path}.sni`, message: 'not supported by meshext: it matches the destination, which spec.targetRef selects here; match clients by spiffeID' });
  }
  if (m.spiffeID === undefined) {
    if (m.sni === undefined) out.push({ field: `${path}.spiffeID`, message: 'must be defined' });
    return;
  }
  const err = spiffeIdError(m.spiffeID.value);
  if (err !== undefined) out.push({ field: `${path}.spiffeID`, message: `must be a valid Spiffe ID: ${err}` });
}

const TRUST_DOMAIN_CHAR = /^[a-z0-9._-]$/;
const PATH_CHAR = /^[a-zA-Z0-9._-]$/;

/** Why `id` is not a SPIFFE ID, in go-spiffe's words (spiffeid.FromString, which Kuma calls); undefined when it is one. */
export function spiffeIdError(id: string): string | undefined {
  const scheme = 'spiffe://';
  if (id === '') return 'cannot be empty';
  if (!id.startsWith(scheme)) return 'scheme is missing or invalid';
  const rest = id.slice(scheme.length);
  let i = 0;
  for (; i < rest.length && rest[i] !== '/'; i++) {
    if (!TRUST_DOMAIN_CHAR.test(rest[i] as string)) return 'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores';
  }
  if (i === 0) return 'trust domain is missing';
  const path = rest.slice(i);
  if (path === '') return undefined;
  let start = 0;
  for (let end = 0; end <= path.length; end++) {
    if (end < path.length && path[end] !== '/') {
      if (!PATH_CHAR.test(path[end] as string)) return 'path segment characters are limited to letters, numbers, dots, dashes, and underscores';
      continue;
    }
    if (end === 0) continue;
    const seg = path.slice(start, end);
    if (seg === '/') return end === path.length ? 'path cannot have a trailing slash' : 'path cannot contain empty segments';
    if (seg === '/.' || seg === '/..') return 'path cannot contain dot segments';
    start = end;
  }
  return undefined;
}
