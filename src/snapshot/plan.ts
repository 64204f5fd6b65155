/**
 * Service plans: everything the data plane needs to serve one service, compiled here and nowhere else from the
 * snapshot's CompiledService and what the control plane knows at run time (the DNS answers of endpoint names,
 * the system CA bundle). The engine carries plans out and decides nothing they do not say:
 *
 * - listener keys: `<vip>:<port>` (the transparent listener), `@<serviceId>` and `@<serviceId>/<dataplane>` (the
 *   outbound listeners of each Dataplane); a Dataplane whose policies differ from the service's (Dataplane-targeted
 *   policies) has a plan of its own for its key, with the same service id: counters, endpoint health and
 *   connection pools stay the service's;
 * - the protocol, and the endpoints in declaration order with their priority, each with its current addresses
 *   (an IP, a DNS name's last answer with VIP-CIDR addresses removed, a unix socket path) or why it has none;
 *   the engine balances round-robin within the best priority that has a healthy endpoint;
 * - the Host rule (a DNS endpoint's name is the upstream Host / :authority; otherwise the client's);
 * - TLS origination (DESIGN decision 6): protocol bounds, ciphers, which of chain and names are verified, the
 *   CA bundle (caCert or the system bundle; `Secured` without one fails closed), the client identity, SNI
 *   (serverName, else the first DNS-name endpoint, else none), SAN matchers, renegotiation, session-cache bounds;
 * - the denial (Mesh `routing.defaultForbidMeshExternalServiceAccess`) and its replies, and the timeouts;
 * - the access log backends (MeshAccessLog), formats parsed into tokens (snapshot/accesslog.ts);
 * - an error when the service cannot be served at all: every connection then fails with it.
 *
 * Plans are plain data, so tests compare them with golden files (test/golden/plans).
 */
import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { cidrContains, parseCidr } from '../ipam/cidr.js';
import type { EngineEndpoint, EnginePlan, EngineRetry, EngineTarget, NativeTlsOptions } from '../native/addon.js';
import type { EffectiveRequestRetry } from './meshretry.js';
import type { CompiledEndpoint, CompiledService, CompiledTls, DataplaneBinding, TlsVersion } from './types.js';
import { limitsFor, outlierFor } from './meshcircuitbreaker.js';
import { healthCheckFor } from './meshhealthcheck.js';
import { SERVICE_POLICY_FIELDS, vipPortKey } from './types.js';
import { planAccessLog } from './accesslog.js';

/**
 * A plan as the engine takes it, with the stable code of `error` for logs (MESHEXT_E_...), `accessLogErrors`
 * (backends left out at compile: a path outside the access log directory; the service serves) and, for the plan
 * of one Dataplane's outbounds, that Dataplane (the engine reads none of them).
 */
export type ServicePlan = EnginePlan & { errorCode?: string; accessLogErrors?: string[]; dataplane?: string };

/** Idle timeout of a TCP connection (Envoy's tcp_proxy default, 1 h). */
export const TCP_IDLE_TIMEOUT_MS = 3_600_000;
/** Idle keep-alive timeout of HTTP client connections (no request under way). */
export const HTTP_IDLE_TIMEOUT_MS = 60_000;
/**
 * How long an HTTP/1.x client may take to send a whole request head once its first byte arrived (408 after):
 * the slow-loris bound. Real clients send a head in one write; nginx allows 60 s between reads, which trickling
 * defeats, so this one counts from the first byte.
 */
export const HTTP_HEADER_TIMEOUT_MS = 10_000;
/** Idle timeout of pooled upstream HTTP connections. */
export const UPSTREAM_IDLE_TIMEOUT_MS = 60_000;
/** Upstream connect (and TLS handshake) timeout, as Kuma's default. */
export const CONNECT_TIMEOUT_MS = 5_000;

/**
 * TLS sessions kept for resumption. Servers send two tickets per full handshake and (OpenSSL's default, nginx
 * included) one per resumed one, so each connection returns at least the ticket it used; but every connection
 * being set up holds none, so with more concurrent new connections than cached tickets the rest fall back to
 * full handshakes (4 gave 40 % full handshakes at 16 concurrent connections, 32 gave none after the first
 * burst). TLS 1.3 tickets are single-use (RFC 8446 appendix C.4), TLS 1.2 sessions reusable until replaced.
 */
