/**
 * The proxy's handle on the native relay engine: starts and stops it, opens listeners the engine accepts on,
 * moves connections into it (Node sockets or accepted fds), asks it to connect to the upstream targets the
 * callers choose, and routes its events back to the connection that owns them. Policy (routing, endpoint
 * choice, failover, metrics, logs) stays with the callers.
 */
import { closeSync } from 'node:fs';
import net from 'node:net';
import { native, type NativeAddon, type RelayClosedEvent, type RelayEvent, type RelayListenRouting, type RelayRouteTable, type RelayStats, type RelayTlsEvent, type RelayUpstreamTls } from '../redirect/native.js';

export type DataPath = 'native' | 'node';

/** Called once when the engine ends a session. */
export type RelayCloseHandler = (ev: RelayClosedEvent) => void;

/** Called when a native TLS upstream has completed its handshake (before any `closed`). */
export type RelayTlsHandler = (ev: RelayTlsEvent) => void;

/** A connection the engine owns; `close` ends it (FIN, or RST with `reset`). */
export interface RelayedConnection {
  readonly id: number;
  close(reset: boolean): void;
}

interface SocketHandle {
  fd?: unknown;
}

/** The fd under a connected net.Socket, or -1 when it has none usable (e.g. a TLS socket's JS stream). */
export function socketFd(s: net.Socket): number {
  const h = (s as unknown as { _handle?: SocketHandle | null })._handle;
  const fd = h?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : -1;
}

/** Everything Node already read from `s` and holds in its buffer. */
function takeBuffered(s: net.Socket): Buffer | null {
  if (s.readableLength === 0) return null;
  const parts: Buffer[] = [];
  for (let chunk = s.read() as Buffer | string | null; chunk !== null; chunk = s.read() as Buffer | string | null) {
    parts.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }
  return parts.length === 0 ? null : Buffer.concat(parts);
}

/** An HTTP/2 client connection served by the engine; upstream connections are handed to it on request. */
export interface RelayedHttp2 extends RelayedConnection {
  /** Gives the session a connected h2c upstream socket (destroyed here on success); false when the session is gone. */
  attach(token: number, upstream: net.Socket, authority: string): boolean;
  /** No upstream connection could be made: the waiting streams get a local 503 / grpc-status 14 naming `reason`. */
  unavailable(reason: string): void;
  /** GOAWAY to the client; in-flight streams finish. */
  drain(): void;
}

/** Why an engine-side connect attempt did not produce a connection. */
export interface RelayConnectError extends Error {
  /** The errno name (ECONNREFUSED, ETIMEDOUT, …), or ESESSIONGONE when the session ended meanwhile. */
  code: string;
  /** The engine's connect timeout expired. */
  timedOut: boolean;
}

function connectError(code: string, timedOut: boolean): RelayConnectError {
  return Object.assign(new Error(timedOut ? 'connect timed out' : code), { code, timedOut });
}

/** A client connection held by the engine, which connects to the upstream targets given here one at a time. */
export interface RelayedTcp extends RelayedConnection {
  /**
   * Has the engine connect to `address`:`port` (port 0: unix socket path) within `timeoutMs`, then relay (after
   * a TLS handshake when `tls` is given). `onConnected` runs synchronously with the engine's `connected`
   * event, before any later event of the session is handled. Rejects with a RelayConnectError.
   */
  connect(address: string, port: number, timeoutMs: number, onConnected: () => void, tls?: RelayUpstreamTls): Promise<void>;
  /**
   * Waits for the connect the engine started by itself (a routed connection's first attempt; `tls`: it
   * originates TLS): settles like connect().
   */
  started(onConnected: () => void, tls: boolean): Promise<void>;
}

export interface TcpSessionOptions {
  /** false: copy through a buffer instead of splice(2) (tests). */
  splice?: boolean;
  onTls?: RelayTlsHandler;
}

/** The addresses of a connection the engine accepted. */
interface AcceptedAddresses {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}

/** A connection the engine accepted; the fd is the receiver's to relay, wrap in a net.Socket or close. */
export interface AcceptedConn extends AcceptedAddresses {
  fd: number;
  /** The original destination the engine looked up for it (null: none known); undefined when it did not look. */
  dst?: { address: string; port: number } | null;
}

/**
 * A connection the engine accepted and routed by itself (engineRoutes): session `session` is connecting to
 * target `target` of route `route`. `live` is false once the engine has stopped (and closed it); a routed
 * connection outlives its listener.
 */
