/**
 * Who may connect to one MeshExternalService: the MeshTrafficPermissions that select it, and the one evaluation
 * of their rules. Kuma's order (2.12+ MeshTrafficPermission rules): a client matching any `deny` matcher is
 * denied; else one matching any `allowWithShadowDeny` matcher is let through but counted and logged as denied;
 * else one matching any `allow` matcher is allowed; else the mesh default applies: denied when the mesh sets
 * `routing.defaultForbidMeshExternalServiceAccess`, allowed otherwise (the flag plays the part of Kuma's default
 * allow-all MeshTrafficPermission). Rules of every selecting policy are unioned, so policy order does not change a
 * verdict; it only orders what is shown. A client with no identity matches no matcher.
 *
 * The kernel never evaluates anything: the agent runs this for every (service, identity) pair and writes the
 * verdicts (src/access/table.ts); the log line for a denial asks this function again which rule it was.
 */
import type { MeshExternalServiceResource, MeshTrafficPermissionResource, PermissionMatch } from '../resources/types.js';
import { orderPolicies, selects } from './policy.js';
import { appliesToNode } from '../resources/validate-policy.js';

/** A connect-time verdict (the BPF maps' MX_V_*). */
export type AccessVerdict = 'allow' | 'denyRule' | 'denyDefault' | 'denyNoIdentity' | 'shadowDeny';

export type PermissionList = 'deny' | 'allowWithShadowDeny' | 'allow';

/** One matcher, with the policy it came from. */
export interface PermissionMatcher {
  policy: string;
  type: 'Exact' | 'Prefix';
  value: string;
}

/** The merged permissions of one service. */
export interface EffectivePermissions {
  /** Names of the selecting policies, in Kuma's order (lowest priority first). */
  policies: string[];
  deny: PermissionMatcher[];
  allowWithShadowDeny: PermissionMatcher[];
  allow: PermissionMatcher[];
  /** What a client matching no matcher gets. */
  meshDefault: 'allow' | 'deny';
}

/** A verdict and, when a matcher decided it, which one. */
export interface PermissionDecision {
  verdict: AccessVerdict;
  list?: PermissionList;
  matcher?: PermissionMatcher;
}

const LISTS: readonly PermissionList[] = ['deny', 'allowWithShadowDeny', 'allow'];
const LIST_VERDICT: Record<PermissionList, AccessVerdict> = { deny: 'denyRule', allowWithShadowDeny: 'shadowDeny', allow: 'allow' };

/** The permissions of every valid MeshTrafficPermission (any mesh; filtered here) that selects `mes`; undefined when none does. */
export function effectivePermissions(
  mes: MeshExternalServiceResource,
  policies: readonly MeshTrafficPermissionResource[],
  meshForbids: boolean,
): EffectivePermissions | undefined {
  const selecting = orderPolicies(policies.filter((p) => p.mesh === mes.mesh && appliesToNode(p.spec.targetRef) && selects(p.spec.targetRef ?? { kind: 'Mesh' }, mes)));
  if (selecting.length === 0) return undefined;
  const out: EffectivePermissions = { policies: [], deny: [], allowWithShadowDeny: [], allow: [], meshDefault: meshForbids ? 'deny' : 'allow' };
  for (const p of selecting) {
    out.policies.push(p.name);
    for (const rule of p.spec.rules ?? []) {
      for (const list of LISTS) for (const m of rule.default[list] ?? []) pushMatcher(out[list], p.name, m);
    }
  }
  return out;
}

function pushMatcher(into: PermissionMatcher[], policy: string, m: PermissionMatch): void {
  if (m.spiffeID) into.push({ policy, type: m.spiffeID.type, value: m.spiffeID.value });
}

/** Whether a matcher matches a SPIFFE ID (Prefix: a string prefix, as Envoy's StringMatcher that Kuma generates). */
export function matches(m: PermissionMatcher, identity: string): boolean {
  return m.type === 'Exact' ? identity === m.value : identity.startsWith(m.value);
}

/** Each list's Exact matchers by value and its Prefix matchers (the verdict is the list's; an Exact match is the one reported). */
type CompiledLists = Record<PermissionList, { exact: Map<string, PermissionMatcher>; prefix: PermissionMatcher[] }>;
const compiled = new WeakMap<EffectivePermissions, CompiledLists>();

function compile(perm: EffectivePermissions): CompiledLists {
  let c = compiled.get(perm);
  if (c) return c;
  c = {} as CompiledLists;
  for (const list of LISTS) {
    const exact = new Map<string, PermissionMatcher>();
    const prefix: PermissionMatcher[] = [];
    for (const m of perm[list]) {
      if (m.type === 'Exact') {
        if (!exact.has(m.value)) exact.set(m.value, m);
      } else prefix.push(m);
    }
    c[list] = { exact, prefix };
  }
  compiled.set(perm, c);
  return c;
}

/**
 * The verdict for a client with `identity` (null: its cgroup has none) connecting to a service with `perm`. The
 * agent asks this for every (service, identity) pair on the node, so Exact matchers are looked up, not scanned.
 */
export function evaluatePermission(perm: EffectivePermissions, identity: string | null): PermissionDecision {
  if (identity !== null) {
    const c = compile(perm);
    for (const list of LISTS) {
      const m = c[list].exact.get(identity) ?? c[list].prefix.find((x) => matches(x, identity));
      if (m) return { verdict: LIST_VERDICT[list], list, matcher: m };
    }
  }
  if (perm.meshDefault === 'allow') return { verdict: 'allow' };
  return { verdict: identity === null ? 'denyNoIdentity' : 'denyDefault' };
}

/** The verdict for an identity that no matcher matches (the service's default in the kernel maps). */
export function unlistedVerdict(perm: EffectivePermissions): AccessVerdict {
  return perm.meshDefault === 'allow' ? 'allow' : 'denyDefault';
}
