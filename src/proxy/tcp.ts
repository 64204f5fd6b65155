/** Raw TCP proxying: bytes both ways with back-pressure and half-close; any error tears down both sides. */
import net from 'node:net';
import { connectFailure, dialEach, dialUpstream, pendingTlsFor, tlsEstablished, tlsFailed, trackEngine, type PinnedTarget } from './dial.js';
import type { ConnState } from './conn.js';
import type { EndpointState } from './endpoints.js';
import type { AcceptedConn, FastPath, RelayCloseHandler, RelayConnectError, RelayedTcp, RoutedConn, TcpSessionOptions } from './fastpath.js';
import type { ServiceRuntime } from './runtime.js';
import { isTlsError, tlsErrorFrom } from './tls.js';
import { nativeTlsError, nativeTlsFor } from './tls-native.js';
import type { NativeTlsContext, RelayClosedEvent, RelayTlsEvent, RelayUpstreamTls } from '../redirect/native.js';

/** Idle timeout for a TCP session (Envoy's tcp_proxy default is 1 h). */
export const TCP_IDLE_TIMEOUT_MS = 3_600_000;

export interface TcpOptions {
  /** The native engine, or undefined for the Node data path. */
  fast?: FastPath | undefined;
  /** Idle timeout in ms; 0 disables it. */
  idleTimeoutMs?: number;
}

/**
 * Connects `client` to an upstream of the service and relays until both sides are done: in the native
 * engine when one is given (originating TLS there too), else with Node streams.
 */
export function handleTcp(client: net.Socket, rt: ServiceRuntime, state?: ConnState, opts: TcpOptions = {}): void {
  const idleMs = opts.idleTimeoutMs ?? TCP_IDLE_TIMEOUT_MS;
  // A TLS service whose context the engine can use originates TLS natively; otherwise Node does it.
  const nativeTls = opts.fast && state && rt.tls ? nativeTlsFor(rt) : undefined;
  const fast = opts.fast;
  if (fast && state && (!rt.tls || nativeTls)) {
    const who = `${client.remoteAddress}:${client.remotePort}`;
    if (relayInEngine(who, rt, state, idleMs, nativeTls, (onClose, o) => fast.adoptTcpClient(client, idleMs, onClose, o))) return;
  }
  // Hold client bytes until the upstream exists; pipe() resumes the stream.
  client.pause();
  let upstream: net.Socket | undefined;
  let torn = false;
  const teardown = (): void => {
    if (torn) return;
    torn = true;
    client.destroy();
    upstream?.destroy();
  };
  client.on('error', teardown);
  client.on('close', () => {
    // A client that vanished before its FIN was forwarded takes the upstream with it.
    if (upstream && !upstream.destroyed && (client.readableEnded === false || client.errored)) upstream.destroy();
  });
  if (idleMs > 0) client.setTimeout(idleMs, teardown);
  dialUpstream(rt)
    .then((d) => {
      upstream = d.socket;
      if (client.destroyed) {
        d.socket.destroy();
        return;
      }
      pipeInNode(client, d.socket, rt, idleMs, teardown);
    })
    .catch((e: Error) => {
      rt.log.warn({ client: `${client.remoteAddress}:${client.remotePort}`, err: e.message }, 'upstream unavailable; closing client connection');
      if (!client.destroyed) client.resetAndDestroy();
    });
}

/**
 * Serves a connection the engine accepted (its fd) entirely in the engine; false, the fd untouched, when the
 * service's TLS needs Node. The engine takes the fd even when it refuses the connection (it is stopping):
 * the connection is then over and `state` ended.
 */
export function relayAcceptedTcp(conn: AcceptedConn, rt: ServiceRuntime, state: ConnState, fast: FastPath, idleTimeoutMs: number = TCP_IDLE_TIMEOUT_MS): boolean {
  const nativeTls = rt.tls ? nativeTlsFor(rt) : undefined;
  if (rt.tls && !nativeTls) return false;
  const who = `${conn.remoteAddress}:${conn.remotePort}`;
  if (!relayInEngine(who, rt, state, idleTimeoutMs, nativeTls, (onClose, o) => fast.adoptTcpFd(conn.fd, idleTimeoutMs, onClose, o))) {
    rt.log.warn({ client: who }, 'the native engine is stopping; connection closed');
    state.ended?.();
  }
  return true;
}

/**
 * Serves a connection the engine routed by itself (engine routes): its session exists and is connecting to
 * the endpoint the engine picked; accounting, logs and failover from there on are relayInEngine's.
 */
export function relayRoutedTcp(conn: RoutedConn, rt: ServiceRuntime, state: ConnState, fast: FastPath, idleTimeoutMs: number = TCP_IDLE_TIMEOUT_MS): void {
  const st = rt.endpoints.states[conn.target] as EndpointState;
  // Where the engine's attempt went (for a DNS name: an address of the answer the route was installed with).
  const pinned: PinnedTarget = { st, target: conn.port ? { host: conn.address, port: conn.port } : { path: conn.address } };
  const who = `${conn.remoteAddress}:${conn.remotePort}`;
  const tls = rt.tls ? nativeTlsFor(rt) : undefined;
  relayInEngine(who, rt, state, idleTimeoutMs, tls, (onClose, o) => fast.adoptRouted(conn.session, onClose, o), pinned);
}

