/**
 * Workload identity from the cgroup a socket's process runs in. The rules, in order (first that applies wins):
 * 1. an explicit mapping: a glob over the cgroup path (relative to the cgroup2 root; `*` within one path segment,
 *    `**` across segments) → a SPIFFE ID, from the identity map file;
 * 2. the shallowest workload segment of the path decides, so a workload that may create sub-cgroups (a container
 *    runtime, a delegated unit) cannot name itself after another workload by nesting its cgroup name:
 *    - a Kubernetes pod of this node: a `pod<uid>` segment below a kubepods segment (cgroupfs
 *      `kubepods/<qos>/pod<uid>`, systemd `kubepods-<qos>-pod<uid_with_underscores>.slice`) →
 *      `spiffe://<mesh>.<zone>.mesh.local/ns/<namespace>/sa/<sa>`, as Kuma's MeshIdentity names workloads; a pod
 *      uid the agent has not seen, or whose mesh is not a Mesh the agent knows, gets no identity, and neither does
 *      anything below it;
 *    - a systemd service of the system manager: a `<unit>.service` segment under `/system.slice` →
 *      `spiffe://<mesh>.<zone>.mesh.local/host/<node>/unit/<unit>.service` (characters outside SPIFFE's path set
 *      become `_`).
 * Anything else (user sessions, scopes, the root) has no identity. Sub-cgroups take their ancestor's identity;
 * only an explicit mapping changes it. An ID that is not a valid SPIFFE ID is dropped (no identity).
 */
import { spiffeIdError } from '../resources/validate-meshtrafficpermission.js';

/** A pod of this node as the Kubernetes source reports it. */
export interface PodIdentity {
  namespace: string;
  serviceAccount: string;
  /** The pod's mesh (label `kuma.io/mesh`, else `default`); used only if it names a known Mesh. */
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
  /**
   * Meshes the agent knows (Mesh resources and the meshes of its services): a pod's mesh, which the pod's owner
   * sets, becomes part of a trust domain only if it is one of these. Undefined: any mesh that is a DNS label.
   */
  meshes?: ReadonlySet<string>;
}

export type IdentityRule = 'override' | 'pod' | 'unit';

/** Kuma's trust domain for a mesh in a zone (MeshIdentity's default template). */
export function trustDomain(mesh: string, zone: string): string {
  return `${mesh}.${zone}.mesh.local`;
}

const POD_SEGMENT = /^(?:kubepods-(?:[a-z]+-)?)?pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$/;
const KUBEPODS = (s: string): boolean => s === 'kubepods' || s.startsWith('kubepods.') || s.startsWith('kubepods-');
/** A mesh name usable in a trust domain: one DNS label (Kuma's mesh names are). */
const MESH_NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** The workload a cgroup path belongs to: its shallowest pod or system unit segment (see the module comment). */
export function workloadOf(cgroupPath: string): { kind: 'pod'; uid: string } | { kind: 'unit'; unit: string } | undefined {
  const segs = cgroupPath.split('/').filter(Boolean);
  const system = segs[0] === 'system.slice';
  let kube = false;
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i] as string;
    if (kube) {
      const m = POD_SEGMENT.exec(seg);
      if (m) return { kind: 'pod', uid: (m[1] as string).replace(/_/g, '-') };
    }
    if (system && i >= 1 && seg.endsWith('.service')) return { kind: 'unit', unit: seg };
    if (KUBEPODS(seg)) kube = true;
  }
  return undefined;
}

/** The pod uid a cgroup path belongs to (its shallowest `pod<uid>` segment below a kubepods segment), if any. */
export function podUidOf(cgroupPath: string): string | undefined {
  const w = workloadOf(cgroupPath);
  return w?.kind === 'pod' ? w.uid : undefined;
}

/** The systemd service a cgroup path belongs to (system manager only, shallowest `.service` segment), if any. */
export function unitOf(cgroupPath: string): string | undefined {
  const w = workloadOf(cgroupPath);
  return w?.kind === 'unit' ? w.unit : undefined;
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
    const w = workloadOf(cgroupPath);
    if (w === undefined) return undefined;
    const { zone, hostMesh, node, pods, meshes } = this.rules;
    let id: string;
    if (w.kind === 'pod') {
      const pod = pods.get(w.uid);
      // An unknown pod, or one naming a mesh we do not know, has no identity (and never falls through to the unit rule).
      if (!pod || !MESH_NAME.test(pod.mesh) || (meshes !== undefined && !meshes.has(pod.mesh))) return undefined;
      id = `spiffe://${trustDomain(pod.mesh, zone)}/ns/${pathSegment(pod.namespace)}/sa/${pathSegment(pod.serviceAccount)}`;
    } else {
      id = `spiffe://${trustDomain(hostMesh, zone)}/host/${pathSegment(node)}/unit/${pathSegment(w.unit)}`;
    }
    // The zone, the host mesh and the names come from outside: an ID that does not parse is nobody's identity.
    return spiffeIdError(id) === undefined ? { id, rule: w.kind } : undefined;
  }
}