export interface RoutedConn extends AcceptedAddresses {
  session: number;
  route: number;
  target: number;
  /** Where the engine's first attempt goes: ip and port, or a unix socket path (port 0). */
  address: string;
  port: number;
  live: boolean;
}

/** How a listener routes in the engine, and who hears of the connections it routed. */
export interface ListenRouting extends RelayListenRouting {
  onRouted: (c: RoutedConn) => void;
}

/** A listening socket whose connections the engine accepts. */
export interface EngineListener {
  readonly id: number;
  readonly address: net.AddressInfo;
  /** Stops listening now; accepted connections are unaffected. */
  close(): void;
}

/** Node's default listen backlog. */
const LISTEN_BACKLOG = 511;

/** Receives a session's events other than `closed` (e.g. an HTTP session's `h1-need-upstream`). */
export type RelayEventHandler = (ev: RelayEvent) => void;

export class FastPath {
  private readonly handlers = new Map<number, RelayCloseHandler>();
  private readonly eventHandlers = new Map<number, RelayEventHandler>();
  private readonly kinds = new Map<string, RelayEventHandler>();
  private readonly tlsHandlers = new Map<number, RelayTlsHandler>();
  /** Sessions handed over whose upstream TLS the engine originates (for stats and tests). */
  private tlsHandedOver = 0;
  /** `routed` events handled: connections the engine routed by itself (also after stop(), for the books). */
  routedTotal = 0;
  private stopped = false;
  /** settled() calls waiting for their `flushed` events: token → loops still to answer. */
  private readonly flushes = new Map<number, { left: number; done: () => void }>();
  private flushToken = 0;
  /** Whether the engine's event channel currently holds the process open (see updateRef). */
  private refd = false;

  private constructor(
    private readonly addon: NativeAddon,
    private readonly engine: number,
    readonly threads: number,
  ) {}

  /** Loads the addon and starts the engine; throws (addon not loadable, threads refused) so the caller can fall back. */
  static start(threads: number, addon: NativeAddon = native()): FastPath {
    if (typeof addon.engineStart !== 'function') {
      throw Object.assign(new Error('the loaded native addon has no relay engine (rebuild with `npm run build:native`)'), { code: 'MESHEXT_E_RELAY' });
    }
    let self: FastPath | undefined;
    const engine = addon.engineStart(threads, (evs) => self?.dispatch(evs));
    self = new FastPath(addon, engine, threads);
    return self;
  }

  /**
   * Moves a client connection into a session that `create` makes from the engine handle, the client fd and
   * the bytes Node had buffered (e.g. unshifted by a protocol sniffer). Destroys the socket on success;
   * returns null, leaving it untouched, when it has no fd or `create` throws.
   */
  handOver(client: net.Socket, create: (engine: number, fd: number, initial: Buffer | null) => number, onClose: RelayCloseHandler, onEvent?: RelayEventHandler): RelayedConnection | null {
    if (this.stopped) return null;
    const fd = socketFd(client);
    if (fd < 0) return null;
    const initial = takeBuffered(client);
    let id: number;
    try {
      id = create(this.engine, fd, initial);
    } catch {
      if (initial) client.unshift(initial);
      return null;
    }
    this.register(id, onClose, onEvent);
    client.destroy();
    return { id, close: (reset) => this.close(id, reset) };
  }

  /**
   * Open sessions and pending settled() calls keep the process alive, as open sockets and pending socket
   * operations would; the engine's event channel is ref'd exactly while there is one.
   */
  private updateRef(): void {
    const want = this.handlers.size + this.flushes.size > 0;
    if (want === this.refd || this.stopped) return;
    this.refd = want;
    this.addon.engineRef(this.engine, want);
  }

  /** Routes a new session's events to its handlers. */
  private register(id: number, onClose: RelayCloseHandler, onEvent?: RelayEventHandler): void {
    this.handlers.set(id, onClose);
    this.updateRef();
    if (onEvent) this.eventHandlers.set(id, onEvent);
  }

  /**
   * Moves a client connection into a TCP session that waits for `connect` (the engine dials the upstream, so
   * Node builds no socket for it). Returns null, leaving the socket untouched, when the engine refuses it.
   */
  adoptTcpClient(client: net.Socket, idleTimeoutMs: number, onClose: RelayCloseHandler, opts: TcpSessionOptions = {}): RelayedTcp | null {
    const splice = opts.splice ?? true;
    return this.tcpSession((closed, onEvent) => this.handOver(client, (engine, fd, initial) => this.addon.engineTcpClient(engine, fd, initial, idleTimeoutMs, splice), closed, onEvent)?.id ?? null, onClose, opts);
  }

