/**
 * MeshHealthCheck `default` rules: Kuma's validator (pkg/plugins/policies/meshhealthcheck/api/v1alpha1/
 * validator.go) with its paths and messages, plus what meshext does not carry out, refused by name: an event
 * log file (health transitions go to meshext's own log), the no-traffic interval, connection reuse (each check
 * opens its own connection), panic settings (meshext's balancer has one fixed rule: with every endpoint out it
 * tries them anyway). TCP payloads must be base64, as Kuma's API documents them.
 */
import type { MeshHealthCheckConf, MeshHealthCheckSpec, Violation } from './types.js';
import { checkDuration, GREATER_THAN_ZERO, validateToPolicy } from './validate-policy.js';
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Validates a MeshHealthCheck spec (paths start at `spec`). Kuma refuses `to[].targetRef` kind
 * MeshExternalService unless the top-level kind is Mesh; here the top level is always Mesh (Dataplane is refused,
 * NO_DATAPLANE), so it is accepted: meshext checks the endpoints of a MeshExternalService itself.
 */
export function validateMeshHealthCheck(spec: MeshHealthCheckSpec): Violation[] {
  return validateToPolicy(spec, validateHealthCheckConf, { noDataplane: NO_DATAPLANE });
}

/**
 * Why a MeshHealthCheck cannot target one Dataplane: each Envoy of Kuma checks the endpoints for itself, but meshext
 * checks each endpoint once for the node and every client (VIP path and every Dataplane's outbounds) is balanced
 * over that one verdict; one Dataplane cannot have its own.
 */
const NO_DATAPLANE = "a MeshHealthCheck judges the service's endpoints, and meshext checks each once for every client on the node (one health verdict per endpoint, shared by the VIP path and every Dataplane's outbounds)";

/** Validates one `to[].default` of a MeshHealthCheck at `path`. */
export function validateHealthCheckConf(conf: MeshHealthCheckConf, path: string, out: Violation[]): void {
  checkDuration(conf.interval, `${path}.interval`, true, out);
  checkDuration(conf.timeout, `${path}.timeout`, true, out);
  if (conf.unhealthyThreshold !== undefined && conf.unhealthyThreshold <= 0) out.push({ field: `${path}.unhealthyThreshold`, message: GREATER_THAN_ZERO });
  if (conf.healthyThreshold !== undefined && conf.healthyThreshold <= 0) out.push({ field: `${path}.healthyThreshold`, message: GREATER_THAN_ZERO });
  checkDuration(conf.initialJitter, `${path}.initialJitter`, true, out);
  checkDuration(conf.intervalJitter, `${path}.intervalJitter`, true, out);
  if (conf.intervalJitterPercent !== undefined && (conf.intervalJitterPercent < 0 || conf.intervalJitterPercent > 100)) {
    out.push({ field: `${path}.intervalJitterPercent`, message: 'must be in inclusive range [0, 100]' });
  }
  checkDuration(conf.unhealthyInterval, `${path}.unhealthyInterval`, true, out);
  checkDuration(conf.noTrafficInterval, `${path}.noTrafficInterval`, true, out);
  if (conf.http !== undefined) {
    if (conf.http.path !== undefined && conf.http.path === '') out.push({ field: `${path}.http.path`, message: 'must be defined' });
    (conf.http.expectedStatuses ?? []).forEach((s, i) => {
      if (s < 100 || s >= 600) out.push({ field: `${path}.http.expectedStatuses[${i}]`, message: 'must be in inclusive range [100, 599]' });
    });
  }
  if (conf.http === undefined && conf.tcp === undefined && conf.grpc === undefined) out.push({ field: path, message: 'must have at least one defined: http, tcp, grpc' });
  const tcp = conf.tcp;
  if (tcp?.send !== undefined && !BASE64.test(tcp.send)) out.push({ field: `${path}.tcp.send`, message: 'must be base64 encoded' });
  (tcp?.receive ?? []).forEach((r, i) => {
    if (!BASE64.test(r) || r === '') out.push({ field: `${path}.tcp.receive[${i}]`, message: 'must be base64 encoded and not empty' });
  });
  const refuse = (k: keyof MeshHealthCheckConf, why: string): void => {
    if (conf[k] !== undefined) out.push({ field: `${path}.${k}`, message: `meshext ${why}: remove it` });
  };
  refuse('eventLogPath', 'logs health check transitions in its own log, not to an event log file');
  refuse('noTrafficInterval', 'checks every endpoint at its interval whether or not it had traffic');
  refuse('healthyPanicThreshold', 'does not take a panic threshold (with every endpoint out, its balancer tries them anyway)');
  if (conf.reuseConnection === true) out.push({ field: `${path}.reuseConnection`, message: 'meshext opens a new connection for every check: remove it or set it to false' });
  if (conf.failTrafficOnPanic === true) out.push({ field: `${path}.failTrafficOnPanic`, message: 'meshext always tries endpoints that are out when every endpoint is out: remove it or set it to false' });
  if (conf.alwaysLogHealthCheckFailures !== undefined) out.push({ field: `${path}.alwaysLogHealthCheckFailures`, message: 'meshext logs each change of an endpoint\'s health, not each failed check: remove it' });
}
