/**
 * Per-workload egress permissions at connect(): keeps the kernel's access maps equal to what the snapshot's
 * MeshTrafficPermissions say about the workloads on this node, as cgroups and pods come and go, and reports what
 * the connect hooks decided (metrics, a rate-limited log line per denial).
 */
import type { Logger } from '../log.js';
import type { Registry } from '../stats/registry.js';
import type { CompiledService } from '../snapshot/types.js';
import { evaluatePermission, type AccessVerdict } from '../snapshot/meshtrafficpermission.js';
import type { Redirector } from '../redirect/index.js';
import { verdictName, type AccessCounterName } from '../redirect/codec.js';
import { CgroupWatcher, scanCgroups, type CgroupIdentity } from './cgroups.js';
import { IdentityResolver, type IdentityRules, type PodIdentity } from './identity.js';
import { AccessIndexer, type BuiltAccess } from './table.js';

export { IdentityResolver, trustDomain, validateOverrides, type IdentityOverride, type PodIdentity } from './identity.js';

export interface AccessControlOptions {
  redirector: Redirector;
  /** The cgroup the hooks are attached to; identities are found below it (paths relative to it). */
  root: string;
  rules: Omit<IdentityRules, 'pods'>;
  stats: Registry;
  log: Logger;
  /** Full rescan of the cgroup tree, the safety net for missed watch events. */
  rescanMs?: number;
  /** How often the denials the hooks recorded are taken and logged. */
  denialPollMs?: number;
  /** At most this many denial lines per poll; the rest are summed in one line. */
  maxDenialLines?: number;
  /**
   * A (cgroup, service) pair denied again within this window is not logged again: its repeats are summed in one
   * line when the window ends (default 60 s).
   */
  denialWindowMs?: number;
  /**
   * Pods are configured (Kubernetes) and not listed yet. While they are not, the maps a previous agent left stay
   * as they are: written now, every pod would lose its identity until the list arrives (or for good if it fails).
   */
  podsPending?: boolean;
  /**
   * Called when the set of services whose entries this agent has written to the kernel changes. Until a service is
   * in it, its plan keeps the mesh's 403 (the kernel may not refuse anyone for it).
   */
  onEnforced?: (serviceIds: ReadonlySet<string>) => void;
}

const DENIED_REASONS: Record<string, AccessCounterName> = { rule: 'denied_rule', mesh_default: 'denied_default', no_identity: 'denied_no_identity' };

/** Owns the access maps of one Redirector; see the module comment. */
export class AccessControl {
  private services: readonly CompiledService[] = [];
  private pods = new Map<string, PodIdentity>();
  private cgroups = new Map<bigint, CgroupIdentity>();
  private paths = new Map<bigint, string>();
  private built: BuiltAccess = { table: { cgroups: new Map(), services: [] }, identities: new Map(), services: new Map(), unindexed: [], failClosed: [], cgroupsLeftOut: 0 };
  /** Ids of the services whose entries the kernel holds, as this agent last wrote them successfully. */
  private enforced: ReadonlySet<string> = new Set();
  /** The last problem reported (overflow, failed write): logged when it changes, not on every rescan. */
  private lastProblem = '';
  /** (cgroup, service) pairs logged within their window: repeats since, and the line to repeat. */
  private readonly repeats = new Map<string, { until: number; count: number; line: Record<string, unknown>; shadow: boolean }>();
  private readonly indexer: AccessIndexer;
  private readonly watcher: CgroupWatcher;
  private readonly timers: NodeJS.Timeout[] = [];
  private closed = false;
  private rules: Omit<IdentityRules, 'pods'>;
  /** Bumped by every input change; with the scan's result it tells whether the maps can be left as they are. */
  private inputs = 0;
  private lastWritten = '';
  /** Why the maps are not written yet (see podsPending), for the log and /config_dump. */
  private waiting: string | undefined;