export const TLS_SESSION_CACHE = { ticketsPerKey: 32, keys: 64 } as const;

/** TLS 1.3 suites, most preferred first (BoringSSL's order, as Envoy offers them): AES-128-GCM's SHA-256 key schedule costs less than AES-256-GCM's SHA-384. */
export const TLS13_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';
/** TLS <= 1.2 ciphers: Node's (OpenSSL's secure subset, ECDHE with AEAD first). */
export const TLS12_CIPHERS =
  'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA256:DHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:DHE-RSA-AES256-SHA384:ECDHE-RSA-AES256-SHA256:DHE-RSA-AES256-SHA256:HIGH:!aNULL:!eNULL:!EXPORT:!DES:!RC4:!MD5:!PSK:!SRP:!CAMELLIA';
/** TLS 1.0/1.1 are refused by OpenSSL 3 at its default security level; a user asking for them means it. */
const LEGACY_CIPHERS = 'DEFAULT:@SECLEVEL=0';

const PROTO: Record<Exclude<TlsVersion, 'TLSAuto'>, number> = { TLS10: 0x0301, TLS11: 0x0302, TLS12: 0x0303, TLS13: 0x0304 };
/** TLSAuto: TLS 1.2 at least (as Envoy's client default), up to TLS 1.3. */
const AUTO_MIN = 0x0303;
const AUTO_MAX = 0x0304;

export interface PlanTimeouts {
  connectMs: number;
  tcpIdleMs: number;
  httpIdleMs: number;
  httpHeaderMs: number;
  upstreamIdleMs: number;
  /** Envoy's route timeout: from the end of the request to the end of the response (504 after); 0: none. */
  requestMs: number;
  /** Envoy's cluster max_stream_duration: from the request leaving for the upstream to the end of the response; 0: none. */
  maxStreamMs: number;
  /** Envoy's stream_idle_timeout: an exchange with no bytes either way for this long ends (408); 0: none. */
  streamIdleMs: number;
  /** Envoy's cluster max_connection_duration: an upstream HTTP connection this old takes no new request; 0: none. */
  maxConnectionMs: number;
}

/**
 * The longest timer the engine takes (2^31-1 ms, 24.8 days): a MeshTimeout `idleTimeout: 0` ("disabled") on
 * pooled HTTP upstream connections, which always carry an idle deadline. TCP sessions take 0 as "none".
 */
export const IDLE_DISABLED_MS = 0x7fffffff;

export const DEFAULT_TIMEOUTS: PlanTimeouts = {
  connectMs: CONNECT_TIMEOUT_MS,
  tcpIdleMs: TCP_IDLE_TIMEOUT_MS,
  httpIdleMs: HTTP_IDLE_TIMEOUT_MS,
  httpHeaderMs: HTTP_HEADER_TIMEOUT_MS,
  upstreamIdleMs: UPSTREAM_IDLE_TIMEOUT_MS,
  requestMs: 0,
  maxStreamMs: 0,
  streamIdleMs: 0,
  maxConnectionMs: 0,
};

/**
 * Kuma's MeshTimeout defaults for what a policy leaves unset (meshtimeout plugin, xds/configurer.go): once any
 * MeshTimeout selects a service, its unset fields take these, not the agent's own defaults.
 */
export const MESH_TIMEOUT_DEFAULTS = { idleMs: 3_600_000, requestMs: 15_000, streamIdleMs: 1_800_000 } as const;

/**
 * The plan's timeouts: the agent's defaults when no MeshTimeout selects the service; otherwise the merged policy
 * over Kuma's MeshTimeout defaults, mapped as Kuma's plugin configures Envoy:
 * - connectionTimeout → the cluster connect_timeout (unset: the agent's connect timeout, 5 s as Kuma's);
 * - idleTimeout → a tcp service's tcp_proxy idle_timeout, and an http/http2 cluster's HTTP idle_timeout (pooled
 *   upstream connections; Kuma leaves grpc clusters alone); 0 disables it;
 * - http.requestTimeout → the route timeout of http, http2 and grpc services; 0 disables it;
 * - http.maxStreamDuration → the cluster max_stream_duration (unset or 0: none);
 * - http.streamIdleTimeout → the HTTP connection manager's stream_idle_timeout; 0 disables it;
 * - http.maxConnectionDuration → the cluster max_connection_duration (unset or 0: none).
 * Kuma's plugin configures the cluster fields (HTTP idle timeout, max stream and connection durations) on
 * http and http2 clusters only, so on grpc services they would have no effect; meshext applies them to grpc
 * too rather than accept a field and ignore it.
 * Kuma also turns the client-side (HTTP connection manager) idle timeout off; meshext keeps its own, as it serves
 * every client on the node rather than one application.
 */
