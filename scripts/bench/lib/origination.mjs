// The shared body of the origination scenarios (https-origination, http2-tls, grpc-tls): the client speaks
// plaintext to the proxy, which opens TLS 1.3 to an nginx upstream, verifies it (test CA + server name) and
// keeps the upstream connections alive. Per target and run: a probe that checks one whole answer, a 1 s
// warm-up, then the timed load; afterwards the upstream's own request counter must have moved at least as
// far as the client's count of successes (so no error answered by a proxy is counted as throughput), and the
// proxy's CPU time over the load is divided by the requests served.
// With --vip (auto when privileged) the scenario re-runs itself in a network namespace of its own and adds
// meshext-vip: the agent reached through its eBPF redirect by clients resolving the service's name.
// --check-verify runs no load: it starts each proxy with the right CA, a wrong CA and a wrong server name
// and shows that only the first one serves.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runScenario, REQUEST_METRICS, machineInfo } from './runner.mjs';
import { runClient, stopAll, removeOnExit, treeCpuMs } from './procs.mjs';
import { startNginxTlsUpstream, HTTP_BODY, CLIENTS } from './upstreams.mjs';
import { startTarget } from './targets.mjs';
import { makeTestPki } from './tls.mjs';
import { vipProbe, inBenchNetns, runInNetns } from './vip.mjs';
import { parseWrk, parseH2load } from './parse.mjs';
import { formatTable } from './stats.mjs';
import { GRPC_PATH, grpcRequestFrame, grpcResponseFrame } from './grpc.mjs';

/** Scenario options shared by the three scripts (besides the load shape, which each script adds). */
export const ORIGINATION_OPTIONS = {
  seconds: { type: 'string' },
  'check-verify': { type: 'boolean', default: false },
  vip: { type: 'string', default: 'auto' },
};
export const ORIGINATION_USAGE = `
  --seconds N         load per target and run (default 10, --quick 3); raise it for longer runs
  --check-verify      no load: show that every proxy refuses a wrong CA and a wrong server name
  --vip auto|on|off   also measure meshext through the VIP path (target meshext-vip: clients in a
                      redirected cgroup resolve the service's name); the whole scenario then runs in a
                      network namespace of its own. auto (default): when root, cgroup v2 and bpffs allow`;

export const ORIGINATION_METRICS = [
  ...REQUEST_METRICS,
  { key: 'cpuUs', label: 'proxy CPU us/req', higherIsBetter: false },
  // Context, no ratios: new TLS connections the upstream accepted during the timed load (near 0 when a proxy
  // reuses its upstream connections), and the upstream's CPU use (100 = one core busy: the upstream limits).
  { key: 'upConns', label: 'upstream new conns', higherIsBetter: false, noRatio: true },
  { key: 'upCpu', label: 'upstream CPU %', higherIsBetter: false, noRatio: true },
];
export const ORIGINATION_TARGETS = [
  { label: 'req/s >= 1.0x best peer', metric: 'rps', op: '>=', factor: 1, against: 'peer' },
  { label: 'p99 <= 1.2x best peer', metric: 'p99', op: '<=', factor: 1.2, against: 'peer' },
];

const SERVICE = { http: 'bench-https', http2: 'bench-h2-tls', grpc: 'bench-grpc-tls' };
const UPSTREAM_PORT = { http: 'https', http2: 'h2', grpc: 'grpc' };

/**
 * spec: {id, title(seconds), protocol: 'http'|'http2'|'grpc', opts (parseBenchArgs with ORIGINATION_OPTIONS),
 *        load: {connections} for wrk or {clients, streams} for h2load, notes?}
 */
