#!/usr/bin/env node
// Scenario: the cost of policies. meshext-policies is meshext with the full policy set of lib/policies.mjs
// (MeshTimeout, MeshRetry, MeshCircuitBreaker, MeshHealthCheck, MeshAccessLog to a JSON file) selecting the
// service; meshext is the same agent without policies, measured in the same run, and the peers are HAProxy and
// nginx without any such features turned on. Three upstream shapes: HTTP/1.1 plaintext, HTTP/1.1 over verified
// TLS 1.3 (origination), and HTTP/2 cleartext. Target: meshext-policies >= 0.9x meshext's own req/s and >= 0.9x
// the best peer's. The access log must have a line for every request (or the agent counted it dropped): a
// policy that did nothing would otherwise win.
import { closeSync, mkdirSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseBenchArgs } from './lib/cli.mjs';
import { REQUEST_METRICS, runScenario } from './lib/runner.mjs';
import { runClient } from './lib/procs.mjs';
import { startNginxUpstream, startNginxTlsUpstream } from './lib/upstreams.mjs';
import { makeTestPki } from './lib/tls.mjs';
import { parseH2load, parseWrk } from './lib/parse.mjs';

const SHAPES = ['http', 'https', 'http2'];
const opts = parseBenchArgs(process.argv.slice(2), {
  connections: { type: 'string', default: '50' },
  shapes: { type: 'string', default: SHAPES.join(',') },
}, `\n  --connections N     wrk connections, h2load: N/5 connections x 10 streams (default 50)\n  --shapes LIST       subset of ${SHAPES.join(',')} (default: all)`);
const shapes = opts.shapes.split(',').map((s) => s.trim()).filter(Boolean);
for (const s of shapes) if (!SHAPES.includes(s)) {
  process.stderr.write(`bench: --shapes: unknown shape "${s}" (known: ${SHAPES.join(', ')})\n`);
  process.exit(2);
}
if (!opts.targetsGiven) opts.targets = ['haproxy', 'nginx', 'meshext', 'meshext-policies'];
const seconds = opts.quick ? 2 : 8;
const connections = Number(opts.connections);

const METRICS = [
  ...REQUEST_METRICS,
  // Context, no ratio: the share of requests the access log accounts for (a line, or counted as dropped).
  { key: 'logged', label: 'access-logged %', higherIsBetter: true, noRatio: true },
];
const TARGETS = [
  { label: 'req/s >= 0.9x meshext without policies', metric: 'rps', op: '>=', factor: 0.9, against: 'meshext' },
  { label: 'req/s >= 0.9x best peer', metric: 'rps', op: '>=', factor: 0.9, against: 'peer' },
];

/** A file's size, 0 when it does not exist yet. */
function sizeOf(file) {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Lines in a file from byte `from` on (the access log grows across runs and warm-ups). */
function linesFrom(file, from) {
  const size = sizeOf(file);
  if (size <= from) return 0;
  const fd = openSync(file, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  let lines = 0;
  for (let pos = from; pos < size; ) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
    if (n <= 0) break;
    for (let i = 0; i < n; i++) if (buf[i] === 10) lines++;
    pos += n;
  }
  closeSync(fd);
  return lines;
}

/** A counter's sum over its series in Prometheus text (0 when absent). */
function counter(text, name) {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name + '{') || line.startsWith(name + ' ')) sum += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0;
  return sum;
}

for (const shape of shapes) {
  const service = `bench-${shape}`;
  await runScenario({
    id: `policies-${shape}`,
    subject: 'meshext-policies',
    title: `Policies on ${shape === 'http' ? 'HTTP/1.1' : shape === 'https' ? 'HTTPS origination (HTTP/1.1 in, TLS 1.3 out)' : 'HTTP/2 h2c'}, ${shape === 'http2' ? `h2load -c${Math.max(1, connections / 5)} -m10` : `wrk -t1 -c${connections}`} ${seconds}s: meshext with the full policy set against itself without and the peers`,
    opts,
    budgetSeconds: opts.runs * opts.targets.length * (seconds + 30) + 120,
    async setup(dir) {
      if (shape === 'https') {
        const d = join(dir, 'pki');
        mkdirSync(d, { mode: 0o755 });
        const pki = makeTestPki(d);
        const up = await startNginxTlsUpstream(dir, pki, { maxSeconds: opts.runs * 200 + 300 });
        return { services: [{ name: service, protocol: 'http', upstreamPort: up.ports.https, tls: pki }] };
      }
      const up = await startNginxUpstream(dir, { maxSeconds: opts.runs * 200 + 300 });
      return {
        services: [{ name: service, protocol: shape === 'http2' ? 'http2' : 'http', upstreamPort: shape === 'http2' ? up.ports.h2c : up.ports.http1 }],
        notes: ['policies: lib/policies.mjs (timeout, retry on 5xx/ConnectFailure/Reset, circuit breaker with outlier detection, TCP health check every 1 s, JSON access log to a file)'],
      };
    },
    async measure(target, { dir, run }) {
      const port = target.port(service);
      const policies = target.name === 'meshext-policies';
      const logFile = policies ? join(target.dir, 'access.log') : '';
      const statsBefore = policies ? await target.stats() : '';
      const logBefore = policies ? sizeOf(logFile) : 0;
      let r;
      if (shape === 'http2') {
        const log = join(dir, `h2load-${target.name}-${run}.log`);
        const clients = Math.max(1, Math.round(connections / 5));
        const out = await runClient('h2load', 'h2load', ['-t1', `-c${clients}`, '-m10', `-D${seconds}`, `--log-file=${log}`, `http://127.0.0.1:${port}/`], { maxSeconds: seconds + 30 });
        const h = parseH2load(out, readFileSync(log, 'utf8'));
        if (!(h.rps > 0) || h.failed > Math.max(clients * 10, h.total / 1000)) throw new Error(`h2load: ${h.failed} of ${h.total} requests failed or answered non-2xx`);
        r = { rps: h.rps, p50: h.p50us, p99: h.p99us, requests: h.total };
      } else {
        const out = await runClient('wrk', 'wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`], { maxSeconds: seconds + 30 });
        const w = parseWrk(out);
        if (w.errors > 0) throw new Error(`wrk reported ${w.errors} socket errors or non-2xx answers`);
        r = { rps: w.rps, p50: w.p50us, p99: w.p99us, requests: w.requests };
      }
      let logged = NaN;
      if (policies) {
        // Lines still queued in the writer reach the file within a moment.
        await new Promise((res) => setTimeout(res, 500));
        const lines = linesFrom(logFile, logBefore);
        const dropped = counter(await target.stats(), 'meshext_access_log_dropped_total') - counter(statsBefore, 'meshext_access_log_dropped_total');
        logged = (100 * (lines + dropped)) / r.requests;
        if (lines === 0) throw new Error(`the access log ${logFile} got no line for ${r.requests} requests`);
      }
      return { rps: r.rps, p50: r.p50, p99: r.p99, logged };
    },
    metrics: METRICS,
    targets: TARGETS,
  });
}