export function timeoutsFor(svc: CompiledService, base: PlanTimeouts): PlanTimeouts {
  const t = svc.timeouts;
  if (!t) return { ...base };
  const out = { ...base };
  out.connectMs = t.connectMs ?? base.connectMs;
  const idle = t.idleMs ?? MESH_TIMEOUT_DEFAULTS.idleMs;
  if (svc.protocol === 'tcp') out.tcpIdleMs = idle;
  if (svc.protocol !== 'tcp') {
    out.upstreamIdleMs = idle === 0 ? IDLE_DISABLED_MS : idle;
    out.requestMs = t.requestMs ?? MESH_TIMEOUT_DEFAULTS.requestMs;
    out.maxStreamMs = t.maxStreamMs ?? 0;
    out.streamIdleMs = t.streamIdleMs ?? MESH_TIMEOUT_DEFAULTS.streamIdleMs;
    out.maxConnectionMs = t.maxConnectionMs ?? 0;
  }
  return out;
}

/** Envoy's retry_on for Kuma's HTTP retryOn names (meshretry api HttpRetryOnEnumToEnvoyValue). */
const HTTP_RETRY_ON: Record<string, string> = {
  '5xx': '5xx',
  GatewayError: 'gateway-error',
  Reset: 'reset',
  Retriable4xx: 'retriable-4xx',
  ConnectFailure: 'connect-failure',
  EnvoyRatelimited: 'envoy-ratelimited',
  RefusedStream: 'refused-stream',
};
/** Envoy's retry_on for Kuma's gRPC retryOn names (GrpcRetryOnEnumToEnvoyValue). */
const GRPC_RETRY_ON: Record<string, string> = {
  Canceled: 'cancelled',
  DeadlineExceeded: 'deadline-exceeded',
  Internal: 'internal',
  ResourceExhausted: 'resource-exhausted',
  Unavailable: 'unavailable',
};
/** What Kuma's plugin retries on when a policy names no condition (xds/configurer.go HttpRetryOnDefault, GrpcRetryOnDefault). */
export const HTTP_RETRY_ON_DEFAULT = ['gateway-error', 'connect-failure', 'refused-stream'];
export const GRPC_RETRY_ON_DEFAULT = ['cancelled', 'connect-failure', 'gateway-error', 'refused-stream', 'reset', 'resource-exhausted', 'unavailable'];
/** RFC 9110 §9.2.2's idempotent methods: what a MeshRetry naming no method or header may resend. */
export const IDEMPOTENT_METHODS = ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'] as const;

/** Envoy's retry defaults: one retry, 25 ms base back-off, the maximum 10 times the base. */
export const RETRY_DEFAULTS = { numRetries: 1, backOffBaseMs: 25, backOffMaxFactor: 10 } as const;

/**
 * The plan's retry rules from the merged MeshRetry, as Kuma's plugin configures Envoy:
 * - a tcp service takes `tcp.maxConnectAttempt` (tcp_proxy max_connect_attempts): the connects one connection
 *   may try, going round its endpoints again; without it each endpoint address is tried once (meshext's
 *   failover, DESIGN decision 9);
 * - http and http2 services take `http`, grpc services `grpc` (Kuma applies no retry to http2 services; meshext
 *   treats them as http); `numRetries` 0 means no retry (Kuma then sets no retry policy), unset 1;
 * - `retryOn`: status codes become retriable-status-codes; `HttpMethodX` entries are the methods that may be
 *   retried (Kuma's retriable_request_headers on :method); the other names map to Envoy's; when no condition is
 *   named, Kuma's defaults apply;
 * - which requests may be sent again: those with a method the policy lists or matching one of its
 *   retriableRequestHeaders (Envoy's retriable_request_headers, which Kuma fills with both); when it lists
 *   neither, the idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE: RFC 9110 §9.2.2) — Envoy retries
 *   any method, meshext does not resend a POST unless the policy says so. A request no connection was made for may be retried whatever its
 *   method (nothing reached an upstream). gRPC calls are all POSTs and gRPC's own retry policy (gRFC A6) retries
 *   them by status: a grpc service's calls may all be retried (methods ['POST']);
 * - back-off: base 25 ms unless set (at least 1 ms), maximum 10 times the base unless set; perTryTimeout unset or 0: none.
 * Absent when nothing is retried.
 */
