#!/usr/bin/env node
/**
 * DNS resolver load test: meshext's embedded resolver against dnsmasq serving the same owned names,
 * measured in the same run with the same client (dnsperf, one thread, many outstanding queries over UDP).
 * Each run measures both targets (order alternating), reports the median queries/s and the ratio.
 *
 *   node scripts/bench/dns.mjs [--runs 5] [--seconds 4] [--names 1000] [--outstanding 200]
 *
 * Needs `npm run build:ts` (imports dist/) and dnsperf + dnsmasq (scripts/install-deps.sh).
 */
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, writeFileSync, rmSync, chmodSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '4' },
    names: { type: 'string', default: '1000' },
    outstanding: { type: 'string', default: '200' },
  },
});
const RUNS = Math.min(Math.max(Number(values.runs), 1), 20);
const SECONDS = Math.min(Math.max(Number(values.seconds), 1), 30);
const NAMES = Math.min(Math.max(Number(values.names), 1), 60000);
const OUTSTANDING = Math.min(Math.max(Number(values.outstanding), 1), 5000);

const root = resolve(new URL('../..', import.meta.url).pathname);
const dist = join(root, 'dist/src/dns/index.js');
for (const [what, ok, fix] of [
  ['dist/src/dns/index.js', existsSync(dist), 'run `npm run build:ts`'],
  ['dnsperf', spawnSync('dnsperf', ['-h']).error === undefined, 'run scripts/install-deps.sh (package dnsperf)'],
  ['dnsmasq', spawnSync('dnsmasq', ['--version']).error === undefined, 'run scripts/install-deps.sh (package dnsmasq-base)'],
]) {
  if (!ok) {
    console.error(`bench/dns: ${what} not found; ${fix}`);
    process.exit(2);
  }
}

