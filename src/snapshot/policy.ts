/**
 * Which `to[]` policy entries configure one MeshExternalService, in the order Kuma merges them (Kuma 2.10+ "How
 * policies are combined"): the policies of the service's mesh are ordered by top-level targetRef kind (`Mesh`,
 * the least specific, before `Dataplane`; other kinds are refused at validation), then origin (`global` before
 * `zone`), then display name in inverted lexicographical order (`zzz` first, `aaa` last); their `to[]` entries
 * that select the service are concatenated in that order and sorted again, stably, by `to[].targetRef` kind
 * (`Mesh` before `MeshExternalService`). A later entry's `default` overrides an earlier one's, field by field; each kind's
 * merge (snapshot/<kind>.ts) folds the entries this returns. Policy role is not ranked: every policy a node
 * agent reads plays the same role.
 */
import type { DataplaneResource, MeshExternalServiceResource, PolicyTargetRef, ToPolicySpec } from '../resources/types.js';
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
/** Top-level kinds by specificity: a Dataplane-targeted policy overrides a mesh-wide one. */
const TOP_KIND_RANK: Record<string, number> = { Mesh: 0, Dataplane: 1 };

/** Kuma's priority order: lower priority first, so later entries override earlier ones. */
export function orderPolicies<P extends { labels: Record<string, string>; name: string; spec: { targetRef?: PolicyTargetRef } }>(policies: readonly P[]): P[] {
  const kind = (p: P): number => TOP_KIND_RANK[p.spec.targetRef?.kind ?? 'Mesh'] ?? 0;
  const origin = (p: P): number => (p.labels['kuma.io/origin'] === 'global' ? 0 : 1);
  return [...policies].sort((a, b) => {
    const k = kind(a) - kind(b);
    if (k !== 0) return k;
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

/**
 * Whether a top-level `kind: Dataplane` targetRef selects `dp` (Kuma's DppSelectedByPolicy): by name (or display
 * name) and namespace, by labels (all of them), or every Dataplane when it names neither.
 */
export function selectsDataplane(ref: PolicyTargetRef, dp: DataplaneResource): boolean {
  if (ref.kind !== 'Dataplane') return false;
  if (ref.labels !== undefined) return Object.entries(ref.labels).every(([k, v]) => dp.labels[k] === v);
  if (ref.name === undefined || ref.name === '') return true;
  if ((ref.namespace ?? '') !== dp.namespace) return false;
  return ref.name === dp.name || ref.name === displayNameOf(dp);
}

/** Whether any policy targets Dataplanes (and so may give a Dataplane's outbounds values of their own). */
export function targetsDataplanes(policies: ReadonlyArray<{ spec: { targetRef?: PolicyTargetRef } }>): boolean {
  return policies.some((p) => p.spec.targetRef?.kind === 'Dataplane');
}

/**
 * The `default`s of every `to[]` entry (of valid policies of any mesh; filtered here) that selects `mes`, in merge
 * order. Without `dataplane`: the clients of the whole node (the VIP path), so Dataplane-targeted policies are left
 * out. With it: that Dataplane's outbound listeners, so the policies selecting it join, above the mesh-wide ones.
 */
export function mergeEntries<Conf>(mes: MeshExternalServiceResource, policies: readonly ToPolicy<Conf>[], dataplane?: DataplaneResource): MergeEntries<Conf> {
  const applies = (p: ToPolicy<Conf>): boolean => {
    if (p.mesh !== mes.mesh || !appliesToNode(p.spec.targetRef)) return false;
    if (p.spec.targetRef?.kind !== 'Dataplane') return true;
    return dataplane !== undefined && dataplane.mesh === mes.mesh && selectsDataplane(p.spec.targetRef, dataplane);
  };
  const entries: Array<{ policy: string; rank: number; conf: Conf }> = [];
  for (const p of orderPolicies(policies.filter(applies))) {
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
