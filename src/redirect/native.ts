/** The only module that loads the native addon; declares its surface. */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface LoadedProgram { name: string; section: string; fd: number; id: number; attachType: number }
export interface LinkInfo { id: number; progId: number; type: number; attachType?: number; cgroupId?: bigint }
export interface MapInfo { id: number; name: string; type: number; keySize: number; valueSize: number; maxEntries: number }
export interface ProbeResult { ok: boolean; reason?: string; features: Record<string, boolean> }
export interface StructLayout { size: number; fields: Record<string, number> }
export interface NativeLayout {
  layoutVersion: number;
  counterCount: number;
  mx_config: StructLayout;
  mx_orig: StructLayout;
  mx_peer_key: StructLayout;
  mx_addr: StructLayout;
  constants: Record<string, number>;
}

/** Inputs of a native client TLS context, resolved by src/proxy/tls-native.ts from a service's CompiledTls. */
export interface NativeTlsContextOptions {
  /** Protocol numbers (0x0301 TLS 1.0 .. 0x0304 TLS 1.3), already resolved for TLSAuto. */
  minVersion: number;
  maxVersion: number;
  /** TLS <= 1.2 cipher list and TLS 1.3 suites (empty: OpenSSL's default). */
  cipherList: string;
  cipherSuites: string;
  verifyChain: boolean;
  verifyNames: boolean;
  allowRenegotiation: boolean;
  /** Trusted CA PEM (inline caCert or the system bundle), only when verifyChain. */
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** SNI to send and the expected name; absent: no SNI, the dialled IP is expected. */
  servername?: string;
  /** `ipValue` is the matcher value normalised as an IP address (ipaddr.js) for Exact matches against IP SANs. */
  subjectAltNames: Array<{ exact: boolean; value: string; ipValue: string }>;
}

/** Opaque handle of a native client TLS context (owns its session cache). */
export type NativeTlsContext = { readonly __brand: 'NativeTlsContext' };

/** Why a native TLS connection failed; src/proxy/tls-native.ts turns it into an UpstreamError. */
export interface NativeTlsFailure {
  /** chain: `code` is Node's X509 code name; alert: an OpenSSL error (ERR_SSL_...); closed: the peer went away;
   *  policy: `reason` and `message` are final; timeout: the handshake timer fired. */
  stage: 'chain' | 'alert' | 'closed' | 'policy' | 'timeout';
  code: string;
  message: string;
  reason?: string;
}

export interface NativeTlsProbeResult {
  ok: boolean;
  resumed: boolean;
  protocol: string;
  alpn: string;
  received: Buffer;
  timedOut: boolean;
  failure?: NativeTlsFailure;
}

/** Why the relay engine ended a session (the `reason` of a `closed` event). */
export type RelayCloseReason =
  | 'done' // both directions reached end of stream and were flushed
  | 'client-reset'
  | 'client-error'
  | 'upstream-reset'
  | 'upstream-error'
  | 'idle-timeout'
  | 'closed' // engineClose(..., false)
  | 'reset' // engineClose(..., true)
  | 'engine-stop'
  | 'error'; // the engine could not watch the sockets

/** A session's end: byte counts of its upstream (`rx`/`tx`) and client (`downstream*`) sides, as moved natively. */
export interface RelayClosedEvent {
  kind: 'closed';
  id: number;
  rx: number;
  tx: number;
  downstreamRx: number;
  downstreamTx: number;
  reason: RelayCloseReason;
  /** errno name (e.g. ECONNRESET) when an error ended the session. */
  error?: string;
  /** Native TLS upstream: bytes on the wire (records included), like Node's raw socket counts. */
  tlsWireRx?: number;
  tlsWireTx?: number;
  /** Native TLS upstream that failed: the NativeTlsFailure fields, and whether the handshake had completed. */
  tlsStage?: NativeTlsFailure['stage'];
  tlsCode?: string;
  tlsMessage?: string;
  tlsReason?: string;
  tlsAfterHandshake?: number;
}

