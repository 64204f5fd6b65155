/**
 * The proxy's control plane. Every connection is served by the engine (src/engine): this module turns each
 * snapshot into the services' plans (src/snapshot/plan.ts) with the run-time facts they need (DNS answers of
 * endpoint names, the system CA bundle), installs them, keeps them current (answers that change, endpoint
 * health), opens the listeners, and turns the engine's reports into logs, health decisions and metrics.
 */
import dns from 'node:dns';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from '../log.js';
import type { Registry, Series } from '../stats/registry.js';
import type { Snapshot } from '../snapshot/types.js';
import { compilePlans, DEFAULT_TIMEOUTS, endpointLabel, type NameAnswer, type PlanTimeouts, type ServicePlan } from '../snapshot/plan.js';
import { Engine, type EngineListener } from '../engine/engine.js';
import type { EngineCounters, EngineEvent, EngineStats, NativeAddon, NativeTlsFailure } from '../native/addon.js';
import { HealthSet } from './endpoints.js';
import { ServiceMetrics } from './metrics.js';
import { EndpointResolver, type DnsResolver } from './resolve.js';
import { detectSystemCa } from './system-ca.js';
import { describeTlsFailure } from './tls.js';

export { SYSTEM_CA_CANDIDATES, SYSTEM_CA_ENV, detectSystemCa } from './system-ca.js';

export interface ProxyOptions {
  stats: Registry;
  log: Logger;
  /** Upstream connect (and TLS handshake) timeout; default 5000 ms like Kuma. */
  connectTimeoutMs?: number;
  /** System CA bundle: a path, null for "none", undefined to auto-detect. */
  systemCaPath?: string | null;
  /** DNS resolver for DNS-name endpoints; defaults to the system's (c-ares). */
  resolver?: DnsResolver;
  /** I/O threads of the engine; default 1. */
  dataThreads?: number;
  /** Idle timeout of TCP connections; default 1 h (Envoy's tcp_proxy), 0 disables it. */
  tcpIdleTimeoutMs?: number;
  /** Idle keep-alive timeout of HTTP client connections; default 60 s. */
  httpIdleTimeoutMs?: number;
  /** How long an HTTP/1.x client may take to send a request head from its first byte (408 after); default 10 s. */
  httpHeaderTimeoutMs?: number;
  /**
   * Client connections served at once; over it, new ones are reset at once. 0: no cap (default). 'auto':
   * connectionCapFor(the soft descriptor limit).
   */
  maxConnections?: number | 'auto';
  /** Idle timeout of pooled upstream HTTP connections; default 60 s. */
  httpUpstreamIdleTimeoutMs?: number;
  /** The addon to run the engine on (tests); default the production build. */
  addon?: NativeAddon;
}

export interface ClusterInfo {
  service: string;
  kri: string;
  /** Why the service cannot be served (every connection fails), when it cannot. */
  error?: string;
  endpoints: Array<{ address: string; priority: number; healthy: boolean; consecutiveFailures: number; lastError?: string; active: number; total: number; addresses: string[] }>;
}

/** How long applying a snapshot waits for the first answers of DNS names it brings (they apply whenever they come). */
const FIRST_ANSWER_WAIT_MS = 1000;
/** Longest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Log lines of one kind per service per second before the rest are only counted (and said with the next). */
const LOG_BURST = 5;

export class Proxy {
  private readonly engine: Engine;
  private snapshot: Snapshot | undefined;
  private plans: ServicePlan[] = [];
  private readonly health = new Map<string, HealthSet>();
  private readonly metrics = new Map<string, ServiceMetrics>();
  /** kri of every service the engine may still report (current or retired with connections open). */
  private readonly kriOf = new Map<string, string>();
  /** The mesh of every service kriOf holds (denial logs name it). */
  private readonly meshOf = new Map<string, string>();
  /** Services that cannot be served and why (from the plan or the engine's install). */
  private readonly errors = new Map<string, string>();
  /** The access log backends the last install left out ("service\nerror"), so each is logged once. */
  private accessLogErrors = new Set<string>();
  /** Access log paths with a write-failure series. */
  private logFiles = new Set<string>();
  private readonly listeners = new Map<string, EngineListener>();
  private readonly log: Logger;
  private readonly resolver: EndpointResolver;
  private readonly systemCaPath: string | null;
  private readonly caFiles = new Map<string, Buffer>();
  private readonly timeouts: PlanTimeouts;
  private origMapFd: number | null = null;
  private refresh: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly logged = new Map<string, { at: number; n: number; suppressed: number }>();
  private readonly global: { noRoute: Series; accepted: Series; origFound: Series; origMissing: Series; origStale: Series; overflowCap: Series; overflowFd: Series; sessions: Series; pipesInUse: Series; pipesPooled: Series };

