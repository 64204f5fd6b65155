/**
 * The agent: resources → snapshot → (DNS resolver, proxy, BPF maps), with reload, admin API and drain.
 * One immutable snapshot feeds all consumers; a reload builds a new one and swaps it atomically.
 */
import type net from 'node:net';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { Registry } from '../stats/registry.js';
import type { Logger } from '../log.js';
import { mergeResults, type LoadResult, type Resource } from '../resources/index.js';
import { Ipam, vipQuarantineMs } from '../ipam/index.js';
import { compileSnapshot } from '../snapshot/compile.js';
import { planForDump, type ServicePlan } from '../snapshot/plan.js';
import type { Snapshot, CompiledService, DataplaneBinding } from '../snapshot/types.js';
import { DnsServer, recordsFromSnapshot, readResolvConf } from '../dns/index.js';
import { Proxy } from '../proxy/index.js';
import { Redirector, ensureBpffs, findCgroup2Mount } from '../redirect/index.js';
import { AccessControl, validateOverrides, type IdentityOverride, type PodIdentity } from '../access/index.js';
import { AdminServer, type Readiness } from '../admin/server.js';
import { adoptInheritedSockets, enableListenerMigration, releaseHeldSockets } from '../net/shared.js';
import type { ResourceSource } from '../sources/source.js';
import { FileSource } from '../sources/files.js';
import { exposureOf } from '../exposure.js';
import { redactedConfig, type AgentConfig, type HostPort } from './config.js';

const VERSION = '0.1.0';
/** Reload reason when the agent recompiles because a VIP became available. */
const VIP_RETRY_REASON = 'VIP available';

function resourceKey(r: { kind?: string; mesh?: string; name?: string }): string {
  return `${r.kind ?? ''}/${r.mesh ?? ''}/${r.name ?? ''}`;
}

/**
 * Replaces resources that failed validation in a reload by their last good version, so an invalid
 * edit of one resource (or a file that no longer parses) never takes down what was serving.
 */
export function keepLastGood(next: LoadResult, previous: LoadResult | undefined): { load: LoadResult; kept: string[] } {
  if (!previous) return { load: next, kept: [] };
  const present = new Set(next.resources.map((r) => resourceKey(r)));
  const kept: Resource[] = [];
  const keptNames: string[] = [];
  for (const err of next.errors) {
    const candidates = err.name
      ? previous.resources.filter((r) => resourceKey(r) === resourceKey(err) || (r.kind === err.kind && r.name === err.name && err.mesh === undefined))
      : previous.resources.filter((r) => r.source.file === err.file);
    for (const r of candidates) {
      const k = resourceKey(r);
      if (present.has(k)) continue;
      present.add(k);
      kept.push(r);
      keptNames.push(`${r.kind}/${r.name} (mesh ${r.mesh})`);
    }
  }
  return { load: { resources: [...next.resources, ...kept], errors: next.errors, warnings: next.warnings }, kept: keptNames };
}

export class Agent {
  readonly stats = new Registry();
  private ipam!: Ipam;
  private snapshot: Snapshot | undefined;
  private lastGood: LoadResult | undefined;
  private generation = 0;
  private dns: DnsServer | undefined;
  private proxy!: Proxy;
  private redirector: Redirector | undefined;
  private access: AccessControl | undefined;
  /** Pods of this node (Kubernetes), kept until the access control exists. */
  private pods: Map<string, PodIdentity> | undefined;
  private admin: AdminServer | undefined;
  private readonly sources: ResourceSource[] = [];
  /** A source change seen while starting, applied once the agent is READY. */
  private changedWhileStarting: string | undefined;
  /** Open outbound listeners: `address:port` → the plan key they route by. */
  private readonly outbounds = new Map<string, string>();
  private state: Readiness = 'NOT_READY';
  private reloading: Promise<unknown> = Promise.resolve();
  private readonly startedAt = Date.now();
  private lastReloadError: string | undefined;
  private proxyAddr: net.AddressInfo | undefined;
  private shuttingDown = false;
  /** systemd holds our listening sockets (meshext.socket): they stay open for the next agent. */
  private socketActivated = false;
  /** Recompiles when an address frees up for services that got no VIP. */
  private vipRetry: NodeJS.Timeout | undefined;

