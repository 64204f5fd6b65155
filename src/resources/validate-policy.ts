/**
 * Rules every policy kind shares (Kuma's common_api targetRef rules and policy shape), with what a node agent
 * cannot do said as such: meshext proxies the outbound traffic of every client on the node to
 * MeshExternalServices, so only `to[]` entries apply, and a policy's clients are the whole node (top-level kind
 * Mesh, or omitted) or the outbound listeners of Universal Dataplanes (kind Dataplane). Each kind's own
 * `default` rules live in its validate-<kind>.ts.
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
  opts: ToPolicyOptions = {},
): Violation[] {
  const out: Violation[] = [];
  validateTopTargetRef(spec.targetRef, out, opts);
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

/** Options of validateToPolicy. */
export interface ToPolicyOptions {
  /**
   * Why the kind cannot apply to one Dataplane's outbound listeners (a top-level `kind: Dataplane` is then refused
   * with this reason); undefined: it can.
   */
  noDataplane?: string;
}

/**
 * The policy's own targetRef: which clients it applies to. Kind Mesh (or omitted) is every client on the node;
 * kind Dataplane is the outbound listeners of the Universal Dataplanes it selects (snapshot/policy.ts).
 */
export function validateTopTargetRef(ref: PolicyTargetRef | undefined, out: Violation[], opts: ToPolicyOptions = {}): void {
  if (ref === undefined || ref.kind === 'Mesh') {
    if (ref?.name !== undefined && ref.name !== '') out.push({ field: 'spec.targetRef.name', message: 'must not be set with kind Mesh' });
    return;
  }
  const field = 'spec.targetRef.kind';
  if (ref.kind === 'Dataplane') {
    if (opts.noDataplane !== undefined) out.push({ field, message: `Dataplane cannot apply here: ${opts.noDataplane}; use kind Mesh or omit targetRef (every client on the node)` });
    else validateDataplaneRef(ref, out);
  } else if (SIDECAR_KINDS[ref.kind] !== undefined) {
    out.push({ field, message: `${ref.kind} cannot apply on a node agent: ${SIDECAR_KINDS[ref.kind]}, and meshext has none; use kind Mesh or omit targetRef (every client on the node)` });
  } else {
    out.push({ field, message: 'value is not supported' });
  }
}

/**
 * A top-level `kind: Dataplane` (Kuma's ValidateTargetRef for an outbound policy): `name` (and `namespace`) or
 * `labels`, or neither (every Dataplane of the mesh, as Kuma's allDataplanesSelected); `sectionName` names an
 * inbound, which only inbound policies may select.
 */
function validateDataplaneRef(ref: PolicyTargetRef, out: Violation[]): void {
  const f = 'spec.targetRef';
  for (const k of ['tags', 'mesh', 'proxyTypes'] as const) {
    if (ref[k] !== undefined) out.push({ field: `${f}.${k}`, message: 'cannot be set with kind Dataplane' });
  }
  const hasName = ref.name !== undefined && ref.name !== '';
  const hasNamespace = ref.namespace !== undefined && ref.namespace !== '';
  if (ref.labels !== undefined && Object.keys(ref.labels).length > 0 && (hasName || hasNamespace)) {
    out.push({ field: `${f}.labels`, message: 'either labels or name and namespace must be specified' });
  } else if (hasNamespace && !hasName && ref.labels === undefined) {
    // Kuma accepts it and selects no Dataplane (only a name is matched with its namespace): refused here rather
    // than loaded to apply nowhere.
    out.push({ field: `${f}.namespace`, message: 'must be set with name: a namespace alone selects no Dataplane (set name, or labels, or neither for every Dataplane)' });
  }
  if (ref.sectionName !== undefined && ref.sectionName !== '') {
    out.push({ field: `${f}.sectionName`, message: "can only be used with inbound policies: it selects one of the Dataplane's inbounds, and meshext applies this policy to the Dataplane's outbound listeners" });
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
