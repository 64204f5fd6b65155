/**
 * What a merged MeshHealthCheck `default` means for a service's plan, as Kuma's plugin configures Envoy
 * (meshhealthcheck plugin, xds/configurer.go), with Kuma's defaults for what the policy leaves unset (interval
 * 1m, timeout 15s, unhealthyThreshold 5, healthyThreshold 1) and Envoy's (HTTP path `/`, expected status 200).
 *
 * Which check runs: http for http and http2 services, grpc for grpc services, tcp for tcp services; a service
 * whose own kind of check is absent or disabled falls back to an enabled tcp check. (Kuma falls back only when
 * the own kind is present and disabled, and otherwise checks nothing; meshext does not silently ignore a tcp
 * check that was asked for.) HTTP checks speak HTTP/2 on http2 services, as Kuma's codec choice; gRPC checks
 * always do. Every check goes over the endpoint's own TLS settings when the service originates TLS.
 *
 * Kuma does not allow a MeshHealthCheck to select a MeshExternalService (its endpoints are not Envoy-managed
 * hosts there); meshext checks them itself, so it does.
 */
import type { PlanHealthCheck } from '../native/addon.js';
import type { MeshHealthCheckConf, MeshExternalServiceResource, MeshHealthCheckResource } from '../resources/types.js';
import type { Protocol } from './types.js';
import { durationMs, mergeConfs, mergeEntries } from './policy.js';

export const HEALTH_CHECK_DEFAULTS = { intervalMs: 60_000, timeoutMs: 15_000, unhealthyThreshold: 5, healthyThreshold: 1, path: '/', expectedStatuses: [200] } as const;

/** The health check of a service of `protocol` under a merged conf, or undefined when no check applies. */
export function healthCheckFor(conf: MeshHealthCheckConf | undefined, protocol: Protocol): PlanHealthCheck | undefined {
  if (!conf) return undefined;
  const on = <T extends { disabled?: boolean }>(c: T | undefined): c is T => c !== undefined && c.disabled !== true;
  let kind: 'tcp' | 'http' | 'grpc' | undefined;
  if ((protocol === 'http' || protocol === 'http2') && on(conf.http)) kind = 'http';
  else if (protocol === 'grpc' && on(conf.grpc)) kind = 'grpc';
  else if (on(conf.tcp)) kind = 'tcp';
  if (!kind) return undefined;
  const intervalMs = conf.interval !== undefined ? durationMs(conf.interval) : HEALTH_CHECK_DEFAULTS.intervalMs;
  const headers: Array<[string, string]> = [];
  for (const h of conf.http?.requestHeadersToAdd?.set ?? []) headers.push([h.name.toLowerCase(), h.value]);
  for (const h of conf.http?.requestHeadersToAdd?.add ?? []) headers.push([h.name.toLowerCase(), h.value]);
  return {
    intervalMs,
    unhealthyIntervalMs: conf.unhealthyInterval !== undefined ? durationMs(conf.unhealthyInterval) : intervalMs,
    timeoutMs: conf.timeout !== undefined ? durationMs(conf.timeout) : HEALTH_CHECK_DEFAULTS.timeoutMs,
    unhealthyThreshold: conf.unhealthyThreshold ?? HEALTH_CHECK_DEFAULTS.unhealthyThreshold,
    healthyThreshold: conf.healthyThreshold ?? HEALTH_CHECK_DEFAULTS.healthyThreshold,
    initialJitterMs: conf.initialJitter !== undefined ? durationMs(conf.initialJitter) : 0,
    intervalJitterMs: conf.intervalJitter !== undefined ? durationMs(conf.intervalJitter) : 0,
    intervalJitterPercent: conf.intervalJitterPercent ?? 0,
    check: {
      kind,
      http2: kind === 'grpc' || (kind === 'http' && protocol === 'http2'),
      path: kind === 'http' ? (conf.http?.path ?? HEALTH_CHECK_DEFAULTS.path) : '',
      // Empty: each endpoint's own name (src/proxy/health-check.ts).
      authority: kind === 'grpc' ? (conf.grpc?.authority ?? '') : '',
      headers: kind === 'http' ? headers : [],
      expectedStatuses: kind === 'http' ? [...(conf.http?.expectedStatuses ?? HEALTH_CHECK_DEFAULTS.expectedStatuses)] : [],
      grpcService: kind === 'grpc' ? (conf.grpc?.serviceName ?? '') : '',
      ...(kind === 'tcp' && conf.tcp?.send !== undefined ? { send: conf.tcp.send } : {}),
      ...(kind === 'tcp' && conf.tcp?.receive !== undefined ? { receive: [...conf.tcp.receive] } : {}),
    },
  };
}

/** The merged `default` of every MeshHealthCheck `to[]` entry that selects `mes`, Kuma's order; undefined when none does. */
export function effectiveHealthCheck(mes: MeshExternalServiceResource, policies: readonly MeshHealthCheckResource[]): { conf: MeshHealthCheckConf; policies: string[] } | undefined {
  const e = mergeEntries(mes, policies);
  return e.policies.length > 0 ? { conf: mergeConfs(e.confs), policies: e.policies } : undefined;
}
