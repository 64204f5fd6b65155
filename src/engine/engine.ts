/**
 * The seam between the control plane and the data plane: the only TypeScript that talks to the engine (the
 * native addon's epoll threads that accept, route by plan, connect, originate TLS and relay TCP, HTTP/1.1 and
 * HTTP/2). Plans go down in one call per snapshot (install); events come up in batches and go to the handler
 * registered for their kind; counters are read when metrics are. Nothing here decides policy.
 */
import type net from 'node:net';
import { native, type EngineCounters, type EngineEvent, type EngineInstall, type EngineProbe, type EngineStats, type NativeAddon } from '../native/addon.js';

/** The engine's per-service counters, in native/src/engine/plan.h ServiceStats order. */
export const SERVICE_COUNTERS = [
  'downstreamCxTotal',
  'downstreamCxActive',
  'upstreamCxTotal',
  'upstreamCxActive',
  'connectFail',
  'connectTimeout',
  'upstreamRxBytes',
  'upstreamTxBytes',
  'tlsHandshake',
  'tlsResumed',
  'rq1xx',
  'rq2xx',
  'rq3xx',
  'rq4xx',
  'rq5xx',
  'rqRetry',
  'accessDenied',
  'headerTimeout',
  'upstreamRqTimeout',
  'upstreamRqMaxDuration',
  'downstreamRqIdleTimeout',
  'upstreamCxMaxDuration',
  'rqRetrySuccess',
  'rqRetryLimitExceeded',
  'rqRetryBufferOverflow',
  'rqPerTryTimeout',
  'accessLogLines',
  'accessLogDropped',
  'upstreamCxOverflow',
  'upstreamRqPendingOverflow',
] as const;
export type ServiceCounter = (typeof SERVICE_COUNTERS)[number];

/** A listening socket the engine accepts on. */
export interface EngineListener {
  readonly id: number;
  readonly address: net.AddressInfo;
  /** Stops listening now; accepted connections are unaffected. */
  close(): void;
}

export type EngineEventHandler = (ev: EngineEvent) => void;

/** One owned DNS name for the engine's table: answer sections pre-encoded by src/dns/records.ts. */
export interface EngineDnsName {
  name: string;
  a: Buffer;
  aCount: number;
  aaaa: Buffer;
  aaaaCount: number;
}

/** SERVFAIL for a query, keeping its question (null when the query does not parse). */
export function dnsServfail(query: Buffer): Buffer | null {
  return native().dnsServfail(query);
}

/** An upstream reply fitted to the client's size limit (UDP: TC and no records when too big). */
export function dnsFitReply(reply: Buffer, query: Buffer, transport: 'udp' | 'tcp'): Buffer {
  return native().dnsFitReply(reply, query, transport);
}

/** Descriptors kept out of the engine's reach for the control plane: admin, DNS, config files, BPF maps. */
export const FD_RESERVE = 256;
/** Descriptors one client connection may take: its socket, its upstream's and a splice pipe's two ends. */
const FDS_PER_CONNECTION = 4;

/**
 * The connection cap for a descriptor limit (`--max-connections auto`): what fits below it after the reserve,
 * so that at the cap new connections are reset at once and the admin API and DNS keep answering. 0 (no cap)
 * for an unlimited limit.
 */
export function connectionCapFor(fdSoftLimit: number): number {
  if (fdSoftLimit < 0) return 0;
  return Math.max(16, Math.floor((fdSoftLimit - FD_RESERVE) / FDS_PER_CONNECTION));
}

/** Node's default listen backlog. */
const LISTEN_BACKLOG = 511;

export class Engine {
  private readonly kinds = new Map<string, EngineEventHandler>();
  /** settled() calls waiting for their `flushed` events: token → loops still to answer. */
  private readonly flushes = new Map<number, { left: number; done: () => void }>();
  private readonly listeners = new Map<number, { onError: (code: string, fatal: boolean) => void }>();
  private flushToken = 0;
  private stopped = false;
  /** The counts at stop (what connections closed on the way out added included). */
  private finalCounters: EngineCounters | null = null;
  /** Whether the event channel currently holds the process open (see updateRef). */
  private refd = false;

  private constructor(
    private readonly addon: NativeAddon,
    private readonly handle: number,
    readonly threads: number,
    private readonly onHandlerError: (err: Error, ev: EngineEvent) => void,
    /** The connection cap the engine enforces (0: none) and the descriptor limit it was derived from (-1: unlimited). */
    readonly limits: { maxConnections: number; fdLimit: number },
  ) {}