const children = new Set();
const dir = mkdtempSync(join(tmpdir(), 'meshext-bench-dns-'));
chmodSync(dir, 0o755); // dnsmasq drops to "nobody" and re-reads hosts files as that user
function cleanup() {
  for (const c of children) c.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

// The same owned names for both: name-i.bench.mesh.local → 242.x.y.z
const names = Array.from({ length: NAMES }, (_, i) => ({ name: `name-${i}.bench.mesh.local`, ip: `242.${((i + 1) >> 16) & 255}.${((i + 1) >> 8) & 255}.${(i + 1) & 255}` }));
const hostsFile = join(dir, 'hosts');
writeFileSync(hostsFile, names.map((n) => `${n.ip} ${n.name}`).join('\n') + '\n');
chmodSync(hostsFile, 0o644);
const queryFile = join(dir, 'queries.txt');
writeFileSync(queryFile, names.map((n) => `${n.name} A`).join('\n') + '\n');

/** A free UDP+TCP-capable port on `address` (bound then released). */
async function freePort(address) {
  const s = dgram.createSocket('udp4');
  await new Promise((r) => s.bind(0, address, r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Resolves once a query for the first name is answered (the server is ready). */
async function waitReady(address, port) {
  const header = Buffer.from('123401000001000000000000', 'hex'); // id 0x1234, RD, one question
  const name = names[0].name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const msg = Buffer.concat([header, ...name, Buffer.from([0, 0, 1, 0, 1])]);
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((res) => {
      const s = dgram.createSocket('udp4');
      const t = setTimeout(() => (s.close(), res(false)), 100);
      s.on('message', (m) => (clearTimeout(t), s.close(), res((m.readUInt16BE(2) & 0xf) === 0 && m.readUInt16BE(6) > 0)));
      s.send(msg, port, address);
    });
    if (ok) return;
  }
  throw new Error(`server on ${address}:${port} never answered`);
}

async function startMeshext(address, port) {
  const code = `
    import { DnsServer } from ${JSON.stringify(dist)};
    const names = JSON.parse(process.env.BENCH_NAMES);
    const s = new DnsServer({ listen: [{ address: ${JSON.stringify(address)}, port: ${port} }], upstreams: [] });
    await s.start();
    s.setRecords(new Map(names.map((n) => [n.name, { v4: [n.ip], v6: [] }])));
    process.on('SIGTERM', () => s.stop().then(() => process.exit(0)));
  `;
  const c = spawn(process.execPath, ['--input-type=module', '-e', code], { env: { ...process.env, BENCH_NAMES: JSON.stringify(names) }, stdio: ['ignore', 'inherit', 'inherit'] });
  children.add(c);
  c.on('exit', () => children.delete(c));
  await waitReady(address, port);
  return c;
}

async function startDnsmasq(address, port) {
  const args = ['--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--addn-hosts=${hostsFile}`, `--listen-address=${address}`, '--bind-interfaces', `--port=${port}`, '--local-ttl=30', '--cache-size=10000', '--pid-file=', '--log-facility=-'];
  const c = spawn('dnsmasq', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  c.stderr.on('data', (d) => (err += d));
  children.add(c);
  c.on('exit', (code) => {
    children.delete(c);
    if (code) console.error(`dnsmasq exited ${code}: ${err.trim()}`);
  });
  await waitReady(address, port);
  return c;
}

/** One dnsperf measurement; returns queries/s and the share of NOERROR answers. */
function dnsperf(address, port, seconds = SECONDS) {
  const r = spawnSync('dnsperf', ['-s', address, '-p', String(port), '-d', queryFile, '-l', String(seconds), '-q', String(OUTSTANDING), '-c', '8', '-T', '1', '-t', '2'], { encoding: 'utf8', timeout: (SECONDS + 15) * 1000 });
  const out = r.stdout ?? '';
  const qps = Number(/Queries per second:\s+([\d.]+)/.exec(out)?.[1]);
  const noerror = /NOERROR \d+ \(([\d.]+)%\)/.exec(out)?.[1];
  const lost = /Queries lost:\s+(\d+)/.exec(out)?.[1];
  if (!Number.isFinite(qps)) throw new Error(`dnsperf failed against ${address}:${port}: ${out}${r.stderr ?? ''}`);
  return { qps, noerror: Number(noerror ?? 0), lost: Number(lost ?? 0) };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const targets = {
  meshext: { address: '127.0.0.1', start: startMeshext },
  dnsmasq: { address: '127.0.0.53', start: startDnsmasq },
};
const results = { meshext: [], dnsmasq: [] };
try {
  for (const [name, t] of Object.entries(targets)) {
    t.port = await freePort(t.address);
    t.proc = await t.start(t.address, t.port);
    dnsperf(t.address, t.port, 1); // warm-up (JIT, caches); not recorded
  }
  for (let run = 0; run < RUNS; run++) {
    const order = run % 2 ? ['dnsmasq', 'meshext'] : ['meshext', 'dnsmasq'];
    for (const name of order) {
      const t = targets[name];
      const r = dnsperf(t.address, t.port);
      if (r.noerror < 99.9) throw new Error(`${name}: only ${r.noerror}% NOERROR answers; the benchmark would measure errors`);
      results[name].push(r);
      console.log(`run ${run + 1}/${RUNS} ${name.padEnd(8)} ${r.qps.toFixed(0).padStart(8)} q/s  lost ${r.lost}`);
    }
  }
} finally {
  cleanup();
}

const m = median(results.meshext.map((r) => r.qps));
const d = median(results.dnsmasq.map((r) => r.qps));
console.log('');
console.log(`DNS owned-name A queries, UDP, dnsperf -T 1 -c 8 -q ${OUTSTANDING}, ${NAMES} names, ${RUNS} runs x ${SECONDS} s`);
console.log('| target  | median q/s | runs (q/s) |');
console.log('| ------- | ---------- | ---------- |');
for (const [name, med] of [['meshext', m], ['dnsmasq', d]]) {
  console.log(`| ${name.padEnd(7)} | ${med.toFixed(0).padStart(10)} | ${results[name].map((r) => r.qps.toFixed(0)).join(', ')} |`);
}
console.log(`ratio meshext/dnsmasq: ${(m / d).toFixed(2)}`);
