/** Raw TCP proxying: bytes both ways with back-pressure and half-close; any error tears down both sides. */
import net from 'node:net';
import { dialUpstream, originateTls, tlsEstablished, tlsFailed, type Dialled } from './dial.js';
import type { ConnState } from './conn.js';
import type { FastPath } from './fastpath.js';
import type { ServiceRuntime } from './runtime.js';
import { isTlsError, tlsErrorFrom } from './tls.js';
import { nativeTlsError, nativeTlsFor } from './tls-native.js';
import type { RelayClosedEvent, RelayTlsEvent, RelayUpstreamTls } from '../redirect/native.js';

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
  const onClientClose = (): void => {
    // A client that vanished before its FIN was forwarded takes the upstream with it.
    if (upstream && !upstream.destroyed && (client.readableEnded === false || client.errored)) upstream.destroy();
  };
  client.on('error', teardown);
  client.on('close', onClientClose);
  if (idleMs > 0) client.setTimeout(idleMs, teardown);
  // A TLS service whose context the engine can use originates TLS natively; otherwise Node does it.
  const nativeTls = opts.fast && state && rt.tls ? nativeTlsFor(rt) : undefined;
  dialUpstream(rt, undefined, undefined, { deferTls: nativeTls !== undefined })
    .then(async (dialled) => {
      let d = dialled;
      upstream = d.socket;
      if (client.destroyed) {
        d.socket.destroy();
        return;
      }
      if (opts.fast && state && d.socket instanceof net.Socket && (!rt.tls || (d.pendingTls && nativeTls))) {
        const tlsOpts = d.pendingTls && nativeTls ? { context: nativeTls, sessionKey: d.pendingTls.sessionKey, dialledIp: d.pendingTls.dialledIp, handshakeTimeoutMs: rt.deps.connectTimeoutMs } : undefined;
        if (handOver(client, d, rt, state, opts.fast, idleMs, tlsOpts)) {
          client.removeListener('close', onClientClose);
          client.setTimeout(0);
          return;
        }
      }
      if (d.pendingTls) {
        // The engine refused the fd: the TLS step runs in Node, as it does without an engine.
        d = await originateTls(rt, d);
        upstream = d.socket;
        if (client.destroyed) {
          d.socket.destroy();
          return;
        }
      }
      pipeInNode(client, d.socket, rt, idleMs, teardown);
    })
    .catch((e: Error) => {
      rt.log.warn({ client: `${client.remoteAddress}:${client.remotePort}`, err: e.message }, 'upstream unavailable; closing client connection');
      if (!client.destroyed) client.resetAndDestroy();
    });
}

/**
 * Moves the connection into the native engine (with TLS origination when `tls` is given); false when the
 * engine refused it. Metrics and logs of the TLS outcome match the Node path's (dial.ts, pipeInNode).
 */
function handOver(client: net.Socket, d: Dialled, rt: ServiceRuntime, state: ConnState, fast: FastPath, idleMs: number, tls: RelayUpstreamTls | undefined): boolean {
  let finishUpstream: ((rx: number, tx: number) => void) | undefined;
  // Captured now: the socket is gone once the engine owns the connection.
  const who = tls ? `${client.remoteAddress}:${client.remotePort}` : '';
  const onClosed = (ev: RelayClosedEvent): void => {
    finishUpstream?.(ev.tlsWireRx ?? ev.rx, ev.tlsWireTx ?? ev.tx);
    if (ev.tlsStage) {
      const err = nativeTlsError({ stage: ev.tlsStage, code: ev.tlsCode ?? '', message: ev.tlsMessage ?? '', ...(ev.tlsReason ? { reason: ev.tlsReason } : {}) });
      if (ev.tlsAfterHandshake) {
        rt.metrics.tlsVerifyFail(err.tlsReason ?? 'handshake');
        rt.log.warn({ reason: err.tlsReason, err: err.reason }, 'upstream TLS error after handshake');
      } else {
        tlsFailed(rt, d.endpoint, err);
        rt.log.warn({ client: who, err: err.message }, 'upstream unavailable; closing client connection');
      }
    } else if (ev.reason !== 'done' && ev.reason !== 'closed') {
      rt.log.debug({ reason: ev.reason, err: ev.error }, 'relayed connection ended');
    }
    state.ended?.();
  };
  const onTls = tls ? (ev: RelayTlsEvent): void => tlsEstablished(rt, ev.resumed === 1) : undefined;
  const relayed = fast.handOverTcp(client, d.socket as net.Socket, idleMs, onClosed, { ...(tls ? { tls } : {}), ...(onTls ? { onTls } : {}) });
  if (!relayed) return false;
  // The sockets' 'close' events come later (next tick), so their Node-side accounting is still undone in time.
  finishUpstream = d.adopt();
  state.relayed = relayed;
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