/**
 * Puts the client connection into the native engine (`place`), which then connects to the endpoints dialEach
 * picks (failover stays here) and relays, originating TLS when `tls` is given; false when the engine refused
 * the connection. Metrics and logs match the Node path's (dial.ts, pipeInNode).
 */
function relayInEngine(who: string, rt: ServiceRuntime, state: ConnState, idleMs: number, tls: NativeTlsContext | undefined, place: (onClose: RelayCloseHandler, opts: TcpSessionOptions) => RelayedTcp | null, pinned?: PinnedTarget): boolean {
  let endpoint: EndpointState | undefined;
  let finishUpstream: ((rx: number, tx: number) => void) | undefined;
  const onClosed = (ev: RelayClosedEvent): void => {
    finishUpstream?.(ev.tlsWireRx ?? ev.rx, ev.tlsWireTx ?? ev.tx);
    if (ev.tlsStage) {
      const err = nativeTlsError({ stage: ev.tlsStage, code: ev.tlsCode ?? '', message: ev.tlsMessage ?? '', ...(ev.tlsReason ? { reason: ev.tlsReason } : {}) });
      if (ev.tlsAfterHandshake || !endpoint) {
        rt.metrics.tlsVerifyFail(err.tlsReason ?? 'handshake');
        rt.log.warn({ reason: err.tlsReason, err: err.reason }, 'upstream TLS error after handshake');
      } else {
        tlsFailed(rt, endpoint, err);
        rt.log.warn({ client: who, err: err.message }, 'upstream unavailable; closing client connection');
      }
    } else if (ev.reason !== 'done' && ev.reason !== 'closed') {
      rt.log.debug({ reason: ev.reason, err: ev.error }, 'relayed connection ended');
    }
    state.ended?.();
  };
  const onTls = tls ? (ev: RelayTlsEvent): void => tlsEstablished(rt, ev.resumed === 1) : undefined;
  const relayed = place(onClosed, onTls ? { onTls } : {});
  if (!relayed) return false;
  state.relayed = relayed;
  const timeoutMs = rt.deps.connectTimeoutMs;
  const connectedTo = (st: EndpointState) => (): void => {
    endpoint = st;
    finishUpstream = trackEngine(rt, st);
  };
  // A routed connection's first attempt (`pinned`) is already under way in the engine. Its outcome is taken
  // now, before any event of the session can be handled; dialEach makes it its first attempt.
  const started = pinned ? relayed.started(connectedTo(pinned.st), tls !== undefined) : undefined;
  started?.catch(() => {}); // handled when dialEach reaches it; until then a failure is not "unhandled"
  dialEach(rt, pinned ? rt.endpoints.orderFrom(pinned.st) : rt.endpoints.order(), (target, st) => {
    const onConnected = connectedTo(st);
    let attempt: Promise<void>;
    if (started && target === pinned?.target) {
      attempt = started;
    } else {
      const upTls: RelayUpstreamTls | undefined = tls ? { context: tls, ...pendingTlsFor(rt, target), handshakeTimeoutMs: timeoutMs } : undefined;
      attempt = relayed.connect(target.path ?? (target.host as string), target.port ?? 0, timeoutMs, onConnected, upTls);
    }
    return attempt.catch((e: unknown) => {
      // Only an attempt that failed to connect moves on to the next target; anything else ends the loop.
      const c = e as Partial<RelayConnectError>;
      if (typeof c.timedOut !== 'boolean' || c.code === 'ESESSIONGONE') throw e;
      throw connectFailure(target, c.code ?? 'EIO', c.timedOut, timeoutMs);
    });
  }, pinned).catch((e: Error) => {
    // The client left (or the proxy closed it) while an attempt was under way: nothing more to do.
    if ((e as Partial<RelayConnectError>).code === 'ESESSIONGONE') return;
    rt.log.warn({ client: who, err: e.message }, 'upstream unavailable; closing client connection');
    relayed.close(true);
  });
  return true;
}

function pipeInNode(client: net.Socket, socket: net.Socket, rt: ServiceRuntime, idleMs: number, teardown: () => void): void {
  socket.on('error', (e: Error) => {
    if (isTlsError(e)) {
      const err = tlsErrorFrom(e);
      rt.metrics.tlsVerifyFail(err.tlsReason ?? 'handshake');
      rt.log.warn({ reason: err.tlsReason, err: err.reason }, 'upstream TLS error after handshake');
    } else {
      rt.log.debug({ err: e.message }, 'upstream connection error');
    }
    teardown();
  });
  socket.on('close', () => {
    if (!socket.readableEnded || socket.errored) teardown();
  });
  if (idleMs > 0) socket.setTimeout(idleMs, teardown);
  client.pipe(socket);
  socket.pipe(client);
}