export function retryFor(svc: CompiledService): EngineRetry | undefined {
  const r = svc.retry;
  if (!r) return undefined;
  const none = { connectAttempts: 0, numRetries: 0, on: [], statuses: [], methods: [], requestHeaders: [], perTryMs: 0, backOffBaseMs: RETRY_DEFAULTS.backOffBaseMs, backOffMaxMs: RETRY_DEFAULTS.backOffBaseMs * RETRY_DEFAULTS.backOffMaxFactor };
  if (svc.protocol === 'tcp') {
    const n = r.tcp?.maxConnectAttempt;
    return n !== undefined ? { ...none, connectAttempts: n } : undefined;
  }
  const grpc = svc.protocol === 'grpc';
  const conf: EffectiveRequestRetry | undefined = grpc ? r.grpc : r.http;
  if (!conf) return undefined;
  const numRetries = conf.numRetries ?? RETRY_DEFAULTS.numRetries;
  if (numRetries === 0) return undefined;
  const on: string[] = [];
  const statuses: number[] = [];
  const methods: string[] = [];
  for (const item of conf.retryOn ?? []) {
    if (/^\d+$/.test(item)) statuses.push(Number(item));
    else if (item.startsWith('HttpMethod')) methods.push(item.slice('HttpMethod'.length).toUpperCase());
    else {
      const name = (grpc ? GRPC_RETRY_ON : HTTP_RETRY_ON)[item];
      if (name !== undefined && !on.includes(name)) on.push(name);
    }
  }
  if (on.length === 0) on.push(...(grpc ? GRPC_RETRY_ON_DEFAULT : HTTP_RETRY_ON_DEFAULT));
  if (grpc) methods.splice(0, methods.length, 'POST');
  // Neither methods nor headers named: only the idempotent methods are resent (the engine checks membership only).
  else if (methods.length === 0 && (conf.requestHeaders ?? []).length === 0) methods.push(...IDEMPOTENT_METHODS);
  if (statuses.length > 0) on.push('retriable-status-codes');
  // The engine's timers take up to 2^31-1 ms (24.8 days): longer durations are that long.
  const cap = (ms: number): number => Math.min(ms, IDLE_DISABLED_MS);
  const base = cap(Math.max(1, conf.backOff?.baseMs ?? RETRY_DEFAULTS.backOffBaseMs));
  const requestHeaders = grpc
    ? []
    : (conf.requestHeaders ?? []).map((h) => ({ name: h.name.toLowerCase(), type: (h.type ?? 'Exact') as EngineRetry['requestHeaders'][number]['type'], ...(h.value !== undefined ? { value: h.value } : {}) }));
  return {
    connectAttempts: 0,
    numRetries,
    on,
    statuses,
    methods,
    requestHeaders,
    perTryMs: cap(conf.perTryMs ?? 0),
    backOffBaseMs: base,
    backOffMaxMs: cap(conf.backOff?.maxMs ?? base * RETRY_DEFAULTS.backOffMaxFactor),
  };
}

/** What a DNS-name endpoint resolves to now: its last answer, or why there is none. */
export type NameAnswer = { addresses: string[] } | { error: string };

/** What plans depend on besides the service. */
export interface PlanContext {
  vipCidr: string;
  /** The system CA bundle path (auto-detected or KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH), or null. */
  systemCaPath: string | null;
  /** Reads a CA bundle file (cached by the caller); throws a Node error with `code` when it cannot. */
  readCa: (path: string) => Buffer;
  /** The current answer for a DNS name; undefined when it has not been resolved yet. */
  answer: (name: string) => NameAnswer | undefined;
  timeouts: PlanTimeouts;
  /** --access-log-dir: MeshAccessLog files outside it are not written (default DEFAULT_ACCESS_LOG_DIR). */
  accessLogDir?: string;
  /**
   * Whether the kernel holds a service's MeshTrafficPermission verdicts (written and confirmed by the agent).
   * Absent: no connect-time access control runs, the plan follows the snapshot alone.
   */
  accessEnforced?: (serviceId: string) => boolean;
}