  private readonly reloadsOk = this.stats.counter('meshext_config_reloads_total', 'Configuration reloads by result', { result: 'success' });
  private readonly reloadsFailed = this.stats.counter('meshext_config_reloads_total', 'Configuration reloads by result', { result: 'failure' });

  constructor(
    readonly config: AgentConfig,
    private readonly log: Logger,
  ) {
    // The Kubernetes source is added first by start(): the order is precedence (README, "Kubernetes").
    if (config.configPaths.length) {
      this.sources.push(
        new FileSource({
          paths: config.configPaths,
          debounceMs: config.reloadDebounceMs,
          rescanIntervalMs: config.rescanIntervalMs,
          onError: (err) => this.log.warn({ err: err.message }, 'config watcher problem'),
        }),
      );
    }
  }

  /** Starts every component; resolves once the agent is READY. */
  async start(): Promise<void> {
    const cfg = this.config;
    this.log.info({ version: VERSION, config: redactedConfig(cfg) }, 'starting meshext');
    // Released VIPs wait out twice the TTL our resolver hands out, so no cached answer reaches another service.
    this.ipam = await Ipam.open({ stateDir: cfg.stateDir, cidr: cfg.vipCidr, quarantineMs: vipQuarantineMs(cfg.dnsTtlSeconds), log: this.log });
    // MeshAccessLog files go only here; without it each file backend is reported (MESHEXT_E_ACCESS_LOG), nothing else fails.
    await mkdir(cfg.accessLogDir, { recursive: true, mode: 0o750 }).catch((e: Error) =>
      this.log.warn({ dir: cfg.accessLogDir, err: e.message }, 'access log directory cannot be created (--access-log-dir): MeshAccessLog file backends will fail'),
    );

    // A successor agent shares our ports during a restart; queued connections follow it when we close.
    const migration = enableListenerMigration();
    if (migration.state === 'unavailable') this.log.warn({ reason: migration.reason }, 'net.ipv4.tcp_migrate_req cannot be set: a restart resets the connections waiting in the old agent\'s accept queue');
    else this.log.info({ tcpMigrateReq: migration.state }, 'listener migration on for restarts without an outage');

    // Probe before anything listens, so --redirect on fails fast. The move out of the cgroup2 root happens
    // in Redirector.start, before READY and so before the first upstream socket is opened.
    const probe = cfg.redirect === 'off' ? { ok: false } : Redirector.probe();
    if (!probe.ok && cfg.redirect === 'on') {
      throw Object.assign(new Error(`eBPF redirect unavailable: ${probe.reason ?? 'unknown reason'}`), { code: 'MESHEXT_E_BPF_UNAVAILABLE' });
    }
    if (!probe.ok && cfg.redirect === 'auto') this.log.warn({ reason: probe.reason }, 'eBPF redirect unavailable; serving outbound listeners and DNS only (--redirect auto)');
    const redirectOk = probe.ok;

    // The engine serves every connection: without it there is nothing to start (one line says why).
    this.proxy = new Proxy({
      stats: this.stats,
      log: this.log.child({ component: 'proxy' }),
      connectTimeoutMs: cfg.connectTimeoutMs,
      httpHeaderTimeoutMs: cfg.httpHeaderTimeoutMs,
      maxConnections: cfg.maxConnections,
      dataThreads: cfg.dataThreads,
      accessLogDir: cfg.accessLogDir,
    });
    // After the engine started (a missing addon is said as the engine's error), before anything listens:
    // sockets systemd holds for us (meshext.socket) are taken by the listeners of the same address.
    const inherited = adoptInheritedSockets(cfg.socketHolder || undefined);
    // Only systemd starts the next agent after this one exits (keep accepting while draining); a holder's
    // sockets outlive this agent's restarts, and on SIGTERM the pod (and its holder) is going away.
    this.socketActivated = inherited.fromSystemd > 0;
    if (inherited.heldError) this.log.warn({ holder: cfg.socketHolder, err: inherited.heldError }, 'socket holder not reachable: binding our own sockets (a crash will refuse connections until the restart)');
    if (inherited.sockets.length) this.log.info({ sockets: inherited.sockets.map((s) => `${s.type}://${s.address}:${s.port}`), fromSystemd: inherited.fromSystemd, held: inherited.held }, 'listening sockets kept open outside the agent');
    if (cfg.source === 'kubernetes') {
      // Loaded only when used: the client library costs about half a second and tens of MB to import.
      const { KubernetesSource } = await import('../sources/kubernetes.js');
      this.sources.unshift(
        new KubernetesSource({
          ...(cfg.kubeconfig !== undefined ? { kubeconfig: cfg.kubeconfig } : {}),
          systemNamespace: cfg.systemNamespace,
          debounceMs: cfg.reloadDebounceMs,
          stats: this.stats,
          log: this.log.child({ component: 'kubernetes' }),
          pods: {
            nodeName: cfg.nodeName,
            onChange: (pods) => {
              this.pods = pods;
              this.access?.setPods(pods);
            },
          },
        }),
      );
    }
    // The admin API answers (/ready 503, /healthz 200) while the sources wait for their first full list.
    this.admin = new AdminServer(this, this.log.child({ component: 'admin' }));
    const adminAddr = await this.admin.listen(cfg.admin.address, cfg.admin.port);
    if (cfg.adminSocket) await this.admin.listenUnix(cfg.adminSocket);
    await Promise.all(
      this.sources.map((src) =>
        src.start((reason) => {
          if (this.state === 'NOT_READY') this.changedWhileStarting = reason;
          else void this.reload(reason);
        }),
      ),
    );
    if (this.shuttingDown) return; // SIGTERM while waiting for a first list: nothing to serve
    const snapshot = await this.buildSnapshot();
    await this.proxy.setSnapshot(snapshot);

    if (redirectOk) {
      this.proxyAddr = await this.proxy.listenTransparent(cfg.proxy);
      const exposure = exposureOf(cfg.proxy.address);
      if (exposure) {
        this.log.warn({ listen: `${cfg.proxy.address}:${this.proxyAddr.port}`, exposure }, `EXPOSED: the transparent proxy on ${cfg.proxy.address}:${this.proxyAddr.port} relays connections to MeshExternalServices (with their TLS client certificates) for ${exposure}`);
      }
    }

    if (cfg.dns !== 'off') {
      this.dns = new DnsServer({
        listen: [cfg.dnsListen],
        ...(cfg.dnsUpstreams.length ? { upstreams: cfg.dnsUpstreams } : {}),
        resolvConfPath: cfg.resolvConf,
        ipFamilyMode: cfg.ipFamilyMode,
        ttl: cfg.dnsTtlSeconds,
        // Owned names are answered by the data-plane engine's threads: a stalled JS thread never stops them.
        engine: this.proxy.dataPlane,
        stats: this.stats,
        log: this.log.child({ component: 'dns' }),
      });
      this.dns.setRecords(recordsFromSnapshot(snapshot));
      await this.dns.start();
    }

    if (redirectOk) {
      const nameservers = this.dns ? this.captureNameservers() : [];
      if (ensureBpffs(cfg.pinRoot)) this.log.info({ mountPoint: '/sys/fs/bpf' }, 'mounted the BPF filesystem');
      try {
        this.redirector = await Redirector.start({
          vipCidr: this.ipam.cidr,
          proxy: { address: cfg.proxy.address, port: this.proxyAddr!.port },
          ...(this.dns && nameservers.length ? { dns: { address: cfg.dnsListen.address, port: this.dnsPort(), nameservers } } : {}),
          ...(cfg.cgroup ? { cgroupPath: cfg.cgroup } : {}),
          pinRoot: cfg.pinRoot,
          log: this.log.child({ component: 'redirect' }),
          // The plans installed above no longer answer a governed service's 403: its verdicts must be in the
          // kernel before the first connect can be redirected.
          beforeAttach: (r) => {
            // Until the kernel confirms a governed service's verdicts, its plan keeps the mesh's 403.
            this.proxy.setAccessEnforced(new Set());
            this.access = new AccessControl({
              redirector: r,
              root: cfg.cgroup ?? findCgroup2Mount(),
              rules: this.identityRules(),
              stats: this.stats,
              log: this.log.child({ component: 'access' }),
              podsPending: cfg.source === 'kubernetes' && !this.pods,
              onEnforced: (ids) => {
                try {
                  this.proxy.setAccessEnforced(ids);
                } catch (err) {
                  this.log.error({ err: (err as Error).message }, 'cannot install the plans after a MeshTrafficPermission change in the kernel');
                }
              },
            });
            if (this.pods) this.access.setPods(this.pods);
            this.access.setServices(snapshot.services);
          },
        });
      } catch (err) {
        this.access?.close();
        throw err;
      }
      // The engine looks each redirected connection's original destination up in the map itself.
      this.proxy.useOriginalDstMap(this.redirector.peerOrigMapFd());
    }

    await this.syncOutbounds(snapshot);
    for (const src of this.sources) src.markLoaded();

    this.state = 'READY';
    this.scheduleVipRetry(false);
    this.log.info(
      {
        services: snapshot.services.length,
        rejected: snapshot.rejected.length,
        admin: `${adminAddr.address}:${adminAddr.port}`,
        proxy: this.proxyAddr ? `${this.proxyAddr.address}:${this.proxyAddr.port}` : 'off',
        dns: this.dns ? this.dns.addresses().map((a) => `${a.transport}://${a.address}:${a.port}`) : 'off',
        redirect: this.redirector ? 'on' : 'off',
      },
      'meshext ready',
    );
    if (this.changedWhileStarting !== undefined) void this.reload(this.changedWhileStarting);
  }