  constructor(private readonly opts: AccessControlOptions) {
    this.rules = opts.rules;
    const previous = opts.redirector.identityIndexes();
    this.indexer = new AccessIndexer(previous);
    // With no previous agent's entries there is nothing to keep: the maps are written at once (pods without identity).
    if (opts.podsPending && previous.size > 0) {
      this.waiting = 'waiting for the first list of this node\'s pods; the previous agent\'s access maps stay enforced';
      opts.log.info({ cgroups: previous.size }, `MeshTrafficPermission: ${this.waiting}`);
    }
    this.watcher = new CgroupWatcher(() => this.refresh('cgroup created'));
    opts.stats.onCollect(() => this.collect());
    const rescan = setInterval(() => this.refresh('rescan'), opts.rescanMs ?? 5000);
    const poll = setInterval(() => this.logDenials(), opts.denialPollMs ?? 1000);
    rescan.unref();
    poll.unref();
    this.timers.push(rescan, poll);
  }

  /** A new snapshot: its services' permissions go to the kernel. */
  setServices(services: readonly CompiledService[]): void {
    this.services = services;
    this.inputs++;
    this.refresh('snapshot');
  }

  /** The pods of this node changed (Kubernetes): their cgroups' identities follow. */
  setPods(pods: ReadonlyMap<string, PodIdentity>): void {
    const first = this.waiting !== undefined;
    if (first) {
      this.waiting = undefined;
      this.opts.log.info({ pods: pods.size }, 'MeshTrafficPermission: pods of this node listed; writing the access maps');
    }
    // Most pod events (status, readiness) change nothing an identity is made of: no rescan for those.
    if (!first && samePods(this.pods, pods)) return;
    this.pods = new Map(pods);
    this.inputs++;
    this.refresh('pods');
  }

  /** New identity rules (identity map file reloaded). */
  setRules(rules: Omit<IdentityRules, 'pods'>): void {
    this.rules = rules;
    this.inputs++;
    this.refresh('identity rules');
  }

  /** Rescans the cgroups and rewrites the maps where they differ. */
  refresh(reason: string): void {
    if (this.closed || this.waiting !== undefined) return;
    try {
      // With no service under a policy, identities are not needed: nothing is scanned or watched.
      if (this.services.some((s) => s.permissions)) {
        const scan = scanCgroups(this.opts.root, new IdentityResolver({ ...this.rules, pods: this.pods }));
        this.cgroups = scan.identities;
        this.paths = scan.paths;
        this.watcher.watch(scan.plain);
      } else {
        this.cgroups = new Map();
        this.paths = new Map();
        this.watcher.watch([]);
      }
      // A rescan that found the same cgroups with the same identities changes nothing: no evaluation, no write.
      const state = `${this.inputs}|${[...this.cgroups].map(([k, v]) => `${k}=${v.id}`).join(',')}`;
      if (state === this.lastWritten) return;
      const built = this.indexer.build(this.services, this.cgroups, this.opts.redirector.accessCapacity());
      this.built = built;
      let w: { written: number; removed: number };
      try {
        w = this.opts.redirector.setAccess(built.table);
      } catch (err) {
        // Nothing the kernel holds is confirmed: every forbidden service's plan answers 403 again.
        this.setEnforced(new Set());
        throw err;
      }
      this.lastWritten = state;
      this.setEnforced(new Set(built.table.services.map((x) => built.services.get(x.svc)?.id).filter((x): x is string => x !== undefined)));
      this.report(built);
      if (w.written || w.removed) this.opts.log.debug({ reason, ...w, cgroups: built.table.cgroups.size, services: built.table.services.length }, 'access maps updated');
    } catch (err) {
      const message = (err as Error).message;
      this.opts.stats.counter('meshext_access_write_errors_total', 'Failed writes of the MeshTrafficPermission maps').inc();
      if (this.problem(`error:${message}`)) this.opts.log.error({ reason, err: message }, 'access maps not updated; services not confirmed in the kernel keep the mesh\'s 403 (retried on each rescan)');
    }
  }

  /** Whether `p` differs from the last problem reported (and records it). */
  private problem(p: string): boolean {
    if (p === this.lastProblem) return false;
    this.lastProblem = p;
    return p !== '';
  }

