/**
 * HTTP/1.x clients of `http` services with plain upstreams, served by the native engine's Http1Session:
 * the engine parses, forwards and pools upstream connections; TypeScript keeps routing, dialling
 * (failover, health, VIP-CIDR guard), logs and metrics. Request counts and upstream connection
 * accounting are counted natively per pool and folded into the registry on every read of it.
 */
import type net from 'node:net';
import type { Registry } from '../stats/registry.js';
import type { CompiledService } from '../snapshot/types.js';
import { native, type NativeAddon } from '../redirect/native.js';
import type { ConnState } from './conn.js';
import { dialUpstream } from './dial.js';
import { isUpstreamError } from './errors.js';
import type { FastPath } from './fastpath.js';
import { socketFd } from './fastpath.js';
import type { ServiceRuntime } from './runtime.js';

interface PoolEntry {
  handle: number;
  engine: number;
  rt: ServiceRuntime;
  /** Stats as last folded into the registry. */
  last: number[];
  /** Upstream connections handed to the pool (to know when a closed pool has settled). */
  opened: number;
  closed: boolean;
  /** h1PoolFree ran: the handle is invalid. */
  freed: boolean;
}

const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** Idle keep-alive timeout of client connections (as the Node path's http.Server keepAliveTimeout). */
export const HTTP_IDLE_TIMEOUT_MS = 60_000;

export class Http1Native {
  private readonly pools = new Map<ServiceRuntime, PoolEntry>();
  /** Closed pools whose upstream connections are still being closed by the engine. */
  private readonly settling = new Set<PoolEntry>();

  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    stats: Registry,
    /** Client keep-alive idle timeout. */
    private readonly idleTimeoutMs: number = HTTP_IDLE_TIMEOUT_MS,
    /** Idle timeout of pooled upstream connections. */
    private readonly upstreamIdleTimeoutMs: number = HTTP_IDLE_TIMEOUT_MS,
    private readonly addon: NativeAddon = native(),
  ) {
    stats.onCollect(() => this.collect());
  }

  /**
   * Whether a connection may use the native session: TLS upstreams stay on the Node path, and so do denied
   * services (the Node handler answers their requests with 403). `svc` is the connection's service as routed
   * now; the runtime may have been built from an earlier snapshot.
   */
  static eligible(rt: ServiceRuntime, svc: CompiledService | undefined): boolean {
    return !rt.tls && !rt.configError && !(svc ?? rt.service).forbidden;
  }

  /** Hands an HTTP/1.x client connection to the engine; false leaves the socket to the Node path. */
  serve(fast: FastPath, sock: net.Socket, rt: ServiceRuntime, state: ConnState): boolean {
    const engine = fast.engineHandle;
    if (engine === null) return false;
    const pool = this.poolFor(rt, engine);
    let id = 0;
    const relayed = fast.handOver(
      sock,
      (engine, fd, initial) => this.addon.h1Serve(engine, fd, initial, pool.handle, this.idleTimeoutMs),
      (ev) => {
        if (ev.reason !== 'done' && ev.reason !== 'closed' && ev.reason !== 'idle-timeout') rt.log.debug({ reason: ev.reason, err: ev.error }, 'http/1.1 client connection ended');
        state.ended?.();
      },
      (ev) => {
        if (ev.kind === 'h1-need-upstream') this.dial(fast, rt, pool, id);
        else if (ev.kind === 'h1-error') rt.log.warn({ status: ev.status, method: ev.method, err: ev.reason }, 'upstream response failed');
      },
    );
    if (!relayed) return false;
    id = relayed.id;
    state.relayed = relayed;
    state.drain = () => {
      const engine = fast.engineHandle;
      if (engine !== null) this.addon.h1Drain(engine, id);
    };
    return true;
  }

  /** Opens an upstream connection for session `id` and hands it over, or tells the session why not. */
  private dial(fast: FastPath, rt: ServiceRuntime, pool: PoolEntry, id: number): void {
    const fail = (reason: string): void => {
      rt.log.warn({ err: reason }, 'upstream unavailable');
      const engine = fast.engineHandle;
      if (engine !== null) this.addon.h1UpstreamFailed(engine, id, reason);
    };
    dialUpstream(rt, ['http/1.1']).then(
      (d) => {
        const engine = fast.engineHandle;
        const fd = socketFd(d.socket);
        // A pool closed by a reload still takes the connection for this request (it is not reused after);
        // only a freed pool is gone.
        if (engine === null || fd < 0 || pool.freed) {
          d.socket.destroy();
          if (engine !== null) fail(pool.freed ? 'service configuration changed' : 'upstream socket has no file descriptor');
          return;
        }
        const ep = d.endpoint;
        const host = ep.endpoint.kind === 'dns' ? ep.endpoint.address : '';
        try {
          this.addon.h1Upstream(engine, id, fd, host, Math.max(0, rt.endpoints.states.indexOf(ep)), pool.handle);
        } catch (e) {
          d.socket.destroy();
          fail(`cannot hand the upstream connection over: ${(e as Error).message}`);
          return;
        }
        // From here the pool's counters close this connection's books (see collect()).
        d.adopt();
        pool.opened++;
        d.socket.destroy();
      },
      (e: unknown) => fail(isUpstreamError(e) ? e.reason : (e as Error).message),
    );
  }

  private poolFor(rt: ServiceRuntime, engine: number): PoolEntry {
    let p = this.pools.get(rt);
    if (p && p.engine === engine) return p;
    const entry: PoolEntry = { handle: this.addon.h1PoolCreate(engine, rt.endpoints.states.length, this.upstreamIdleTimeoutMs), engine, rt, last: [], opened: 0, closed: false, freed: false };
    this.pools.set(rt, entry);
    // Loops sweep their pools from client sessions' timers; this catches pools with no client left.
    this.sweeper ??= setInterval(() => this.addon.h1PoolsSweep(), Math.min(15_000, Math.max(10, this.upstreamIdleTimeoutMs / 4))).unref();
    rt.onClose(() => {
      if (entry.closed) return;
      entry.closed = true;
      this.addon.h1PoolClose(entry.handle);
      if (this.pools.get(rt) === entry) this.pools.delete(rt);
      this.settling.add(entry);
      this.stopSweeperIfIdle();
    });
    return entry;
  }

  /** Folds the engine's counters into the registry (run before every read of it). */
  private collect(): void {
    for (const p of this.pools.values()) this.fold(p);
    for (const p of this.settling) {
      this.fold(p);
      const closed = p.rt.endpoints.states.reduce((n, _s, i) => n + (p.last[6 + 3 * i] ?? 0), 0);
      if (closed >= p.opened) {
        p.freed = true;
        this.addon.h1PoolFree(p.handle);
        this.settling.delete(p);
      }
    }
  }

  private fold(p: PoolEntry): void {
    const s = this.addon.h1PoolStats(p.handle);
    const m = p.rt.metrics;
    const d = (i: number): number => (s[i] ?? 0) - (p.last[i] ?? 0);
    CLASSES.forEach((cls, i) => {
      if (d(i) > 0) m.requests(cls, d(i));
    });
    if (d(5) > 0) m.upstreamRqRetry.inc(d(5));
    p.rt.endpoints.states.forEach((st, i) => {
      const closed = d(6 + 3 * i);
      if (closed > 0) {
        m.upstreamCxActive.dec(closed);
        st.active -= closed;
      }
      if (d(7 + 3 * i) > 0) m.upstreamRxBytes.inc(d(7 + 3 * i));
      if (d(8 + 3 * i) > 0) m.upstreamTxBytes.inc(d(8 + 3 * i));
    });
    p.last = s;
  }

  /** The engine stopped: its sessions are closed; the idle upstream connections of its pools go too. */
  engineStopped(engine: number): void {
    this.addon.h1PoolsReap(engine);
    for (const [rt, p] of this.pools) {
      if (p.engine !== engine) continue;
      p.closed = true;
      this.pools.delete(rt);
      this.settling.add(p);
    }
    this.collect();
    this.stopSweeperIfIdle();
  }

  private stopSweeperIfIdle(): void {
    if (this.pools.size > 0 || !this.sweeper) return;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}