  /** The resolver's UDP port (the one bound, when port 0 was asked). */
  dnsPort(): number {
    return this.dns?.addresses().find((a) => a.transport === 'udp')?.port ?? this.config.dnsListen.port;
  }

  /** Nameservers whose port-53 traffic the BPF programs send to our resolver (never the resolver itself). */
  private captureNameservers(): string[] {
    const servers = this.config.dnsUpstreams.length ? this.config.dnsUpstreams : readResolvConf(this.config.resolvConf);
    return servers.filter((s) => s.port === 53 && s.address !== this.config.dnsListen.address).map((s) => s.address);
  }

  /** Loads, validates and compiles the resources; invalid ones keep their last good version. */
  private async buildSnapshot(): Promise<Snapshot> {
    const opts = { zone: this.config.zone, vipCidr: this.ipam.cidr };
    const fresh = mergeResults(await Promise.all(this.sources.map((src) => src.load(opts))));
    const { load, kept } = keepLastGood(fresh, this.lastGood);
    for (const e of fresh.errors) {
      this.log.warn({ file: e.file, line: e.line, kind: e.kind, name: e.name, mesh: e.mesh, violations: e.violations }, 'resource rejected');
    }
    // Every load (start and each reload) logs its warnings, as it logs its rejections: the files were read again.
    for (const sk of fresh.skipped ?? []) this.log.warn({ file: sk.file, reason: sk.reason }, 'config entry skipped');
    for (const w of fresh.warnings) {
      this.log.warn({ file: w.file, line: w.line, kind: w.kind, name: w.name, mesh: w.mesh, field: w.field, warning: w.message }, 'resource warning');
    }
    if (kept.length) this.log.warn({ kept }, 'keeping the last good version of resources that failed validation');
    const snapshot = await compileSnapshot({
      load,
      ipam: this.ipam,
      zone: this.config.zone,
      skipDefaultGenerators: this.config.skipDefaultGenerators,
      generation: ++this.generation,
    });
    for (const r of snapshot.rejected) {
      if (!fresh.errors.some((e) => e.file === r.file && e.name === r.name)) {
        this.log.warn({ file: r.file, kind: r.kind, name: r.name, mesh: r.mesh, violations: r.violations }, 'resource rejected');
      }
    }
    // Services that are gone give their VIP back as a tombstone: it is never handed to another
    // service while free addresses remain, so stale DNS answers cannot reach a different service.
    if (this.snapshot) {
      const now = new Set(snapshot.services.map((s) => s.id));
      const gone = this.snapshot.services.filter((s) => !now.has(s.id)).map((s) => s.id);
      if (gone.length) await this.ipam.release(gone);
    }
    this.lastGood = load;
    this.snapshot = snapshot;
    this.stats.gauge('meshext_services', 'MeshExternalServices being served').set(snapshot.services.length);
    this.stats.gauge('meshext_resources_rejected', 'Resources rejected by validation or compilation').set(snapshot.rejected.length);
    return snapshot;
  }