  /** The data-plane engine (the DNS resolver serves its UDP side on it too). */
  get dataPlane(): Engine {
    return this.engine;
  }

  /** Starts the engine; throws MESHEXT_E_ENGINE (one line saying why) when it cannot run here. */
  constructor(private readonly opts: ProxyOptions) {
    this.log = opts.log;
    this.resolver = new EndpointResolver(opts.resolver);
    this.systemCaPath = opts.systemCaPath === undefined ? detectSystemCa() : opts.systemCaPath;
    this.timeouts = {
      connectMs: timeout('connectTimeoutMs', opts.connectTimeoutMs, DEFAULT_TIMEOUTS.connectMs, 1),
      tcpIdleMs: timeout('tcpIdleTimeoutMs', opts.tcpIdleTimeoutMs, DEFAULT_TIMEOUTS.tcpIdleMs, 0),
      httpIdleMs: timeout('httpIdleTimeoutMs', opts.httpIdleTimeoutMs, DEFAULT_TIMEOUTS.httpIdleMs, 1),
      httpHeaderMs: timeout('httpHeaderTimeoutMs', opts.httpHeaderTimeoutMs, DEFAULT_TIMEOUTS.httpHeaderMs, 1),
      upstreamIdleMs: timeout('httpUpstreamIdleTimeoutMs', opts.httpUpstreamIdleTimeoutMs, DEFAULT_TIMEOUTS.upstreamIdleMs, 1),
      requestMs: DEFAULT_TIMEOUTS.requestMs,
      maxStreamMs: DEFAULT_TIMEOUTS.maxStreamMs,
      streamIdleMs: DEFAULT_TIMEOUTS.streamIdleMs,
      maxConnectionMs: DEFAULT_TIMEOUTS.maxConnectionMs,
    };
    const maxConnections = opts.maxConnections ?? 0;
    if (maxConnections !== 'auto' && (!Number.isInteger(maxConnections) || maxConnections < 0 || maxConnections > 0xffffffff)) {
      throw new RangeError(`maxConnections must be 'auto' or an integer 0..4294967295 (0: no cap), got ${maxConnections}`);
    }
    this.engine = Engine.start(opts.dataThreads ?? 1, opts.addon, (err, ev) => this.log.error({ event: ev.kind, err: err.message }, 'handling an engine event failed'), maxConnections);
    const l = this.engine.limits;
    this.log.info({ threads: this.engine.threads, maxConnections: l.maxConnections || 'none', fdLimit: l.fdLimit }, 'engine started');
    const s = opts.stats;
    this.global = {
      noRoute: s.counter('meshext_downstream_cx_no_route_total', 'Connections to a VIP:port no service owns'),
      accepted: s.counter('meshext_engine_cx_accepted_total', 'Connections the engine accepted on its listeners'),
      origFound: s.counter('meshext_engine_orig_dst_total', 'Original destinations looked up in the BPF map', { result: 'found' }),
      origMissing: s.counter('meshext_engine_orig_dst_total', 'Original destinations looked up in the BPF map', { result: 'missing' }),
      origStale: s.counter('meshext_engine_orig_dst_total', 'Original destinations looked up in the BPF map', { result: 'stale' }),
      overflowCap: s.counter('meshext_engine_cx_overflow_total', 'Client connections reset at once by a limit', { reason: 'max_connections' }),
      overflowFd: s.counter('meshext_engine_cx_overflow_total', 'Client connections reset at once by a limit', { reason: 'fd_limit' }),
      sessions: s.gauge('meshext_engine_connections', 'Client connections open in the engine'),
      pipesInUse: s.gauge('meshext_engine_pipes_in_use', 'splice pipes of the engine holding bytes in flight'),
      pipesPooled: s.gauge('meshext_engine_pipes_pooled', 'Empty splice pipes the engine keeps for reuse'),
    };
    s.onCollect(() => this.collect());
    this.wireEvents();
  }

