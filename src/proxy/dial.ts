/**
 * Opens one upstream connection for a service: endpoints in round-robin order with failover on connect
 * failure or timeout, never into the VIP CIDR, then TLS origination when the service asks for it.
 * TLS failures are final (another endpoint would present the same policy), connect failures are not.
 * dialEach is the endpoint loop alone, for callers whose connect happens elsewhere (the native engine);
 * tlsEstablished/tlsFailed keep the metrics and logs of a native TLS step identical to the Node step's.
 */
import net from 'node:net';
import type tls from 'node:tls';
import { UpstreamError } from './errors.js';
import type { EndpointState } from './endpoints.js';
import type { ServiceRuntime } from './runtime.js';
import { secureUpstream, type UpstreamTls } from './tls.js';
import { TlsSessionCache } from './tls-sessions.js';

export interface Dialled {
  socket: net.Socket | tls.TLSSocket;
  endpoint: EndpointState;
  /** Negotiated ALPN protocol under TLS, else false. */
  alpn: string | false;
  /**
   * For handing the connection to the native engine: counts the socket's bytes so far, stops its own close
   * accounting, and returns what to call with the engine's byte counts when the engine closes it.
   */
  adopt(): (rx: number, tx: number) => void;
}

/** What the TLS step needs about the dialled connection. */
export interface PendingTls {
  /** TlsSessionCache.key(address, port, SNI). */
  sessionKey: string;
  /** The address dialled (the expected name when there is no SNI); undefined for unix sockets. */
  dialledIp: string | undefined;
}

/** One connect attempt's destination: an IP endpoint (host, port) or a unix socket (path). */
export interface DialTarget {
  host?: string;
  port?: number;
  path?: string;
}

/** Where a target is, for messages. */
export function targetName(t: DialTarget): string {
  return t.path ?? `${t.host}:${t.port}`;
}

/** A first attempt already chosen (by the engine's route): endpoint `st`, to `target`. */
export interface PinnedTarget {
  st: EndpointState;
  target: DialTarget;
}

/**
 * Tries the service's endpoints in `order` with `connect` until one connects: DNS names are resolved, targets
 * in the VIP CIDR refused, attempts and failures counted and logged, endpoint health updated. `connect`
 * rejects with an UpstreamError for a failed attempt (the next target is tried); any other error ends the
 * loop and is rethrown (the caller gave up, e.g. its client left). With `pinned`, the first attempt is
 * `pinned.target` of `pinned.st` (the first of `order`) as given, neither resolved nor checked again: the
 * engine chose it from the same answer when the route was installed; the endpoint's other addresses follow.
 */