  /** Reopens the access log files (logrotate's postrotate: SIGUSR1); the files moved away are then closed. */
  reopenLogs(): void {
    this.proxy.reopenLogs();
  }

  /** Re-reads the config and swaps the snapshot; serialised so two reloads never interleave. */
  reload(reason: string): Promise<{ ok: boolean; generation: number; rejected: number }> {
    const run = async (): Promise<{ ok: boolean; generation: number; rejected: number }> => {
      if (this.shuttingDown) return { ok: false, generation: this.generation, rejected: 0 };
      try {
        const before = this.snapshot;
        const s = await this.buildSnapshot();
        // Always: the known meshes (which pods' meshes are accepted) come from the resources just loaded.
        if (this.access) this.access.setRules(this.identityRules());
        // The kernel refuses before the engine stops refusing: a service gaining a MeshTrafficPermission has its
        // verdicts written before its plan drops the mesh's 403, one losing it keeps them until its plan has it back.
        this.access?.setServices(permissionTransition(before, s));
        await this.proxy.setSnapshot(s);
        this.access?.setServices(s.services);
        this.dns?.setRecords(recordsFromSnapshot(s));
        await this.syncOutbounds(s);
        for (const src of this.sources) src.markLoaded();
        this.reloadsOk.inc();
        this.lastReloadError = undefined;
        this.log.info({ reason, generation: s.generation, services: s.services.length, rejected: s.rejected.length, changes: diffServices(before, s) }, 'configuration reloaded');
        this.scheduleVipRetry(reason === VIP_RETRY_REASON);
        return { ok: true, generation: s.generation, rejected: s.rejected.length };
      } catch (err) {
        this.reloadsFailed.inc();
        this.lastReloadError = (err as Error).message;
        this.log.error({ reason, err: (err as Error).message }, 'reload failed; the previous configuration keeps serving');
        return { ok: false, generation: this.generation, rejected: this.snapshot?.rejected.length ?? 0 };
      }
    };
    const p = this.reloading.then(run, run);
    this.reloading = p;
    return p;
  }