  /** Set when connect-time access control runs (see setAccessEnforced). */
  private accessEnforced: ReadonlySet<string> | undefined;

  /**
   * Installs the snapshot's plans (atomically: connections and requests in flight keep the plans they started
   * with). Resolves once the plans also carry the first answers of DNS names they had none for.
   */
  async setSnapshot(s: Snapshot): Promise<void> {
    const previous = this.snapshot;
    this.snapshot = s;
    for (const svc of s.services) {
      this.kriOf.set(svc.id, svc.kri);
      this.meshOf.set(svc.id, svc.mesh);
      this.metricsFor(svc.kri);
      const labels = svc.endpoints.map(endpointLabel);
      const old = this.health.get(svc.id);
      const next = new HealthSet(labels);
      // Health follows an endpoint's label from one version of the service to the next (the engine's does too).
      for (const h of old?.all() ?? []) {
        const n = next.get(h.label);
        if (n) Object.assign(n, h);
      }
      this.health.set(svc.id, next);
    }
    for (const id of this.health.keys()) if (!s.services.some((x) => x.id === id)) this.health.delete(id);
    try {
      this.install();
    } catch (e) {
      // The engine kept its plans: so does the control plane (a reload error says the old config serves).
      this.snapshot = previous;
      throw e;
    }
    this.log.info({ generation: s.generation, services: s.services.length }, 'snapshot applied');
    const names = dnsNames(s);
    this.resolver.retain(names);
    const unknown = [...names].filter((n) => this.resolver.answer(n) === undefined);
    if (unknown.length) {
      // New names are asked now; their plans are installed again as soon as all have an answer. The caller
      // waits for that at most FIRST_ANSWER_WAIT_MS (as Envoy warms a cluster): one slow name must not hold
      // back the DNS records and listeners of every other service.
      const answered = Promise.allSettled(unknown.map((n) => this.resolver.resolve(n))).then(() => {
        if (this.snapshot !== s || this.closed) return;
        try {
          this.install();
        } catch (e) {
          this.log.error({ err: (e as Error).message }, 'cannot install the plans with new DNS answers');
        }
      });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([answered, new Promise<void>((r) => (timer = setTimeout(r, FIRST_ANSWER_WAIT_MS)))]);
      clearTimeout(timer);
    }
    this.scheduleRefresh();
  }

  /**
   * Gives the engine the BPF map of original destinations (mx_peer_orig): the transparent listener then routes
   * by it; null takes it back (the listener then routes by the local address the client connected to).
   */
  useOriginalDstMap(fd: number | null): void {
    this.origMapFd = fd;
    this.install();
  }

  /** Compiles and installs every plan; a plan installed failing closed is logged once per cause. */
  /**
   * The services whose MeshTrafficPermission verdicts the kernel holds; the plans of the others keep the mesh's
   * 403. Reinstalls the plans when the set changes.
   */
  setAccessEnforced(ids: ReadonlySet<string>): void {
    this.accessEnforced = ids;
    this.install();
  }

