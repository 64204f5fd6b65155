/**
 * Rules every policy kind shares (Kuma's common_api targetRef rules and policy shape), with what a node agent
 * cannot do said as such: meshext proxies the outbound traffic of every client on the node to
 * MeshExternalServices, so only `to[]` entries apply, and a policy's clients are the whole node (top-level kind
 * Mesh, or omitted). Each kind's own `default` rules live in its validate-<kind>.ts.
 */
import type { PolicyTargetRef, ToPolicySpec, Violation } from './types.js';
import { parseGoDuration } from './duration.js';

export const NOT_NEGATIVE = 'must not be negative when defined';
export const GREATER_THAN_ZERO = 'must be greater than zero when defined';

/** Top-level kinds Kuma accepts that select sidecars, gateways or routes: none of them exists on a node agent. */
const SIDECAR_KINDS: Record<string, string> = {
  MeshSubset: 'it selects sidecars by tag',
  MeshService: 'it selects the sidecars of a MeshService',
  MeshServiceSubset: 'it selects sidecars of a MeshService by tag',
  MeshGateway: 'it selects a MeshGateway',
  MeshHTTPRoute: 'it selects the traffic of a MeshHTTPRoute',
};

/**
 * Validates the shape of a `to[]` policy and each entry's targetRef, then each `default` with `validateDefault`
 * (called with the entry's `default`, `{}` when absent, and its path). Inbound sections are not errors (see
 * toPolicyWarnings).
 */
export function validateToPolicy<Conf>(
  spec: ToPolicySpec<Conf>,
  validateDefault: (conf: Conf, path: string, out: Violation[]) => void,
): Violation[] {
  const out: Violation[] = [];
  validateTopTargetRef(spec.targetRef, out);
  const to = spec.to ?? [];
  if (to.length === 0 && (spec.from ?? []).length === 0 && (spec.rules ?? []).length === 0) {
    out.push({ field: 'spec', message: "at least one of 'from', 'to' has to be defined" });
  }
  to.forEach((entry, i) => {
    const path = `spec.to[${i}]`;
    validateToTargetRef(entry.targetRef, `${path}.targetRef`, out);
    validateDefault(entry.default ?? ({} as Conf), `${path}.default`, out);
  });
  return out;
}

/**
 * Warnings of a `to[]` policy: its inbound sections (`from`, `rules`) configure sidecars' inbound traffic, which a
 * node agent does not have, so they are ignored and the `to` entries apply. Kuma's own default policies
 * (`mesh-timeout-all-default`, `mesh-retry-all-default`, `mesh-circuit-breaker-all-default`) carry both, and
 * their `to` part is what Kuma applies to MeshExternalService traffic too. `what` names the subject ("timeouts").
 */
export function toPolicyWarnings(what: string): (spec: unknown) => Violation[] {
  return (spec) => {
    const s = spec as ToPolicySpec<unknown>;
    const out: Violation[] = [];
    for (const section of ['from', 'rules'] as const) {
      if ((s[section] ?? []).length > 0) {
        out.push({ field: `spec.${section}`, message: `ignored: inbound ${what} configure sidecars' inbound traffic, and meshext proxies outbound traffic to MeshExternalServices only; the "to" entries apply` });
      }
    }
    return out;
  };
}

/**
 * Whether a policy with this top-level targetRef applies to the clients meshext serves: kind Mesh (or omitted)
 * without `proxyTypes`, or with `proxyTypes` naming `Sidecar` (meshext proxies workloads' outbound traffic, as
 * their sidecars would). A gateway-only policy, such as Kuma's `mesh-gateways-timeout-all-default`, does not.
 */
export function appliesToNode(ref: PolicyTargetRef | undefined): boolean {
  const types = ref?.proxyTypes;
  return types === undefined || types.length === 0 || types.includes('Sidecar');
}

/** Warnings every policy kind shares: a top-level targetRef that leaves meshext out. */
export function targetRefWarnings(spec: unknown): Violation[] {
  const ref = (spec as { targetRef?: PolicyTargetRef }).targetRef;
  if (appliesToNode(ref)) return [];
  return [{ field: 'spec.targetRef.proxyTypes', message: `ignored on this node: the policy applies to ${ref?.proxyTypes?.join(', ')} proxies only, and meshext proxies workloads' outbound traffic as their sidecars would (add Sidecar to apply it)` }];
}

/** The policy's own targetRef: which clients it applies to. Only the whole node (kind Mesh, or omitted) exists here. */
export function validateTopTargetRef(ref: PolicyTargetRef | undefined, out: Violation[]): void {
  if (ref === undefined || ref.kind === 'Mesh') {
    if (ref?.name !== undefined && ref.name !== '') out.push({ field: 'spec.targetRef.name', message: 'must not be set with kind Mesh' });
    return;
  }
  const field = 'spec.targetRef.kind';
  if (ref.kind === 'Dataplane') {
    out.push({ field, message: 'Dataplane is not supported by meshext yet (the policy would apply to that Dataplane\'s outbound listeners only); use kind Mesh or omit targetRef to apply it to every client on the node' });
  } else if (SIDECAR_KINDS[ref.kind] !== undefined) {
    out.push({ field, message: `${ref.kind} cannot apply on a node agent: ${SIDECAR_KINDS[ref.kind]}, and meshext has none; use kind Mesh or omit targetRef (every client on the node)` });
  } else {
    out.push({ field, message: 'value is not supported' });
  }
}

/** A `to[].targetRef`: which destinations the entry configures (all of the mesh's, or MeshExternalServices by name or labels). */
export function validateToTargetRef(ref: PolicyTargetRef, field: string, out: Violation[]): void {
  switch (ref.kind) {
    case 'Mesh':
      if (ref.name !== undefined && ref.name !== '') out.push({ field: `${field}.name`, message: 'must not be set with kind Mesh' });
      return;
    case 'MeshExternalService': {
      const hasName = ref.name !== undefined && ref.name !== '';
      if (hasName === (ref.labels !== undefined)) out.push({ field, message: "either 'name' or 'labels' should be specified" });
      if (ref.sectionName !== undefined) out.push({ field: `${field}.sectionName`, message: 'must not be set: a MeshExternalService has one port' });
      return;
    }
    case 'MeshService':
    case 'MeshMultiZoneService':
      out.push({ field: `${field}.kind`, message: `${ref.kind} cannot apply on a node agent: meshext serves MeshExternalServices only` });
      return;
    default:
      out.push({ field: `${field}.kind`, message: 'value is not supported' });
  }
}

/** Checks one Go duration (`positive`: > 0, else >= 0); true when it parsed and is in range. */
export function checkDuration(v: string | undefined, field: string, positive: boolean, out: Violation[]): boolean {
  if (v === undefined) return false;
  const d = parseGoDuration(v);
  if ('error' in d) {
    out.push({ field, message: d.error });
    return false;
  }
  if (positive ? d.ms <= 0 : d.ms < 0) {
    out.push({ field, message: positive ? GREATER_THAN_ZERO : NOT_NEGATIVE });
    return false;
  }
  return true;
}
