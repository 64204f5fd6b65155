#!/usr/bin/env node
// New connections per second: --concurrency loops each connect, send --size bytes, read the answer and the
// server's close, for --seconds. Prints {"connsPerSec", "conns", "errors"}.
import { parseArgs } from 'node:util';
import { lookup } from 'node:dns/promises';
import { connector, commonOptions } from './connect.mjs';

const { values: o } = parseArgs({
  options: { ...commonOptions, seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '16' }, size: { type: 'string', default: '64' } },
});
const size = Number(o.size);
// A name (a service's hostname on the VIP path) is resolved once: the figure is connections, not lookups.
const host = (await lookup(o.host, { family: 4 })).address;
const connect = connector({ host, port: Number(o.port), tlsCa: o['tls-ca'], servername: o.servername });
const msg = Buffer.alloc(size, 0x64);
const deadline = Date.now() + Number(o.seconds) * 1000;
let conns = 0;
let errors = 0;

async function one() {
  const sock = await connect();
  await new Promise((resolve, reject) => {
    let got = 0;
    sock.on('data', (d) => (got += d.length));
    sock.on('error', reject);
    sock.on('close', () => (got >= size ? resolve() : reject(new Error(`closed after ${got} of ${size} bytes`))));
    sock.write(msg);
  });
}

async function loop() {
  while (Date.now() < deadline) {
    try {
      await one();
      conns++;
    } catch (e) {
      if (++errors > 100) throw new Error(`too many failed connections; last: ${e.message}`);
    }
  }
}

const t0 = process.hrtime.bigint();
await Promise.all(Array.from({ length: Number(o.concurrency) }, loop));
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
process.stdout.write(JSON.stringify({ connsPerSec: conns / seconds, conns, errors }) + '\n');