export async function dialEach<T>(rt: ServiceRuntime, order: EndpointState[], connect: (target: DialTarget, st: EndpointState) => Promise<T>, pinned?: PinnedTarget): Promise<{ conn: T; endpoint: EndpointState; target: DialTarget }> {
  if (rt.configError) throw rt.configError;
  if (order.length === 0) throw new UpstreamError('MESHEXT_E_NO_ENDPOINTS', 'service has no endpoints');
  let last: UpstreamError | undefined;
  for (const st of order) {
    const ep = st.endpoint;
    const pin = pinned && st === pinned.st ? pinned.target : undefined;
    // A pinned attempt goes first, as it is; a DNS name is resolved only when it is needed (not pinned, or
    // the pinned attempt failed), for the endpoint's other addresses.
    const targets: DialTarget[] = pin ? [pin] : [];
    let resolved = ep.kind !== 'dns';
    if (ep.kind === 'unix' && !pin) targets.push({ path: ep.path });
    else if (ep.kind === 'ip' && !pin) targets.push({ host: ep.address, port: ep.port });
    for (let i = 0; ; i++) {
      if (i === targets.length && !resolved && ep.kind === 'dns') {
        resolved = true;
        try {
          for (const a of await rt.deps.resolver.resolve(ep.address)) if (a.address !== pin?.host) targets.push({ host: a.address, port: ep.port });
        } catch (e) {
          last = new UpstreamError('MESHEXT_E_DNS_RESOLVE', `cannot resolve endpoint ${ep.address}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
      }
      const target = targets[i];
      if (!target) break;
      if (target !== pin && target.host && rt.inVipCidr(target.host)) {
        last = new UpstreamError('MESHEXT_E_ENDPOINT_IN_VIP_CIDR', `endpoint ${st.key} resolves to ${target.host}, inside the VIP CIDR ${rt.deps.vipCidr}; refusing to dial`);
        rt.log.error({ endpoint: st.key, address: target.host }, last.reason);
        continue;
      }
      rt.metrics.upstreamCxTotal.inc();
      st.total++;
      let conn: T;
      try {
        conn = await connect(target, st);
      } catch (e) {
        if (!(e instanceof UpstreamError)) throw e;
        last = e;
        if (last.code === 'MESHEXT_E_CONNECT_TIMEOUT') rt.metrics.upstreamConnectTimeout.inc();
        else rt.metrics.upstreamConnectFail.inc();
        rt.log.warn({ endpoint: st.key, err: last.reason }, 'upstream connect failed');
        continue;
      }
      rt.endpoints.success(st);
      return { conn, endpoint: st, target };
    }
    rt.endpoints.failure(st, last?.reason ?? 'unreachable');
  }
  throw last ?? new UpstreamError('MESHEXT_E_CONNECT_FAIL', 'no endpoint reachable');
}

/** The UpstreamError of a failed connect attempt to `target` (`code`: an errno name). */
export function connectFailure(target: DialTarget, code: string, timedOut: boolean, timeoutMs: number): UpstreamError {
  return timedOut
    ? new UpstreamError('MESHEXT_E_CONNECT_TIMEOUT', `connect to ${targetName(target)} timed out after ${timeoutMs} ms`)
    : new UpstreamError('MESHEXT_E_CONNECT_FAIL', `connect to ${targetName(target)} failed: ${code}`);
}

/** The TLS session cache key and expected name for a dialled target of a TLS service. */
export function pendingTlsFor(rt: ServiceRuntime, target: DialTarget): PendingTls {
  return { sessionKey: TlsSessionCache.key(target.host ?? (target.path as string), target.port ?? 0, rt.tls?.servername), dialledIp: target.host };
}

/** Connects to the service's next endpoint, trying the others if that fails. */
export async function dialUpstream(rt: ServiceRuntime, alpn?: string[], order: EndpointState[] = rt.endpoints.order()): Promise<Dialled> {
  const { conn: raw, endpoint: st, target } = await dialEach(rt, order, (t) => connect(t, rt.deps.connectTimeoutMs));
  const dialled: Dialled = { socket: raw, endpoint: st, alpn: false, adopt: track(rt, st, raw) };
  return rt.tls ? originateTls(rt, rt.tls, dialled, pendingTlsFor(rt, target), alpn) : dialled;
}

/** The Node TLS step over a dialled TCP connection; rejects (counted, logged) on failure. */
async function originateTls(rt: ServiceRuntime, up: UpstreamTls, d: Dialled, p: PendingTls, alpn?: string[]): Promise<Dialled> {
  try {
    const s = await secureUpstream(d.socket as net.Socket, up, p.dialledIp, alpn, rt.deps.connectTimeoutMs, p.sessionKey);
    tlsEstablished(rt, s.isSessionReused());
    return { socket: s, endpoint: d.endpoint, alpn: s.alpnProtocol ?? false, adopt: d.adopt };
  } catch (e) {
    const err = e as UpstreamError;
    tlsFailed(rt, d.endpoint, err);
    throw err;
  }
}

/** Counts one completed upstream TLS handshake. */
export function tlsEstablished(rt: ServiceRuntime, resumed: boolean): void {
  rt.metrics.tlsHandshake.inc();
  if (resumed) rt.metrics.tlsSessionReused.inc();
}

/** Counts and logs one failed upstream TLS handshake or verification. */
export function tlsFailed(rt: ServiceRuntime, st: EndpointState, err: UpstreamError): void {
  rt.metrics.tlsVerifyFail(err.tlsReason ?? 'handshake');
  rt.log.warn({ endpoint: st.key, reason: err.tlsReason, err: err.reason }, 'upstream TLS verification failed');
}

/** Counts one upstream connection open (gauges); the returned function closes its accounting with its byte counts, once. */
export function trackEngine(rt: ServiceRuntime, st: EndpointState): (rx: number, tx: number) => void {
  rt.metrics.upstreamCxActive.inc();
  st.active++;
  let done = false;
  return (rx, tx) => {
    if (done) return;
    done = true;
    rt.metrics.upstreamCxActive.dec();
    st.active--;
    rt.metrics.upstreamRxBytes.inc(rx);
    rt.metrics.upstreamTxBytes.inc(tx);
  };
}

/** Keeps gauges and byte counters right for the lifetime of one upstream connection; returns its `adopt`. */
function track(rt: ServiceRuntime, st: EndpointState, raw: net.Socket): () => (rx: number, tx: number) => void {
  const finish = trackEngine(rt, st);
  const onClose = (): void => finish(raw.bytesRead, raw.bytesWritten);
  // Whoever owns the socket handles errors; this keeps a late error from crashing the process.
  raw.on('error', () => {});
  raw.once('close', onClose);
  return () => {
    raw.removeListener('close', onClose);
    // Bytes Node read before the hand-over (a server-first greeting) are in bytesRead already.
    const rx0 = raw.bytesRead;
    const tx0 = raw.bytesWritten;
    return (rx, tx) => finish(rx0 + rx, tx0 + tx);
  };
}

function connect(target: DialTarget, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = target.path ? net.connect({ path: target.path, allowHalfOpen: true }) : net.connect({ host: target.host as string, port: target.port as number, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(connectFailure(target, 'ETIMEDOUT', true, timeoutMs));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      s.setNoDelay(true);
      resolve(s);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      s.destroy();
      reject(connectFailure(target, e.code ?? e.message, false, timeoutMs));
    });
  });
}
