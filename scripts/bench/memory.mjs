#!/usr/bin/env node
// Scenario 7: proxy memory. VmRSS (summed over the proxy's processes, from /proc/PID/status) when idle and
// while holding 1,000 and 10,000 idle proxied connections (each proven end to end with a one-byte echo),
// reported as KiB per idle connection. No direct row: there is no proxy to measure.
import { join } from 'node:path';
import { parseBenchArgs } from './lib/cli.mjs';
import { runScenario } from './lib/runner.mjs';
import { startProcess, lastLines, NOFILE } from './lib/procs.mjs';
import { startNodeUpstream, CLIENTS } from './lib/upstreams.mjs';
import { sleep } from './lib/net.mjs';

const opts = parseBenchArgs(process.argv.slice(2), { conns: { type: 'string' } },
  '\n  --conns A,B         connection counts (default 1000,10000; --quick 500,2000)');
// A proxy holds two descriptors per proxied connection; the hard RLIMIT_NOFILE caps what this machine allows.
const cap = Math.floor((NOFILE - 200) / 2);
const wanted = (opts.conns ?? (opts.quick ? '500,2000' : '1000,10000')).split(',').map(Number);
const counts = wanted.map((n) => Math.min(n, cap));
const notes = [];
if (counts.some((n, i) => n !== wanted[i])) notes.push(`RLIMIT_NOFILE hard limit ${NOFILE} caps idle connections at ${cap} (a proxy needs 2 fds each)`);

async function holdIdle(port, count) {
  let resolveOpen;
  const opened = new Promise((r) => (resolveOpen = r));
  const client = startProcess('idle-conns', process.execPath,
    [join(CLIENTS, 'idle-conns.mjs'), '--port', String(port), '--count', String(count)],
    { maxSeconds: 180, onStdoutLine: (l) => l.startsWith('{') && resolveOpen(JSON.parse(l)) });
  const res = await Promise.race([opened, client.exited.then((code) => ({ exited: code }))]);
  if (res.exited !== undefined) throw new Error(`idle-conns exited (${res.exited}) before opening ${count}: ${lastLines(client.stderr, 3)}`);
  return client;
}

const metrics = [{ key: 'idle', label: 'idle RSS KiB', higherIsBetter: false }];
for (const n of counts) metrics.push({ key: `rss${n}`, label: `RSS@${n} KiB`, higherIsBetter: false });
metrics.push({ key: 'perConn', label: `KiB/conn @${counts.at(-1)}`, higherIsBetter: false });

await runScenario({
  id: 'memory',
  title: `Proxy memory: RSS idle and with ${counts.join(' / ')} idle proxied TCP connections (lower is better)`,
  opts,
  targetNames: opts.targets.filter((t) => t !== 'direct'),
  budgetSeconds: opts.quick ? 180 : 900,
  // Proxies keep freed buffers in their pools; only a fresh process shows what the connections cost.
  freshPerRun: true,
  async setup() {
    const up = await startNodeUpstream(['echo'], { maxSeconds: 1000 });
    return { services: [{ name: 'bench-idle', protocol: 'tcp', upstreamPort: up.ports.echo }], notes };
  },
  async measure(target) {
    await sleep(500);
    const out = { idle: target.rss() };
    for (const n of counts) {
      const client = await holdIdle(target.port('bench-idle'), n);
      // Let lazily freed buffers and timers settle before sampling.
      await sleep(1500);
      out[`rss${n}`] = target.rss();
      await client.stop();
      await sleep(1000);
    }
    const n = counts.at(-1);
    out.perConn = (out[`rss${n}`] - out.idle) / n;
    return out;
  },
  metrics,
  targets: [{ label: 'KiB per idle connection <= 10', metric: 'perConn', op: '<=', factor: 10, against: 'absolute' }],
});
