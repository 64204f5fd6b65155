/**
 * MeshTimeout rules: Kuma's validator (pkg/plugins/policies/meshtimeout/api/v1alpha1/validator.go, 2.10+) with
 * its paths and messages, plus what a node agent cannot do, said as such: meshext proxies the outbound traffic
 * of every client on the node to MeshExternalServices, so only `to[]` entries apply, the policy's clients are
 * the whole node (kind Mesh, or omitted), and the timeouts the engine does not enforce yet are refused rather
 * than accepted and ignored.
 */
import type { MeshTimeoutConf, MeshTimeoutSpec, Violation } from './types.js';
import { checkDuration, validateToPolicy } from './validate-policy.js';

/** Timeouts Kuma has that the engine does not carry out yet. */
const NOT_ENFORCED = ['requestHeadersTimeout'] as const;

/** Validates a MeshTimeout spec; paths start at `spec`. */
export function validateMeshTimeout(spec: MeshTimeoutSpec): Violation[] {
  return validateToPolicy(spec, validateDefault);
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
