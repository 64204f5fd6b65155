/**
 * Client codec detection (Envoy's codec AUTO): an HTTP/2 prior-knowledge client opens with the fixed
 * connection preface, anything else is treated as HTTP/1.x. The peeked bytes are pushed back so the
 * chosen server parses the stream from its first byte.
 */
import type net from 'node:net';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** How long a client may stay silent before we give up guessing its protocol (like a headers timeout). */
export const SNIFF_TIMEOUT_MS = 60_000;

/** Reads just enough of `sock` to tell HTTP/2 from HTTP/1.x, unshifts it, and calls `done` with the socket paused. */
export function sniffHttp2(sock: net.Socket, done: (h2: boolean) => void): void {
  let buf: Buffer = Buffer.alloc(0);
  let settled = false;
  const timer = setTimeout(() => sock.destroy(), SNIFF_TIMEOUT_MS);
  timer.unref();
  const cleanup = (): void => {
    settled = true;
    clearTimeout(timer);
    sock.removeListener('data', onData);
    sock.removeListener('end', onEnd);
    sock.removeListener('close', cleanup);
  };
  const onData = (d: Buffer): void => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    const n = Math.min(buf.length, PREFACE.length);
    const prefix = buf.subarray(0, n).equals(PREFACE.subarray(0, n));
    if (prefix && buf.length < PREFACE.length) return;
    cleanup();
    sock.pause();
    sock.unshift(buf);
    // Hand over only after this 'data' dispatch unwinds: the stream's flow loop would otherwise see the
    // new owner's resume() and emit the unshifted bytes again to nobody (the HTTP/2 session reads its
    // socket's buffer on the next tick instead of listening for 'data').
    process.nextTick(() => {
      if (!sock.destroyed) done(prefix);
    });
  };
  // A client that half-closes before saying anything useful has no request to serve.
  const onEnd = (): void => {
    if (settled) return;
    cleanup();
    sock.destroy();
  };
  sock.on('data', onData);
  sock.once('end', onEnd);
  sock.once('close', cleanup);
  sock.resume();
}