/** The text of a denial, naming the mesh setting responsible. */
export function deniedMessage(mesh: string): string {
  return `MeshExternalService access denied by Mesh "${mesh}" setting routing.defaultForbidMeshExternalServiceAccess`;
}

/** Stable text of an endpoint: `1.2.3.4:443`, `[::1]:80`, `example.com:443`, `unix:/run/x.sock`. */
export function endpointLabel(e: CompiledEndpoint): string {
  if (e.kind === 'unix') return `unix:${e.path}`;
  if (e.kind === 'ip' && e.family === 6) return `[${e.address}]:${e.port}`;
  return `${e.address}:${e.port}`;
}

/** SNI: `serverName`, else the first endpoint that is a DNS name, else none. */
export function sniFor(svc: CompiledService): string | undefined {
  if (svc.tls?.serverName) return svc.tls.serverName;
  for (const e of svc.endpoints) if (e.kind === 'dns') return e.address;
  return undefined;
}

/** Which of chain and names the verification mode checks: SkipSAN skips names, SkipCA the chain, SkipAll both. */
export function verificationOf(t: CompiledTls): { verifyChain: boolean; verifyNames: boolean } {
  return { verifyChain: t.mode === 'Secured' || t.mode === 'SkipSAN', verifyNames: t.mode === 'Secured' || t.mode === 'SkipCA' };
}

/** The session cache key of one upstream address and SNI: sessions are only offered back to where they came from. */
export function sessionKey(address: string, port: number, servername: string | undefined): string {
  return `${address}|${port}|${servername ?? ''}`;
}

/** An IP address as ipaddr.js normalises it (the form SAN matchers compare IP SANs in); anything else unchanged. */
export function normIp(v: string): string {
  return ipaddr.isValid(v) ? ipaddr.parse(v).toNormalizedString() : v;
}

/** Every service's plan, and those of Dataplanes with policies of their own (the engine installs them in one call). */
export function compilePlans(services: readonly CompiledService[], ctx: PlanContext): ServicePlan[] {
  const inVip = vipMatcher(ctx.vipCidr);
  return services.flatMap((s) => [compilePlan(s, ctx, inVip), ...(s.dataplanes ?? []).flatMap((b) => (b.policies ? [dataplanePlan(s, b, ctx, inVip)] : []))]);
}

/** The plan of one Dataplane's outbounds to `svc`: the service with the Dataplane's policy fields, for its key only. */
function dataplanePlan(svc: CompiledService, b: DataplaneBinding, ctx: PlanContext, inVip: (address: string) => boolean): ServicePlan {
  const base: CompiledService = { ...svc };
  for (const k of SERVICE_POLICY_FIELDS) delete base[k];
  const { service, keys: _keys, ...rest } = compilePlan({ ...base, ...b.policies }, ctx, inVip);
  return { service, dataplane: b.dataplane, keys: [b.key], ...rest };
}