  /**
   * Loads the addon and starts `threads` I/O threads. Throws MESHEXT_E_ENGINE with one line saying why when the
   * engine cannot run here (addon not built or not loadable, threads refused): without it nothing is served.
   */
  static start(
    threads: number,
    addon?: NativeAddon,
    onHandlerError: (err: Error, ev: EngineEvent) => void = (err) => process.emitWarning(err),
    maxConnections: number | 'auto' = 0,
  ): Engine {
    let self: Engine | undefined;
    try {
      const a = addon ?? native();
      // Node has raised the soft limit to the hard one at start; every connection takes several descriptors.
      const fdLimit = a.fdLimit().soft;
      const cap = maxConnections === 'auto' ? connectionCapFor(fdLimit) : maxConnections;
      const handle = a.engineStart(threads, (evs) => self?.dispatch(evs), cap);
      self = new Engine(a, handle, threads, onHandlerError, { maxConnections: cap, fdLimit });
      return self;
    } catch (e) {
      throw Object.assign(new Error(`the data-plane engine cannot start: ${(e as Error).message}`), { code: 'MESHEXT_E_ENGINE', cause: e });
    }
  }

  /**
   * Receives every event of `kind` (connect-failed, tls-failed, denied, ...). Endpoint health reports: endpoint-ok
   * {service, endpoint, source: connect | response} (a success after failures), endpoint-status {service, endpoint,
   * status, streak} (a 5xx, plans with outlier detection only), endpoint-failed {service, endpoint, reason} (a
   * connection or stream lost before its response, same plans), probe-result {service, endpoint, token, ok,
   * status, reason} (an active check, see probe).
   */
  on(kind: string, handler: EngineEventHandler): void {
    this.kinds.set(kind, handler);
  }

  /**
   * Listens on an IP literal; each connection is routed by `routeKey` (an outbound listener) or by its original
   * destination. `onError` hears why accepting paused (`fatal` false) or that the listener died (`fatal` true).
   * Throws the bind/listen error shaped like Node's (`listen EADDRINUSE: address already in use 127.0.0.1:8080`,
   * code, errno, syscall 'listen').
   */
  listen(address: string, port: number, onError: (code: string, fatal: boolean) => void, routeKey?: string): EngineListener {
    if (this.stopped) throw new Error('the engine has stopped');
    let r: { id: number; address: string; family: string; port: number };
    try {
      r = routeKey !== undefined ? this.addon.engineListen(this.handle, address, port, LISTEN_BACKLOG, routeKey) : this.addon.engineListen(this.handle, address, port, LISTEN_BACKLOG);
    } catch (e) {
      const x = e as Error & { errnoName?: string; errno?: number };
      const code = x.errnoName ?? 'EINVAL';
      const text = x.message.includes(': ') ? x.message.slice(x.message.indexOf(': ') + 2).toLowerCase() : x.message;
      throw Object.assign(new Error(`listen ${code}: ${text} ${address}:${port}`), { code, ...(x.errno ? { errno: -x.errno } : {}), syscall: 'listen', address, port });
    }
    return this.track(r, onError);
  }

  /**
   * Serves DNS over UDP on an IP literal (the port shared with a successor agent when fixed): queries for owned
   * names (dnsTable) and malformed ones are answered in the engine, off the JS thread; every other query comes
   * as a `dns-query` event {id, token, qtype, questionEnd, query} for the caller to forward and answer with
   * dnsSend. One not answered within `deadlineMs` gets SERVFAIL from the engine (a stalled JS thread never leaves
   * a client waiting). Throws the bind error (code MESHEXT_E_DNS_LISTEN, errnoName).
   */
  dnsListen(address: string, port: number, deadlineMs: number, onError: (code: string, fatal: boolean) => void): EngineListener {
    if (this.stopped) throw new Error('the engine has stopped');
    const r = this.addon.engineDnsListen(this.handle, address, port, deadlineMs);
    return this.track(r, onError);
  }

  /** Keeps a listening session's error handler, and the process alive while it listens. */
  private track(r: { id: number; address: string; family: string; port: number }, onError: (code: string, fatal: boolean) => void): EngineListener {
    const id = r.id;
    this.listeners.set(id, { onError });
    this.updateRef();
    return {
      id,
      address: { address: r.address, family: r.family, port: r.port },
      close: () => {
        if (!this.listeners.delete(id)) return;
        if (!this.stopped) this.addon.engineClose(this.handle, id);
        this.updateRef();
      },
    };
  }

  /** Replaces the owned-name table the engine answers from (names lowercased; answer sections pre-encoded). */
  dnsTable(names: EngineDnsName[]): void {
    if (!this.stopped) this.addon.engineDnsTable(this.handle, names);
  }

  /**
   * What the engine's UDP sessions do with a query, for queries that arrive otherwise (TCP): the reply, a request
   * to forward it, or null to drop it. Owned answers exist in one place, the engine.
   */
  dnsResolve(query: Buffer, transport: 'udp' | 'tcp'): { reply: Buffer } | { forward: true; qtype: number; questionEnd: number } | null {
    if (this.stopped) return null;
    return this.addon.engineDnsResolve(this.handle, query, transport);
  }

  /** Answers forwarded query `token` of UDP session `id` (a `dns-query` event); false when that session is gone. */
  dnsSend(id: number, token: number, reply: Buffer): boolean {
    return !this.stopped && this.addon.engineDnsSend(this.handle, id, token, reply);
  }