/** A native TLS upstream completed its handshake and passed verification. */
export interface RelayTlsEvent {
  kind: 'tls';
  id: number;
  /** 1 when a cached session was resumed. */
  resumed: number;
  /** The protocol the server selected by ALPN, when one was. */
  alpn?: string;
}

/** engineTcpConnect's optional TLS origination on the upstream side. */
export interface RelayUpstreamTls {
  context: NativeTlsContext;
  /** TlsSessionCache.key(address, port, SNI); omitted: no resumption. */
  sessionKey?: string;
  /** The address dialled (the expected name when there is no SNI). */
  dialledIp?: string;
  alpn?: string[];
  handshakeTimeoutMs: number;
}

/**
 * How a listener finds engine routes for its connections: every connection by `routeKey` (an outbound
 * listener), or by original destination `<vip>:<port>` (`transparent`). A connection with a route becomes
 * an engine session at once, connecting to the route's next target, and JS gets a `routed` event {session,
 * route, target, address, port, peer, peerPort, local, localPort}; the others come as `accepted` events, with {dst, dstPort}
 * when the engine looked the original destination up ("" when unknown).
 */
export interface RelayListenRouting {
  routeKey?: string;
  transparent?: boolean;
}

/** The routes the engine may serve without asking JS: plain TCP services with IP or unix endpoints. */
export interface RelayRouteTable {
  /** Where the transparent listener takes original destinations from: nowhere (JS does), the local address, or mx_peer_orig (`mapFd`, dup'd). */
  source: 'none' | 'local' | 'map';
  mapFd?: number;
  routes: RelayRoute[];
}

export interface RelayRoute {
  /** Stays with a service runtime: an id already installed takes the new content (e.g. new DNS answers) and keeps its round-robin position, count and target health. */
  id: number;
  /** `@<serviceId>` (outbound listener) and `<vip>:<port>` (transparent listener). */
  keys: string[];
  /** In endpoint order; the engine picks the first connect target as EndpointSet.order() would. */
  targets: Array<{ address: string; port: number; sessionKey?: string; dialledIp?: string }>;
  tls?: { context: NativeTlsContext; handshakeTimeoutMs: number };
  connectTimeoutMs: number;
  idleTimeoutMs: number;
}

/** Any event of the relay engine; session kinds other than tcp add their own kinds. */
export type RelayEvent = RelayClosedEvent | RelayTlsEvent | { kind: string; id: number; [field: string]: string | number };

export interface RelayStats {
  threads: number;
  /** Open sessions on all threads. */
  sessions: number;
  /** Empty splice pipes kept for reuse / pipes currently holding a session's bytes. */
  pipesPooled: number;
  pipesInUse: number;
  /** epoll wake-ups since start. */
  wakeups: number;
  /** Entries in the timer heaps (live sessions' idle timers plus not yet compacted stale ones). */
  timers: number;
  /** Filled in by FastPath: connections listeners routed by themselves (engineRoutes) and JS has heard of, since start. */
  routed?: number;
  /** Filled in by FastPath: sessions handed over with native TLS origination since start. */
  tlsSessions?: number;
}
export type H1Framing = 'none' | 'length' | 'chunked' | 'close' | 'tunnel';
export type H1HeadResult =
  | { state: 'partial' }
  | { state: 'error'; status: number; reason: string }
  | {
      state: 'done';
      length: number;
      method?: string;
      target?: string;
      status?: number;
      reason?: string;
      minor: number;
      fields: Array<[string, string]>;
      framing: H1Framing;
      contentLength: number;
      keepAlive: boolean;
      upgrade: boolean;
      expectContinue: boolean;
      host?: string;
    };