export async function runOrigination(spec) {
  const { opts, protocol } = spec;
  const seconds = Number(opts.seconds ?? (opts.quick ? 3 : 10));
  if (!(seconds >= 1 && seconds <= 3600)) {
    process.stderr.write(`bench: --seconds must be 1..3600, got ${opts.seconds}\n`);
    process.exit(2);
  }
  const vip = await vipSetting(opts);
  if (vip.on && !inBenchNetns()) process.exit(await runInNetns());
  if (vip.on && !opts.targetsGiven) opts.targets = [...opts.targets, 'meshext-vip'];
  if (opts['check-verify']) return checkVerify(spec);
  const name = SERVICE[protocol];
  let upstream;
  // Each target: probe, warm-up, load; a minute of slack per target and run for start-up and checks.
  const budgetSeconds = opts.runs * opts.targets.length * (seconds + 60) + 120;
  return runScenario({
    id: spec.id,
    title: spec.title(seconds),
    opts,
    budgetSeconds,
    async setup(dir) {
      const pki = makePki(dir, 'pki');
      upstream = await startNginxTlsUpstream(dir, pki, { maxSeconds: budgetSeconds + 60 });
      if (protocol === 'grpc') writeFileSync(join(dir, 'grpc-request.bin'), grpcRequestFrame());
      return {
        services: [{ name, protocol, upstreamPort: upstream.ports[UPSTREAM_PORT[protocol]], tls: pki }],
        notes: [
          'upstream: nginx over TLS 1.3 (one worker, test CA made with openssl for this run); the direct row is the client speaking TLS to it itself, i.e. the ceiling of client and upstream',
          'every answer counted was checked: a probe with a real client before each run (status, body' + (protocol === 'grpc' ? ', message and grpc-status' : '') + '), no non-2xx during the load, and the upstream counted at least as many requests as the client counted successes',
          ...(spec.notes ?? []),
          vip.on
            ? 'meshext-vip: the same agent with its eBPF redirect and DNS on for a cgroup of its own; the clients run in that cgroup and resolve the service name to its VIP; every target of this run shares one network namespace with only loopback'
            : `meshext through the VIP path not measured: ${vip.reason}`,
        ],
      };
    },
    async measure(target, { dir, run }) {
      const port = target.port(name);
      const caFile = target.clientTls(name);
      await probeTarget(target, name, protocol);
      await load(spec, { target, port, caFile, seconds: 1, dir, tag: `${target.name}-${run}-warm` });
      const before = await upstream.counters();
      const cpu0 = target.cpuMs();
      const upCpu0 = treeCpuMs(upstream.proc);
      const t0 = Date.now();
      const r = await load(spec, { target, port, caFile, seconds, dir, tag: `${target.name}-${run}` });
      const upCpu = ((treeCpuMs(upstream.proc) - upCpu0) * 100) / (Date.now() - t0);
      const cpu1 = target.cpuMs();
      const after = await upstream.counters();
      // The second read of the counters counts itself (one connection, one request).
      const reached = after.requests - before.requests - 1;
      const upConns = after.connections - before.connections - 1;
      if (reached < r.succeeded) {
        throw new Error(`${r.succeeded - reached} of the ${r.succeeded} answers the client counted as successes never reached the upstream (it counted ${reached} requests)`);
      }
      // The proxy's own CPU per request: client, proxy and upstream share the machine's cores.
      return { rps: r.rps, p50: r.p50, p99: r.p99, cpuUs: ((cpu1 - cpu0) * 1000) / r.succeeded, upConns, upCpu };
    },
    metrics: ORIGINATION_METRICS,
    targets: ORIGINATION_TARGETS,
  });
}

function makePki(dir, sub) {
  const d = join(dir, sub);
  mkdirSync(d, { mode: 0o755 });
  return makeTestPki(d);
}

/** --vip: {on, reason}; exits with a message when `on` was asked for and cannot be had. */
async function vipSetting(opts) {
  if (!['auto', 'on', 'off'].includes(opts.vip)) {
    process.stderr.write(`bench: --vip must be auto, on or off, got ${opts.vip}\n`);
    process.exit(2);
  }
  const asked = opts.targets.includes('meshext-vip') ? 'on' : opts.targetsGiven && opts.vip === 'auto' ? 'off' : opts.vip;
  if (asked === 'off') return { on: false, reason: opts.vip === 'off' ? '--vip off' : 'not in --targets' };
  const probed = await vipProbe();
  if (probed.ok) return { on: true };
  if (asked === 'on') {
    process.stderr.write(`bench: meshext-vip cannot run here: ${probed.reason}\n`);
    process.exit(2);
  }
  return { on: false, reason: probed.reason };
}

/** One checked request through a target, run where the target expects its clients; throws on a wrong answer. */
async function probeTarget(target, name, protocol) {
  const args = [join(CLIENTS, 'probe.mjs'), '--protocol', protocol, '--host', target.host(name), '--port', String(target.port(name))];
  if (target.clientTls(name)) args.push('--ca', target.clientTls(name));
  const out = JSON.parse((await runClient('probe', ...target.wrap(process.execPath, args), { maxSeconds: 30 })).trim().split('\n').pop());
  if (!out.ok) throw Object.assign(new Error(out.error), { answer: out.answer });
}