  private install(): void {
    if (!this.snapshot || this.closed) return;
    const enforced = this.accessEnforced;
    const plans = compilePlans(this.snapshot.services, {
      ...(enforced ? { accessEnforced: (id: string) => enforced.has(id) } : {}),
      vipCidr: this.snapshot.vipCidr,
      systemCaPath: this.systemCaPath,
      readCa: (path) => this.readCa(path),
      answer: (name) => this.resolver.answer(name),
      timeouts: this.timeouts,
    });
    const errs = new Map<string, { code: string; err: string }>();
    for (const p of plans) if (p.error) errs.set(p.service, { code: p.errorCode ?? 'MESHEXT_E_SERVICE', err: p.error });
    const engineErrs = this.engine.install({ source: this.origMapFd !== null ? 'map' : 'local', ...(this.origMapFd !== null ? { mapFd: this.origMapFd } : {}), plans });
    this.plans = plans;
    // What the engine refused of a plan: TLS settings OpenSSL cannot use (its words name the step, never key
    // material) fail the service closed; a key another service holds (VIPs are unique: a bug) only loses that key.
    // An access log file that cannot be opened costs the service that backend only (it keeps serving).
    const logErrs = new Set<string>();
    for (const e of engineErrs) {
      if (e.code === 'MESHEXT_E_KEY_CONFLICT') this.log.error({ service: this.kriOf.get(e.service) ?? e.service, code: e.code, err: e.error }, 'route key conflict');
      else if (e.code === 'MESHEXT_E_ACCESS_LOG') logErrs.add(`${e.service}\n${e.error}`);
      else errs.set(e.service, { code: e.code, err: e.error });
    }
    for (const k of logErrs) {
      if (this.accessLogErrors.has(k)) continue;
      const [service = '', err] = k.split('\n');
      this.log.error({ service: this.kriOf.get(service) ?? service, code: 'MESHEXT_E_ACCESS_LOG', err }, 'access log backend left out; the service keeps serving');
    }
    this.accessLogErrors = logErrs;
    for (const [service, { code, err }] of errs) {
      if (this.errors.get(service) === err) continue;
      this.log.error({ service: this.kriOf.get(service) ?? service, code, err }, 'service cannot be served; its connections fail closed');
    }
    this.errors.clear();
    for (const [k, v] of errs) this.errors.set(k, v.err);
  }

  /** Lines each access log file lost to write errors; the series of a file no longer written go. */
  private collectLogFiles(files: ReadonlyArray<{ path: string; writeFailed: number }>): void {
    const live = new Set<string>();
    for (const f of files) {
      live.add(f.path);
      this.opts.stats.counter('meshext_access_log_write_failed_total', 'Access log lines lost because writing the file failed (ENOSPC, EIO...)', { path: f.path }).set(f.writeFailed);
    }
    for (const path of this.logFiles) if (!live.has(path)) this.opts.stats.remove({ path });
    this.logFiles = live;
  }

  /** Reopens every access log file (logrotate's postrotate sends SIGUSR1); a path that cannot be opened keeps its old file. */
  reopenLogs(): void {
    for (const e of this.engine.reopenLogs()) this.log.error({ path: e.path, code: 'MESHEXT_E_ACCESS_LOG', err: e.error }, 'access log file not reopened; still writing to the old one');
  }

  private readCa(path: string): Buffer {
    let b = this.caFiles.get(path);
    if (!b) {
      b = readFileSync(path);
      this.caFiles.set(path, b);
    }
    return b;
  }

  /** Re-resolves the names whose answers are due, and reinstalls when one changed. */
  private scheduleRefresh(): void {
    clearTimeout(this.refresh);
    this.refresh = undefined;
    if (this.closed || !this.snapshot) return;
    const names = dnsNames(this.snapshot);
    let at = Infinity;
    for (const n of names) at = Math.min(at, this.resolver.expiry(n) ?? 0);
    if (at === Infinity) return;
    // At most once a second (TTL 0 answers), never beyond setTimeout's range (huge TTLs).
    const delay = Math.min(MAX_TIMER_MS, Math.max(1000, at - Date.now()));
    this.refresh = setTimeout(() => {
      const now = Date.now();
      const due = [...names].filter((n) => (this.resolver.expiry(n) ?? 0) <= now);
      const before = due.map((n) => answerKey(this.resolver.answer(n)));
      void Promise.allSettled(due.map((n) => this.resolver.resolve(n)))
        .then(() => {
          // Only a changed set of addresses changes the plans (a server rotating its records does not).
          if (due.some((n, i) => answerKey(this.resolver.answer(n)) !== before[i])) this.install();
        })
        .catch((e: unknown) => this.log.error({ err: (e as Error).message }, 'cannot install the plans with new DNS answers'))
        .finally(() => this.scheduleRefresh());
    }, delay);
    this.refresh.unref();
  }