  /**
   * adoptTcpClient for a connection the engine accepted (EngineListener): the engine takes `fd` over, also
   * when it refuses it (null: the engine is stopping; the fd is closed).
   */
  adoptTcpFd(fd: number, idleTimeoutMs: number, onClose: RelayCloseHandler, opts: TcpSessionOptions = {}): RelayedTcp | null {
    return this.tcpSession((closed, onEvent) => {
      if (this.stopped) {
        refuse(fd);
        return null;
      }
      let id: number;
      try {
        id = this.addon.engineTcpClient(this.engine, fd, null, idleTimeoutMs, opts.splice ?? true, true);
      } catch {
        return null;
      }
      this.register(id, closed, onEvent);
      return id;
    }, onClose, opts);
  }

  /** Takes over a session the engine made for a routed connection (RoutedConn); its first connect is under way. */
  adoptRouted(session: number, onClose: RelayCloseHandler, opts: TcpSessionOptions = {}): RelayedTcp {
    return this.tcpSession((closed, onEvent) => {
      this.register(session, closed, onEvent);
      return session;
    }, onClose, opts) as RelayedTcp;
  }

  /** Installs the engine's routes (see RelayRouteTable); returns the routes gone and how many connections each routed. */
  routes(table: RelayRouteTable): Array<{ id: number; routed: number }> {
    return this.stopped ? [] : this.addon.engineRoutes(this.engine, table);
  }

  /** Tells the engine a route target's passive health (back-off left in ms; 0: healthy). */
  routeHealth(route: number, target: number, downForMs: number): void {
    if (!this.stopped) this.addon.engineRouteHealth(this.engine, route, target, Math.max(0, Math.ceil(downForMs)));
  }

  /** The connect machinery of a TCP session that `place` puts into the engine (returning its id, or null). */
  private tcpSession(place: (closed: RelayCloseHandler, onEvent: RelayEventHandler) => number | null, onClose: RelayCloseHandler, opts: TcpSessionOptions): RelayedTcp | null {
    let pending: { resolve: () => void; reject: (e: RelayConnectError) => void; onConnected: () => void } | undefined;
    const settle = (): typeof pending => {
      const p = pending;
      pending = undefined;
      return p;
    };
    const onEvent: RelayEventHandler = (ev) => {
      if (ev.kind === 'connected') {
        const p = settle();
        p?.onConnected();
        p?.resolve();
      } else if (ev.kind === 'connect-failed') {
        settle()?.reject(connectError(String(ev['error']), ev['timeout'] === 1));
      }
    };
    const closed: RelayCloseHandler = (ev) => {
      settle()?.reject(connectError('ESESSIONGONE', false));
      onClose(ev);
    };
    const id = place(closed, onEvent);
    if (id === null) return null;
    if (opts.onTls) this.tlsHandlers.set(id, opts.onTls);
    let tlsCounted = false;
    const countTls = (): void => {
      if (tlsCounted) return;
      tlsCounted = true;
      this.tlsHandedOver++;
    };
    return {
      id,
      close: (reset) => this.close(id, reset),
      connect: (address, port, timeoutMs, onConnected, tls) =>
        new Promise<void>((resolve, reject) => {
          if (pending) throw new Error(`session ${id} is already connecting`);
          if (this.stopped || !this.handlers.has(id)) return reject(connectError('ESESSIONGONE', false));
          const r = tls ? this.addon.engineTcpConnect(this.engine, id, address, port, timeoutMs, tls) : this.addon.engineTcpConnect(this.engine, id, address, port, timeoutMs);
          if (r === 'ESRCH') return reject(connectError('ESESSIONGONE', false));
          if (r !== '') return reject(connectError(r, false));
          if (tls) countTls();
          pending = { resolve, reject, onConnected };
        }),
      started: (onConnected, tls) =>
        new Promise<void>((resolve, reject) => {
          if (pending) throw new Error(`session ${id} is already connecting`);
          if (!this.handlers.has(id)) return reject(connectError('ESESSIONGONE', false));
          if (tls) countTls();
          pending = { resolve, reject, onConnected };
        }),
    };
  }

