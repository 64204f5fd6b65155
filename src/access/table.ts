/**
 * The kernel's access maps computed from the snapshot and the node's identities: each service under a
 * MeshTrafficPermission gets a stable index, each SPIFFE ID a never-reused index, and each (service, identity)
 * the verdict evaluatePermission gives, written only where it differs from the service's default.
 */
import type { CompiledService } from '../snapshot/types.js';
import { evaluatePermission, unlistedVerdict } from '../snapshot/meshtrafficpermission.js';
import type { AccessTable, ServiceAccess } from '../redirect/index.js';
import { FLAGS } from '../redirect/codec.js';
import type { CgroupIdentity } from './cgroups.js';

/** A built table and what its indexes stand for. */
export interface BuiltAccess {
  table: AccessTable;
  /** identity index → SPIFFE ID. */
  identities: Map<number, string>;
  /** service index → service. */
  services: Map<number, CompiledService>;
  /** Services under a MeshTrafficPermission that got no index (more than the service map holds). */
  unindexed: string[];
  /** Services whose verdicts did not fit in mx_verdict: written to refuse every client. */
  failClosed: string[];
  /** Cgroups left out of mx_cg_ident (more than it holds): their sockets climb to a listed ancestor or have no identity. */
  cgroupsLeftOut: number;
}

/** Entries the kernel's access maps hold; unlimited when not given. */
export interface AccessLimits {
  cgroups: number;
  services: number;
  verdicts: number;
}

/** Keeps indexes stable across builds (a service's counters stay its own; an identity index is never reused). */
export class AccessIndexer {
  private readonly identIdx = new Map<string, number>();
  private nextIdent: number;
  private readonly svcIdx = new Map<string, number>();
  /** A previous agent's cgroup → identity index entries, adopted by the first build. */
  private previous: ReadonlyMap<bigint, number> | undefined;

  /**
   * `previous`: the cgroup → identity index entries a previous agent left in the kernel. The first build gives an
   * identity the index its cgroups already have, so a restart rewrites no cgroup entry (an entry that moved to a
   * fresh index would meet no verdicts until they were written); new identities are numbered above all of them.
   */
  constructor(previous: ReadonlyMap<bigint, number> = new Map()) {
    this.previous = previous.size > 0 ? previous : undefined;
    let max = 0;
    for (const n of previous.values()) max = Math.max(max, n);
    this.nextIdent = max + 1;
  }

  /** Builds the table for these services and cgroup identities. */
  build(services: readonly CompiledService[], cgroups: ReadonlyMap<bigint, CgroupIdentity>, limits?: AccessLimits): BuiltAccess {
    const governed = services.filter((s) => s.permissions);
    const ids = new Set(governed.map((s) => s.id));
    // An index freed now is not handed out in this build: the kernel still holds the old service's verdicts and
    // counters under it until this table is written, and a new owner would meet them.
    const used = new Set(this.svcIdx.values());
    for (const k of [...this.svcIdx.keys()]) if (!ids.has(k)) this.svcIdx.delete(k);
    const out: BuiltAccess = { table: { cgroups: new Map(), services: [] }, identities: new Map(), services: new Map(), unindexed: [], failClosed: [], cgroupsLeftOut: 0 };
    if (limits && cgroups.size > limits.cgroups) {
      // Ancestors first: a sub-cgroup left out climbs to its listed ancestor in the connect hook.
      const kept = [...cgroups].sort((a, b) => a[1].path.split('/').length - b[1].path.split('/').length).slice(0, limits.cgroups);
      out.cgroupsLeftOut = cgroups.size - kept.length;
      cgroups = new Map(kept);
    }
    let verdictRoom = limits?.verdicts ?? Infinity;
    const identOf = (id: string): number => {
      let n = this.identIdx.get(id);
      if (n === undefined) {
        n = this.nextIdent++;
        this.identIdx.set(id, n);
      }
      out.identities.set(n, id);
      return n;
    };
    if (this.previous) {
      const taken = new Set<number>();
      for (const [cg, ident] of cgroups) {
        const n = this.previous.get(cg);
        if (n === undefined || n < 1 || taken.has(n) || this.identIdx.has(ident.id)) continue;
        taken.add(n);
        this.identIdx.set(ident.id, n);
      }
      this.previous = undefined;
    }
    for (const [cg, ident] of cgroups) out.table.cgroups.set(cg, identOf(ident.id));
    // Identities no cgroup has any more are forgotten; their indexes are not handed out again.
    for (const [id, n] of [...this.identIdx]) if (!out.identities.has(n)) this.identIdx.delete(id);
    let free = 0;
    for (const s of governed) {
      let idx = this.svcIdx.get(s.id);
      if (idx === undefined) {
        while (used.has(free)) free++;
        if (free >= Math.min(FLAGS.MX_ACCESS_SVC_MAX, limits?.services ?? Infinity)) {
          out.unindexed.push(s.id);
          continue;
        }
        idx = free;
        used.add(idx);
        this.svcIdx.set(s.id, idx);
      }
      const perm = s.permissions!;
      const unlisted = unlistedVerdict(perm);
      const verdicts: ServiceAccess['verdicts'] = new Map();
      for (const [n, id] of out.identities) {
        const v = evaluatePermission(perm, id).verdict;
        if (v !== unlisted) verdicts.set(n, v);
      }
      if (verdicts.size > verdictRoom) {
        // Its verdicts do not fit: refusing every client is the only answer that never lets a denied one in.
        out.failClosed.push(s.id);
        out.table.services.push({ vip: s.vip, port: s.port, svc: idx, unlisted: 'denyDefault', noIdentity: 'denyNoIdentity', verdicts: new Map(), owner: s.id });
        out.services.set(idx, s);
        continue;
      }
      verdictRoom -= verdicts.size;
      out.table.services.push({ vip: s.vip, port: s.port, svc: idx, unlisted, noIdentity: evaluatePermission(perm, null).verdict, verdicts, owner: s.id });
      out.services.set(idx, s);
    }
    return out;
  }
}