  private metricsFor(kri: string): ServiceMetrics {
    let m = this.metrics.get(kri);
    if (!m) {
      m = new ServiceMetrics(this.opts.stats, kri);
      this.metrics.set(kri, m);
    }
    return m;
  }

  /** Copies the engine's counters into the registry; drops the series of services the engine no longer has. */
  private collect(): void {
    const c = this.engine.counters();
    const st = this.engine.stats();
    this.global.sessions.set(st?.sessions ?? 0);
    this.global.pipesInUse.set(st?.pipesInUse ?? 0);
    this.global.pipesPooled.set(st?.pipesPooled ?? 0);
    if (!c) return;
    this.global.noRoute.set(c.noRoute);
    this.global.accepted.set(c.accepted);
    this.global.origFound.set(c.origDstFound);
    this.global.origMissing.set(c.origDstMissing);
    this.global.origStale.set(c.origDstStale);
    this.global.overflowCap.set(c.overflowCap);
    this.global.overflowFd.set(c.overflowFd);
    this.collectLogFiles(c.accessLogFiles);
    const live = new Set<string>();
    for (const svc of c.services) {
      const kri = this.kriOf.get(svc.service);
      if (!kri) continue;
      live.add(svc.service);
      const m = this.metricsFor(kri);
      m.apply(svc.counters);
      m.applyHistograms(c.histogramBoundsMs, svc.rqTime, svc.connectTime);
    }
    // A removed service keeps its series while a connection of it is open (the engine still has it).
    const current = new Set(this.snapshot?.services.map((s) => s.id) ?? []);
    for (const [id, kri] of this.kriOf) {
      if (current.has(id) || live.has(id)) continue;
      this.opts.stats.remove({ service: kri });
      this.metrics.delete(kri);
      this.kriOf.delete(id);
      this.meshOf.delete(id);
    }
  }

  /** The engine's reports: health decisions, logs and the metrics only the control plane can name. */
  private wireEvents(): void {
    const e = this.engine;
    const kri = (ev: EngineEvent): string => this.kriOf.get(String(ev['service'])) ?? String(ev['service']);
    e.on('connect-failed', (ev) => {
      this.failure(String(ev['service']), String(ev['endpoint']), String(ev['reason']));
      this.warn(`connect-failed:${ev['service']}`, { service: kri(ev), endpoint: ev['endpoint'], err: ev['reason'] }, 'upstream connect failed');
    });
    e.on('endpoint-ok', (ev) => {
      const service = String(ev['service']);
      const label = String(ev['endpoint']);
      if (this.health.get(service)?.success(label)) this.engine.health(service, label, 0);
    });
    e.on('tls-failed', (ev) => {
      const f = describeTlsFailure(failureOf(ev, ''));
      // A report of a service already retired (its series gone) is logged, not counted.
      if (this.kriOf.has(String(ev['service']))) this.metricsFor(kri(ev)).tlsVerifyFail(f.reason);
      this.failure(String(ev['service']), String(ev['endpoint']), f.text);
      this.warn(`tls-failed:${ev['service']}`, { service: kri(ev), endpoint: ev['endpoint'], address: ev['address'], reason: f.reason, err: f.text }, 'upstream TLS verification failed');
    });
    e.on('upstream-closed', (ev) => {
      // A TLS failure after the handshake (the server rejected our certificate late, or sent junk).
      if (typeof ev['tlsStage'] !== 'string') return;
      const f = describeTlsFailure(failureOf(ev, 'tls'));
      if (this.kriOf.has(String(ev['service']))) this.metricsFor(kri(ev)).tlsVerifyFail(f.reason);
      this.warn(`tls-late:${ev['service']}`, { service: kri(ev), reason: f.reason, err: f.text }, 'upstream TLS error after handshake');
    });
    e.on('upstream-failed', (ev) => {
      this.warn(`upstream-failed:${ev['service']}`, { service: kri(ev), client: ev['client'], ...(ev['method'] !== undefined ? { method: ev['method'], path: ev['path'] } : {}), err: ev['reason'] }, 'upstream unavailable');
    });
    e.on('denied', (ev) => {
      this.warn(`denied:${ev['service']}`, { service: kri(ev), client: ev['client'], mesh: this.meshOf.get(String(ev['service'])), ...(ev['method'] !== undefined ? { method: ev['method'], path: ev['path'] } : {}) }, 'access denied by Mesh routing.defaultForbidMeshExternalServiceAccess');
    });
    e.on('no-route', (ev) => {
      this.warn('no-route', { client: ev['client'], destination: ev['key'] || null }, 'no service for this destination; connection reset');
    });
    e.on('h1-error', (ev) => {
      this.warn(`h1-error:${ev['service']}`, { service: kri(ev), status: ev['status'], method: ev['method'], err: ev['reason'] }, 'upstream response failed');
    });
  }

