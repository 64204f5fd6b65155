// How the load clients open a connection: plain TCP, or TLS 1.3 verified against a CA when the client
// itself is the TLS originator (the "direct" baseline of the TLS scenario).
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';

/** Returns `() => Promise<Socket>` connecting to host (an IP address, default 127.0.0.1):port as configured. */
export function connector({ host = '127.0.0.1', port, tlsCa, servername = 'localhost' }) {
  const ca = tlsCa ? readFileSync(tlsCa) : undefined;
  return () =>
    new Promise((resolve, reject) => {
      const sock = ca
        ? tls.connect({ host, port, ca, servername, minVersion: 'TLSv1.3' }, () => resolve(sock))
        : net.connect({ host, port }, () => resolve(sock));
      sock.setNoDelay(true);
      sock.once('error', reject);
    });
}

/** Common options of every client. */
export const commonOptions = {
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string' },
  'tls-ca': { type: 'string' },
  servername: { type: 'string', default: 'localhost' },
};