  /**
   * Services the allocator refused wait for an address: when one is free, or when the first quarantine
   * ends, the agent recompiles by itself. A retry that found nothing new does not re-arm at once.
   */
  private scheduleVipRetry(afterRetry: boolean): void {
    clearTimeout(this.vipRetry);
    this.vipRetry = undefined;
    const waiting = this.ipam.waitingServices();
    const ms = this.ipam.msUntilAvailable();
    if (this.shuttingDown || !waiting.length || ms === undefined || (afterRetry && ms === 0)) return;
    this.vipRetry = setTimeout(() => {
      this.vipRetry = undefined;
      this.log.info({ component: 'ipam', waiting }, 'a VIP is free again; recompiling for the services that have none');
      void this.reload(VIP_RETRY_REASON);
    }, Math.min(ms + 1, 2 ** 31 - 1));
    this.vipRetry.unref();
  }

  /**
   * Opens, keeps or closes the non-transparent outbound listeners to match the snapshot. A listener's plan key
   * names its service and Dataplane only, so a policy change keeps it (and its socket): the new plans take the key.
   */
  private async syncOutbounds(s: Snapshot): Promise<void> {
    const want = new Map<string, { addr: HostPort; serviceId: string; key: string }>();
    for (const o of s.outbounds) want.set(`${o.address}:${o.port}`, { addr: { address: o.address, port: o.port }, serviceId: o.serviceId, key: o.key });
    for (const [addr, key] of this.outbounds) {
      const w = want.get(addr);
      if (!w || w.key !== key) {
        const [address, port] = splitKey(addr);
        await this.proxy.closeOutbound({ address, port });
        this.outbounds.delete(addr);
      }
    }
    for (const [addr, w] of want) {
      if (this.outbounds.has(addr)) continue;
      try {
        await this.proxy.listenOutbound(w.addr, w.serviceId, w.key);
        this.outbounds.set(addr, w.key);
        const exposure = exposureOf(w.addr.address);
        if (exposure) this.log.warn({ outbound: addr, service: w.serviceId, exposure }, `EXPOSED: the outbound listener on ${addr} relays connections to ${w.serviceId} for ${exposure}`);
      } catch (err) {
        this.log.error({ outbound: addr, service: w.serviceId, err: (err as Error).message }, 'cannot open outbound listener');
      }
    }
  }

