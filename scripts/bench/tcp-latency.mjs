#!/usr/bin/env node
// Scenario 2: TCP request/response latency (64-byte ping-pong over one connection, p50/p99) and new
// connections per second (connect, one 64-byte request, answer, server closes).
import { join } from 'node:path';
import { parseBenchArgs } from './lib/cli.mjs';
import { runScenario } from './lib/runner.mjs';
import { runClient } from './lib/procs.mjs';
import { startNodeUpstream, CLIENTS } from './lib/upstreams.mjs';

const opts = parseBenchArgs(process.argv.slice(2), { concurrency: { type: 'string', default: '16' } },
  '\n  --concurrency N     parallel connect loops in the connection-rate test (default 16)');
const count = opts.quick ? 3000 : 20000;
const seconds = opts.quick ? 2 : 5;
const last = (text) => JSON.parse(text.trim().split('\n').pop());

await runScenario({
  id: 'tcp-latency',
  title: `Plain TCP: 64-byte round trips (${count} per run, one connection) and new connections/s (${seconds}s, ${opts.concurrency} loops)`,
  opts,
  budgetSeconds: opts.quick ? 120 : 600,
  async setup() {
    const up = await startNodeUpstream(['echo', 'once'], { maxSeconds: 700 });
    return {
      services: [
        { name: 'bench-echo', protocol: 'tcp', upstreamPort: up.ports.echo },
        { name: 'bench-once', protocol: 'tcp', upstreamPort: up.ports.once },
      ],
    };
  },
  async measure(target) {
    const rr = last(await runClient('tcp-rr', process.execPath,
      [join(CLIENTS, 'tcp-rr.mjs'), '--port', String(target.port('bench-echo')), '--count', String(count)], { maxSeconds: 120 }));
    const cpu0 = target.cpuMs();
    const cr = last(await runClient('tcp-connrate', process.execPath,
      [join(CLIENTS, 'tcp-connrate.mjs'), '--port', String(target.port('bench-once')), '--seconds', String(seconds), '--concurrency', opts.concurrency],
      { maxSeconds: seconds + 60 }));
    // The proxy's own CPU per connection (the machine is shared by client, upstream and proxy).
    const cpuUs = ((target.cpuMs() - cpu0) * 1000) / cr.conns;
    return { p50: rr.p50us, p99: rr.p99us, cps: cr.connsPerSec, cpuUs };
  },
  metrics: [
    { key: 'p50', label: 'rtt p50 us', higherIsBetter: false },
    { key: 'p99', label: 'rtt p99 us', higherIsBetter: false },
    { key: 'cps', label: 'conns/s', higherIsBetter: true },
    { key: 'cpuUs', label: 'proxy CPU us/conn', higherIsBetter: false },
  ],
  targets: [],
});