  private setEnforced(ids: ReadonlySet<string>): void {
    if (ids.size === this.enforced.size && [...ids].every((x) => this.enforced.has(x))) return;
    this.enforced = ids;
    this.opts.onEnforced?.(ids);
  }

  /** Overflows: metrics always, one log line when they change. */
  private report(built: BuiltAccess): void {
    const g = (name: string, help: string, v: number) => this.opts.stats.gauge(name, help).set(v);
    g('meshext_access_services_fail_closed', 'Services under a MeshTrafficPermission whose verdicts did not fit the kernel map: every client is refused', built.failClosed.length);
    g('meshext_access_services_unenforced', 'Services under a MeshTrafficPermission the kernel maps have no room for (their plan answers the mesh 403 if it forbids)', built.unindexed.length);
    g('meshext_access_cgroups_left_out', 'Cgroups with an identity that did not fit mx_cg_ident', built.cgroupsLeftOut);
    const key = `overflow:${built.failClosed.join(',')}|${built.unindexed.join(',')}|${built.cgroupsLeftOut}`;
    const any = built.failClosed.length > 0 || built.unindexed.length > 0 || built.cgroupsLeftOut > 0;
    if (!any) {
      this.problem('');
      return;
    }
    if (this.problem(key)) {
      this.opts.log.error(
        { failClosed: built.failClosed, unenforced: built.unindexed, cgroupsLeftOut: built.cgroupsLeftOut, capacity: this.opts.redirector.accessCapacity() },
        'MeshTrafficPermission maps full: services whose verdicts do not fit refuse every client; services without room are not enforced at connect() (their plan keeps the mesh 403)',
      );
    }
  }

  /** What /config_dump shows per service: the rules in effect and who on this node may connect. */
  describe(service: CompiledService): Record<string, unknown> | undefined {
    const perm = service.permissions;
    if (!perm) return undefined;
    const byVerdict: Partial<Record<AccessVerdict, string[]>> = {};
    const seen = new Set<string>();
    for (const c of this.cgroups.values()) {
      if (seen.has(c.id)) continue;
      seen.add(c.id);
      (byVerdict[evaluatePermission(perm, c.id).verdict] ??= []).push(c.id);
    }
    for (const v of Object.values(byVerdict)) v.sort();
    return {
      ...(this.waiting !== undefined ? { enforcedBy: 'previous agent', waiting: this.waiting } : {}),
      policies: perm.policies,
      deny: perm.deny,
      allowWithShadowDeny: perm.allowWithShadowDeny,
      allow: perm.allow,
      meshDefault: perm.meshDefault,
      noIdentity: evaluatePermission(perm, null).verdict,
      identitiesOnNode: byVerdict,
    };
  }

  /** State of the access maps for /config_dump: whether they wait for the pod list. */
  status(): Record<string, unknown> {
    const b = this.built;
    return {
      written: this.waiting === undefined,
      ...(this.waiting !== undefined ? { waiting: this.waiting } : {}),
      enforced: [...this.enforced].sort(),
      ...(b.failClosed.length ? { failClosed: b.failClosed } : {}),
      ...(b.unindexed.length ? { unenforced: b.unindexed } : {}),
      ...(b.cgroupsLeftOut ? { cgroupsLeftOut: b.cgroupsLeftOut } : {}),
      ...(this.lastProblem.startsWith('error:') ? { lastError: this.lastProblem.slice(6) } : {}),
    };
  }

