#!/usr/bin/env node
// Scenario 1: plain TCP bulk throughput, client -> target -> sink, upload and download, several streams.
import { join } from 'node:path';
import { parseBenchArgs } from './lib/cli.mjs';
import { runScenario } from './lib/runner.mjs';
import { runClient } from './lib/procs.mjs';
import { startNodeUpstream, CLIENTS } from './lib/upstreams.mjs';

const opts = parseBenchArgs(process.argv.slice(2), { mib: { type: 'string' }, streams: { type: 'string', default: '4' } },
  '\n  --mib N             MiB moved per direction per run (default 1024, --quick 64)\n  --streams N         parallel connections (default 4)');
const mib = Number(opts.mib ?? (opts.quick ? 64 : 1024));
const bytes = mib * 1024 * 1024;

await runScenario({
  id: 'tcp-throughput',
  title: `Plain TCP bulk throughput: ${mib} MiB over ${opts.streams} streams, MB/s (higher is better)`,
  opts,
  budgetSeconds: opts.quick ? 120 : 900,
  async setup(dir) {
    const up = await startNodeUpstream(['sink'], { maxSeconds: 1000 });
    return { services: [{ name: 'bench-tcp', protocol: 'tcp', upstreamPort: up.ports.sink }] };
  },
  async measure(target) {
    const out = {};
    for (const mode of ['up', 'down']) {
      const text = await runClient(`tcp-bulk ${mode}`, process.execPath,
        [join(CLIENTS, 'tcp-bulk.mjs'), '--port', String(target.port('bench-tcp')), '--bytes', String(bytes), '--streams', opts.streams, '--mode', mode],
        { maxSeconds: 120 });
      out[mode] = JSON.parse(text.trim().split('\n').pop()).MBps;
    }
    return out;
  },
  metrics: [
    { key: 'up', label: 'upload MB/s', higherIsBetter: true },
    { key: 'down', label: 'download MB/s', higherIsBetter: true },
  ],
  targets: [
    { label: 'upload >= 0.9x best peer', metric: 'up', op: '>=', factor: 0.9, against: 'peer' },
    { label: 'download >= 0.9x best peer', metric: 'down', op: '>=', factor: 0.9, against: 'peer' },
  ],
});