/** Typed surface of native/src/addon.cc. Arguments are checked by callers before they get here. */
export interface NativeAddon {
  /** Opens and loads a BPF object; by-name maps are pinned/reused under pinRootPath. */
  loadObject(objectPath: string, pinRootPath: string): { handle: number; programs: LoadedProgram[] };
  /** Closes an object's program fds (pinned maps and links stay). */
  closeObject(handle: number): void;
  /** Opens a pinned object (map, link, program). */
  objGet(path: string): number;
  /** Pins an fd at path (bpffs). */
  objPin(fd: number, path: string): void;
  closeFd(fd: number): void;
  /** Creates a (multi) cgroup bpf_link. */
  linkCreate(progFd: number, cgroupPath: string, attachType: number): number;
  /** BPF_LINK_UPDATE: swaps the program of a live link atomically. */
  linkUpdate(linkFd: number, progFd: number): void;
  /** BPF_LINK_DETACH: detaches even if pins/fds remain. */
  linkDetach(linkFd: number): void;
  linkInfo(linkFd: number): LinkInfo;
  progInfoById(id: number): { id: number; name: string; type: number } | null;
  mapInfo(mapFd: number): MapInfo;
  mapLookup(mapFd: number, key: Buffer, valueSize: number): Buffer | null;
  mapUpdate(mapFd: number, key: Buffer, value: Buffer, flags: number): void;
  mapDelete(mapFd: number, key: Buffer): boolean;
  mapLookupAndDelete(mapFd: number, key: Buffer, valueSize: number): Buffer | null;
  mapKeys(mapFd: number, keySize: number): Buffer[];
  mapCount(mapFd: number, keySize: number): number;
  /** Sums each per-CPU u64 slot of a per-CPU array over all CPUs. */
  percpuSumU64(mapFd: number, count: number): bigint[];
  probe(): ProbeResult;
  /** cgroup-v2 id of a cgroup directory (what bpf_get_current_cgroup_id returns). */
  cgroupId(cgroupPath: string): bigint;
  /** Cookie of the calling process's network namespace. */
  netnsCookie(): bigint;
  /** sizeof/offsetof of the structs in bpf/meshext_maps.h as the C++ compiler sees them. */
  layout(): NativeLayout;
  /** Builds a client TLS context; throws Error{code: MESHEXT_E_TLS_CONFIG} with OpenSSL's text. */
  tlsContextCreate(opts: NativeTlsContextOptions): NativeTlsContext;
  /** Sessions cached in the context for one endpoint key (TlsSessionCache.key). */
  tlsSessionCount(ctx: NativeTlsContext, key: string): number;
  /**
   * One TLS exchange over a connected socket fd (duplicated, so the caller destroys its socket): handshake and
   * verification, send `send`, close_notify, read until the peer closes.
   */
  tlsProbe(ctx: NativeTlsContext, fd: number, opts: { sessionKey?: string; dialledIp?: string; alpn?: string[]; timeoutMs: number; send?: Buffer }): Promise<NativeTlsProbeResult>;
  /** Starts the relay engine's I/O threads; `onEvents` gets batches of events on the JS thread. Returns a handle. */
  engineStart(threads: number, onEvents: (events: RelayEvent[]) => void): number;
  /** Closes every session (reason engine-stop), joins the threads; returns the events not delivered yet. */
  engineStop(engine: number): RelayEvent[];
  /**
   * A TCP session holding only the client connection (fd dup'd; taken as is when `owned`, and then closed by the
   * engine even if this throws; `toUpstream` = bytes Node already read) until engineTcpConnect gives it an
   * upstream. Returns the session id.
   */
  engineTcpClient(engine: number, clientFd: number, toUpstream: Buffer | null, idleTimeoutMs: number, splice?: boolean, owned?: boolean): number;
  /**
   * Listens on `address` (an IP literal) and `port` (0: ephemeral) with the engine accepting: each connection
   * comes as an `accepted` event {fd, peer, peerPort, local, localPort} whose fd JS then owns; `accept-error`
   * {error} when accepting pauses (out of fds). Close it with engineClose. Throws (errnoName, syscall) on failure.
   */
  engineListen(engine: number, address: string, port: number, backlog: number, routing?: RelayListenRouting): { id: number; address: string; family: string; port: number };
  /**
   * Installs the routes the engine serves alone (see RelayRouteTable); returns the routes no longer installed
   * with how many connections each routed in all (no later `routed` event can name them).
   */
  engineRoutes(engine: number, table: RelayRouteTable): Array<{ id: number; routed: number }>;
  /** Marks a route's target backed off for `downForMs` (0: healthy again); false when it is not installed. */
  engineRouteHealth(engine: number, route: number, target: number, downForMs: number): boolean;
  /**
   * Starts a non-blocking connect from the engine to `address`:`port` (an IPv4/IPv6 literal; port 0: `address`
   * is a unix socket path) for session `id`, optionally originating TLS on it. Returns "" when the attempt is
   * under way (a `connected` or `connect-failed` {error, timeout} event follows), "ESRCH" when the engine is
   * stopping, or the errno name of an immediate failure (e.g. "ECONNREFUSED").
   */
  engineTcpConnect(engine: number, id: number, address: string, port: number, timeoutMs: number, upstreamTls?: RelayUpstreamTls): string;
  /** Asks the session's thread to close it (FIN, or RST when `reset`); false when the engine is stopping. */
  engineClose(engine: number, id: number, reset: boolean): boolean;
  engineStats(engine: number): RelayStats;
  /** Whether the engine keeps Node's event loop alive (it starts unref'd; FastPath refs it while sessions are open). */
  engineRef(engine: number, ref: boolean): void;
  /**
   * Has each engine loop emit a `flushed` {id: token} event after every event it emitted before (the engine
   * holds bookkeeping events back for a few ms); returns how many such events will come.
   */
  engineFlush(engine: number, token: number): number;
  /** HTTP/1.1 codec (tests): scans `chunks` as they would arrive and parses the head; `method` is the request's, for responses. */
  h1ParseHead(kind: 'request' | 'response', chunks: Buffer[], method?: string): H1HeadResult;
  /** HTTP/1.1 codec (tests): how many bytes of each chunk belong to a body of the given framing. */
  h1BodyScan(framing: H1Framing, length: number, chunks: Buffer[]): { consumed: number[]; done: boolean; error?: string };
  /** HTTP/1.1 codec (tests): the heads the proxy would send upstream and back to the client. */
  h1Rewrite(requestHead: Buffer, hostOverride: string, responseHead?: Buffer, close?: boolean): { request: string; response?: string; clientKeepAlive?: boolean; upstreamReusable?: boolean };
  /** HTTP/1.1 codec (tests): a local reply as the session writes it. */
  h1LocalResponse(status: number, body: string, close: boolean): string;
  /** A per-service upstream pool for HTTP/1 sessions of one engine, with per-endpoint accounting; 0 ms = default idle timeout (60 s). */
  h1PoolCreate(engine: number, endpoints: number, idleTimeoutMs: number): number;
  /** Shuts down idle upstream connections past their pool's idle timeout (their loops then free them). */
  h1PoolsSweep(): void;
  /** After engineStop(engine): frees the idle upstream connections of that engine's pools (their closes are counted). */
  h1PoolsReap(engine: number): void;
  /** Ends reuse: idle upstream connections are shut down; stats stay readable. */
  h1PoolClose(pool: number): void;
  /** Closes and forgets a pool (after its last connection is accounted). */
  h1PoolFree(pool: number): void;
  /** [requests 1xx..5xx, retries, then per endpoint: closed connections, rx bytes, tx bytes] since creation. */
  h1PoolStats(pool: number): number[];
  /** Moves an HTTP/1.x client connection (a dup of clientFd) into an engine session; returns its id. 0 ms = default idle timeout (60 s). */
  h1Serve(engine: number, clientFd: number, initial: Buffer | null, pool: number, idleTimeoutMs: number): number;
  /** Answers a session's `h1-need-upstream` with a connected socket (dup'ed); false when the engine is stopping. */
  h1Upstream(engine: number, id: number, upstreamFd: number, hostOverride: string, endpointIndex: number, pool: number): boolean;
  /** Answers `h1-need-upstream` with a failure: the client gets `503 upstream unavailable: <reason>`. */
  h1UpstreamFailed(engine: number, id: number, reason: string): boolean;
  /** Drain: the exchange in flight ends with Connection: close; an idle session closes at once. */
  h1Drain(engine: number, id: number): boolean;
  /**
   * Serves an h2c client connection in the engine (dups the fd; `initial` = bytes Node already read, e.g. the
   * sniffed preface). Local replies are gRPC-shaped when `grpc`. Response counts go to `counters`
   * (h2CountersNew). Emits `need-upstream` {id}, `upstream-closed` {id, up, rx, tx} and `closed`.
   */
  relayH2(engine: number, clientFd: number, initial: Buffer | null, grpc: boolean, counters: number): number;
  /** Answers need-upstream with a connected h2c socket (dup'd); `token` comes back in upstream-closed. */
  relayH2Attach(engine: number, id: number, token: number, upstreamFd: number, authority: string, initial: Buffer | null): boolean;
  /** Answers need-upstream with a failure: waiting streams get 503 (grpc-status 14) naming `reason`. */
  relayH2Unavailable(engine: number, id: number, reason: string): boolean;
  /** GOAWAY to the client; in-flight streams finish, then the session closes. */
  relayH2Drain(engine: number, id: number): boolean;
  /** A set of HTTP/2 response counters (one per service), shared by its sessions. */
  h2CountersNew(): number;
  /** Cumulative [unused, 1xx, 2xx, 3xx, 4xx, 5xx, retries] of a counter set. */
  h2CountersRead(counters: number): number[];
  h2CountersFree(counters: number): void;
}