/** One service's plan. */
export function compilePlan(svc: CompiledService, ctx: PlanContext, inVip: (address: string) => boolean = vipMatcher(ctx.vipCidr)): ServicePlan {
  const errors: Array<{ code: string; message: string }> = [];
  let tls: ServicePlan['tls'];
  if (svc.tls) {
    try {
      tls = tlsOptions(svc, ctx);
    } catch (e) {
      errors.push({ code: 'MESHEXT_E_TLS_NO_CA', message: (e as Error).message });
    }
  }
  const sni = tls?.servername;
  const endpoints = svc.endpoints.map((e) => planEndpoint(e, ctx, inVip, tls ? sni : null));
  if (svc.extension !== undefined) errors.push({ code: 'MESHEXT_E_EXTENSION_UNSUPPORTED', message: `MeshExternalService extension ${svc.extension} is not supported by meshext` });
  else if (endpoints.length === 0) errors.push({ code: 'MESHEXT_E_NO_ENDPOINTS', message: 'service has no endpoints' });
  const retry = retryFor(svc);
  const accessLogErrors: string[] = [];
  const accessLog = planAccessLog(svc, ctx.accessLogDir, accessLogErrors);
  return {
    service: svc.id,
    keys: [vipPortKey(svc.vip, svc.port), `@${svc.id}`, ...(svc.dataplanes ?? []).flatMap((b) => (b.policies ? [] : [b.key]))],
    protocol: svc.protocol,
    endpoints,
    ...(tls ? { tls } : {}),
    // Under a MeshTrafficPermission the kernel refused the clients it denies at connect(); those here were let in.
    // Until the kernel's entry is confirmed (maps full, a failed write, not written yet) the 403 stays.
    ...(svc.forbidden && (!svc.permissions || ctx.accessEnforced?.(svc.id) === false) ? { deny: { status: 403, grpcStatus: 7, message: deniedMessage(svc.mesh) } } : {}),
    ...(errors[0] ? { error: errors.map((e) => e.message).join('; '), errorCode: errors[0].code } : {}),
    timeouts: timeoutsFor(svc, ctx.timeouts),
    ...(retry ? { retry } : {}),
    ...(accessLog ? { accessLog } : {}),
    ...(accessLogErrors.length ? { accessLogErrors } : {}),
    ...healthOf(svc),
    ...policiesOf(svc),
  };
}

/** The plan's connection limits, outlier detection and active health check (MeshCircuitBreaker, MeshHealthCheck). */
function healthOf(svc: CompiledService): Pick<ServicePlan, 'countResponses' | 'limits' | 'outlierDetection' | 'healthCheck'> {
  const limits = limitsFor(svc.circuitBreaker?.conf);
  const outlier = outlierFor(svc.circuitBreaker?.conf);
  const hc = healthCheckFor(svc.healthCheck?.conf, svc.protocol);
  const counts = outlier?.successRate !== undefined || outlier?.failurePercentage !== undefined;
  return { ...(counts ? { countResponses: true } : {}), ...(limits ? { limits } : {}), ...(outlier ? { outlierDetection: outlier } : {}), ...(hc ? { healthCheck: hc } : {}) };
}

/** Which policies shaped the plan, by kind (only kinds that select the service). */
function policiesOf(svc: CompiledService): Pick<ServicePlan, 'policies'> {
  const p: NonNullable<ServicePlan['policies']> = {};
  if (svc.timeouts) p.meshTimeouts = svc.timeouts.policies;
  if (svc.retry) p.meshRetries = svc.retry.policies;
  if (svc.accessLog) p.meshAccessLogs = svc.accessLog.policies;
  if (svc.circuitBreaker) p.meshCircuitBreakers = svc.circuitBreaker.policies;
  if (svc.healthCheck) p.meshHealthChecks = svc.healthCheck.policies;
  return Object.keys(p).length ? { policies: p } : {};
}

/** `sni`: the SNI of a TLS service (its targets then carry session keys), null without TLS. */
function planEndpoint(e: CompiledEndpoint, ctx: PlanContext, inVip: (address: string) => boolean, sni: string | undefined | null): EngineEndpoint {
  const label = endpointLabel(e);
  const priority = e.priority ?? 0;
  const target = (address: string, port: number, dialled: string | undefined): EngineTarget =>
    sni === null ? { address, port } : { address, port, sessionKey: sessionKey(address, port, sni), ...(dialled !== undefined ? { dialledIp: dialled } : {}) };
  if (e.kind === 'unix') return { label, priority, targets: [target(e.path, 0, undefined)] };
  if (e.kind === 'ip') {
    if (inVip(e.address)) return { label, priority, targets: [], unavailable: `endpoint ${label} is inside the VIP CIDR ${ctx.vipCidr}; refusing to dial` };
    return { label, priority, targets: [target(e.address, e.port, e.address)] };
  }
  // A DNS name: the upstream Host is the name (Envoy's auto_host_rewrite), its addresses the last answer.
  const base = { label, priority, host: e.address };
  const a = ctx.answer(e.address);
  if (!a) return { ...base, targets: [], unavailable: `endpoint ${label} is not resolved yet` };
  if ('error' in a) return { ...base, targets: [], unavailable: `cannot resolve endpoint ${e.address}: ${a.error}` };
  const usable = a.addresses.filter((x) => !inVip(x));
  if (usable.length === 0 && a.addresses.length > 0) {
    return { ...base, targets: [], unavailable: `endpoint ${label} resolves to ${a.addresses.join(', ')}, inside the VIP CIDR ${ctx.vipCidr}; refusing to dial` };
  }
  if (usable.length === 0) return { ...base, targets: [], unavailable: `endpoint ${e.address} has no addresses` };
  return { ...base, targets: usable.map((x) => target(x, e.port, x)) };
}

