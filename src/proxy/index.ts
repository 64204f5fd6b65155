/**
 * The proxy core: accepts redirected (transparent) and outbound-listener connections, routes each to a
 * service of the current snapshot, enforces access denial, and hands the connection to the protocol
 * handler (tcp, http/1.1, http/2, grpc). Snapshots swap atomically; a connection keeps the service and
 * runtime it was routed with.
 */
import { closeSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from '../log.js';
import type { Registry, Series } from '../stats/registry.js';
import type { CompiledService, Snapshot } from '../snapshot/types.js';
import { vipPortKey } from '../snapshot/types.js';
import { ServiceMetrics } from './metrics.js';
import { EndpointResolver, type DnsResolver } from './resolve.js';
import { dataPathFingerprint, ServiceRuntime } from './runtime.js';
import { detectSystemCa } from './system-ca.js';
import { sniffHttp2 } from './sniff.js';
import { handleTcp, relayAcceptedTcp, relayRoutedTcp, TCP_IDLE_TIMEOUT_MS } from './tcp.js';
import { FastPath, type AcceptedConn, type DataPath, type RoutedConn } from './fastpath.js';
import { EngineRoutes, outboundRouteKey, type OriginalDstSource } from './engine-routes.js';
import type { ConnState } from './conn.js';
import type { RelayStats } from '../redirect/native.js';
import { Http1Handler } from './http1.js';
import { Http1Native } from './http1-native.js';
import { Http2Handler } from './http2.js';
import { NativeHttp2 } from './http2-native.js';

export { UpstreamError } from './errors.js';
export type { DataPath } from './fastpath.js';
export type { TlsFailReason, UpstreamErrorCode } from './errors.js';
export { SYSTEM_CA_CANDIDATES, SYSTEM_CA_ENV, detectSystemCa } from './system-ca.js';

export interface ProxyOptions {
  stats: Registry;
  log: Logger;
  /** Upstream connect (and TLS handshake) timeout; default 5000 ms like Kuma. */
  connectTimeoutMs?: number;
  /** System CA bundle: a path, null for "none", undefined to auto-detect. */
  systemCaPath?: string | null;
  /** Recovers a redirected connection's original VIP:port; defaults to the connection's local address. */
  originalDst?: (conn: ConnAddresses) => { address: string; port: number } | null;
  /** DNS resolver for DNS-name endpoints; defaults to the system's (c-ares). */
  resolver?: DnsResolver;
  /** native (default): plain TCP services and HTTP/1.x clients of plain-upstream http services run in the native engine; node: everything in Node streams. */
  dataPath?: DataPath;
  /** I/O threads of the native engine; default 1. */
  dataThreads?: number;
  /** Idle timeout of TCP sessions; default 1 h (Envoy's tcp_proxy), 0 disables it. */
  tcpIdleTimeoutMs?: number;
  /** Idle keep-alive timeout of HTTP/1.x client connections on the native path; default 60 s. */
  httpIdleTimeoutMs?: number;
  /** Idle timeout of pooled HTTP/1.1 upstream connections on the native path; default 60 s. */
  httpUpstreamIdleTimeoutMs?: number;
}


/** The addresses of an accepted connection (a net.Socket has them, and so does an engine-accepted one). */
export interface ConnAddresses {
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
  localAddress?: string | undefined;
  localPort?: number | undefined;
  /** The original destination the engine already looked up (null: unknown); undefined when it did not. */
  dst?: { address: string; port: number } | null;
}

/** A listening socket, in Node or in the native engine. */
interface Listening {
  close(): void;
}

export interface ClusterInfo {
  service: string;
  kri: string;
  endpoints: Array<{ address: string; healthy: boolean; consecutiveFailures: number; lastError?: string; active: number; total: number }>;
}

const EMPTY: Snapshot = { generation: 0, services: [], byVipPort: new Map(), byHostname: new Map(), outbounds: [], rejected: [], vipCidr: '242.0.0.0/8' };

export class Proxy {
  private snapshot: Snapshot = EMPTY;
  private byId = new Map<string, CompiledService>();
  private runtimes = new Map<string, ServiceRuntime>();
  private readonly metrics = new Map<string, ServiceMetrics>();
  /** kris dropped from the snapshot whose series go once their last client connection closes. */
  private readonly retiring = new Set<string>();
  private readonly servers = new Map<string, Listening>();
  private readonly conns = new Set<ConnState>();
  private readonly log: Logger;
  private readonly connectTimeoutMs: number;
  private readonly systemCaPath: string | null;
  private readonly resolver: EndpointResolver;
  private readonly noRoute: Series;
  private readonly h1 = new Http1Handler();
  private readonly h2 = new Http2Handler();
  /** The native engine once started; null when the Node data path is used (chosen, or the addon failed). */
  private fast: FastPath | null | undefined;
  /** HTTP/2 sessions on the native engine (bound to the engine instance it was made for). */
  private h2native: NativeHttp2 | undefined;
  private readonly tcpIdleTimeoutMs: number;
  /** HTTP/1.x sessions in the native engine (created with the first one). */
  private h1n: Http1Native | undefined;
  /** The routes the engine serves alone (plain TCP services), once it runs. */
  private engineRoutes: EngineRoutes | undefined;
  /** Connections routed by engines stopped before the current one (keeps meshext_relay_routed_total monotonic). */
  private routedBefore = 0;
  /** mx_peer_orig, when the redirector gave it (the engine then looks original destinations up itself). */
  private origMapFd: number | null = null;

  constructor(private readonly opts: ProxyOptions) {
    this.log = opts.log.child({ component: 'proxy' });
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
    this.systemCaPath = opts.systemCaPath === undefined ? detectSystemCa() : opts.systemCaPath;
    this.resolver = new EndpointResolver(opts.resolver);
    this.noRoute = opts.stats.counter('meshext_downstream_cx_no_route_total', 'Connections to a VIP:port no service owns');
    this.tcpIdleTimeoutMs = opts.tcpIdleTimeoutMs ?? TCP_IDLE_TIMEOUT_MS;
    if ((opts.dataPath ?? 'native') === 'node') this.fast = null;
    const sessions = opts.stats.gauge('meshext_relay_sessions', 'Connections open in the native relay engine');
    const pipesInUse = opts.stats.gauge('meshext_relay_pipes_in_use', 'splice pipes of the native relay engine holding bytes in flight');
    const pipesPooled = opts.stats.gauge('meshext_relay_pipes_pooled', 'Empty splice pipes the native relay engine keeps for reuse');
    const routed = opts.stats.counter('meshext_relay_routed_total', 'Connections the native relay engine routed and connected without waiting for JS');
    opts.stats.onCollect(() => {
      const r = this.fast ? this.fast.stats() : null;
      routed.set(this.routedBefore + (this.fast?.routedTotal ?? 0));
      sessions.set(r?.sessions ?? 0);
      pipesInUse.set(r?.pipesInUse ?? 0);
      pipesPooled.set(r?.pipesPooled ?? 0);
    });
    // Native HTTP/2 sessions count responses in the addon; a metrics read pulls them in, so /stats is exact.
    opts.stats.onCollect(() => this.h2native?.collect());
  }

  /** Serves an HTTP/2 client connection in the native engine when the service allows it; false = use Node. */
  private serveNativeH2(sock: net.Socket, rt: ServiceRuntime, state: ConnState): boolean {
    if (!NativeHttp2.eligible(rt)) return false;
    const fast = this.fastPath();
    if (!fast) return false;
    if (this.h2native?.fast !== fast) {
      this.h2native?.collect();
      this.h2native = new NativeHttp2(fast);
    }
    return this.h2native.serve(sock, rt, state);
  }

  /** The native engine, started on first use; null (logged once) when it cannot start. */
  private fastPath(): FastPath | null {
    if (this.fast !== undefined) return this.fast;
    const threads = this.opts.dataThreads ?? 1;
    try {
      this.fast = FastPath.start(threads);
      this.engineRoutes = new EngineRoutes(this.fast, this.log, () => this.installRoutes());
      this.log.info({ threads }, 'native data path started');
      this.installRoutes();
    } catch (e) {
      this.fast = null;
      this.log.warn({ err: (e as Error).message }, 'native data path unavailable; relaying TCP and HTTP/1 in Node');
    }
    return this.fast;
  }

  /** Which data path TCP services use now (`native` only once the engine has started). */
  dataPath(): DataPath {
    return this.fast ? 'native' : 'node';
  }

  /** Atomically replaces the routing table; runtimes (TLS contexts, pools, health) are rebuilt only for changed services. */
  setSnapshot(s: Snapshot): void {
    const next = new Map<string, ServiceRuntime>();
    for (const svc of s.services) {
      const fp = dataPathFingerprint(svc, this.systemCaPath, s.vipCidr);
      const old = this.runtimes.get(svc.id);
      if (old && old.fingerprint === fp && old.service.kri === svc.kri) {
        next.set(svc.id, old);
        continue;
      }
      next.set(svc.id, new ServiceRuntime(svc, { log: this.log, metrics: this.metricsFor(svc.kri), resolver: this.resolver, connectTimeoutMs: this.connectTimeoutMs, systemCaPath: this.systemCaPath, vipCidr: s.vipCidr }, fp));
    }
    for (const [id, rt] of this.runtimes) if (next.get(id) !== rt) rt.close();
    this.runtimes = next;
    this.byId = new Map(s.services.map((x) => [x.id, x]));
    this.snapshot = s;
    this.installRoutes();
    // Removed services must not leave series behind, or /stats grows with every reload.
    const live = new Set(s.services.map((x) => x.kri));
    const retiring: string[] = [];
    for (const kri of this.metrics.keys()) {
      if (live.has(kri)) this.retiring.delete(kri);
      else {
        this.retiring.add(kri);
        retiring.push(kri);
      }
    }
    // Connections the engine routed before the swap may not be on the books yet: decide once they are.
    const retire = (): void => retiring.forEach((kri) => this.maybeRetire(kri));
    if (this.fast && retiring.length > 0) void this.fast.settled().then(retire);
    else retire();
    this.log.info({ generation: s.generation, services: s.services.length }, 'snapshot applied');
  }

  /**
   * Gives the engine the BPF map of original destinations (mx_peer_orig) so that the transparent listener
   * routes redirected TCP connections itself; null takes it back (original destinations then come from the
   * `originalDst` option again).
   */
  useOriginalDstMap(fd: number | null): void {
    this.origMapFd = fd;
    this.installRoutes();
  }

  /** Where the engine's transparent listener takes original destinations from. */
  private origin(): OriginalDstSource {
    if (!this.opts.originalDst) return { source: 'local' };
    return this.origMapFd !== null ? { source: 'map', mapFd: this.origMapFd } : { source: 'none' };
  }

  /** Tells the engine which services it may route alone; on failure every connection keeps going through JS. */
  private installRoutes(): void {
    if (!this.fast || !this.engineRoutes) return;
    try {
      this.engineRoutes.install(this.snapshot, this.runtimes, this.origin(), this.tcpIdleTimeoutMs);
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'cannot install routes in the native engine');
    }
  }

  /** Drops a removed service's series once no client connection of it is open any more. */
  private maybeRetire(kri: string): void {
    const m = this.metrics.get(kri);
    if (!m || !this.retiring.has(kri) || m.downstreamCxActive.value > 0) return;
    this.opts.stats.remove({ service: kri });
    this.metrics.delete(kri);
    this.retiring.delete(kri);
  }

  private metricsFor(kri: string): ServiceMetrics {
    let m = this.metrics.get(kri);
    if (!m) {
      m = new ServiceMetrics(this.opts.stats, kri);
      this.metrics.set(kri, m);
    }
    return m;
  }

  /** Listens for redirected connections and routes each by its original destination. */
  listenTransparent(addr: { address: string; port: number }): Promise<net.AddressInfo> {
    return this.listen(addr, undefined);
  }

  /** Listens on a non-transparent outbound bound to one service (looked up per connection). */
  listenOutbound(addr: { address: string; port: number }, serviceId: string): Promise<net.AddressInfo> {
    return this.listen(addr, serviceId);
  }

  /** Stops one outbound listener; its connections continue. */
  async closeOutbound(addr: { address: string; port: number }): Promise<void> {
    const key = listenKey(addr);
    const srv = this.servers.get(key);
    if (!srv) return;
    for (const [k, v] of this.servers) if (v === srv) this.servers.delete(k);
    srv.close();
  }

  private listen(addr: { address: string; port: number }, serviceId: string | undefined): Promise<net.AddressInfo> {
    const fast = net.isIP(addr.address) ? this.fastPath() : null;
    if (fast) {
      try {
        return Promise.resolve(this.listenInEngine(fast, addr, serviceId));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (sock) => this.accept(sock, serviceId));
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(addr.port, addr.address, () => {
        srv.removeListener('error', reject);
        srv.on('error', (e) => this.log.error({ err: e.message, listener: listenKey(addr) }, 'listener error'));
        // close() would wait for every accepted connection; closing the listening socket is all we want.
        this.listening(addr, srv.address() as net.AddressInfo, { close: () => srv.close(() => {}) }, serviceId);
        resolve(srv.address() as net.AddressInfo);
      });
    });
  }

  /** A listener whose connections the native engine accepts, so those it relays never become Node sockets. */
  private listenInEngine(fast: FastPath, addr: { address: string; port: number }, serviceId: string | undefined): net.AddressInfo {
    let loggedAt = -Infinity;
    const onError = (code: string, fatal: boolean): void => {
      if (fatal) {
        this.log.error({ listener: listenKey(addr), err: code }, 'listener failed; no longer accepting');
        return;
      }
      if (Date.now() - loggedAt < 10_000) return;
      loggedAt = Date.now();
      this.log.error({ listener: listenKey(addr), err: code }, 'cannot accept connections; retrying every 100 ms');
    };
    const routing = { ...(serviceId !== undefined ? { routeKey: outboundRouteKey(serviceId) } : { transparent: true }), onRouted: (c: RoutedConn) => this.acceptRouted(c) };
    const l = fast.listen(addr.address, addr.port, (c) => this.acceptFd(c, serviceId), onError, routing);
    this.listening(addr, l.address, l, serviceId);
    return l.address;
  }

  private listening(addr: { address: string; port: number }, info: net.AddressInfo, l: Listening, serviceId: string | undefined): void {
    // Port 0 binds an ephemeral port; index by the real one so closeOutbound finds it.
    this.servers.set(listenKey({ address: addr.address, port: info.port }), l);
    if (addr.port !== info.port) this.servers.set(listenKey(addr), l);
    this.log.info({ listener: `${info.address}:${info.port}`, service: serviceId ?? '(transparent)' }, 'listening');
  }

  /** The service a new connection is for (by listener, or by original destination); logged and counted when none. */
  private route(conn: ConnAddresses, serviceId: string | undefined): CompiledService | undefined {
    const client = `${conn.remoteAddress}:${conn.remotePort}`;
    if (serviceId !== undefined) {
      const svc = this.byId.get(serviceId);
      if (!svc) {
        this.noRoute.inc();
        this.log.warn({ client, service: serviceId }, 'outbound listener service is not in the current snapshot; closing');
      }
      return svc;
    }
    const dst = conn.dst !== undefined ? conn.dst : this.originalDst(conn);
    const svc = dst ? this.snapshot.byVipPort.get(vipPortKey(dst.address, dst.port)) : undefined;
    if (!svc) {
      this.noRoute.inc();
      this.log.warn({ client, destination: dst ? vipPortKey(dst.address, dst.port) : null }, 'no service for original destination; closing');
    }
    return svc;
  }

  /** Counts a client connection of `svc` open; the returned state's `ended` counts it closed (once). */
  private begin(svc: CompiledService, rt: ServiceRuntime): ConnState {
    const m = rt.metrics;
    m.downstreamCxTotal.inc();
    m.downstreamCxActive.inc();
    const state: ConnState = { service: svc };
    this.conns.add(state);
    let ended = false;
    state.ended = () => {
      if (ended) return;
      ended = true;
      m.downstreamCxActive.dec();
      this.conns.delete(state);
      if (this.retiring.has(m.kri)) this.maybeRetire(m.kri);
    };
    return state;
  }

  private accept(sock: net.Socket, serviceId: string | undefined): void {
    sock.on('error', () => {});
    const svc = this.route(sock, serviceId);
    if (!svc) {
      sock.resetAndDestroy();
      return;
    }
    const rt = this.runtimes.get(svc.id) as ServiceRuntime;
    this.serve(sock, rt, this.begin(svc, rt));
  }

  /** A connection the engine accepted: TCP services stay in the engine; the rest get a Node socket as if Node had accepted. */
  private acceptFd(c: AcceptedConn, serviceId: string | undefined): void {
    const svc = this.route(c, serviceId);
    const rt = svc ? (this.runtimes.get(svc.id) as ServiceRuntime) : undefined;
    const state = svc && rt ? this.begin(svc, rt) : undefined;
    if (svc && rt && state && svc.protocol === 'tcp' && !svc.forbidden && this.fast && relayAcceptedTcp(c, rt, state, this.fast, this.tcpIdleTimeoutMs)) return;
    let sock: net.Socket;
    try {
      // pauseOnCreate is what net.Server passes for pauseOnConnect: nothing is read before a handler asks.
      sock = new net.Socket({ fd: c.fd, allowHalfOpen: true, readable: true, writable: true, pauseOnCreate: true } as net.SocketConstructorOpts);
    } catch (e) {
      this.log.error({ client: `${c.remoteAddress}:${c.remotePort}`, err: (e as Error).message }, 'cannot serve an accepted connection; closing');
      closeSync(c.fd);
      state?.ended?.();
      return;
    }
    sock.on('error', () => {});
    if (!rt || !state) {
      sock.resetAndDestroy();
      return;
    }
    this.serve(sock, rt, state);
  }

  /** A connection the engine routed itself: its session is already connecting to the endpoint the engine picked. */
  private acceptRouted(c: RoutedConn): void {
    const routed = this.engineRoutes?.take(c.route);
    if (!c.live || !this.fast) return;
    const client = `${c.remoteAddress}:${c.remotePort}`;
    if (!routed) {
      // Cannot happen while EngineRoutes counts right; never leave the session unserved if it does.
      this.noRoute.inc();
      this.log.error({ client, route: c.route }, 'the engine routed a connection by an unknown route; closing');
      this.fast.reset(c.session);
      return;
    }
    let state: ConnState | undefined;
    try {
      state = this.begin(routed.svc, routed.rt);
      relayRoutedTcp(c, routed.rt, state, this.fast, this.tcpIdleTimeoutMs);
    } catch (e) {
      // The session would otherwise sit in the engine until its idle timeout.
      this.log.error({ client, err: (e as Error).message }, 'cannot serve a routed connection; closing');
      this.fast.reset(c.session);
      state?.ended?.();
    }
  }

  /** Hands a Node socket to its service's protocol handler (or denies it). */
  private serve(sock: net.Socket, rt: ServiceRuntime, state: ConnState): void {
    const svc = rt.service;
    const m = rt.metrics;
    state.socket = sock;
    // A relayed connection's socket closes at the hand-over; the engine's close event ends it instead.
    sock.once('close', () => {
      if (!state.relayed) state.ended?.();
    });
    if (svc.forbidden && svc.protocol === 'tcp') {
      m.accessDenied.inc();
      rt.log.warn({ client: `${sock.remoteAddress}:${sock.remotePort}`, mesh: svc.mesh }, 'access denied by Mesh routing.defaultForbidMeshExternalServiceAccess; closing');
      sock.destroy();
      return;
    }
    switch (svc.protocol) {
      case 'tcp':
        handleTcp(sock, rt, state, { fast: this.fastPath() ?? undefined, idleTimeoutMs: this.tcpIdleTimeoutMs });
        break;
      // Like Kuma's listener (codec AUTO), http and http2 services take either HTTP version from the
      // client; gRPC clients always speak HTTP/2, so grpc skips the sniff.
      case 'http':
        sniffHttp2(sock, (h2) => {
          if (h2) this.h1.serveH2(sock, rt, state);
          else if (!this.serveHttp1Native(sock, rt, state)) this.h1.serve(sock, rt, state);
        });
        break;
      // HTTP/2 clients of plain-h2c services ride the native engine; HTTP/1.1 clients, TLS upstreams and
      // forbidden services (whose local replies the Node handler owns) stay in Node.
      case 'http2':
        sniffHttp2(sock, (h2) => {
          if (!h2) this.h2.serveH1(sock, rt, state);
          else if (!this.serveNativeH2(sock, rt, state)) this.h2.serve(sock, rt, state);
        });
        break;
      case 'grpc':
        if (!this.serveNativeH2(sock, rt, state)) this.h2.serve(sock, rt, state);
        break;
    }
  }

  /** An HTTP/1.x client of a plain-upstream http service goes to the native engine when it runs. */
  private serveHttp1Native(sock: net.Socket, rt: ServiceRuntime, state: ConnState): boolean {
    if (!Http1Native.eligible(rt, state.service)) return false;
    const fast = this.fastPath();
    if (!fast) return false;
    this.h1n ??= new Http1Native(this.opts.stats, this.opts.httpIdleTimeoutMs, this.opts.httpUpstreamIdleTimeoutMs);
    return this.h1n.serve(fast, sock, rt, state);
  }

  private originalDst(conn: ConnAddresses): { address: string; port: number } | null {
    if (this.opts.originalDst) return this.opts.originalDst(conn);
    if (!conn.localAddress || !conn.localPort) return null;
    return { address: conn.localAddress.replace(/^::ffff:/, ''), port: conn.localPort };
  }

  /** Closes every listener; accepted connections continue. */
  async stopAccepting(): Promise<void> {
    const all = new Set(this.servers.values());
    this.servers.clear();
    for (const s of all) s.close();
    await new Promise((r) => setImmediate(r));
  }

  /**
   * Resolves once the books (connections, counters) include everything the native engine did before the
   * call: it holds bookkeeping events back for a few ms to wake the JS thread less often.
   */
  async settled(): Promise<void> {
    await this.fast?.settled();
  }

  /** Waits for connections to finish (HTTP: in-flight requests complete, idle keep-alives close); force-closes the rest at the timeout. */
  async drain(timeoutMs: number): Promise<{ remaining: number }> {
    // Connections the engine routed just before have to be drained too.
    await this.settled();
    for (const c of this.conns) c.drain?.();
    const deadline = Date.now() + timeoutMs;
    while (this.conns.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
    }
    const remaining = this.conns.size;
    for (const c of [...this.conns]) closeConn(c);
    return { remaining };
  }

  /** Stops listening, closes every connection and idle pool. */
  async close(): Promise<void> {
    await this.stopAccepting();
    for (const c of [...this.conns]) closeConn(c);
    // Queued closes run before the threads exit; their events are accounted before stop() returns.
    const engine = this.fast?.engineHandle ?? null;
    this.fast?.stop();
    // After stop() every routed connection has been handed to JS: the count is final.
    this.routedBefore += this.fast?.routedTotal ?? 0;
    if (this.fast) this.fast = undefined;
    this.engineRoutes?.dispose();
    this.engineRoutes = undefined;
    if (engine !== null) this.h1n?.engineStopped(engine);
    for (const rt of this.runtimes.values()) rt.close();
    this.runtimes.clear();
    this.h2native?.collect();
    this.h2native = undefined;
  }

  /** Number of open client connections (in Node or in the native engine). */
  activeConnections(): number {
    return this.conns.size;
  }

  /** Counters of the native engine, or null on the Node data path. */
  engineStats(): RelayStats | null {
    return this.fast ? this.fast.stats() : null;
  }

  /** Envoy `/clusters`-style view of every service's endpoints and their health. */
  clusters(): ClusterInfo[] {
    const out: ClusterInfo[] = [];
    for (const rt of this.runtimes.values()) {
      out.push({
        service: rt.service.id,
        kri: rt.service.kri,
        endpoints: rt.endpoints.states.map((s) => ({
          address: s.key,
          healthy: rt.endpoints.healthy(s),
          consecutiveFailures: s.consecutiveFailures,
          ...(s.lastError !== undefined ? { lastError: s.lastError } : {}),
          active: s.active,
          total: s.total,
        })),
      });
    }
    return out;
  }
}

/** Closes a connection wherever it lives (FIN, as Node's destroy does). */
function closeConn(c: ConnState): void {
  if (c.relayed) c.relayed.close(false);
  else c.socket?.destroy();
}

function listenKey(a: { address: string; port: number }): string {
  return `${a.address}|${a.port}`;
}
