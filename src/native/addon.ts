/**
 * The only module that loads the native addon (native/): declares its surface, libbpf calls for the redirect and
 * the data-plane engine, and loads the test build for tests.
 */
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
  mx_svc_key: StructLayout;
  mx_svc_access: StructLayout;
  mx_verdict_key: StructLayout;
  mx_denial_key: StructLayout;
  mx_denial: StructLayout;
  constants: Record<string, number>;
}

/** A client TLS context's settings as a plan carries them (src/snapshot/plan.ts resolves them from CompiledTls). */
export interface NativeTlsOptions {
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
  /** Session resumption cache bounds: TLS 1.3 tickets kept per endpoint key; endpoint keys per context. */
  sessionCache: { ticketsPerKey: number; keys: number };
}

/** Why a native TLS connection failed (a `tls-failed` event carries these fields); src/proxy/tls.ts names it. */
export interface NativeTlsFailure {
  /** chain: `code` is Node's X509 code name; alert: an OpenSSL error (ERR_SSL_...); closed: the peer went away;
   *  policy: a check of the engine's own failed, `code` names it (HOSTNAME_MISMATCH, CERT_HAS_EXPIRED,
   *  MESHEXT_E_ALPN, ...) and `message` says it in full; timeout: the handshake timer fired. */
  stage: 'chain' | 'alert' | 'closed' | 'policy' | 'timeout';
  code: string;
  message: string;
}

/** One address of a plan endpoint: ip:port, or a unix socket path (port 0). */
export interface EngineTarget {
  address: string;
  port: number;
  /** TLS session cache key (address, port and SNI); absent without TLS. */
  sessionKey?: string;
  /** The address dialled: the expected certificate name when there is no SNI. */
  dialledIp?: string;
}

export interface EngineEndpoint {
  /** Stable text of the endpoint (`1.2.3.4:443`, `example.com:443`, `unix:/run/x.sock`): health and counts follow it. */
  label: string;
  /** Lower first: the next priority takes traffic only when every endpoint of a better one is down or refusing. */
  priority: number;
  /** Host / :authority sent upstream (a DNS endpoint's name); absent keeps the client's. */
  host?: string;
  /** Empty when the endpoint has no address now; `unavailable` then says why. */
  targets: EngineTarget[];
  unavailable?: string;
}

/** What the engine does with one service's connections (see native/src/engine/plan.h). */
export interface EnginePlan {
  service: string;
  /** `<vip>:<port>` (transparent listener) and `@<serviceId>` (outbound listeners). */
  keys: string[];
  protocol: 'tcp' | 'http' | 'http2' | 'grpc';
  endpoints: EngineEndpoint[];
  /** TLS origination; `id` names the settings: a context (and its session cache) is reused while it is unchanged. */
  tls?: NativeTlsOptions & { id: string };
  /** Access denied: HTTP `status` with `message`, gRPC `grpcStatus`, TCP closed at once. */
  deny?: { status: number; grpcStatus: number; message: string };
  /** The service cannot be served: every connection fails with this reason. */
  error?: string;
  timeouts: { connectMs: number; tcpIdleMs: number; httpIdleMs: number; httpHeaderMs: number; upstreamIdleMs: number; requestMs: number; maxStreamMs: number; streamIdleMs: number; maxConnectionMs: number };
  /** Retries (MeshRetry); absent: each endpoint address once per connect, no request retried. */
  retry?: EngineRetry;
  /** Access log backends (MeshAccessLog); absent: none. */
  accessLog?: PlanAccessLog;
  /** Which policies shaped the plan (for /config_dump; the engine ignores it). */
  policies?: { meshTimeouts?: string[]; meshRetries?: string[]; meshAccessLogs?: string[]; meshCircuitBreakers?: string[]; meshHealthChecks?: string[] };
  /** Count responses per endpoint (the statistical outlier detectors read them); absent: false. */
  countResponses?: boolean;
  /** MeshCircuitBreaker connectionLimits (0: none); absent: no limits. */
  limits?: EngineLimits;
  /** Outlier detection (MeshCircuitBreaker outlierDetection): applied by the control plane (src/proxy/endpoints.ts); the engine ignores it. */
  outlierDetection?: PlanOutlierDetection;
  /** Active health checks (MeshHealthCheck): scheduled by the control plane (src/proxy/health-check.ts), run by engineProbe; the engine's plan ignores it. */
  healthCheck?: PlanHealthCheck;
}

