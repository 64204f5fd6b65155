/**
 * MeshRetry for one MeshExternalService: the merged `default` of the policies that select it (merged by the
 * shared policy layer, src/snapshot/policy.ts, as Kuma merges: objects field by field, lists replaced), with
 * durations in ms. plan.ts maps it into the plan's `retry` the way Kuma's meshretry plugin configures Envoy.
 */

/** The http/grpc section of a merged MeshRetry, durations in ms (absent: no policy sets it). */
export interface EffectiveRequestRetry {
  numRetries?: number;
  perTryMs?: number;
  backOff?: { baseMs?: number; maxMs?: number };
  /** Kuma's names as written (5xx, GatewayError, HttpMethodGet, 503, Canceled, …). */
  retryOn?: string[];
}

/** The merged MeshRetry values for one service, and the policies that contributed, in merge order. */
export interface EffectiveRetry {
  tcp?: { maxConnectAttempt?: number };
  http?: EffectiveRequestRetry;
  grpc?: EffectiveRequestRetry;
  policies: string[];
}
