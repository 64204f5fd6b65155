/**
 * Which `to[]` policy entries configure one MeshExternalService, in the order Kuma merges them (Kuma 2.10+ "How
 * policies are combined"): the policies of the service's mesh are ordered by top-level targetRef (all kind Mesh
 * here: other kinds are refused at validation), then origin (`global` before `zone`), then display name in
 * inverted lexicographical order (`zzz` first, `aaa` last); their `to[]` entries that select the service are
 * concatenated in that order and sorted again, stably, by `to[].targetRef` kind (`Mesh` before
 * `MeshExternalService`). A later entry's `default` overrides an earlier one's, field by field; each kind's
 * merge (snapshot/<kind>.ts) folds the entries this returns. Policy role is not ranked: every policy a node
 * agent reads plays the same role.
 */
import type { MeshExternalServiceResource, PolicyTargetRef, ToPolicySpec } from '../resources/types.js';
import { displayNameOf } from '../resources/types.js';
import { parseGoDuration } from '../resources/duration.js';
import { appliesToNode } from '../resources/validate-policy.js';

/** What ordering and selection read of a policy resource. */
export interface ToPolicy<Conf> {
  name: string;
  mesh: string;
  labels: Record<string, string>;
  spec: ToPolicySpec<Conf>;
}

/** The entries that select one service, lowest priority first, and the policies they came from. */
export interface MergeEntries<Conf> {
  confs: Conf[];
  /** Names of the contributing policies, in merge order, each once. */
  policies: string[];
}

const TO_KIND_RANK: Record<string, number> = { Mesh: 0, MeshExternalService: 1 };

/** Kuma's priority order: lower priority first, so later entries override earlier ones. */
export function orderPolicies<P extends { labels: Record<string, string>; name: string }>(policies: readonly P[]): P[] {
  const origin = (p: P): number => (p.labels['kuma.io/origin'] === 'global' ? 0 : 1);
  return [...policies].sort((a, b) => {
    const o = origin(a) - origin(b);
    if (o !== 0) return o;
    const na = displayNameOf(a);
    const nb = displayNameOf(b);
    return na < nb ? 1 : na > nb ? -1 : 0;
  });
}

/** Whether a targetRef (a `to[]` entry's, or a policy's own) selects the service. */
export function selects(ref: PolicyTargetRef, mes: MeshExternalServiceResource): boolean {
  if (ref.kind === 'Mesh') return true;
  if (ref.kind !== 'MeshExternalService') return false;
  if (ref.labels !== undefined) return Object.entries(ref.labels).every(([k, v]) => mes.labels[k] === v);
  if (ref.namespace !== undefined && ref.namespace !== '' && ref.namespace !== mes.namespace) return false;
  return ref.name === mes.name || ref.name === displayNameOf(mes);
}

/** The `default`s of every `to[]` entry (of valid policies of any mesh; filtered here) that selects `mes`, in merge order. */
export function mergeEntries<Conf>(mes: MeshExternalServiceResource, policies: readonly ToPolicy<Conf>[]): MergeEntries<Conf> {
  const entries: Array<{ policy: string; rank: number; conf: Conf }> = [];
  for (const p of orderPolicies(policies.filter((x) => x.mesh === mes.mesh && appliesToNode(x.spec.targetRef)))) {
    for (const e of p.spec.to ?? []) {
      if (e.default !== undefined && selects(e.targetRef, mes)) entries.push({ policy: p.name, rank: TO_KIND_RANK[e.targetRef.kind] ?? 0, conf: e.default });
    }
  }
  // Array.prototype.sort is stable: equal kinds keep the policy order.
  entries.sort((a, b) => a.rank - b.rank);
  const out: MergeEntries<Conf> = { confs: [], policies: [] };
  for (const { policy, conf } of entries) {
    if (!out.policies.includes(policy)) out.policies.push(policy);
    out.confs.push(conf);
  }
  return out;
}

/** A validated Go duration in whole ms, rounded up so a sub-millisecond value never becomes "none" (0). */
export function durationMs(text: string): number {
  const d = parseGoDuration(text);
  if ('error' in d) throw new Error(`policy duration ${text} was not validated`);
  return Math.ceil(d.ms);
}

/**
 * Kuma's merge of `default`s (MergeConfs): later confs override earlier ones field by field, objects merged
 * recursively, lists and scalars replaced whole.
 */
export function mergeConfs<Conf extends object>(confs: readonly Conf[]): Conf {
  const merge = (a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> => {
    const out: Record<string, unknown> = { ...a };
    for (const [k, v] of Object.entries(b)) {
      if (v === undefined) continue;
      const prev = out[k];
      const obj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
      out[k] = obj(prev) && obj(v) ? merge(prev, v) : v;
    }
    return out;
  };
  return confs.reduce<Record<string, unknown>>((acc, c) => merge(acc, c as Record<string, unknown>), {}) as Conf;
}
