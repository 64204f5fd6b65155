#!/usr/bin/env node
/**
 * Probe (issue 17): can slow local TCP DNS clients starve everyone else of the resolver's TCP side?
 *
 * `--attackers` connections (default 256) trickle a query one byte every `--trickle-ms` (default 3000) and
 * reconnect 100 ms after the resolver closes them, spread over `--sources` loopback addresses
 * (127.0.1.1, 127.0.1.2, ...). Meanwhile a victim asks one TCP query every 500 ms from another address
 * (127.0.0.2) and one from the first attacker address (a neighbour sharing the attacker's IP, as every
 * process of a host shares 127.0.0.1). Prints how many attacker connections the resolver held and how many
 * victim queries were answered, once a second and as a summary (JSON on the last line).
 *
 * Against a running resolver: --target 127.0.0.1:15053 (any reply, even NXDOMAIN, counts as answered).
 * Without --target it starts one from `--dist DIR` (default: this repository's dist/), so the same attack
 * can be run against another build, e.g. --dist /path/to/other/checkout/dist.
 *
 * Not part of npm test: it runs for `--seconds` (default 20).
 */
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';

const { values: args } = parseArgs({
  options: {
    target: { type: 'string' },
    dist: { type: 'string' },
    attackers: { type: 'string', default: '256' },
    sources: { type: 'string', default: '1' },
    'trickle-ms': { type: 'string', default: '3000' },
    seconds: { type: 'string', default: '20' },
    name: { type: 'string', default: 'probe.svc.mesh.local' },
  },
});

function positive(name, text) {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`dns-tcp-starvation: --${name}=${text} must be a whole number of at least 1`);
    process.exit(2);
  }
  return n;
}
const ATTACKERS = positive('attackers', args.attackers);
const SOURCES = positive('sources', args.sources);
const TRICKLE_MS = positive('trickle-ms', args['trickle-ms']);
const SECONDS = positive('seconds', args.seconds);
if (SOURCES > 254) {
  console.error(`dns-tcp-starvation: --sources=${SOURCES} must be at most 254 (127.0.1.1-127.0.1.254)`);
  process.exit(2);
}

/** A DNS query for `name` type A, framed for TCP (hand-built: the probe needs no dependency). */
function framedQuery(name, id) {
  const labels = name.split('.').filter(Boolean);
  const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])), Buffer.from([0])]);
  const msg = Buffer.concat([Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), qname, Buffer.from([0, 1, 0, 1])]);
  return Buffer.concat([Buffer.from([msg.length >> 8, msg.length & 0xff]), msg]);
}

let target;
let server;
let stats;
if (args.target) {
  const m = /^(.+):(\d+)$/.exec(args.target);
  if (!m || net.isIP(m[1]) === 0) {
    console.error(`dns-tcp-starvation: --target=${args.target} must be IP:PORT, e.g. 127.0.0.1:15053`);
    process.exit(2);
  }
  target = { host: m[1], port: Number(m[2]) };
} else {
  const dist = path.resolve(args.dist ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist'));
  const { DnsServer } = await import(pathToFileURL(path.join(dist, 'src/dns/index.js')).href);
  const { Registry } = await import(pathToFileURL(path.join(dist, 'src/stats/registry.js')).href);
  stats = new Registry();
  server = new DnsServer({ listen: [{ address: '127.0.0.1', port: 0 }], upstreams: [], stats });
  await server.start();
  server.setRecords(new Map([[args.name, { v4: ['242.0.0.1'], v6: [] }]]));
  target = { host: '127.0.0.1', port: server.addresses()[0].port };
  console.log(`started a resolver from ${dist} on ${target.host}:${target.port} (its default limits)`);
}

const attackerSource = (i) => `127.0.1.${(i % SOURCES) + 1}`;
let stopping = false;
let held = 0;
let attackConnects = 0;
let attackClosedByServer = 0;
const attackSockets = new Set();

function attacker(i) {
  if (stopping) return;
  const bytes = framedQuery(args.name, i & 0xffff);
  const s = net.connect({ ...target, localAddress: attackerSource(i) });
  attackSockets.add(s);
  let sent = 0;
  let timer;
  let up = false;
  const step = () => {
    if (s.destroyed) return;
    // Trickle forever: once the query is out, start another one, a byte at a time.
    s.write(bytes.subarray(sent % bytes.length, (sent % bytes.length) + 1));
    sent++;
    timer = setTimeout(step, TRICKLE_MS);
  };
  s.on('error', () => {});
  s.on('data', () => {});
  s.on('connect', () => {
    up = true;
    held++;
    attackConnects++;
    step();
  });
  s.on('close', () => {
    clearTimeout(timer);
    attackSockets.delete(s);
    if (up) {
      held--;
      if (!stopping) attackClosedByServer++;
    }
    if (!stopping) setTimeout(() => attacker(i), 100);
  });
}

/** One TCP query from `localAddress`; resolves with the milliseconds to the reply, or undefined after 3 s. */
function victimQuery(localAddress, id) {
  const started = performance.now();
  return new Promise((resolve) => {
    const s = net.connect({ ...target, localAddress });
    let buf = Buffer.alloc(0);
    const done = (v) => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), 3000);
    s.on('error', () => done(undefined));
    s.on('close', () => done(undefined));
    s.on('connect', () => s.write(framedQuery(args.name, id)));
    s.on('data', (c) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(performance.now() - started);
    });
  });
}

