/** The MeshTimeout values in effect for one MeshExternalService, merged as Kuma merges policies (snapshot/policy.ts). */
import type { MeshExternalServiceResource, MeshTimeoutConf, MeshTimeoutResource } from '../resources/types.js';
import { durationMs as ms, mergeEntries } from './policy.js';

/** Effective values in ms (absent: no policy sets it) and the policies that contributed, in merge order. */
export interface EffectiveTimeouts {
  connectMs?: number;
  idleMs?: number;
  requestMs?: number;
  maxStreamMs?: number;
  streamIdleMs?: number;
  maxConnectionMs?: number;
  policies: string[];
}

/** The merged MeshTimeout values for `mes` from every valid MeshTimeout (all meshes; filtered here). */
export function effectiveTimeouts(mes: MeshExternalServiceResource, policies: readonly MeshTimeoutResource[]): EffectiveTimeouts {
  const { confs, policies: names } = mergeEntries<MeshTimeoutConf>(mes, policies);
  const out: EffectiveTimeouts = { policies: names };
  for (const conf of confs) {
    if (conf.connectionTimeout !== undefined) out.connectMs = ms(conf.connectionTimeout);
    if (conf.idleTimeout !== undefined) out.idleMs = ms(conf.idleTimeout);
    if (conf.http?.requestTimeout !== undefined) out.requestMs = ms(conf.http.requestTimeout);
    if (conf.http?.maxStreamDuration !== undefined) out.maxStreamMs = ms(conf.http.maxStreamDuration);
    if (conf.http?.streamIdleTimeout !== undefined) out.streamIdleMs = ms(conf.http.streamIdleTimeout);
    if (conf.http?.maxConnectionDuration !== undefined) out.maxConnectionMs = ms(conf.http.maxConnectionDuration);
  }
  return out;
}
