/**
 * Opens one upstream connection for a service: endpoints in round-robin order with failover on connect
 * failure or timeout, never into the VIP CIDR, then TLS origination when the service asks for it.
 * TLS failures are final (another endpoint would present the same policy), connect failures are not.
 * The TLS step can be left to the caller (`deferTls`: the native engine handshakes on the dialled fd);
 * tlsEstablished/tlsFailed then keep its metrics and logs identical to the Node step.
 */
import net from 'node:net';
import type tls from 'node:tls';
import { UpstreamError } from './errors.js';
import type { EndpointState } from './endpoints.js';
import type { ServiceRuntime } from './runtime.js';
import { secureUpstream } from './tls.js';
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
  /** Set when the service wants TLS and the caller asked to originate it (`deferTls`): `socket` is the raw TCP connection. */
  pendingTls?: PendingTls;
}

/** What the TLS step needs about the dialled connection. */
export interface PendingTls {
  /** TlsSessionCache.key(address, port, SNI). */
  sessionKey: string;
  /** The address dialled (the expected name when there is no SNI); undefined for unix sockets. */
  dialledIp: string | undefined;
}

export interface DialOptions {
  /** Leave TLS origination to the caller (see Dialled.pendingTls). */
  deferTls?: boolean;
}

/** Connects to the service's next endpoint, trying the others if that fails. */
export async function dialUpstream(rt: ServiceRuntime, alpn?: string[], order: EndpointState[] = rt.endpoints.order(), opts: DialOptions = {}): Promise<Dialled> {
  if (rt.configError) throw rt.configError;
  if (order.length === 0) throw new UpstreamError('MESHEXT_E_NO_ENDPOINTS', 'service has no endpoints');
  let last: UpstreamError | undefined;
  for (const st of order) {
    const ep = st.endpoint;
    let targets: Array<{ host?: string; port?: number; path?: string }>;
    if (ep.kind === 'unix') targets = [{ path: ep.path }];
    else if (ep.kind === 'ip') targets = [{ host: ep.address, port: ep.port }];
    else {
      try {
        const addrs = await rt.deps.resolver.resolve(ep.address);
        targets = addrs.map((a) => ({ host: a.address, port: ep.port }));
      } catch (e) {
        last = new UpstreamError('MESHEXT_E_DNS_RESOLVE', `cannot resolve endpoint ${ep.address}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        rt.endpoints.failure(st, last.reason);
        continue;
      }
    }
    for (const target of targets) {
      if (target.host && rt.inVipCidr(target.host)) {
        last = new UpstreamError('MESHEXT_E_ENDPOINT_IN_VIP_CIDR', `endpoint ${st.key} resolves to ${target.host}, inside the VIP CIDR ${rt.deps.vipCidr}; refusing to dial`);
        rt.log.error({ endpoint: st.key, address: target.host }, last.reason);
        continue;
      }
      rt.metrics.upstreamCxTotal.inc();
      st.total++;
      let raw: net.Socket;
      try {
        raw = await connect(target, rt.deps.connectTimeoutMs);
      } catch (e) {
        last = e as UpstreamError;
        if (last.code === 'MESHEXT_E_CONNECT_TIMEOUT') rt.metrics.upstreamConnectTimeout.inc();
        else rt.metrics.upstreamConnectFail.inc();
        rt.log.warn({ endpoint: st.key, err: last.reason }, 'upstream connect failed');
        continue;
      }
      rt.endpoints.success(st);
      const adopt = track(rt, st, raw);
      if (!rt.tls) return { socket: raw, endpoint: st, alpn: false, adopt };
      const pendingTls = { sessionKey: TlsSessionCache.key(target.host ?? (target.path as string), target.port ?? 0, rt.tls.servername), dialledIp: target.host };
      const dialled: Dialled = { socket: raw, endpoint: st, alpn: false, adopt, pendingTls };
      return opts.deferTls ? dialled : originateTls(rt, dialled, alpn);
    }
    rt.endpoints.failure(st, last?.reason ?? 'unreachable');
  }
  throw last ?? new UpstreamError('MESHEXT_E_CONNECT_FAIL', 'no endpoint reachable');
}

/** The Node TLS step over a dialled connection whose TLS was deferred; rejects (counted, logged) on failure. */
export async function originateTls(rt: ServiceRuntime, d: Dialled, alpn?: string[]): Promise<Dialled> {
  const p = d.pendingTls;
  if (!p || !rt.tls) return d;
  try {
    const s = await secureUpstream(d.socket as net.Socket, rt.tls, p.dialledIp, alpn, rt.deps.connectTimeoutMs, p.sessionKey);
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

/** Keeps gauges and byte counters right for the lifetime of one upstream connection; returns its `adopt`. */
function track(rt: ServiceRuntime, st: EndpointState, raw: net.Socket): () => (rx: number, tx: number) => void {
  rt.metrics.upstreamCxActive.inc();
  st.active++;
  const finish = (rx: number, tx: number): void => {
    rt.metrics.upstreamCxActive.dec();
    st.active--;
    rt.metrics.upstreamRxBytes.inc(rx);
    rt.metrics.upstreamTxBytes.inc(tx);
  };
  const onClose = (): void => finish(raw.bytesRead, raw.bytesWritten);
  // Whoever owns the socket handles errors; this keeps a late error from crashing the process.
  raw.on('error', () => {});
  raw.once('close', onClose);
  return () => {
    raw.removeListener('close', onClose);
    // Bytes Node read before the hand-over (a server-first greeting) are in bytesRead already.
    const rx0 = raw.bytesRead;
    const tx0 = raw.bytesWritten;
    let done = false;
    return (rx, tx) => {
      if (done) return;
      done = true;
      finish(rx0 + rx, tx0 + tx);
    };
  };
}

function connect(target: { host?: string; port?: number; path?: string }, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = target.path ? net.connect({ path: target.path, allowHalfOpen: true }) : net.connect({ host: target.host as string, port: target.port as number, allowHalfOpen: true });
    const where = target.path ?? `${target.host}:${target.port}`;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new UpstreamError('MESHEXT_E_CONNECT_TIMEOUT', `connect to ${where} timed out after ${timeoutMs} ms`));
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
      reject(new UpstreamError('MESHEXT_E_CONNECT_FAIL', `connect to ${where} failed: ${e.code ?? e.message}`));
    });
  });
}