/** Connection limits of one service (native/src/engine/plan.h PlanLimits); 0: no limit. */
export interface EngineLimits {
  maxConnections: number;
  maxPendingRequests: number;
  maxRequests: number;
}

/** Outlier detection of one service: Envoy's consecutive detectors as Kuma configures them (0: detector off). */
export interface PlanOutlierDetection {
  baseEjectionMs: number;
  maxEjectionPercent: number;
  splitExternalAndLocalErrors: boolean;
  /** Consecutive 5xx (and, unless split, local-origin failures) before an ejection. */
  consecutiveTotal: number;
  /** Consecutive 502/503/504 (and, unless split, local-origin failures). */
  consecutiveGateway: number;
  /** Consecutive local-origin failures (connect refused or timed out, TLS failure); only when split. */
  consecutiveLocalOrigin: number;
  /** How often the statistical detectors sweep the response counts. */
  intervalMs: number;
  /** Envoy's success rate detector: below mean − factor × stdev of the hosts with enough requests. */
  successRate?: { minimumHosts: number; requestVolume: number; stdevFactor: number };
  /** Envoy's failure percentage detector: at or above `threshold` % failed, among hosts with enough requests. */
  failurePercentage?: { minimumHosts: number; requestVolume: number; threshold: number };
}

/** Active health checks of one service's endpoints. */
export interface PlanHealthCheck {
  intervalMs: number;
  unhealthyIntervalMs: number;
  timeoutMs: number;
  unhealthyThreshold: number;
  healthyThreshold: number;
  initialJitterMs: number;
  intervalJitterMs: number;
  intervalJitterPercent: number;
  /** The check, with every default filled (see EngineProbe). */
  check: Omit<EngineProbe, 'service' | 'endpoint' | 'token' | 'timeoutMs' | 'send' | 'receive'> & { send?: string; receive?: string[] };
}

/** One active health check (native/src/engine/probe.h ProbeSpec). */
export interface EngineProbe {
  service: string;
  endpoint: string;
  token: number;
  kind: 'tcp' | 'http' | 'grpc';
  timeoutMs: number;
  /** HTTP over HTTP/2 (gRPC always is). */
  http2: boolean;
  path: string;
  authority: string;
  headers: Array<[string, string]>;
  expectedStatuses: number[];
  grpcService: string;
  send?: Buffer;
  receive: Buffer[];
}


/** A plan's retry rules (native/src/engine/retry.h PlanRetry). */
export interface EngineRetry {
  /** Connects one connection may try, going round the endpoints again if need be; 0: each address once. */
  connectAttempts: number;
  /** Retries of a request after its first attempt; 0: none. */
  numRetries: number;
  /** Envoy retry_on conditions: 5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, envoy-ratelimited, retriable-status-codes, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable. */
  on: string[];
  /** retriable-status-codes. */
  statuses: number[];
  /** Requests retried: those with one of `methods` or matching one of `requestHeaders`; both empty: the idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE). */
  methods: string[];
  /** Retriable request header matches; names lowercase. */
  requestHeaders: Array<{ name: string; type: 'Exact' | 'Prefix' | 'Present' | 'Absent'; value?: string }>;
  /** Each attempt's limit (0: none). */
  perTryMs: number;
  backOffBaseMs: number;
  backOffMaxMs: number;
}

/** One piece of an access log line: literal text, or a command operator the engine fills (native/src/engine/access_log.h). */
export type PlanLogToken = { text: string } | { op: string; name?: string; alt?: string; max?: number };

