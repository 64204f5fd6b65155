#!/usr/bin/env node
// Scenario 4: HTTP/1.1 keep-alive requests/s and latency with wrk against an nginx upstream returning a
// small static body. nginx as a proxy keeps upstream connections alive (`keepalive`), as a tuned user would.
import { parseBenchArgs } from './lib/cli.mjs';
import { REQUEST_METRICS, REQUEST_TARGETS, runScenario } from './lib/runner.mjs';
import { runClient } from './lib/procs.mjs';
import { startNginxUpstream } from './lib/upstreams.mjs';
import { parseWrk } from './lib/parse.mjs';

const opts = parseBenchArgs(process.argv.slice(2), { connections: { type: 'string', default: '50' } },
  '\n  --connections N     wrk connections (default 50)');
const seconds = opts.quick ? 2 : 8;

await runScenario({
  id: 'http1',
  title: `HTTP/1.1 keep-alive, wrk -t1 -c${opts.connections} -d${seconds}s: requests/s (higher is better), latency (lower is better)`,
  opts,
  budgetSeconds: opts.quick ? 120 : 600,
  async setup(dir) {
    const up = await startNginxUpstream(dir, { maxSeconds: 700 });
    return { services: [{ name: 'bench-http', protocol: 'http', upstreamPort: up.ports.http1 }] };
  },
  async measure(target) {
    const out = await runClient('wrk', 'wrk',
      ['-t1', `-c${opts.connections}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${target.port('bench-http')}/`],
      { maxSeconds: seconds + 30 });
    const r = parseWrk(out);
    if (r.errors > 0) throw new Error(`wrk reported ${r.errors} socket errors or non-2xx answers`);
    return { rps: r.rps, p50: r.p50us, p99: r.p99us };
  },
  metrics: REQUEST_METRICS,
  targets: REQUEST_TARGETS,
});
