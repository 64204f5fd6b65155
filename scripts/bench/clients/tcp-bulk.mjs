#!/usr/bin/env node
// Bulk transfer through a target to the upstream sink: --streams parallel connections move --bytes in total
// (split evenly) in --mode up (client sends, sink acknowledges the last byte) or down (sink sends).
// Prints {"seconds", "bytes", "MBps"} where MB = 10^6 bytes; time runs from the first connect to the last
// stream's completion, so proxy buffering cannot flatter the figure.
import { parseArgs } from 'node:util';
import { connector, commonOptions } from './connect.mjs';

const { values: o } = parseArgs({
  options: { ...commonOptions, streams: { type: 'string', default: '4' }, bytes: { type: 'string' }, mode: { type: 'string', default: 'up' } },
});
const streams = Number(o.streams);
const per = Math.floor(Number(o.bytes) / streams);
const connect = connector({ port: Number(o.port), tlsCa: o['tls-ca'], servername: o.servername });
const CHUNK = Buffer.alloc(1 << 20, 0x62);

async function upload() {
  const sock = await connect();
  const header = Buffer.alloc(9);
  header.write('U', 0);
  header.writeBigUInt64BE(BigInt(per), 1);
  const acked = new Promise((resolve, reject) => {
    sock.on('data', (d) => (d.includes(0x4b) ? resolve() : undefined));
    sock.on('error', reject);
    sock.on('close', () => reject(new Error('connection closed before the sink acknowledged')));
  });
  sock.write(header);
  let left = per;
  while (left > 0) {
    const n = Math.min(left, CHUNK.length);
    left -= n;
    if (!sock.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) await new Promise((r) => sock.once('drain', r));
  }
  await acked;
  sock.destroy();
}

async function download() {
  const sock = await connect();
  const header = Buffer.alloc(9);
  header.write('D', 0);
  header.writeBigUInt64BE(BigInt(per), 1);
  let got = 0;
  await new Promise((resolve, reject) => {
    sock.on('data', (d) => {
      got += d.length;
      if (got >= per) resolve();
    });
    sock.on('error', reject);
    sock.on('close', () => (got >= per ? resolve() : reject(new Error(`closed after ${got} of ${per} bytes`))));
    sock.write(header);
  });
  sock.destroy();
}

const t0 = process.hrtime.bigint();
await Promise.all(Array.from({ length: streams }, () => (o.mode === 'down' ? download() : upload())));
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const bytes = per * streams;
process.stdout.write(JSON.stringify({ seconds, bytes, MBps: bytes / seconds / 1e6 }) + '\n');
