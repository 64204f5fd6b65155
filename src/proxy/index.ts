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
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { DEFAULT_ACCESS_LOG_DIR } from '../snapshot/accesslog.js';
import { compilePlans, DEFAULT_TIMEOUTS, type NameAnswer, type PlanTimeouts, type ServicePlan } from '../snapshot/plan.js';
import { Engine, type EngineListener } from '../engine/engine.js';
import type { EngineCounters, EngineEvent, EngineStats, NativeAddon, NativeTlsFailure } from '../native/addon.js';
import { HealthSet, type Change, type EndpointStatus } from './endpoints.js';
import { HealthChecker } from './health-check.js';
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
  /** --access-log-dir: MeshAccessLog files are written only under it (and /dev/stdout, /dev/stderr); default /var/log/meshext. */
  accessLogDir?: string;
  /** The addon to run the engine on (tests); default the production build. */
  addon?: NativeAddon;
}

export interface ClusterInfo {
  service: string;
  kri: string;
  /** Why the service cannot be served (every connection fails), when it cannot. */
  error?: string;
  endpoints: Array<{
    address: string;
    priority: number;
    healthy: boolean;
    /** Why it is out of the balancer (src/proxy/endpoints.ts), or healthy. */
    health: EndpointStatus;
    reason?: string;
    consecutiveFailures: number;
    /** Outlier detection: times ejected so far (while the service has it). */
    ejections?: number;
    /** Active checks: the last one's time and result (while the service has them). */
    lastCheck?: { at: string; ok: boolean };
    lastError?: string;
    active: number;
    total: number;
    addresses: string[];
  }>;
}

/** How long applying a snapshot waits for the first answers of DNS names it brings (they apply whenever they come). */
const FIRST_ANSWER_WAIT_MS = 1000;
/** Longest delay setTimeout takes. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** How often the statistical outlier detectors look for services whose interval is due. */
const SWEEP_TICK_MS = 100;
/** Log lines of one kind per service per second before the rest are only counted (and said with the next). */
const LOG_BURST = 5;

