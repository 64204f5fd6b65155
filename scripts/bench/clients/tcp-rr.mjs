#!/usr/bin/env node
// Request/response latency over one connection to the echo upstream: --count round trips of --size bytes,
// after --warmup unmeasured ones. Prints {"p50us", "p99us", "count"}.
import { parseArgs } from 'node:util';
import { connector, commonOptions } from './connect.mjs';

const { values: o } = parseArgs({
  options: { ...commonOptions, count: { type: 'string', default: '20000' }, warmup: { type: 'string', default: '1000' }, size: { type: 'string', default: '64' } },
});
const size = Number(o.size);
const count = Number(o.count);
const warmup = Number(o.warmup);
const sock = await connector({ port: Number(o.port), tlsCa: o['tls-ca'], servername: o.servername })();
const msg = Buffer.alloc(size, 0x63);
const samples = new Float64Array(count);
let got = 0;
let i = 0;
let t0 = 0n;
await new Promise((resolve, reject) => {
  sock.on('error', reject);
  sock.on('close', () => reject(new Error(`connection closed after ${i} round trips`)));
  sock.on('data', (d) => {
    got += d.length;
    if (got < size) return;
    got -= size;
    if (i >= warmup) samples[i - warmup] = Number(process.hrtime.bigint() - t0) / 1e3;
    i++;
    if (i >= warmup + count) return resolve();
    t0 = process.hrtime.bigint();
    sock.write(msg);
  });
  t0 = process.hrtime.bigint();
  sock.write(msg);
});
sock.destroy();
samples.sort();
const at = (p) => samples[Math.min(count, Math.max(1, Math.ceil((p / 100) * count))) - 1];
process.stdout.write(JSON.stringify({ p50us: at(50), p99us: at(99), count }) + '\n');
