#!/usr/bin/env node
// Loopback upstream for the TCP and TLS scenarios, one process, one role per port:
//   sink: the client's first 9 bytes are a mode ('U' or 'D') and a big-endian uint64 length; in mode U the
//         server reads that many bytes then answers 'K' and closes; in mode D it sends that many bytes and closes.
//   echo: writes back whatever arrives (request/response latency, idle connections).
//   once: answers the first `--once-size` bytes with as many bytes and closes (connect-request-close rate;
//         the server closes first so TIME_WAIT stays on the server side and ephemeral ports do not run out).
// TLS variants (tls-sink, tls-once) terminate TLS 1.3 with --cert/--key.
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: o } = parseArgs({
  options: {
    sink: { type: 'string' }, echo: { type: 'string' }, once: { type: 'string' },
    'tls-sink': { type: 'string' }, 'tls-once': { type: 'string' },
    'once-size': { type: 'string', default: '64' },
    cert: { type: 'string' }, key: { type: 'string' },
  },
});
const onceSize = Number(o['once-size']);
const CHUNK = Buffer.alloc(1 << 20, 0x61);

function sink(sock) {
  let header = Buffer.alloc(0);
  let mode;
  let left = 0n;
  sock.on('error', () => {});
  sock.on('data', function onData(d) {
    if (mode === undefined) {
      header = Buffer.concat([header, d]);
      if (header.length < 9) return;
      mode = String.fromCharCode(header[0]);
      left = header.readBigUInt64BE(1);
      d = header.subarray(9);
      if (mode === 'D') {
        sock.removeListener('data', onData);
        sock.resume();
        return send(sock, left);
      }
      if (mode !== 'U') return sock.destroy();
    }
    left -= BigInt(d.length);
    if (left <= 0n) {
      sock.removeListener('data', onData);
      sock.end('K');
    }
  });
}

async function send(sock, total) {
  let left = Number(total);
  while (left > 0) {
    const n = Math.min(left, CHUNK.length);
    left -= n;
    if (!sock.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
      await new Promise((r) => {
        sock.once('drain', r);
        sock.once('close', r);
      });
      if (sock.destroyed) return;
    }
  }
  sock.end();
}

function echo(sock) {
  sock.setNoDelay(true);
  sock.on('error', () => {});
  sock.on('data', (d) => sock.write(d));
  sock.on('end', () => sock.end());
}

function once(sock) {
  sock.setNoDelay(true);
  let got = 0;
  sock.on('error', () => {});
  sock.on('data', (d) => {
    got += d.length;
    if (got >= onceSize) sock.end(CHUNK.subarray(0, onceSize));
  });
}

const listen = (server, port) => server.listen({ host: '127.0.0.1', port: Number(port), backlog: 4096 });
const tlsOpts = () => ({ cert: readFileSync(o.cert), key: readFileSync(o.key), minVersion: 'TLSv1.3' });
if (o.sink) listen(net.createServer(sink), o.sink);
if (o.echo) listen(net.createServer(echo), o.echo);
if (o.once) listen(net.createServer(once), o.once);
if (o['tls-sink']) listen(tls.createServer(tlsOpts(), sink), o['tls-sink']);
if (o['tls-once']) listen(tls.createServer(tlsOpts(), once), o['tls-once']);
process.on('SIGTERM', () => process.exit(0));