  /** Queries the engine settled itself, by qtype (-1: unreadable) and outcome. */
  dnsCounts(): Array<[number, 'answered' | 'formerr' | 'dropped' | 'stalled', number]> {
    return this.stopped ? [] : this.addon.engineDnsCounts(this.handle);
  }

  /** Installs every plan of a snapshot at once; returns the plans installed failing closed, and why. */
  install(install: EngineInstall): Array<{ service: string; code: string; error: string }> {
    if (this.stopped) return [];
    return this.addon.engineInstall(this.handle, install).errors;
  }

  /** Tells the engine an endpoint's back-off (ms left; 0: healthy again). */
  health(service: string, endpoint: string, downForMs: number): void {
    if (!this.stopped) this.addon.engineHealth(this.handle, service, endpoint, Math.max(0, Math.ceil(downForMs)));
  }

  /** Reopens every access log file (logrotate's postrotate: SIGUSR1); returns the paths that could not be, and why. */
  reopenLogs(): Array<{ path: string; error: string }> {
    return this.stopped ? [] : this.addon.engineReopenLogs(this.handle);
  }

  /**
   * Runs one active health check of one endpoint with the service's current plan (its addresses and TLS
   * settings); its `probe-result` event {service, endpoint, token, ok, status, reason} follows. False once stopped.
   */
  probe(p: EngineProbe): boolean {
    return !this.stopped && this.addon.engineProbe(this.handle, p);
  }

  /** The engine's counters now (exact: read from the threads' atomics); the final ones once stopped. */
  counters(): EngineCounters | null {
    const c = this.stopped ? this.finalCounters : this.addon.engineCounters(this.handle);
    // SERVICE_COUNTERS must name the engine's counters in its order (native/src/engine/plan.h ServiceStats).
    const n = c?.services[0]?.counters.length;
    if (n !== undefined && n !== SERVICE_COUNTERS.length) throw new Error(`the engine reports ${n} counters per service, src/engine/engine.ts names ${SERVICE_COUNTERS.length}: addon and TypeScript do not match`);
    return c;
  }

  stats(): EngineStats | null {
    return this.stopped ? null : this.addon.engineStats(this.handle);
  }

  /** Every connection finishes what it has in flight and closes (HTTP: Connection: close, GOAWAY); `force`: closes now. */
  drain(force = false): void {
    if (!this.stopped) this.addon.engineDrain(this.handle, force);
  }

  /**
   * Resolves once every event the engine emitted before the call has been handled here. The engine holds
   * bookkeeping events (a denial, a connection without a route) back for a few ms to wake JS less often; a
   * caller that needs exact logs or health (tests) waits for this.
   */
  settled(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const token = ++this.flushToken;
    const left = this.addon.engineFlush(this.handle, token);
    if (left === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.flushes.set(token, { left, done: resolve });
      this.updateRef();
    });
  }

  /** Closes every connection and listener and stops the threads; events not delivered yet are handled first. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    const { events, counters } = this.addon.engineStop(this.handle);
    this.finalCounters = counters;
    this.listeners.clear();
    this.dispatch(events);
    for (const f of this.flushes.values()) f.done();
    this.flushes.clear();
  }

  get running(): boolean {
    return !this.stopped;
  }

  /**
   * Listeners and pending settled() calls keep the process alive, as Node's listening sockets and pending
   * operations would; the engine's event channel is ref'd exactly while there is one.
   */
  private updateRef(): void {
    const want = this.listeners.size + this.flushes.size > 0;
    if (want === this.refd || this.stopped) return;
    this.refd = want;
    this.addon.engineRef(this.handle, want);
  }

  private dispatch(evs: EngineEvent[]): void {
    // One handler's exception must not lose the rest of the batch, nor (thrown from the engine's callback,
    // where nothing catches it) end the process and every connection: it goes to onHandlerError.
    for (const ev of evs) {
      try {
        this.handle1(ev);
      } catch (error) {
        this.onHandlerError(error as Error, ev);
      }
    }
  }

  private handle1(ev: EngineEvent): void {
    switch (ev.kind) {
      case 'flushed': {
        const f = this.flushes.get(ev.id);
        if (f && --f.left === 0) {
          this.flushes.delete(ev.id);
          this.updateRef();
          f.done();
        }
        return;
      }
      case 'accept-error':
        this.listeners.get(ev.id)?.onError(String(ev['error']), false);
        return;
      case 'closed': {
        // Only listeners report their end: a listener that died (its socket failed) says why.
        const l = this.listeners.get(ev.id);
        if (l && ev['reason'] === 'error') {
          this.listeners.delete(ev.id);
          this.updateRef();
          l.onError(String(ev['error'] ?? 'unknown'), true);
        }
        return;
      }
      default:
        this.kinds.get(ev.kind)?.(ev);
    }
  }
}
