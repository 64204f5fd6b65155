/**
 * Workload identity from the cgroup a socket's process runs in. The rules, in order (first that applies wins):
 * 1. an explicit mapping: a glob over the cgroup path (relative to the cgroup2 root; `*` within one path segment,
 *    `**` across segments) → a SPIFFE ID, from the identity map file;
 * 2. a Kubernetes pod of this node: a `pod<uid>` segment (cgroupfs `kubepods/<qos>/pod<uid>`, systemd
 *    `kubepods-<qos>-pod<uid_with_underscores>.slice`) → `spiffe://<mesh>.<zone>.mesh.local/ns/<namespace>/sa/<sa>`,
 *    as Kuma's MeshIdentity names workloads; a pod uid the agent has not seen gets no identity;
 * 3. a systemd service of the system manager: the deepest `<unit>.service` segment under `/system.slice` →
 *    `spiffe://<mesh>.<zone>.mesh.local/host/<node>/unit/<unit>.service` (characters outside SPIFFE's path set
 *    become `_`).
 * Anything else (user sessions, scopes, the root) has no identity. Sub-cgroups take their ancestor's identity.
 */
import { spiffeIdError } from '../resources/validate-meshtrafficpermission.js';

/** A pod of this node as the Kubernetes source reports it. */
export interface PodIdentity {
  namespace: string;
  serviceAccount: string;
  /** The pod's mesh (label or annotation `kuma.io/mesh`, else `default`). */
  mesh: string;
}

/** One explicit mapping of the identity map file. */
export interface IdentityOverride {
  cgroup: string;
  spiffeID: string;
}

export interface IdentityRules {
  zone: string;
  /** Mesh whose trust domain host units belong to. */
  hostMesh: string;
  /** This node's name (Kubernetes node name, else the hostname). */
  node: string;
  overrides: IdentityOverride[];
  /** Pods of this node by uid. */
  pods: ReadonlyMap<string, PodIdentity>;
}

export type IdentityRule = 'override' | 'pod' | 'unit';

/** Kuma's trust domain for a mesh in a zone (MeshIdentity's default template). */
export function trustDomain(mesh: string, zone: string): string {
  return `${mesh}.${zone}.mesh.local`;
}

const POD_SEGMENT = /^(?:kubepods-(?:[a-z]+-)?)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$/;

/** The pod uid a cgroup path belongs to (its deepest `pod<uid>` segment under a kubepods hierarchy), if any. */
export function podUidOf(cgroupPath: string): string | undefined {
  const segs = cgroupPath.split('/');
  if (!segs.some((s) => s === 'kubepods' || s.startsWith('kubepods.') || s.startsWith('kubepods-'))) return undefined;
  for (let i = segs.length - 1; i >= 0; i--) {
    const m = POD_SEGMENT.exec(segs[i] as string);
    if (m) return (m[1] as string).replace(/_/g, '-');
  }
  return undefined;
}

/** The systemd service a cgroup path belongs to (system manager only), if any. */
export function unitOf(cgroupPath: string): string | undefined {
  const segs = cgroupPath.split('/').filter(Boolean);
  if (segs[0] !== 'system.slice') return undefined;
  for (let i = segs.length - 1; i >= 1; i--) if ((segs[i] as string).endsWith('.service')) return segs[i];
  return undefined;
}

/** A string made safe as one SPIFFE path segment. */
export function pathSegment(s: string): string {
  const out = s.replace(/[^A-Za-z0-9._-]/g, '_');
  return out === '.' || out === '..' || out === '' ? out.replace(/./g, '_') || '_' : out;
}

/** Compiles a cgroup path glob (`*` within a segment, `**` across segments, `?` one character). */
export function compileGlob(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Checks an identity map; each message names the entry, field and value. */
export function validateOverrides(entries: unknown, file: string): IdentityOverride[] {
  if (!Array.isArray(entries)) throw Object.assign(new Error(`${file}: expected a list of {cgroup, spiffeID} entries`), { code: 'MESHEXT_E_IDENTITY_MAP' });
  return entries.map((e, i) => {
    const o = e as Partial<IdentityOverride>;
    if (typeof o?.cgroup !== 'string' || !o.cgroup.startsWith('/')) {
      throw Object.assign(new Error(`${file}: [${i}].cgroup: expected a cgroup path glob starting with / (relative to the cgroup2 root), got ${JSON.stringify(o?.cgroup)}`), { code: 'MESHEXT_E_IDENTITY_MAP' });
    }
    const err = typeof o.spiffeID === 'string' ? spiffeIdError(o.spiffeID) : 'expected a string';
    if (err !== undefined) throw Object.assign(new Error(`${file}: [${i}].spiffeID: ${JSON.stringify(o.spiffeID)} is not a SPIFFE ID: ${err}`), { code: 'MESHEXT_E_IDENTITY_MAP' });
    return { cgroup: o.cgroup, spiffeID: o.spiffeID as string };
  });
}

/** Resolves identities of cgroup paths by the rules in the module comment. */
export class IdentityResolver {
  private readonly globs: Array<{ re: RegExp; spiffeID: string }>;

  constructor(private readonly rules: IdentityRules) {
    this.globs = rules.overrides.map((o) => ({ re: compileGlob(o.cgroup), spiffeID: o.spiffeID }));
  }

  /** The identity of a cgroup path by its own rules (not inherited), or undefined. */
  own(cgroupPath: string): { id: string; rule: IdentityRule } | undefined {
    const g = this.globs.find((x) => x.re.test(cgroupPath));
    if (g) return { id: g.spiffeID, rule: 'override' };
    const uid = podUidOf(cgroupPath);
    if (uid !== undefined) {
      const pod = this.rules.pods.get(uid);
      // A pod sub-cgroup never falls through to the unit rule: an unknown pod has no identity.
      return pod ? { id: `spiffe://${trustDomain(pod.mesh, this.rules.zone)}/ns/${pathSegment(pod.namespace)}/sa/${pathSegment(pod.serviceAccount)}`, rule: 'pod' } : undefined;
    }
    const unit = unitOf(cgroupPath);
    if (unit !== undefined) return { id: `spiffe://${trustDomain(this.rules.hostMesh, this.rules.zone)}/host/${pathSegment(this.rules.node)}/unit/${pathSegment(unit)}`, rule: 'unit' };
    return undefined;
  }
}
