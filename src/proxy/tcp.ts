/** Raw TCP proxying: bytes both ways with back-pressure and half-close; any error tears down both sides. */
import type net from 'node:net';
import { dialUpstream } from './dial.js';
import type { ServiceRuntime } from './runtime.js';
import { isTlsError, tlsErrorFrom } from './tls.js';

/** Idle timeout for a TCP session (Envoy's tcp_proxy default is 1 h). */
export const TCP_IDLE_TIMEOUT_MS = 3_600_000;

/** Connects `client` to an upstream of the service and pipes until both sides are done. */
export function handleTcp(client: net.Socket, rt: ServiceRuntime): void {
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
  client.setTimeout(TCP_IDLE_TIMEOUT_MS, teardown);
  dialUpstream(rt).then(
    ({ socket }) => {
      upstream = socket;
      if (client.destroyed) {
        socket.destroy();
        return;
      }
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
      socket.setTimeout(TCP_IDLE_TIMEOUT_MS, teardown);
      client.pipe(socket);
      socket.pipe(client);
    },
    (e: Error) => {
      rt.log.warn({ client: `${client.remoteAddress}:${client.remotePort}`, err: e.message }, 'upstream unavailable; closing client connection');
      if (!client.destroyed) client.resetAndDestroy();
    },
  );
}