/** A service's access logging: lines rendered by the engine per TCP connection or HTTP request, one per backend. */
export interface PlanAccessLog {
  backends: Array<{
    /** File under the install's accessLogDir, opened O_APPEND (`/dev/stdout`, `/dev/stderr`: the agent's own). */
    path: string;
    json: boolean;
    /** Envoy's omit_empty_values: absent values left out (JSON) or empty (plain) rather than null / "-". */
    omitEmptyValues: boolean;
    plain?: PlanLogToken[];
    fields?: Array<{ key: string; tokens: PlanLogToken[] }>;
  }>;
}

/** engineInstall's argument: every plan of a snapshot, and where original destinations come from. */
export interface EngineInstall {
  /** `map`: mx_peer_orig (`mapFd`, dup'd); `local`: the accepted connection's local address. */
  source: 'local' | 'map';
  mapFd?: number;
  /**
   * --access-log-dir (absolute): access log files are opened beneath it, never through a symlink; a backend path
   * outside it is refused (only /dev/stdout and /dev/stderr are allowed then). Absent: only those two.
   */
  accessLogDir?: string;
  plans: EnginePlan[];
}

/** Any event of the engine (see src/engine/engine.ts for the kinds and their fields). */
export type EngineEvent = { kind: string; id: number; [field: string]: string | number | Buffer };

export interface EngineStats {
  threads: number;
  /** Open connections on all threads. */
  sessions: number;
  /** Empty splice pipes kept for reuse / pipes currently holding a session's bytes. */
  pipesPooled: number;
  pipesInUse: number;
  /** epoll wake-ups since start. */
  wakeups: number;
  /** Entries in the timer heaps (live sessions' timers plus not yet compacted stale ones). */
  timers: number;
}

/** A latency histogram as the engine keeps it: counts per bucket (not cumulative; +Inf last) and their sum. */
export interface EngineHistogram {
  counts: number[];
  sumMs: number;
}

