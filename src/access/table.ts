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
  /** Services under a MeshTrafficPermission that got no index (over MX_ACCESS_SVC_MAX). */
  unindexed: string[];
}

/** Keeps indexes stable across builds (a service's counters stay its own; an identity index is never reused). */
export class AccessIndexer {
  private readonly identIdx = new Map<string, number>();
  private nextIdent: number;
  private readonly svcIdx = new Map<string, number>();

  /** `firstIdentity`: the first identity index to hand out (above those a previous agent left in the kernel). */
  constructor(firstIdentity = 1) {
    this.nextIdent = firstIdentity;
  }

  /** Builds the table for these services and cgroup identities. */
  build(services: readonly CompiledService[], cgroups: ReadonlyMap<bigint, CgroupIdentity>): BuiltAccess {
    const governed = services.filter((s) => s.permissions);
    const ids = new Set(governed.map((s) => s.id));
    for (const k of [...this.svcIdx.keys()]) if (!ids.has(k)) this.svcIdx.delete(k);
    const used = new Set(this.svcIdx.values());
    const out: BuiltAccess = { table: { cgroups: new Map(), services: [] }, identities: new Map(), services: new Map(), unindexed: [] };
    const identOf = (id: string): number => {
      let n = this.identIdx.get(id);
      if (n === undefined) {
        n = this.nextIdent++;
        this.identIdx.set(id, n);
      }
      out.identities.set(n, id);
      return n;
    };
    for (const [cg, ident] of cgroups) out.table.cgroups.set(cg, identOf(ident.id));
    // Identities no cgroup has any more are forgotten; their indexes are not handed out again.
    for (const [id, n] of [...this.identIdx]) if (!out.identities.has(n)) this.identIdx.delete(id);
    let free = 0;
    for (const s of governed) {
      let idx = this.svcIdx.get(s.id);
      if (idx === undefined) {
        while (used.has(free)) free++;
        if (free >= FLAGS.MX_ACCESS_SVC_MAX) {
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
      out.table.services.push({ vip: s.vip, port: s.port, svc: idx, unlisted, noIdentity: evaluatePermission(perm, null).verdict, verdicts });
      out.services.set(idx, s);
    }
    return out;
  }
}