/** The service's TLS settings for the engine, or an error naming the service when they cannot be used. */
function tlsOptions(svc: CompiledService, ctx: PlanContext): NativeTlsOptions & { id: string } {
  const t = svc.tls as CompiledTls;
  const { verifyChain, verifyNames } = verificationOf(t);
  const min = t.minVersion === 'TLSAuto' ? AUTO_MIN : PROTO[t.minVersion];
  const max = t.maxVersion === 'TLSAuto' ? Math.max(AUTO_MAX, min) : PROTO[t.maxVersion];
  const servername = sniFor(svc);
  const opts: NativeTlsOptions = {
    minVersion: min,
    maxVersion: max,
    cipherList: min < 0x0303 ? LEGACY_CIPHERS : TLS12_CIPHERS,
    cipherSuites: TLS13_SUITES,
    verifyChain,
    verifyNames,
    // Envoy (BoringSSL) never renegotiates unless allowed; OpenSSL clients would by default.
    allowRenegotiation: t.allowRenegotiation,
    ...(verifyChain ? { ca: caBundle(svc, ctx) } : {}),
    // The client identity is ours, not a verification setting, so it is presented in every mode.
    ...(t.cert && t.key ? { cert: t.cert, key: t.key } : {}),
    ...(servername !== undefined ? { servername } : {}),
    subjectAltNames: t.subjectAltNames.map((m) => ({ exact: m.type === 'Exact', value: m.value, ipValue: normIp(m.value) })),
    sessionCache: { ...TLS_SESSION_CACHE },
  };
  return { id: tlsId(opts), ...opts };
}

/** The CA bundle to trust: tls.caCert, else the system bundle; `Secured` without one fails closed. */
function caBundle(svc: CompiledService, ctx: PlanContext): Buffer {
  const t = svc.tls as CompiledTls;
  if (t.ca) return t.ca;
  if (ctx.systemCaPath) {
    try {
      return ctx.readCa(ctx.systemCaPath);
    } catch (e) {
      throw new Error(`tls.verification.mode ${t.mode} needs a CA but the system CA bundle ${ctx.systemCaPath} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  throw new Error(`tls.verification.mode ${t.mode} needs a CA: set tls.verification.caCert or install a system CA bundle (or set KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH)`);
}

/** Digests of key material by buffer: plans are recompiled on every DNS change, a CA bundle is hashed once. */
const digests = new WeakMap<Buffer, string>();

function digestOf(b: Buffer): string {
  let d = digests.get(b);
  if (d === undefined) {
    d = createHash('sha256').update(b).digest('hex');
    digests.set(b, d);
  }
  return d;
}

/** A digest of the TLS settings (secrets only as digest input): equal settings share a context and its session cache. */
function tlsId(o: NativeTlsOptions): string {
  const { ca, cert, key, ...rest } = o;
  const parts = [ca, cert, key].map((b) => (b ? digestOf(b) : '-'));
  return createHash('sha256').update(JSON.stringify(rest)).update(parts.join(',')).digest('hex').slice(0, 32);
}

/** Whether an address lies inside the VIP CIDR (dialling it would loop back into the proxy). */
function vipMatcher(cidr: string): (address: string) => boolean {
  const range = parseCidr(cidr);
  return (address) => cidrContains(range, address);
}

/** A plan as a golden file shows it: key material as digests, never bytes. */
export function planForDump(p: ServicePlan): unknown {
  if (!p.tls) return p;
  const digest = (b: Buffer | undefined): string | undefined => (b ? `sha256:${createHash('sha256').update(b).digest('hex').slice(0, 16)} (${b.length} bytes)` : undefined);
  const { ca, cert, key, ...rest } = p.tls;
  return { ...p, tls: { ...rest, ...(ca ? { ca: digest(ca) } : {}), ...(cert ? { cert: digest(cert) } : {}), ...(key ? { key: 'configured' } : {}) } };
}