  /** SIGTERM path: not ready, stop accepting, drain up to the drain time (or until `skipDrain`). */
  async shutdown(opts: { drainMs: number }): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    clearTimeout(this.vipRetry);
    this.state = 'TERMINATING';
    for (const src of this.sources) src.stop();
    this.log.info({ drainMs: opts.drainMs, active: this.proxy?.activeConnections() ?? 0 }, 'draining');
    if (this.socketActivated) {
      // systemd starts the next agent only once this one has exited, on the same sockets: closing ours now
      // would leave new connections waiting in them for the whole drain. Keep serving until the end.
      this.log.info('socket-activated: still accepting while draining; systemd keeps the sockets for the next agent');
    } else {
      await this.proxy?.stopAccepting();
      // DNS goes with the listeners: a successor sharing the port answers from here on (with the config it just
      // read), and without one, names of services nobody accepts for should not resolve. Queries already
      // forwarded are answered first.
      await this.dns?.stop({ finishForwarded: true });
      // The holder's copies would keep the sockets' queues open (a sidecar outlives the agent while the pod
      // terminates): released, waiting connections move to the successor's sockets now.
      if (this.config.socketHolder) {
        const err = releaseHeldSockets(this.config.socketHolder);
        if (err) this.log.warn({ holder: this.config.socketHolder, err }, 'socket holder not released');
        else this.log.info({ holder: this.config.socketHolder }, 'socket holder released');
      }
    }
    const { remaining } = await (this.proxy?.drain(opts.drainMs) ?? Promise.resolve({ remaining: 0 }));
    if (remaining) this.log.warn({ remaining }, 'drain time over; closing remaining connections');
    await this.stopComponents();
    this.log.info('stopped');
  }

  /** Second signal: skip whatever drain time is left. */
  async forceStop(): Promise<void> {
    this.log.warn('second signal: skipping drain');
    await this.proxy?.close();
  }

  private async stopComponents(): Promise<void> {
    await this.proxy?.close();
    await this.dns?.stop();
    await this.admin?.close();
    // Pinned links stay attached on purpose: a restart updates them in place with no redirect gap.
    this.access?.close();
    this.redirector?.close();
  }

  // ---- AdminSource ----
  readiness(): Readiness {
    return this.state;
  }

  configDump(): unknown {
    const s = this.snapshot;
    return {
      generation: s?.generation,
      vipCidr: s?.vipCidr,
      config: redactedConfig(this.config),
      sources: this.sources.map((src) => src.describe()),
      services:
        s?.services.map((svc) => {
          const plans = this.proxy?.currentPlans().filter((p) => p.service === svc.id) ?? [];
          const d = dumpService(svc, plans.find((p) => p.dataplane === undefined), this.proxy?.serviceError(svc.id), plans);
          const access = this.access?.describe(svc);
          if (access) d.permissions = access;
          else if (svc.permissions) d.permissions = { ...svc.permissions, enforced: false, why: 'the eBPF redirect is off: connections reach this service only through outbound listeners, which it refuses' };
          return d;
        }) ?? [],
      ...(this.access ? { access: this.access.status() } : {}),
      // What the engine was told to do with each service (key material as digests).
      plans: this.proxy?.currentPlans().map(planForDump) ?? [],
      outbounds: s?.outbounds ?? [],
      rejected: s?.rejected ?? [],
      warnings: s?.warnings ?? [],
      lastReloadError: this.lastReloadError ?? null,
    };
  }

  clusters(): unknown {
    return this.proxy?.clusters() ?? [];
  }

  bpf(): unknown {
    if (!this.redirector) return { enabled: false };
    return { enabled: true, ...(this.redirector.describe() as object), counters: this.redirector.counters(), identities: this.access?.identities() ?? [] };
  }

  /** The identity rules from the config and the identity map file (read again on each reload). */
  private identityRules(): { zone: string; hostMesh: string; node: string; overrides: IdentityOverride[]; meshes: Set<string> } {
    const cfg = this.config;
    let overrides: IdentityOverride[] = [];
    if (cfg.identityMap) {
      let text: string;
      try {
        text = readFileSync(cfg.identityMap, 'utf8');
      } catch (err) {
        throw Object.assign(new Error(`identity map ${cfg.identityMap}: ${(err as Error).message}`), { code: 'MESHEXT_E_IDENTITY_MAP' });
      }
      overrides = validateOverrides(parseYaml(text) ?? [], cfg.identityMap);
    }
    // A pod names its own mesh (a label its owner sets): only Meshes this agent knows may become trust domains.
    const meshes = new Set<string>([cfg.identityMesh]);
    for (const r of this.lastGood?.resources ?? []) if (r.kind === 'Mesh') meshes.add(r.name);
    for (const svc of this.snapshot?.services ?? []) meshes.add(svc.mesh);
    return { zone: cfg.zone, hostMesh: cfg.identityMesh, node: cfg.nodeName, overrides, meshes };
  }

  serverInfo(): unknown {
    return {
      version: VERSION,
      state: this.state,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      generation: this.generation,
      node: process.version,
      pid: process.pid,
    };
  }

  setLogLevel(level: string): void {
    this.log.level = level;
  }

  currentSnapshot(): Snapshot | undefined {
    return this.snapshot;
  }
}