const victims = { 'other address 127.0.0.2': { from: '127.0.0.2', asked: 0, answered: 0, ms: [] }, [`attacker's address ${attackerSource(0)}`]: { from: attackerSource(0), asked: 0, answered: 0, ms: [] } };
const samples = [];
console.log(`attack: ${ATTACKERS} connections from ${SOURCES} address(es), one byte every ${TRICKLE_MS} ms, ${SECONDS} s`);
for (let i = 0; i < ATTACKERS; i++) attacker(i);

let id = 1;
const victimTimer = setInterval(() => {
  for (const v of Object.values(victims)) {
    v.asked++;
    void victimQuery(v.from, id++ & 0xffff).then((ms) => {
      if (ms === undefined) return;
      v.answered++;
      v.ms.push(ms);
    });
  }
}, 500);

const started = Date.now();
await new Promise((resolve) => {
  const tick = setInterval(() => {
    const t = Math.round((Date.now() - started) / 1000);
    samples.push(held);
    const v = Object.entries(victims).map(([k, x]) => `${k} ${x.answered}/${x.asked}`).join(', ');
    console.log(`t=${String(t).padStart(3)}s held ${held}/${ATTACKERS}  victims answered: ${v}`);
    if (t >= SECONDS) {
      clearInterval(tick);
      resolve();
    }
  }, 1000);
});
clearInterval(victimTimer);
await new Promise((r) => setTimeout(r, 3100)); // let the last victim queries finish
stopping = true;
for (const s of attackSockets) s.destroy();

const steady = samples.slice(3);
const pct = (xs, p) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] : null);
const summary = {
  target: `${target.host}:${target.port}`,
  attackers: ATTACKERS,
  sources: SOURCES,
  trickleMs: TRICKLE_MS,
  seconds: SECONDS,
  heldMin: Math.min(...steady),
  heldMean: Math.round(steady.reduce((a, b) => a + b, 0) / Math.max(1, steady.length)),
  heldMax: Math.max(...steady),
  attackConnects,
  attackClosedByServer,
  victims: Object.fromEntries(
    Object.entries(victims).map(([k, v]) => [k, { asked: v.asked, answered: v.answered, p50Ms: Math.round(pct(v.ms, 0.5) ?? 0), maxMs: Math.round(pct(v.ms, 1) ?? 0) }]),
  ),
};
if (stats) {
  summary.resolver = Object.fromEntries(
    ['meshext_dns_tcp_cx_overflow_total', 'meshext_dns_tcp_cx_client_overflow_total', 'meshext_dns_tcp_cx_evicted_total', 'meshext_dns_tcp_cx_read_timeout_total', 'meshext_dns_tcp_cx_idle_timeout_total'].map((n) => [n, stats.get(n) ?? null]),
  );
}
console.log(`held (after 3 s): min ${summary.heldMin}, mean ${summary.heldMean}, max ${summary.heldMax} of ${ATTACKERS}; attacker connects ${attackConnects}, closed by the resolver ${attackClosedByServer}`);
for (const [k, v] of Object.entries(summary.victims)) console.log(`victim from ${k}: ${v.answered}/${v.asked} answered (p50 ${v.p50Ms} ms, max ${v.maxMs} ms)`);
console.log(JSON.stringify(summary));
if (server) await server.stop();
process.exit(0);
