/** Raw TCP proxying: bytes both ways with back-pressure and half-close; any error tears down both sides. */
import net from 'node:net';
import { dialUpstream } from './dial.js';
import type { ConnState } from './conn.js';
import type { FastPath } from './fastpath.js';
import type { ServiceRuntime } from './runtime.js';
import { isTlsError, tlsErrorFrom } from './tls.js';
import type { RelayClosedEvent } from '../redirect/native.js';

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
 * engine when one is given and the upstream is a plain socket, else with Node streams.
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
  dialUpstream(rt).then(
    (d) => {
      const socket = d.socket;
      upstream = socket;
      if (client.destroyed) {
        socket.destroy();
        return;
      }
      // TLS upstreams stay in Node until the engine has a TLS transport: their bytes are not the fd's bytes.
      if (opts.fast && state && !rt.tls && socket instanceof net.Socket) {
        let finishUpstream: ((rx: number, tx: number) => void) | undefined;
        const onClosed = (ev: RelayClosedEvent): void => {
          finishUpstream?.(ev.rx, ev.tx);
          if (ev.reason !== 'done' && ev.reason !== 'closed') rt.log.debug({ reason: ev.reason, err: ev.error }, 'relayed connection ended');
          state.ended?.();
        };
        const relayed = opts.fast.handOverTcp(client, socket, idleMs, onClosed);
        if (relayed) {
          // The sockets' 'close' events come later (next tick), so their Node-side accounting is still undone in time.
          finishUpstream = d.adopt();
          client.removeListener('close', onClientClose);
          client.setTimeout(0);
          state.relayed = relayed;
          return;
        }
      }
      pipeInNode(client, socket, rt, idleMs, teardown);
    },
    (e: Error) => {
      rt.log.warn({ client: `${client.remoteAddress}:${client.remotePort}`, err: e.message }, 'upstream unavailable; closing client connection');
      if (!client.destroyed) client.resetAndDestroy();
    },
  );
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