/** One load run against the target; returns {rps, p50, p99, succeeded} or throws on any error answer. */
async function load(spec, { target, port, caFile, seconds, dir, tag }) {
  const scheme = caFile ? 'https' : 'http';
  const origin = `${scheme}://${target.host(SERVICE[spec.protocol])}:${port}`;
  if (spec.protocol === 'http') {
    const out = await runClient('wrk', ...target.wrap('wrk', ['-t1', `-c${spec.load.connections}`, `-d${seconds}s`, '--latency', `${origin}/`]), { maxSeconds: seconds + 30 });
    const r = parseWrk(out);
    if (r.errors > 0) throw new Error(`wrk reported ${r.errors} socket errors or non-2xx answers`);
    if (!(r.requests > 0)) throw new Error(`wrk: no request completed: ${out.trim().split('\n').slice(-3).join(' | ')}`);
    return { rps: r.rps, p50: r.p50us, p99: r.p99us, succeeded: r.requests };
  }
  const { clients, streams } = spec.load;
  const log = join(dir, `h2load-${tag}.log`);
  const grpc = spec.protocol === 'grpc';
  const args = ['-t1', `-c${clients}`, `-m${streams}`, `-D${seconds}`, `--log-file=${log}`];
  if (grpc) args.push('-d', join(dir, 'grpc-request.bin'), '-H', 'content-type: application/grpc', '-H', 'te: trailers');
  args.push(`${origin}${grpc ? GRPC_PATH : '/'}`);
  const out = await runClient('h2load', ...target.wrap('h2load', args), { maxSeconds: seconds + 30 });
  const r = parseH2load(out, readFileSync(log, 'utf8'));
  rmSync(log, { force: true });
  const summary = () => out.trim().split('\n').filter((l) => /requests:|status codes:|traffic:/.test(l)).join(' | ');
  if (!(r.rps > 0) || r.succeeded === 0) throw new Error(`h2load: no request succeeded: ${summary()}`);
  if (r.non2xx !== 0) throw new Error(`h2load: ${r.non2xx} answers with a status other than 2xx: ${summary()}`);
  // With -D, requests still in flight when the clock stops are reported as failed; more than that is an error.
  const unanswered = r.total - r.succeeded;
  if (unanswered > clients * streams) throw new Error(`h2load: ${unanswered} of ${r.total} requests not answered: ${summary()}`);
  // Every success must have carried the whole body (gRPC: the framed message). An error a proxy answers
  // with status 200 (gRPC's trailers-only UNAVAILABLE) carries none and shows here.
  const perAnswer = grpc ? grpcResponseFrame().length : Buffer.byteLength(HTTP_BODY);
  if (!(r.dataBytes >= r.succeeded * perAnswer)) {
    throw new Error(`h2load: ${r.succeeded} successes but ${r.dataBytes} bytes of DATA (expected at least ${perAnswer} per answer): ${summary()}`);
  }
  return { rps: r.rps, p50: r.p50us, p99: r.p99us, succeeded: r.succeeded };
}

/**
 * --check-verify: every proxy target with the right CA, a CA that did not sign the upstream's certificate,
 * and a server name the certificate does not carry. Prints a table; exits 1 unless exactly the right
 * configuration serves.
 */
async function checkVerify(spec) {
  const { opts, protocol } = spec;
  const name = SERVICE[protocol];
  const dir = mkdtempSync(join(tmpdir(), `meshext-bench-${spec.id}-verify-`));
  removeOnExit(dir);
  const rows = [['target', 'right CA and name', 'wrong CA', 'wrong server name']];
  let bad = 0;
  try {
    const pki = makePki(dir, 'pki');
    const other = makePki(dir, 'pki-other');
    const up = await startNginxTlsUpstream(dir, pki, { maxSeconds: 600 });
    const variants = [
      { label: 'right', tls: pki, shouldServe: true },
      { label: 'wrong-ca', tls: { ...pki, caFile: other.caFile, caPem: other.caPem }, shouldServe: false },
      { label: 'wrong-name', tls: { ...pki, serverName: 'not-the-upstream.example' }, shouldServe: false },
    ];
    for (const v of variants) mkdirSync(join(dir, v.label), { mode: 0o755 });
    for (const t of opts.targets.filter((n) => n !== 'direct')) {
      const row = [t];
      for (const v of variants) {
        const services = [{ name, protocol, upstreamPort: up.ports[UPSTREAM_PORT[protocol]], tls: v.tls }];
        let cell;
        let target;
        try {
          target = await startTarget(t, services, { dir: join(dir, v.label), peerWorkers: opts.peerWorkers, dataThreads: opts.dataThreads, maxSeconds: 300 });
          await probeTarget(target, name, protocol);
          cell = v.shouldServe ? 'serves' : 'SERVES (not verifying!)';
          if (!v.shouldServe) bad++;
        } catch (e) {
          // The probe's short answer (HTTP 502, grpc-status 14 ...), else the error itself.
          const why = e.answer ?? e.message.replace(/\s+/g, ' ').slice(0, 90);
          cell = v.shouldServe ? `FAILS: ${why}` : `refused: ${why}`;
          if (v.shouldServe) bad++;
        } finally {
          await target?.stop();
        }
        row.push(cell);
      }
      rows.push(row);
    }
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
  const h = opts.format === 'md' ? '### ' : '== ';
  process.stdout.write(`\n${h}${spec.id}: upstream certificate verification (one probe per cell, no load)\n${machineInfo()}\n\n${formatTable(rows, opts.format)}`);
  process.stdout.write(bad === 0 ? 'every proxy serves only with the right CA and server name\n' : `${bad} cell(s) not as expected\n`);
  process.exitCode = bad === 0 ? 0 : 1;
  return { id: spec.id, verify: rows };
}