  /**
   * Listens with the engine accepting (see engineListen): `onAccepted` gets each connection and owns its fd;
   * `onError` hears why accepting paused (`fatal` false), or that the listener died (`fatal` true). Throws
   * the bind/listen error shaped like Node's (`listen EADDRINUSE: address already in use 127.0.0.1:8080`,
   * code, errno, syscall 'listen'). After close() no connection reaches `onAccepted`;
   * connections the engine had routed before still reach `routing.onRouted` (they are running sessions).
   */
  listen(address: string, port: number, onAccepted: (c: AcceptedConn) => void, onError: (code: string, fatal: boolean) => void, routing?: ListenRouting): EngineListener {
    if (this.stopped) throw new Error('the native engine has stopped');
    let r: { id: number; address: string; family: string; port: number };
    try {
      r = routing
        ? this.addon.engineListen(this.engine, address, port, LISTEN_BACKLOG, { ...(routing.routeKey !== undefined ? { routeKey: routing.routeKey } : {}), ...(routing.transparent ? { transparent: true } : {}) })
        : this.addon.engineListen(this.engine, address, port, LISTEN_BACKLOG);
    } catch (e) {
      const x = e as Error & { errnoName?: string; errno?: number };
      const code = x.errnoName ?? 'EINVAL';
      const text = x.message.includes(': ') ? x.message.slice(x.message.indexOf(': ') + 2).toLowerCase() : x.message;
      throw Object.assign(new Error(`listen ${code}: ${text} ${address}:${port}`), { code, ...(x.errno ? { errno: -x.errno } : {}), syscall: 'listen', address, port });
    }
    const id = r.id;
    let closed = false;
    const onClosed: RelayCloseHandler = (ev) => {
      if (ev.reason === 'error') onError(ev.error ?? 'unknown', true);
    };
    this.register(id, onClosed, (ev) => {
      if (ev.kind === 'accepted') {
        const fd = ev['fd'] as number;
        // Accepted before the close (or the engine's stop) took effect: nothing may serve it any more.
        if (closed || this.stopped) refuse(fd);
        else onAccepted({ fd, ...addresses(ev), ...(typeof ev['dst'] === 'string' ? { dst: ev['dst'] ? { address: ev['dst'], port: ev['dstPort'] as number } : null } : {}) });
      } else if (ev.kind === 'routed' && routing) {
        // Unlike an accepted fd, a routed connection is a running session (its client may have been sending
        // for a while, the engine holds such events back): it lives on after its listener closed, and is
        // drained like any other. Only a stopped engine has closed it already.
        const live = !this.stopped;
        const session = ev['session'] as number;
        this.routedTotal++;
        routing.onRouted({ session, route: ev['route'] as number, target: ev['target'] as number, address: ev['address'] as string, port: ev['port'] as number, live, ...addresses(ev) });
      } else if (ev.kind === 'accept-error') {
        onError(String(ev['error']), false);
      }
    });
    return {
      id,
      address: { address: r.address, family: r.family, port: r.port },
      close: () => {
        closed = true;
        this.close(id, false);
      },
    };
  }

  /** The engine handle, for session kinds' own addon calls; null once stopped. */
  get engineHandle(): number | null {
    return this.stopped ? null : this.engine;
  }

  /**
   * Moves an HTTP/2 (h2c) client connection into the engine with the bytes Node already read from it; the
   * socket is destroyed. Returns null, leaving the socket untouched, when it has no fd or the engine refuses.
   */
  handOverHttp2(client: net.Socket, grpc: boolean, counters: number, onEvent: RelayEventHandler, onClose: RelayCloseHandler): RelayedHttp2 | null {
    const base = this.handOver(client, (engine, fd, initial) => this.addon.relayH2(engine, fd, initial, grpc, counters), onClose, onEvent);
    if (!base) return null;
    const id = base.id;
    return {
      id,
      close: (reset) => this.close(id, reset),
      attach: (token, upstream, authority) => {
        if (this.stopped || !this.handlers.has(id)) return false;
        const ufd = socketFd(upstream);
        if (ufd < 0) return false;
        const buffered = takeBuffered(upstream);
        let ok: boolean;
        try {
          ok = this.addon.relayH2Attach(this.engine, id, token, ufd, authority, buffered);
        } catch {
          ok = false;
        }
        if (!ok) {
          if (buffered) upstream.unshift(buffered);
          return false;
        }
        upstream.destroy();
        return true;
      },
      unavailable: (reason) => {
        if (!this.stopped && this.handlers.has(id)) this.addon.relayH2Unavailable(this.engine, id, reason);
      },
      drain: () => {
        if (!this.stopped && this.handlers.has(id)) this.addon.relayH2Drain(this.engine, id);
      },
    };
  }