function splitKey(key: string): [string, number] {
  const i = key.lastIndexOf(':');
  return [key.slice(0, i), Number(key.slice(i + 1))];
}

/**
 * The service as shown in /config_dump (no secret material), with what its plan says about it: where its CA
 * comes from, and `error`, why it cannot be served, when it cannot.
 */
/**
 * A service as /config_dump shows it; `plans` (its plan and those of Dataplanes with policies of their own) give
 * each Dataplane's outbounds their effective values.
 */
export function dumpService(s: CompiledService, plan?: ServicePlan, error?: string, plans: readonly ServicePlan[] = []): Record<string, unknown> {
  return {
    ...(error ? { error } : {}),
    name: s.name,
    mesh: s.mesh,
    kri: s.kri,
    vip: s.vip,
    port: s.port,
    protocol: s.protocol,
    hostnames: s.hostnames,
    endpoints: s.endpoints.map((e) => (e.kind === 'unix' ? { address: `unix://${e.path}` } : { address: e.address, port: e.port })),
    tls: s.tls
      ? {
          enabled: true,
          version: { min: s.tls.minVersion, max: s.tls.maxVersion },
          mode: s.tls.mode,
          serverName: s.tls.serverName ?? null,
          subjectAltNames: s.tls.subjectAltNames,
          caCert: s.tls.ca ? 'configured' : !plan?.tls ? 'none' : plan.tls.ca ? 'system bundle' : 'not used',
          clientCert: s.tls.cert ? 'configured' : null,
          allowRenegotiation: s.tls.allowRenegotiation,
        }
      : { enabled: false },
    forbidden: s.forbidden,
    ...(s.extension !== undefined ? { extension: s.extension } : {}),
    conditions: s.conditions ?? [],
    hostnameGenerators: s.generatorStatus,
    ...(s.dataplanes ? { dataplanes: s.dataplanes.map((b) => dumpBinding(b, plans.find((p) => p.keys.includes(b.key)))) } : {}),
    source: s.source,
  };
}

/** One Dataplane's outbounds to a service: their key, whether a plan of their own serves them, and its effective values. */
function dumpBinding(b: DataplaneBinding, plan: ServicePlan | undefined): Record<string, unknown> {
  const { timeouts, retry, accessLog, policies } = plan ?? {};
  return {
    dataplane: b.dataplane,
    key: b.key,
    plan: b.policies ? 'own (Dataplane-targeted policies)' : "the service's",
    ...(plan ? { timeouts, ...(retry ? { retry } : {}), ...(accessLog ? { accessLog: accessLog.backends.map((x) => x.path) } : {}), policies: policies ?? {} } : {}),
  };
}

/** The services whose permissions the kernel holds while a new snapshot's plans are installed (see reload). */
function permissionTransition(before: Snapshot | undefined, after: Snapshot): CompiledService[] {
  const next = new Map(after.services.map((x) => [x.id, x]));
  const losing = (before?.services ?? []).filter((o) => o.permissions && next.has(o.id) && !next.get(o.id)?.permissions);
  return [...after.services.filter((x) => !losing.some((o) => o.id === x.id)), ...losing];
}

function diffServices(before: Snapshot | undefined, after: Snapshot): { added: string[]; removed: string[] } {
  const b = new Set(before?.services.map((s) => s.id) ?? []);
  const a = new Set(after.services.map((s) => s.id));
  return { added: [...a].filter((x) => !b.has(x)), removed: [...b].filter((x) => !a.has(x)) };
}
