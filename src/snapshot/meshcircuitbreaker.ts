/**
 * What a merged MeshCircuitBreaker `default` means for a service's plan, as Kuma's plugin configures Envoy
 * (meshcircuitbreaker plugin, xds/configurer.go):
 * - `connectionLimits` present: each limit it sets, the others at Envoy's default thresholds (1024); the engine
 *   enforces them (PlanLimits). Absent: no limits (meshext's default, as before any policy).
 * - `outlierDetection` present and not `disabled`: a consecutive detector is on only when its `consecutive` is
 *   set (Kuma sets enforcing 0 otherwise); `baseEjectionTime` 30 s, `maxEjectionPercent` 10 and
 *   `splitExternalAndLocalErrors` false by Envoy's defaults. The control plane applies it
 *   (src/proxy/endpoints.ts), in place of meshext's own passive back-off.
 */
import type { EngineLimits, PlanOutlierDetection } from '../native/addon.js';
import type { MeshCircuitBreakerConf, MeshExternalServiceResource, MeshCircuitBreakerResource } from '../resources/types.js';
import { durationMs, mergeConfs, mergeEntries } from './policy.js';

/** Envoy's default circuit-breaker thresholds (max_connections, max_pending_requests, max_requests). */
export const ENVOY_DEFAULT_THRESHOLD = 1024;
/** Envoy's outlier detection defaults. */
export const OUTLIER_DEFAULTS = {
  baseEjectionMs: 30_000,
  maxEjectionPercent: 10,
  intervalMs: 10_000,
  successRate: { minimumHosts: 5, requestVolume: 100, stdevFactor: 1.9 },
  failurePercentage: { minimumHosts: 5, requestVolume: 50, threshold: 85 },
} as const;

/** The engine's connection limits for a merged conf, or undefined when it sets none. */
export function limitsFor(conf: MeshCircuitBreakerConf | undefined): EngineLimits | undefined {
  const l = conf?.connectionLimits;
  if (!l) return undefined;
  return {
    maxConnections: l.maxConnections ?? ENVOY_DEFAULT_THRESHOLD,
    maxPendingRequests: l.maxPendingRequests ?? ENVOY_DEFAULT_THRESHOLD,
    maxRequests: l.maxRequests ?? ENVOY_DEFAULT_THRESHOLD,
  };
}

/** The outlier detection for a merged conf, or undefined when it has none (or it is disabled). */
export function outlierFor(conf: MeshCircuitBreakerConf | undefined): PlanOutlierDetection | undefined {
  const o = conf?.outlierDetection;
  if (!o || o.disabled === true) return undefined;
  const d = o.detectors;
  return {
    baseEjectionMs: o.baseEjectionTime !== undefined ? durationMs(o.baseEjectionTime) : OUTLIER_DEFAULTS.baseEjectionMs,
    maxEjectionPercent: o.maxEjectionPercent ?? OUTLIER_DEFAULTS.maxEjectionPercent,
    splitExternalAndLocalErrors: o.splitExternalAndLocalErrors ?? false,
    consecutiveTotal: d?.totalFailures?.consecutive ?? 0,
    consecutiveGateway: d?.gatewayFailures?.consecutive ?? 0,
    // Envoy reads this detector only in split mode.
    consecutiveLocalOrigin: o.splitExternalAndLocalErrors === true ? (d?.localOriginFailures?.consecutive ?? 0) : 0,
    intervalMs: o.interval !== undefined ? durationMs(o.interval) : OUTLIER_DEFAULTS.intervalMs,
    ...(d?.successRate
      ? {
          successRate: {
            minimumHosts: d.successRate.minimumHosts ?? OUTLIER_DEFAULTS.successRate.minimumHosts,
            requestVolume: d.successRate.requestVolume ?? OUTLIER_DEFAULTS.successRate.requestVolume,
            stdevFactor: d.successRate.standardDeviationFactor !== undefined ? Number(d.successRate.standardDeviationFactor) : OUTLIER_DEFAULTS.successRate.stdevFactor,
          },
        }
      : {}),
    ...(d?.failurePercentage
      ? {
          failurePercentage: {
            minimumHosts: d.failurePercentage.minimumHosts ?? OUTLIER_DEFAULTS.failurePercentage.minimumHosts,
            requestVolume: d.failurePercentage.requestVolume ?? OUTLIER_DEFAULTS.failurePercentage.requestVolume,
            threshold: d.failurePercentage.threshold ?? OUTLIER_DEFAULTS.failurePercentage.threshold,
          },
        }
      : {}),
  };
}

/** The merged `default` of every MeshCircuitBreaker `to[]` entry that selects `mes`, Kuma's order; undefined when none does. */
export function effectiveCircuitBreaker(mes: MeshExternalServiceResource, policies: readonly MeshCircuitBreakerResource[]): { conf: MeshCircuitBreakerConf; policies: string[] } | undefined {
  const e = mergeEntries(mes, policies);
  return e.policies.length > 0 ? { conf: mergeConfs(e.confs), policies: e.policies } : undefined;
}