  /**
   * Receives every event of `kind`, whichever session sent it; for events that can outlive their session
   * (an HTTP/2 upstream connection parked by one client connection and closed under another).
   */
  onKind(kind: string, handler: RelayEventHandler): void {
    this.kinds.set(kind, handler);
  }

  /** A new set of HTTP/2 response counters (one per service); free it with freeH2Counters. */
  newH2Counters(): number {
    return this.addon.h2CountersNew();
  }

  /** Cumulative [unused, 1xx, 2xx, 3xx, 4xx, 5xx, retries] of a counter set. */
  readH2Counters(counters: number): number[] {
    return this.addon.h2CountersRead(counters);
  }

  freeH2Counters(counters: number): void {
    this.addon.h2CountersFree(counters);
  }

  /** Resets a session JS has not taken over (a routed connection nobody can serve). */
  reset(session: number): void {
    if (!this.stopped) this.addon.engineClose(this.engine, session, true);
  }

  /** Ends one session; its `closed` event follows. */
  close(id: number, reset: boolean): void {
    if (!this.stopped && this.handlers.has(id)) this.addon.engineClose(this.engine, id, reset);
  }

  /**
   * Resolves once every event the engine emitted before the call has been handled here. The engine holds
   * bookkeeping events (a connection routed, connected, closed) back for a few ms to wake JS less often;
   * a caller that needs exact books (drain, tests) waits for this.
   */
  settled(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const token = ++this.flushToken;
    const left = this.addon.engineFlush(this.engine, token);
    if (left === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.flushes.set(token, { left, done: resolve });
      this.updateRef();
    });
  }

  /** Sessions handed over and not yet reported closed. */
  get size(): number {
    return this.handlers.size;
  }

  stats(): RelayStats {
    return { ...this.addon.engineStats(this.engine), tlsSessions: this.tlsHandedOver, routed: this.routedTotal };
  }

  /** Closes every session (reported with reason engine-stop before this returns) and stops the threads. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.dispatch(this.addon.engineStop(this.engine));
    // Events not delivered came back from engineStop and were handled above: nothing more will come.
    for (const f of this.flushes.values()) f.done();
    this.flushes.clear();
  }

  private dispatch(evs: RelayEvent[]): void {
    // One handler's exception must not lose the rest of the batch (fds to close, connections to account):
    // every event is handled, then the first error is rethrown.
    let failed: { error: unknown } | undefined;
    for (const ev of evs) {
      try {
        this.handle(ev);
      } catch (error) {
        failed ??= { error };
      }
    }
    if (failed) throw failed.error;
  }

  private handle(ev: RelayEvent): void {
    if (ev.kind === 'flushed') {
      const f = this.flushes.get(ev.id);
      if (f && --f.left === 0) {
        this.flushes.delete(ev.id);
        this.updateRef();
        f.done();
      }
      return;
    }
    if (ev.kind === 'tls') {
      this.tlsHandlers.get(ev.id)?.(ev as RelayTlsEvent);
      return;
    }
    if (ev.kind !== 'closed') {
      const byKind = this.kinds.get(ev.kind);
      if (byKind) byKind(ev);
      else this.eventHandlers.get(ev.id)?.(ev);
      return;
    }
    this.tlsHandlers.delete(ev.id);
    const h = this.handlers.get(ev.id);
    if (!h) return;
    this.handlers.delete(ev.id);
    this.updateRef();
    this.eventHandlers.delete(ev.id);
    h(ev as RelayClosedEvent);
  }
}

/** The client and local addresses of an `accepted` or `routed` event. */
function addresses(ev: { [field: string]: string | number }): AcceptedAddresses {
  return { remoteAddress: ev['peer'] as string, remotePort: ev['peerPort'] as number, localAddress: ev['local'] as string, localPort: ev['localPort'] as number };
}

/** Refuses an accepted connection nobody will serve: RST, as the kernel does for a closed listener's backlog. */
function refuse(fd: number): void {
  try {
    new net.Socket({ fd }).resetAndDestroy();
  } catch {
    closeSync(fd);
  }
}