export class Proxy {
  private readonly engine: Engine;
  private snapshot: Snapshot | undefined;
  private plans: ServicePlan[] = [];
  private readonly health = new Map<string, HealthSet>();
  private readonly checker: HealthChecker;
  /** The statistical outlier detectors' sweeps: per service, when next, and the counts at the last one. */
  private readonly sweeps = new Map<string, { due: number; last: Map<string, { responses: number; failed: number }> }>();
  private sweepTimer: NodeJS.Timeout | undefined;
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
  private readonly accessLogDir: string;
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
    const logDir = opts.accessLogDir ?? DEFAULT_ACCESS_LOG_DIR;
    if (!isAbsolute(logDir)) throw new RangeError(`accessLogDir must be an absolute directory path, got ${JSON.stringify(logDir)}`);
    this.accessLogDir = resolvePath(logDir);
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
    this.checker = new HealthChecker({
      probe: (p) => this.engine.probe(p),
      result: (service, label, ok, reason) => this.checked(service, label, ok, reason),
      unhealthy: (service, label) => this.health.get(service)?.get(label)?.unhealthy ?? false,
    });
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
    }
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
      accessLogDir: this.accessLogDir,
    });
    const errs = new Map<string, { code: string; err: string }>();
    for (const p of plans) if (p.error) errs.set(p.service, { code: p.errorCode ?? 'MESHEXT_E_SERVICE', err: p.error });
    const engineErrs = this.engine.install({
      source: this.origMapFd !== null ? 'map' : 'local',
      ...(this.origMapFd !== null ? { mapFd: this.origMapFd } : {}),
      accessLogDir: this.accessLogDir,
      plans,
    });
    this.plans = plans;
    // Health is the service's (a Dataplane's own plan has the service's endpoints, limits and checks): one health
    // set and one set of active checks per service, from its own plan.
    const servicePlans = plans.filter((p) => p.dataplane === undefined);
    this.syncHealth(servicePlans);
    this.checker.update(servicePlans);
    // What the engine refused of a plan: TLS settings OpenSSL cannot use (its words name the step, never key
    // material) fail the service closed; a key another service holds (VIPs are unique: a bug) only loses that key.
    // An access log file that cannot be opened costs the service that backend only (it keeps serving).
    const logErrs = new Set<string>();
    // Backends the compile left out (a path outside the access log directory) cost the same as one the engine could not open.
    for (const p of plans) for (const e of p.accessLogErrors ?? []) logErrs.add(`${p.service}\n${e}`);
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

  /**
   * Health sets for the installed plans: health follows an endpoint's label from one version of a service to the
   * next (the engine's state does too), under the plan's current outlier detection and health check; an
   * endpoint whose state that changes (a policy removed) is told to the engine.
   */
  private syncHealth(plans: readonly ServicePlan[]): void {
    const live = new Set<string>();
    for (const p of plans) {
      live.add(p.service);
      const old = this.health.get(p.service);
      const hc = p.healthCheck;
      const next = new HealthSet(
        p.endpoints.map((e) => e.label),
        Date.now,
        p.outlierDetection,
        hc ? { unhealthyThreshold: hc.unhealthyThreshold, healthyThreshold: hc.healthyThreshold } : undefined,
      );
      next.adopt(old);
      this.health.set(p.service, next);
      if (!old) continue;
      for (const h of next.all()) {
        const before = old.get(h.label);
        if (before && old.status(before) !== next.status(h)) this.engine.health(p.service, h.label, next.downForMs(h));
      }
    }
    for (const id of this.health.keys()) if (!live.has(id)) this.health.delete(id);
    for (const id of this.sweeps.keys()) if (!plans.some((p) => p.service === id && p.countResponses)) this.sweeps.delete(id);
    for (const p of plans) {
      if (p.countResponses && p.outlierDetection && !this.sweeps.has(p.service)) this.sweeps.set(p.service, { due: Date.now() + p.outlierDetection.intervalMs, last: new Map() });
    }
    if (this.sweeps.size > 0 && !this.sweepTimer) {
      // One timer for every service: each is swept when its own interval is due (SWEEP_TICK_MS granularity).
      this.sweepTimer = setInterval(() => this.sweep(), SWEEP_TICK_MS);
      this.sweepTimer.unref();
    } else if (this.sweeps.size === 0 && this.sweepTimer) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  /** Runs the statistical outlier detectors of the services whose interval is due, on the responses since their last sweep. */
  private sweep(): void {
    const now = Date.now();
    const due = [...this.sweeps].filter(([, s]) => s.due <= now);
    if (due.length === 0) return;
    const counters = new Map((this.engine.counters()?.services ?? []).map((s) => [s.service, s]));
    for (const [service, s] of due) {
      const plan = this.plans.find((p) => p.service === service && p.dataplane === undefined);
      const h = this.health.get(service);
      if (!plan?.outlierDetection || !h) continue;
      s.due = now + plan.outlierDetection.intervalMs;
      const nowCounts = new Map((counters.get(service)?.endpoints ?? []).map((e) => [e.label, { responses: e.responses, failed: e.failedResponses }]));
      const delta = new Map<string, { responses: number; failed: number }>();
      for (const [label, c] of nowCounts) {
        const before = s.last.get(label) ?? { responses: 0, failed: 0 };
        delta.set(label, { responses: Math.max(0, c.responses - before.responses), failed: Math.max(0, c.failed - before.failed) });
      }
      s.last = nowCounts;
      for (const { label, change } of h.sweep(delta)) this.applyHealth(service, label, change);
    }
  }

  /** Tells the engine an endpoint's new state, and counts and logs what happened. */
  private applyHealth(service: string, label: string, c: Change | undefined): void {
    if (!c) return;
    this.engine.health(service, label, c.downForMs);
    const kri = this.kriOf.get(service) ?? service;
    const h = this.health.get(service);
    const rec = h?.get(label);
    const reason = rec && h ? h.reason(rec) : undefined;
    if (c.ejected) {
      if (this.kriOf.has(service)) this.metricsFor(kri).ejection(c.ejected);
      this.log.warn({ service: kri, endpoint: label, detector: c.ejected, ejectedForMs: c.downForMs, reason }, 'endpoint ejected by outlier detection');
    }
    if (c.failed) this.log.warn({ service: kri, endpoint: label, reason }, 'endpoint failed its active health checks; out of the balancer');
    if (c.recovered) this.log.info({ service: kri, endpoint: label }, 'endpoint passed its active health checks; back in the balancer');
  }

  /** An active health check's result. */
  private checked(service: string, label: string, ok: boolean, reason: string): void {
    if (this.kriOf.has(service)) this.metricsFor(this.kriOf.get(service) as string).healthCheck(ok);
    this.applyHealth(service, label, this.health.get(service)?.checked(label, ok, reason));
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
      const h = this.health.get(svc.service);
      if (h && (h.outlier || h.checks)) {
        const n = h.counts();
        m.endpoints(n.healthy, n.ejected);
      }
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
      this.applyHealth(service, String(ev['endpoint']), this.health.get(service)?.success(String(ev['endpoint']), ev['source'] === 'response' ? 'response' : 'connect'));
    });
    e.on('endpoint-status', (ev) => {
      const service = String(ev['service']);
      this.applyHealth(service, String(ev['endpoint']), this.health.get(service)?.status5xx(String(ev['endpoint']), Number(ev['status'])));
    });
    e.on('endpoint-failed', (ev) => {
      const service = String(ev['service']);
      this.applyHealth(service, String(ev['endpoint']), this.health.get(service)?.lostConnection(String(ev['endpoint']), String(ev['reason'])));
    });
    e.on('probe-result', (ev) => {
      this.checker.onResult(Number(ev['token']), ev['ok'] === 1, String(ev['reason'] ?? ''));
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

  /** Counts an endpoint's local-origin failure; tells the engine when that takes the endpoint out. */
  private failure(service: string, label: string, why: string): void {
    this.applyHealth(service, label, this.health.get(service)?.failure(label, why));
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

  /**
   * Listens on a non-transparent outbound bound to one service: its connections route by `key` (a Dataplane's
   * outbounds: CompiledOutbound.key, so a plan of that Dataplane's own serves them), `@<serviceId>` by default.
   */
  listenOutbound(addr: { address: string; port: number }, serviceId: string, key = `@${serviceId}`): Promise<net.AddressInfo> {
    return this.listen(addr, { serviceId, key });
  }

  /** Stops one outbound listener; its connections continue. */
  async closeOutbound(addr: { address: string; port: number }): Promise<void> {
    const l = this.listeners.get(listenKey(addr));
    if (!l) return;
    l.close();
    this.listeners.delete(listenKey(addr));
  }

  private async listen(addr: { address: string; port: number }, outbound: { serviceId: string; key: string } | undefined): Promise<net.AddressInfo> {
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
    const l = this.engine.listen(ip, addr.port, onError, outbound?.key);
    // Port 0 binds an ephemeral port; index by the real one so closeOutbound finds it.
    this.listeners.set(listenKey({ address: addr.address, port: l.address.port }), l);
    this.log.info({ address: `${l.address.address}:${l.address.port}`, service: outbound?.serviceId ?? '(transparent)', ...(outbound ? { key: outbound.key } : {}) }, 'listening');
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
    this.checker.close();
    clearInterval(this.sweepTimer);
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
    // A Dataplane's own plan has the service's endpoints, health and counters: the service is listed once.
    return this.plans.filter((p) => p.dataplane === undefined).map((p) => {
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
          const reason = rec ? h!.reason(rec) : undefined;
          return {
            address: ep.label,
            priority: ep.priority,
            healthy: rec ? h!.healthy(rec) : true,
            health: rec ? h!.status(rec) : 'healthy',
            ...(reason !== undefined ? { reason } : {}),
            consecutiveFailures: rec?.consecutiveFailures ?? 0,
            ...(h?.outlier ? { ejections: rec?.timesEjected ?? 0 } : {}),
            ...(h?.checks && rec?.lastCheck ? { lastCheck: { at: new Date(rec.lastCheck.at).toISOString(), ok: rec.lastCheck.ok } } : {}),
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
