/**
 * MeshRetry for one MeshExternalService: the `default`s of the policies that select it, in Kuma's merge order
 * (snapshot/policy.ts), merged as Kuma merges a policy's Conf: objects field by field, a later entry's value
 * winning, lists (retryOn) replaced whole. Durations in ms. plan.ts maps the result into the plan's `retry`
 * the way Kuma's meshretry plugin configures Envoy.
 */
import type { HeaderMatch, MeshExternalServiceResource, MeshRetryConf, MeshRetryResource } from '../resources/types.js';
import { durationMs as ms, mergeEntries } from './policy.js';

/** The http/grpc section of a merged MeshRetry, durations in ms (absent: no policy sets it). */
export interface EffectiveRequestRetry {
  numRetries?: number;
  perTryMs?: number;
  backOff?: { baseMs?: number; maxMs?: number };
  /** Kuma's names as written (5xx, GatewayError, HttpMethodGet, 503, Canceled, …). */
  retryOn?: string[];
  /** retriableRequestHeaders, as written (validated: no RegularExpression). */
  requestHeaders?: HeaderMatch[];
}

/** The merged MeshRetry values for one service, and the policies that contributed, in merge order. */
export interface EffectiveRetry {
  tcp?: { maxConnectAttempt?: number };
  http?: EffectiveRequestRetry;
  grpc?: EffectiveRequestRetry;
  policies: string[];
}

/** The merged MeshRetry for `mes` from every valid MeshRetry (all meshes; filtered here). */
export function effectiveRetry(mes: MeshExternalServiceResource, policies: readonly MeshRetryResource[]): EffectiveRetry {
  const { confs, policies: names } = mergeEntries<MeshRetryConf>(mes, policies);
  const out: EffectiveRetry = { policies: names };
  for (const conf of confs) {
    if (conf.tcp?.maxConnectAttempt !== undefined) out.tcp = { maxConnectAttempt: conf.tcp.maxConnectAttempt };
    if (conf.http) {
      out.http = mergeRequest(out.http, conf.http);
      if (conf.http.retriableRequestHeaders !== undefined) out.http.requestHeaders = conf.http.retriableRequestHeaders.map((h) => ({ ...h }));
    }
    if (conf.grpc) out.grpc = mergeRequest(out.grpc, conf.grpc);
  }
  return out;
}

function mergeRequest(into: EffectiveRequestRetry | undefined, c: NonNullable<MeshRetryConf['grpc']>): EffectiveRequestRetry {
  const out: EffectiveRequestRetry = { ...into, ...(into?.backOff ? { backOff: { ...into.backOff } } : {}) };
  if (c.numRetries !== undefined) out.numRetries = c.numRetries;
  if (c.perTryTimeout !== undefined) out.perTryMs = ms(c.perTryTimeout);
  if (c.backOff?.baseInterval !== undefined) out.backOff = { ...out.backOff, baseMs: ms(c.backOff.baseInterval) };
  if (c.backOff?.maxInterval !== undefined) out.backOff = { ...out.backOff, maxMs: ms(c.backOff.maxInterval) };
  if (c.retryOn !== undefined) out.retryOn = [...c.retryOn];
  return out;
}