  /** Counts an endpoint failure; tells the engine when it backs the endpoint off. */
  private failure(service: string, label: string, why: string): void {
    const ms = this.health.get(service)?.failure(label, why);
    if (ms !== undefined) this.engine.health(service, label, ms);
  }

  /** A warning, at most LOG_BURST a second per key; the number left out is said with the next one. */
  private warn(key: string, fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    let r = this.logged.get(key);
    if (!r || now - r.at >= 1000) {
      r = { at: now, n: 0, suppressed: r?.suppressed ?? 0 };
      this.logged.set(key, r);
      if (this.logged.size > 10_000) this.logged.clear();
    }
    if (++r.n > LOG_BURST) {
      r.suppressed++;
      return;
    }
    this.log.warn(r.suppressed ? { ...fields, suppressed: r.suppressed } : fields, msg);
    r.suppressed = 0;
  }

  /** Listens for redirected connections and routes each by its original destination. */
  listenTransparent(addr: { address: string; port: number }): Promise<net.AddressInfo> {
    return this.listen(addr, undefined);
  }

  /** Listens on a non-transparent outbound bound to one service. */
  listenOutbound(addr: { address: string; port: number }, serviceId: string): Promise<net.AddressInfo> {
    return this.listen(addr, serviceId);
  }

  /** Stops one outbound listener; its connections continue. */
  async closeOutbound(addr: { address: string; port: number }): Promise<void> {
    const l = this.listeners.get(listenKey(addr));
    if (!l) return;
    l.close();
    this.listeners.delete(listenKey(addr));
  }

  private async listen(addr: { address: string; port: number }, serviceId: string | undefined): Promise<net.AddressInfo> {
    // The engine binds IP literals; a host name (e.g. localhost) is looked up first, as Node's listen would.
    const ip = net.isIP(addr.address) ? addr.address : (await dns.promises.lookup(addr.address)).address;
    let loggedAt = -Infinity;
    const where = `${addr.address}:${addr.port}`;
    const onError = (code: string, fatal: boolean): void => {
      if (fatal) {
        this.log.error({ listener: where, err: code }, 'listener failed; no longer accepting');
        return;
      }
      if (Date.now() - loggedAt < 10_000) return;
      loggedAt = Date.now();
      if (code === 'EMFILE' || code === 'ENFILE') {
        this.log.error({ listener: where, err: code }, 'out of file descriptors: new connections are reset until some close (raise LimitNOFILE or lower --max-connections)');
      } else {
        this.log.error({ listener: where, err: code }, 'cannot accept connections; retrying every 100 ms');
      }
    };
    const l = this.engine.listen(ip, addr.port, onError, serviceId !== undefined ? `@${serviceId}` : undefined);
    // Port 0 binds an ephemeral port; index by the real one so closeOutbound finds it.
    this.listeners.set(listenKey({ address: addr.address, port: l.address.port }), l);
    this.log.info({ address: `${l.address.address}:${l.address.port}`, service: serviceId ?? '(transparent)' }, 'listening');
    return l.address;
  }

  /** Closes every listener; accepted connections continue. */
  async stopAccepting(): Promise<void> {
    for (const l of this.listeners.values()) l.close();
    this.listeners.clear();
    await new Promise((r) => setImmediate(r));
  }

  /** Resolves once every report the engine made before the call has been handled (logs, health). */
  settled(): Promise<void> {
    return this.engine.settled();
  }