  /** Cgroups with an identity (for `bpf list` and the dump). */
  identities(): CgroupIdentity[] {
    return [...this.cgroups.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.watcher.close();
  }

  private collect(): void {
    if (this.closed) return;
    let counts: ReturnType<Redirector['accessCounters']>;
    try {
      counts = this.opts.redirector.accessCounters([...this.built.services.keys()]);
    } catch {
      return;
    }
    for (const [idx, c] of counts) {
      const s = this.built.services.get(idx);
      if (!s) continue;
      for (const [reason, name] of Object.entries(DENIED_REASONS)) {
        this.opts.stats.counter('meshext_access_denied_total', 'Connections to a MeshExternalService refused at connect() by a MeshTrafficPermission', { service: s.kri, reason }).set(c[name]);
      }
      this.opts.stats.counter('meshext_access_shadow_denied_total', 'Connections let through by allowWithShadowDeny that a deny would have refused', { service: s.kri }).set(c.shadow_denied);
      this.opts.stats.counter('meshext_access_allowed_total', 'Connections to a MeshExternalService under a MeshTrafficPermission that were allowed', { service: s.kri }).set(c.allowed);
    }
  }

  /** Takes the denials the hooks recorded and logs one line per (cgroup, service), at most maxDenialLines. */
  logDenials(): void {
    if (this.closed) return;
    let records;
    try {
      records = this.opts.redirector.takeDenials();
    } catch {
      return;
    }
    const max = this.opts.maxDenialLines ?? 20;
    const windowMs = this.opts.denialWindowMs ?? 60_000;
    const now = Date.now();
    // Pairs whose window ended: one line with the repeats, and a new window while they keep coming.
    for (const [key, r] of this.repeats) {
      if (r.until > now) continue;
      if (r.count === 0) {
        this.repeats.delete(key);
        continue;
      }
      const line = { ...r.line, count: r.count, windowSeconds: windowMs / 1000 };
      if (r.shadow) this.opts.log.info(line, 'connections would have been denied by MeshTrafficPermission (allowWithShadowDeny), repeatedly');
      else this.opts.log.warn(line, 'connections denied by MeshTrafficPermission, repeatedly');
      r.count = 0;
      r.until = now + windowMs;
    }
    let suppressed = 0;
    let lines = 0;
    records.sort((a, b) => Number(b.count - a.count));
    records.forEach((d) => {
      const key = `${d.cgroupId}:${d.svc}`;
      const seen = this.repeats.get(key);
      if (seen) {
        seen.count += Number(d.count);
        return;
      }
      if (lines >= max) {
        suppressed += Number(d.count);
        return;
      }
      lines++;
      const s = this.built.services.get(d.svc);
      const identity = d.ident ? (this.built.identities.get(d.ident) ?? null) : null;
      const decision = s?.permissions ? evaluatePermission(s.permissions, identity) : undefined;
      const verdict = verdictName(d.verdict);
      const rule = decision?.matcher
        ? { policy: decision.matcher.policy, list: decision.list, spiffeID: { type: decision.matcher.type, value: decision.matcher.value } }
        : { meshDefault: s?.permissions?.meshDefault ?? 'deny', policies: s?.permissions?.policies ?? [] };
      const line = {
        cgroup: this.paths.get(d.cgroupId) ?? null,
        cgroupId: d.cgroupId.toString(),
        identity,
        service: s ? `${s.mesh}/${s.name}` : `#${d.svc}`,
        kri: s?.kri,
        verdict,
        rule,
        count: Number(d.count),
      };
      this.repeats.set(key, { until: now + windowMs, count: 0, line, shadow: verdict === 'shadowDeny' });
      if (verdict === 'shadowDeny') this.opts.log.info(line, 'connection would be denied by MeshTrafficPermission (allowWithShadowDeny: let through)');
      else this.opts.log.warn(line, 'connection denied by MeshTrafficPermission');
    });
    if (suppressed > 0) this.opts.log.warn({ suppressed, lines: max }, 'more denials than logged lines; see meshext_access_denied_total');
  }
}

/** Whether two pod lists give the same identities (uid, namespace, service account, mesh). */
function samePods(a: ReadonlyMap<string, PodIdentity>, b: ReadonlyMap<string, PodIdentity>): boolean {
  if (a.size !== b.size) return false;
  for (const [uid, p] of b) {
    const q = a.get(uid);
    if (!q || q.namespace !== p.namespace || q.serviceAccount !== p.serviceAccount || q.mesh !== p.mesh) return false;
  }
  return true;
}
