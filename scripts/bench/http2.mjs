#!/usr/bin/env node
// Scenario 5: HTTP/2 cleartext (prior knowledge, as gRPC clients speak it) requests/s and latency with
// h2load against an nginx h2c upstream. HAProxy speaks h2 both sides (`proto h2`); nginx can only reach an
// HTTP/2 upstream through its gRPC module (grpc_pass), which forwards any h2 request.
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { parseBenchArgs } from './lib/cli.mjs';
import { REQUEST_METRICS, REQUEST_TARGETS, runScenario } from './lib/runner.mjs';
import { runClient } from './lib/procs.mjs';
import { startNginxUpstream } from './lib/upstreams.mjs';
import { parseH2load } from './lib/parse.mjs';

const opts = parseBenchArgs(process.argv.slice(2), { clients: { type: 'string', default: '10' }, streams: { type: 'string', default: '10' } },
  '\n  --clients N         h2load connections (default 10)\n  --streams N         concurrent streams per connection (default 10)');
const seconds = opts.quick ? 2 : 8;

await runScenario({
  id: 'http2',
  title: `HTTP/2 h2c, h2load -t1 -c${opts.clients} -m${opts.streams} -D${seconds}: requests/s (higher is better), latency (lower is better)`,
  opts,
  budgetSeconds: opts.quick ? 120 : 600,
  async setup(dir) {
    const up = await startNginxUpstream(dir, { maxSeconds: 700 });
    return { services: [{ name: 'bench-h2', protocol: 'http2', upstreamPort: up.ports.h2c }] };
  },
  async measure(target, { dir, run }) {
    const log = join(dir, `h2load-${target.name}-${run}.log`);
    const out = await runClient('h2load', 'h2load',
      ['-t1', `-c${opts.clients}`, `-m${opts.streams}`, `-D${seconds}`, '--warm-up-time=1', `--log-file=${log}`, `http://127.0.0.1:${target.port('bench-h2')}/`],
      { maxSeconds: seconds + 30 });
    const r = parseH2load(out, readFileSync(log, 'utf8'));
    if (!(r.rps > 0) || r.failed >= r.total) throw new Error(`h2load: no request succeeded: ${out.trim().split('\n').filter((l) => /requests:|status codes:|traffic:/.test(l)).join(' | ')}`);
    // With -D, requests still in flight when the clock stops are reported as failed; only more is an error.
    if (r.failed > Math.max(opts.clients * opts.streams, r.total / 1000)) throw new Error(`h2load: ${r.failed} of ${r.total} requests failed or answered non-2xx`);
    return { rps: r.rps, p50: r.p50us, p99: r.p99us };
  },
  metrics: REQUEST_METRICS,
  targets: REQUEST_TARGETS,
});