  /** Lets connections finish (HTTP: in-flight requests complete, idle keep-alives close) up to the timeout, then closes the rest. */
  async drain(timeoutMs: number): Promise<{ remaining: number }> {
    this.engine.drain();
    const deadline = Date.now() + timeoutMs;
    while (this.activeConnections() > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
    }
    const remaining = this.activeConnections();
    if (remaining > 0) {
      this.engine.drain(true);
      const end = Date.now() + 1000;
      while (this.activeConnections() > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
    }
    return { remaining };
  }

  /** Stops listening and the engine (every connection closes). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.refresh);
    await this.stopAccepting();
    this.engine.stop();
    this.collect();
  }

  /** Client connections open in the engine. */
  activeConnections(): number {
    return this.engine.stats()?.sessions ?? 0;
  }

  /** The engine's own figures (threads, connections, pipes), or null once stopped. */
  engineStats(): EngineStats | null {
    return this.engine.stats();
  }

  /** The engine's counters, or null once stopped. */
  engineCounters(): EngineCounters | null {
    return this.engine.counters();
  }

  /** Why a service cannot be served (its connections fail closed), or undefined when it can. */
  serviceError(id: string): string | undefined {
    return this.errors.get(id);
  }

  /** The plans installed now (for /config_dump and tests). */
  currentPlans(): readonly ServicePlan[] {
    return this.plans;
  }

  /** Envoy `/clusters`-style view of every service's endpoints: priority, health, addresses and connections. */
  clusters(): ClusterInfo[] {
    const counters = new Map((this.engine.counters()?.services ?? []).map((s) => [s.service, s]));
    return this.plans.map((p) => {
      const h = this.health.get(p.service);
      const c = counters.get(p.service);
      const err = this.errors.get(p.service);
      return {
        service: p.service,
        kri: this.kriOf.get(p.service) ?? p.service,
        ...(err ? { error: err } : {}),
        endpoints: p.endpoints.map((ep) => {
          const rec = h?.get(ep.label);
          const counts = c?.endpoints.find((x) => x.label === ep.label);
          return {
            address: ep.label,
            priority: ep.priority,
            healthy: rec ? h!.healthy(rec) : true,
            consecutiveFailures: rec?.consecutiveFailures ?? 0,
            ...(rec?.lastError !== undefined ? { lastError: rec.lastError } : ep.unavailable ? { lastError: ep.unavailable } : {}),
            active: counts?.active ?? 0,
            total: counts?.total ?? 0,
            addresses: ep.targets.map((t) => (t.port ? `${t.address}:${t.port}` : t.address)),
          };
        }),
      };
    });
  }
}

/** The DNS names of a snapshot's endpoints. */
function dnsNames(s: Snapshot): Set<string> {
  return new Set(s.services.flatMap((svc) => svc.endpoints.flatMap((e) => (e.kind === 'dns' ? [e.address] : []))));
}

/** A timeout option: its default when unset; `min` 0 lets 0 mean "none". Whole ms the engine can arm (< 2^31). */
function timeout(name: string, v: number | undefined, dflt: number, min: 0 | 1): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min || v > MAX_TIMER_MS) throw new RangeError(`${name} must be a whole number of ms from ${min} to ${MAX_TIMER_MS}, got ${v}`);
  return v;
}

/** An answer as a comparable key: its addresses as a set, or its error. */
function answerKey(a: NameAnswer | undefined): string {
  if (!a) return '';
  return 'error' in a ? `!${a.error}` : [...a.addresses].sort().join(',');
}

/** The TLS failure an event carries: as `stage`, `code`, `message` (tls-failed) or `tlsStage`, ... (upstream-closed). */
function failureOf(ev: EngineEvent, prefix: '' | 'tls'): NativeTlsFailure {
  const f = (name: string): string => String(ev[prefix ? prefix + name[0]!.toUpperCase() + name.slice(1) : name] ?? '');
  return { stage: f('stage') as NativeTlsFailure['stage'], code: f('code'), message: f('message') };
}

function listenKey(a: { address: string; port: number }): string {
  return `${a.address}|${a.port}`;
}
