#!/usr/bin/env node
// Opens --count connections through a target to the echo upstream, proves each one end to end with a
// one-byte echo, prints {"open": N} and then holds them idle until killed (the caller samples the
// proxy's RSS meanwhile). Connections are opened in batches so the proxy's accept queue is not the test.
import { parseArgs } from 'node:util';
import { connector, commonOptions } from './connect.mjs';

const { values: o } = parseArgs({ options: { ...commonOptions, count: { type: 'string' }, batch: { type: 'string', default: '200' } } });
const connect = connector({ port: Number(o.port) });
const count = Number(o.count);
const batch = Number(o.batch);
const held = [];

async function open() {
  const sock = await connect();
  await new Promise((resolve, reject) => {
    sock.once('data', resolve);
    sock.once('error', reject);
    sock.once('close', () => reject(new Error('closed before the echo')));
    sock.write('x');
  });
  sock.removeAllListeners('close');
  sock.on('error', () => {});
  held.push(sock);
}

for (let i = 0; i < count; i += batch) {
  await Promise.all(Array.from({ length: Math.min(batch, count - i) }, open));
}
process.stdout.write(JSON.stringify({ open: held.length }) + '\n');
process.on('SIGTERM', () => process.exit(0));
setInterval(() => {}, 1 << 30);