/** The engine's counters: per service (SERVICE_COUNTERS order), per endpoint, and global ones. */
export interface EngineCounters {
  services: Array<{
    service: string;
    counters: number[];
    /** upstream_rq_time: request head in → upstream response end (HTTP). */
    rqTime: EngineHistogram;
    /** upstream_cx_connect_ms: connect(2) → usable connection (TLS handshake included). */
    connectTime: EngineHistogram;
    /** Per endpoint: connections open and made; responses and failed ones (counted only for plans with countResponses). */
    endpoints: Array<{ label: string; active: number; total: number; responses: number; failedResponses: number }>;
  }>;
  /** The finite bucket bounds of every histogram, in ms (a last +Inf bucket follows). */
  histogramBoundsMs: number[];
  /** Access log files in use, with the lines lost to write errors (ENOSPC, EIO…) since each was opened. */
  accessLogFiles: Array<{ path: string; writeFailed: number }>;
  accepted: number;
  noRoute: number;
  origDstFound: number;
  origDstMissing: number;
  origDstStale: number;
  downstreamLive: number;
  overflowCap: number;
  overflowFd: number;
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

/** Opaque handle of a native client TLS context (test addon only). */
export type NativeTlsContext = { readonly __brand: 'NativeTlsContext' };

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
  /**
   * Takes mx_peer_orig's entry for `key` (lookup-and-delete) by the engine's rule: `stale` when it is older than
   * MX_ORIG_MAX_AGE_MS (it belongs to a connection nobody took), null when there is none.
   */
  origDstTake(mapFd: number, key: Buffer): { orig: Buffer } | { stale: true } | null;
  /** Removes mx_peer_orig entries older than MX_ORIG_MAX_AGE_MS; returns how many. */
  origDstSweep(mapFd: number): number;
  engineDnsListen(engine: number, address: string, port: number, deadlineMs: number): { id: number; address: string; family: string; port: number };
  engineDnsTable(engine: number, names: Array<{ name: string; a: Buffer; aCount: number; aaaa: Buffer; aaaaCount: number }>): void;
  engineDnsResolve(engine: number, query: Buffer, transport: 'udp' | 'tcp'): { reply: Buffer } | { forward: true; qtype: number; questionEnd: number } | null;
  engineDnsSend(engine: number, id: number, token: number, reply: Buffer): boolean;
  engineDnsCounts(engine: number): Array<[number, 'answered' | 'formerr' | 'dropped' | 'stalled', number]>;
  dnsServfail(query: Buffer): Buffer | null;
  dnsFitReply(reply: Buffer, query: Buffer, transport: 'udp' | 'tcp'): Buffer;
  /** RLIMIT_NOFILE (-1: unlimited). */
  fdLimit(): { soft: number; hard: number };
  /** A TCP listening (with `backlog`) or UDP bound socket with SO_REUSEPORT, as an fd for Node's servers. */
  sharedSocket(kind: 'tcp' | 'udp', address: string, port: number, backlog: number): number;
  /** Adopts the sockets systemd passed (LISTEN_FDS for this pid); listeners of the same address then take them. */
  adoptListenFds(): Array<{ fd: number; type: 'tcp' | 'udp' | 'other'; address: string; port: number }>;
  /** Adopts the sockets a holder (`meshext hold-sockets`) passes over the unix socket `path`; returns how many. */
  adoptHeldSockets(path: string): number;
  /** Hands `fds` to every client of the unix socket `path` (a detached thread); returns its listening fd. */
  serveHeldSockets(path: string, fds: number[]): number;
  /** The holder at `path` closes its sockets and exits (an agent stopping for good). */
  releaseHeldSockets(path: string): void;
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
  /** Starts the engine's I/O threads; `onEvents` gets batches of events on the JS thread. Returns a handle. */
  /** `maxConnections`: client connections served at once, over it new ones are reset (0: no cap). */
  engineStart(threads: number, onEvents: (events: EngineEvent[]) => void, maxConnections?: number): number;
  /** Closes every connection, joins the threads; returns the events not delivered yet and the final counters. */
  engineStop(engine: number): { events: EngineEvent[]; counters: EngineCounters };
  /**
   * Listens on `address` (an IP literal) and `port` (0: ephemeral); every connection is routed by `routeKey`
   * (an outbound listener) or, without it, by its original destination. Throws (errnoName, syscall) on failure.
   */
  engineListen(engine: number, address: string, port: number, backlog: number, routeKey?: string): { id: number; address: string; family: string; port: number };
  /** Stops a listener (accepted connections carry on); false when the engine is stopping. */
  engineClose(engine: number, listener: number): boolean;
  /** Installs a snapshot's plans at once; returns the plans installed failing closed and why. */
  /** `errors`: what was refused of a plan, with a code (MESHEXT_E_TLS_CONFIG, MESHEXT_E_KEY_CONFLICT). */
  engineInstall(engine: number, install: EngineInstall): { errors: Array<{ service: string; code: string; error: string }> };
  /** Marks an endpoint backed off for `downForMs` (0: healthy again); false when it is not installed. */
  engineHealth(engine: number, service: string, endpoint: string, downForMs: number): boolean;
  /** Runs one active health check with the service's current plan; a `probe-result` event follows. False when stopping. */
  engineProbe(engine: number, probe: EngineProbe): boolean;
  engineCounters(engine: number): EngineCounters;
  /** Reopens every access log file (logrotate: SIGUSR1); the paths that could not be, with why (they keep their old file). */
  engineReopenLogs(engine: number): Array<{ path: string; error: string }>;
  /** Every connection finishes what is in flight, then closes (HTTP: Connection: close, GOAWAY); `force`: closes now. */
  engineDrain(engine: number, force: boolean): boolean;
  engineStats(engine: number): EngineStats;
  /** Whether the engine's event channel keeps Node's event loop alive (it starts unref'd). */
  engineRef(engine: number, ref: boolean): void;
  /**
   * Has each engine loop emit a `flushed` {id: token} event after every event it emitted before (the engine
   * holds bookkeeping events back for a few ms); returns how many such events will come.
   */
  engineFlush(engine: number, token: number): number;
}