/** Repository/package root: the nearest ancestor holding our package.json. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'meshext') return dir;
      } catch {
        /* keep walking */
      }
    }
    const up = dirname(dir);
    if (up === dir) throw Object.assign(new Error('meshext package root not found above ' + fileURLToPath(import.meta.url)), { code: 'MESHEXT_E_BPF_ADDON' });
    dir = up;
  }
}

let cached: NativeAddon | undefined;
let loadError: Error | undefined;

/** Loads native/build/{Release,Debug}/meshext_native.node once; the error lists every path tried. */
export function native(): NativeAddon {
  if (cached) return cached;
  if (loadError) throw loadError;
  const root = packageRoot();
  const candidates = [
    process.env.MESHEXT_NATIVE_ADDON,
    join(root, 'native/build/Release/meshext_native.node'),
    join(root, 'native/build/Debug/meshext_native.node'),
  ].filter((p): p is string => !!p);
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  for (const p of candidates) {
    if (!existsSync(p)) {
      errors.push(`${p}: not found`);
      continue;
    }
    try {
      cached = require(p) as NativeAddon;
      return cached;
    } catch (err) {
      errors.push(`${p}: ${(err as Error).message}`);
    }
  }
  loadError = Object.assign(
    new Error(`meshext native addon not loadable (run \`npm run build:native\`): ${errors.join('; ')}`),
    { code: 'MESHEXT_E_BPF_ADDON' },
  );
  throw loadError;
}

/** Path of the compiled BPF object (`make -C bpf`); MESHEXT_BPF_OBJECT overrides it. */
export function bpfObjectPath(): string {
  const p = process.env.MESHEXT_BPF_OBJECT ?? join(packageRoot(), 'bpf/redirect.bpf.o');
  if (!existsSync(p)) {
    throw Object.assign(new Error(`BPF object ${p} not found (run \`npm run build:bpf\`)`), { code: 'MESHEXT_E_BPF_OBJECT', path: p });
  }
  return p;
}
