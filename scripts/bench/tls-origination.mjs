#!/usr/bin/env node
// Scenario 3: TLS origination. The client speaks plaintext to the target, which opens TLS 1.3 to the
// upstream and verifies it against a test CA made with openssl for this run. Direct = the client does the
// TLS itself. Measures bulk throughput and new connections/s (connect, request, answer, server closes).
// Every target keeps its default TLS session resumption (HAProxy and nginx resume upstream sessions).
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { parseBenchArgs } from './lib/cli.mjs';
import { runScenario } from './lib/runner.mjs';
import { runClient } from './lib/procs.mjs';
import { startNodeUpstream, startNginxTlsFront, CLIENTS } from './lib/upstreams.mjs';
import { makeTestPki } from './lib/tls.mjs';

const opts = parseBenchArgs(process.argv.slice(2), { mib: { type: 'string' }, concurrency: { type: 'string', default: '16' }, 'node-tls': { type: 'boolean', default: false } },
  '\n  --mib N             MiB moved per run (default 512, --quick 64)\n  --concurrency N     parallel connect loops (default 16)\n  --node-tls          terminate upstream TLS in Node instead of nginx');
const mib = Number(opts.mib ?? (opts.quick ? 64 : 512));
const seconds = opts.quick ? 2 : 5;
const last = (text) => JSON.parse(text.trim().split('\n').pop());

await runScenario({
  id: 'tls-origination',
  title: `TLS origination (plaintext in, TLS 1.3 out, CA-verified): ${mib} MiB download over 4 streams, new connections/s (${seconds}s, ${opts.concurrency} loops)`,
  opts,
  budgetSeconds: opts.quick ? 120 : 600,
  async setup(dir) {
    const pkiDir = join(dir, 'pki');
    mkdirSync(pkiDir, { mode: 0o755 });
    const pki = makeTestPki(pkiDir);
    const plain = await startNodeUpstream(['sink', 'once'], { maxSeconds: 700 });
    const up = opts['node-tls']
      ? await startNodeUpstream(['tls-sink', 'tls-once'], { pki, maxSeconds: 700 })
      : await startNginxTlsFront(dir, pki, { 'tls-sink': plain.ports.sink, 'tls-once': plain.ports.once }, { maxSeconds: 700 });
    return {
      services: [
        { name: 'bench-tls-sink', protocol: 'tcp', upstreamPort: up.ports['tls-sink'], tls: pki },
        { name: 'bench-tls-once', protocol: 'tcp', upstreamPort: up.ports['tls-once'], tls: pki },
      ],
      notes: [opts['node-tls'] ? 'upstream TLS terminated by Node' : 'upstream TLS terminated by nginx stream in front of the Node sink'],
    };
  },
  async measure(target) {
    const tlsArgs = (svc) => (target.clientTls(svc) ? ['--tls-ca', target.clientTls(svc)] : []);
    const bulk = last(await runClient('tls-bulk', process.execPath,
      [join(CLIENTS, 'tcp-bulk.mjs'), '--port', String(target.port('bench-tls-sink')), '--bytes', String(mib * 1024 * 1024), '--streams', '4', '--mode', 'down', ...tlsArgs('bench-tls-sink')],
      { maxSeconds: 120 }));
    const cpu0 = target.cpuMs();
    const cr = last(await runClient('tls-connrate', process.execPath,
      [join(CLIENTS, 'tcp-connrate.mjs'), '--port', String(target.port('bench-tls-once')), '--seconds', String(seconds), '--concurrency', opts.concurrency, ...tlsArgs('bench-tls-once')],
      { maxSeconds: seconds + 60 }));
    // The proxy's own CPU per connection: the machine is shared by client, upstream and proxy, so this is
    // the figure that says how much of the connection rate the proxy's efficiency accounts for.
    const cpuUs = ((target.cpuMs() - cpu0) * 1000) / cr.conns;
    return { mbps: bulk.MBps, cps: cr.connsPerSec, cpuUs };
  },
  metrics: [
    { key: 'mbps', label: 'download MB/s', higherIsBetter: true },
    { key: 'cps', label: 'new conns/s', higherIsBetter: true },
    { key: 'cpuUs', label: 'proxy CPU us/conn', higherIsBetter: false },
  ],
  targets: [
    { label: 'new conns/s >= best peer', metric: 'cps', op: '>=', factor: 1, against: 'peer' },
    { label: 'proxy CPU per new TLS conn <= nginx', metric: 'cpuUs', op: '<=', factor: 1, against: 'nginx' },
  ],
});
