/**
 * MeshCircuitBreaker `default` rules: Kuma's validator (pkg/plugins/policies/meshcircuitbreaker/api/v1alpha1/
 * validator.go) with its paths and messages, plus what meshext does not carry out, refused by name rather than
 * accepted and ignored: connection pool limits and a panic threshold (meshext's balancer has one fixed rule: with every endpoint out, it tries
 * them anyway, see src/proxy/endpoints.ts). `localOriginFailures` without `splitExternalAndLocalErrors` is
 * accepted as Kuma accepts it: its documented meaning is that it takes effect only in split mode (unsplit,
 * local-origin failures count in the other detectors), which is what meshext does.
 */
import type { MeshCircuitBreakerConf, MeshCircuitBreakerSpec, Violation } from './types.js';
import { checkDuration, toPolicyWarnings, validateToPolicy } from './validate-policy.js';

const GREATER_THAN_0 = 'must be greater than 0';
const PERCENT = 'must be in inclusive range [0, 100]';

/** Validates a MeshCircuitBreaker spec (paths start at `spec`). */
export function validateMeshCircuitBreaker(spec: MeshCircuitBreakerSpec): Violation[] {
  return validateToPolicy(spec, validateCircuitBreakerConf, { noDataplane: NO_DATAPLANE });
}

/**
 * Why a MeshCircuitBreaker cannot target one Dataplane: in Kuma each Dataplane's Envoy counts its own connections
 * and ejects endpoints for itself; meshext counts the service's connections and requests once (the engine's state
 * per service) and keeps one health verdict per endpoint, for every client on the node.
 */
const NO_DATAPLANE = "a MeshCircuitBreaker's connection limits count the connections and requests of every client on the node to the service, and its outlier detection ejects endpoints for all of them: neither can be one Dataplane's own";

/**
 * Warnings of a valid MeshCircuitBreaker: its inbound sections (ignored, as for every `to[]` policy) and
 * `connectionLimits.maxRetries`, which Kuma's own `mesh-circuit-breaker-all-default` sets (3): Envoy's bound
 * on retries in flight across the service is not kept by meshext (MeshRetry `numRetries` bounds each
 * request's), so it is ignored with a warning rather than rejecting Kuma's default policy.
 */
export function meshCircuitBreakerWarnings(spec: unknown): Violation[] {
  const out = toPolicyWarnings('circuit breakers')(spec);
  ((spec as MeshCircuitBreakerSpec).to ?? []).forEach((e, i) => {
    if (e.default?.connectionLimits?.maxRetries !== undefined) {
      out.push({ field: `spec.to[${i}].default.connectionLimits.maxRetries`, message: 'ignored: meshext does not bound retries in flight across a service; MeshRetry numRetries bounds each request\'s retries' });
    }
  });
  return out;
}

/** Validates one `to[].default` of a MeshCircuitBreaker at `path`. */
export function validateCircuitBreakerConf(conf: MeshCircuitBreakerConf, path: string, out: Violation[]): void {
  if (conf.connectionLimits === undefined && conf.outlierDetection === undefined) {
    out.push({ field: path, message: "at least one of: 'connectionLimits' or 'outlierDetection' should be configured" });
    return;
  }
  const l = conf.connectionLimits;
  if (l !== undefined) {
    const lp = `${path}.connectionLimits`;
    for (const k of ['maxConnections', 'maxConnectionPools', 'maxPendingRequests', 'maxRetries', 'maxRequests'] as const) {
      if (l[k] !== undefined && l[k] <= 0) out.push({ field: `${lp}.${k}`, message: GREATER_THAN_0 });
    }
    if (l.maxConnectionPools !== undefined) {
      out.push({ field: `${lp}.maxConnectionPools`, message: 'meshext does not limit connection pools (it keeps one per endpoint address and thread): remove it' });
    }
  }
  const o = conf.outlierDetection;
  if (o === undefined) return;
  const op = `${path}.outlierDetection`;
  checkDuration(o.interval, `${op}.interval`, true, out);
  checkDuration(o.baseEjectionTime, `${op}.baseEjectionTime`, true, out);
  if (o.maxEjectionPercent !== undefined && o.maxEjectionPercent > 100) out.push({ field: `${op}.maxEjectionPercent`, message: PERCENT });
  if (o.healthyPanicThreshold !== undefined) {
    out.push({
      field: `${op}.healthyPanicThreshold`,
      message: 'meshext does not take a panic threshold: its balancer tries endpoints that are out only when every endpoint is out; remove it',
    });
  }
  const d = o.detectors;
  const dp = `${op}.detectors`;
  if (d === undefined) {
    out.push({ field: dp, message: 'must be defined' });
    return;
  }
  if (d.totalFailures === undefined && d.gatewayFailures === undefined && d.localOriginFailures === undefined && d.successRate === undefined && d.failurePercentage === undefined) {
    out.push({ field: dp, message: 'must have at least one defined: totalFailures, gatewayFailures, localOriginFailures, successRate, failurePercentage' });
    return;
  }
  for (const k of ['totalFailures', 'gatewayFailures', 'localOriginFailures'] as const) {
    const c = d[k]?.consecutive;
    if (c !== undefined && c <= 0) out.push({ field: `${dp}.${k}.consecutive`, message: GREATER_THAN_0 });
  }
  const sr = d.successRate;
  if (sr !== undefined) {
    if (sr.minimumHosts !== undefined && sr.minimumHosts <= 0) out.push({ field: `${dp}.successRate.minimumHosts`, message: GREATER_THAN_0 });
    if (sr.requestVolume !== undefined && sr.requestVolume <= 0) out.push({ field: `${dp}.successRate.requestVolume`, message: GREATER_THAN_0 });
    if (sr.standardDeviationFactor !== undefined) {
      const n = Number(sr.standardDeviationFactor);
      if (typeof sr.standardDeviationFactor === 'string' && (sr.standardDeviationFactor.trim() === '' || !Number.isFinite(n))) out.push({ field: `${dp}.successRate.standardDeviationFactor`, message: 'invalid number' });
      else if (n <= 0) out.push({ field: `${dp}.successRate.standardDeviationFactor`, message: 'must be greater than 0' });
    }
  }
  const fp = d.failurePercentage;
  if (fp !== undefined) {
    if (fp.minimumHosts !== undefined && fp.minimumHosts <= 0) out.push({ field: `${dp}.failurePercentage.minimumHosts`, message: GREATER_THAN_0 });
    if (fp.requestVolume !== undefined && fp.requestVolume <= 0) out.push({ field: `${dp}.failurePercentage.requestVolume`, message: GREATER_THAN_0 });
    if (fp.threshold !== undefined && fp.threshold > 100) out.push({ field: `${dp}.failurePercentage.threshold`, message: PERCENT });
  }
}
