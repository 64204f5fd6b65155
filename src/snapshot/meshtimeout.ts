/**
 * The MeshTimeout values in effect for one MeshExternalService, merged as Kuma merges policies (Kuma 2.10+
 * "How policies are combined"): the policies of the service's mesh are ordered by top-level targetRef (all
 * kind Mesh here: Dataplane is refused at validation), then origin (`global` before `zone`), then display name
 * in inverted lexicographical order (`zzz` first, `aaa` last); their `to[]` entries that select the service
 * are concatenated in that order and sorted again, stably, by `to[].targetRef` kind (`Mesh` before
 * `MeshExternalService`); the entries' `default`s are then merged field by field, a later entry winning.
 * Policy role is not ranked: every policy a node agent reads plays the same role.
 */
import type { MeshExternalServiceResource, MeshTimeoutResource, PolicyTargetRef } from '../resources/types.js';
import { displayNameOf } from '../resources/types.js';
import { parseGoDuration } from '../resources/duration.js';

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

const TO_KIND_RANK: Record<string, number> = { Mesh: 0, MeshExternalService: 1 };

/** Kuma's priority order: lower priority first, so later entries override earlier ones. */
export function orderPolicies(policies: readonly MeshTimeoutResource[]): MeshTimeoutResource[] {
  const origin = (p: MeshTimeoutResource): number => (p.labels['kuma.io/origin'] === 'global' ? 0 : 1);
  return [...policies].sort((a, b) => {
    const o = origin(a) - origin(b);
    if (o !== 0) return o;
    const na = displayNameOf(a);
    const nb = displayNameOf(b);
    return na < nb ? 1 : na > nb ? -1 : 0;
  });
}

/** Whether a `to[].targetRef` selects the service. */
export function selects(ref: PolicyTargetRef, mes: MeshExternalServiceResource): boolean {
  if (ref.kind === 'Mesh') return true;
  if (ref.kind !== 'MeshExternalService') return false;
  if (ref.labels !== undefined) return Object.entries(ref.labels).every(([k, v]) => mes.labels[k] === v);
  if (ref.namespace !== undefined && ref.namespace !== '' && ref.namespace !== mes.namespace) return false;
  return ref.name === mes.name || ref.name === displayNameOf(mes);
}

/** Rounds a positive duration up to whole ms, so a sub-millisecond timeout never becomes "none" (0). */
function ms(text: string): number {
  const d = parseGoDuration(text);
  if ('error' in d) throw new Error(`MeshTimeout duration ${text} was not validated`);
  return Math.ceil(d.ms);
}

/** The merged MeshTimeout values for `mes` from every valid MeshTimeout (all meshes; filtered here). */
export function effectiveTimeouts(mes: MeshExternalServiceResource, policies: readonly MeshTimeoutResource[]): EffectiveTimeouts {
  const entries: Array<{ policy: string; rank: number; conf: NonNullable<NonNullable<MeshTimeoutResource['spec']['to']>[number]['default']> }> = [];
  for (const p of orderPolicies(policies.filter((x) => x.mesh === mes.mesh))) {
    for (const e of p.spec.to ?? []) {
      if (e.default && selects(e.targetRef, mes)) entries.push({ policy: p.name, rank: TO_KIND_RANK[e.targetRef.kind] ?? 0, conf: e.default });
    }
  }
  // Array.prototype.sort is stable: equal kinds keep the policy order.
  entries.sort((a, b) => a.rank - b.rank);
  const out: EffectiveTimeouts = { policies: [] };
  for (const { policy, conf } of entries) {
    if (!out.policies.includes(policy)) out.policies.push(policy);
    if (conf.connectionTimeout !== undefined) out.connectMs = ms(conf.connectionTimeout);
    if (conf.idleTimeout !== undefined) out.idleMs = ms(conf.idleTimeout);
    if (conf.http?.requestTimeout !== undefined) out.requestMs = ms(conf.http.requestTimeout);
    if (conf.http?.maxStreamDuration !== undefined) out.maxStreamMs = ms(conf.http.maxStreamDuration);
    if (conf.http?.streamIdleTimeout !== undefined) out.streamIdleMs = ms(conf.http.streamIdleTimeout);
    if (conf.http?.maxConnectionDuration !== undefined) out.maxConnectionMs = ms(conf.http.maxConnectionDuration);
  }
  return out;
}