/** The exports the test addon adds (native/src/testing/): never in the production build. */
export interface TestAddon extends NativeAddon {
  /** Builds a client TLS context from plan-shaped settings; throws Error{code: MESHEXT_E_TLS_CONFIG} with OpenSSL's text. */
  tlsContextCreate(opts: NativeTlsOptions): NativeTlsContext;
  /** Sessions cached in the context for one endpoint key. */
  tlsSessionCount(ctx: NativeTlsContext, key: string): number;
  /**
   * One TLS exchange over a connected socket fd (duplicated, so the caller destroys its socket): handshake and
   * verification, send `send`, close_notify, read until the peer closes.
   */
  tlsProbe(ctx: NativeTlsContext, fd: number, opts: { sessionKey?: string; dialledIp?: string; alpn?: string[]; timeoutMs: number; send?: Buffer }): Promise<NativeTlsProbeResult>;
  /** Crashes the process from a thread marked and named like an engine thread (null write, abort(), stack overflow). */
  crashOnEngineThread(how: 'fault' | 'abort' | 'overflow'): void;
  /** Sets the bound of each access log sink's queue in bytes (this addon's engines); returns the previous one. */
  accessLogCapacity(bytes: number): number;
  /** HTTP/1.1 codec: scans `chunks` as they would arrive and parses the head; `method` is the request's, for responses. */
  h1ParseHead(kind: 'request' | 'response', chunks: Buffer[], method?: string): H1HeadResult;
  /** HTTP/1.1 codec: how many bytes of each chunk belong to a body of the given framing. */
  h1BodyScan(framing: H1Framing, length: number, chunks: Buffer[]): { consumed: number[]; done: boolean; error?: string };
  /** HTTP/1.1 codec: the heads the proxy would send upstream and back to the client. */
  h1Rewrite(requestHead: Buffer, hostOverride: string, responseHead?: Buffer, close?: boolean): { request: string; response?: string; clientKeepAlive?: boolean; upstreamReusable?: boolean };
  /** HTTP/1.1 codec: a local reply as the session writes it. */
  h1LocalResponse(status: number, body: string, close: boolean): string;
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
    if (up === dir) throw Object.assign(new Error('meshext package root not found above ' + fileURLToPath(import.meta.url)), { code: 'MESHEXT_E_ADDON' });
    dir = up;
  }
}

const loaded = new Map<string, { addon?: NativeAddon; error?: Error }>();

/** Loads `file` (native/build/{Release,Debug}/) once; the error lists every path tried. */
function load(file: string, override: string | undefined): NativeAddon {
  const seen = loaded.get(file);
  if (seen?.addon) return seen.addon;
  if (seen?.error) throw seen.error;
  const root = packageRoot();
  const candidates = [override, join(root, `native/build/Release/${file}`), join(root, `native/build/Debug/${file}`)].filter((p): p is string => !!p);
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  for (const p of candidates) {
    if (!existsSync(p)) {
      errors.push(`${p}: not found`);
      continue;
    }
    try {
      const addon = require(p) as NativeAddon;
      loaded.set(file, { addon });
      return addon;
    } catch (err) {
      errors.push(`${p}: ${(err as Error).message}`);
    }
  }
  const error = Object.assign(new Error(`meshext native addon not loadable (run \`npm run build:native\`): ${errors.join('; ')}`), { code: 'MESHEXT_E_ADDON' });
  loaded.set(file, { error });
  throw error;
}

/** The addon (meshext_native.node; MESHEXT_NATIVE_ADDON overrides the path). */
export function native(): NativeAddon {
  return load('meshext_native.node', process.env.MESHEXT_NATIVE_ADDON);
}

/** The test build of the addon (meshext_native_test.node): the production surface plus the exports only tests use. */
export function nativeForTests(): TestAddon {
  return load('meshext_native_test.node', undefined) as TestAddon;
}

/** Path of the compiled BPF object (`make -C bpf`); MESHEXT_BPF_OBJECT overrides it. */
export function bpfObjectPath(): string {
  const p = process.env.MESHEXT_BPF_OBJECT ?? join(packageRoot(), 'bpf/redirect.bpf.o');
  if (!existsSync(p)) {
    throw Object.assign(new Error(`BPF object ${p} not found (run \`npm run build:bpf\`)`), { code: 'MESHEXT_E_BPF_OBJECT', path: p });
  }
  return p;
}
