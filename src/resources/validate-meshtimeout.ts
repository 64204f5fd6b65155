/**
 * MeshTimeout rules: Kuma's validator (pkg/plugins/policies/meshtimeout/api/v1alpha1/validator.go, 2.10+) with
 * its paths and messages, plus what a node agent cannot do, said as such: meshext proxies the outbound traffic
 * of every client on the node to MeshExternalServices, so only `to[]` entries apply, the policy's clients are
 * the whole node (kind Mesh, or omitted), and the timeouts the engine does not enforce yet are refused rather
 * than accepted and ignored.
 */
import type { MeshTimeoutConf, MeshTimeoutSpec, PolicyTargetRef, Violation } from './types.js';
import { parseGoDuration } from './duration.js';

const NOT_NEGATIVE = 'must not be negative when defined';
const GREATER_THAN_ZERO = 'must be greater than zero when defined';

/** Top-level kinds Kuma accepts that select sidecars, gateways or routes: none of them exists on a node agent. */
const SIDECAR_KINDS: Record<string, string> = {
  MeshSubset: 'it selects sidecars by tag',
  MeshService: 'it selects the sidecars of a MeshService',
  MeshServiceSubset: 'it selects sidecars of a MeshService by tag',
  MeshGateway: 'it selects a MeshGateway',
  MeshHTTPRoute: 'it selects the traffic of a MeshHTTPRoute',
};

/** Timeouts Kuma has that the engine does not carry out yet. */
const NOT_ENFORCED = ['requestHeadersTimeout'] as const;

/** Validates a MeshTimeout spec; `prefix` is `spec`. */
export function validateMeshTimeout(spec: MeshTimeoutSpec): Violation[] {
  const out: Violation[] = [];
  validateTop(spec.targetRef, out);
  const to = spec.to ?? [];
  if (to.length === 0 && (spec.from ?? []).length === 0 && (spec.rules ?? []).length === 0) {
    out.push({ field: 'spec', message: "at least one of 'from', 'to' has to be defined" });
  }
  for (const section of ['from', 'rules'] as const) {
    if ((spec[section] ?? []).length > 0) {
      out.push({ field: `spec.${section}`, message: `inbound timeouts do not apply: meshext proxies outbound traffic to MeshExternalServices only; use "to"` });
    }
  }
  to.forEach((entry, i) => {
    const path = `spec.to[${i}]`;
    validateToRef(entry.targetRef, `${path}.targetRef`, out);
    validateDefault(entry.default ?? {}, `${path}.default`, out);
  });
  return out;
}

function validateTop(ref: PolicyTargetRef | undefined, out: Violation[]): void {
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

function validateToRef(ref: PolicyTargetRef, field: string, out: Violation[]): void {
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

function validateDefault(conf: MeshTimeoutConf, path: string, out: Violation[]): void {
  if (conf.connectionTimeout === undefined && conf.idleTimeout === undefined && conf.http === undefined) {
    out.push({ field: path, message: 'at least one timeout should be configured' });
    return;
  }
  checkDuration(conf.connectionTimeout, `${path}.connectionTimeout`, true, out);
  checkDuration(conf.idleTimeout, `${path}.idleTimeout`, false, out);
  const http = conf.http;
  if (http === undefined) return;
  const hp = `${path}.http`;
  const enforced = [http.requestTimeout, http.maxStreamDuration, http.streamIdleTimeout, http.maxConnectionDuration];
  if (enforced.every((v) => v === undefined) && NOT_ENFORCED.every((k) => http[k] === undefined)) {
    out.push({ field: hp, message: 'at least one timeout in this section should be configured' });
  }
  checkDuration(http.requestTimeout, `${hp}.requestTimeout`, false, out);
  checkDuration(http.streamIdleTimeout, `${hp}.streamIdleTimeout`, false, out);
  checkDuration(http.maxStreamDuration, `${hp}.maxStreamDuration`, false, out);
  checkDuration(http.maxConnectionDuration, `${hp}.maxConnectionDuration`, false, out);
  for (const k of NOT_ENFORCED) {
    if (http[k] === undefined) continue;
    if (checkDuration(http[k], `${hp}.${k}`, false, out)) {
      out.push({ field: `${hp}.${k}`, message: `meshext does not enforce ${k} yet: remove it (accepting it would leave it without effect)` });
    }
  }
}

/** Checks one duration; true when it parsed and is in range. */
function checkDuration(v: string | undefined, field: string, positive: boolean, out: Violation[]): boolean {
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
