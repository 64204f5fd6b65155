#!/usr/bin/env node
// Scenario: the cost of MeshTrafficPermission at connect(). New TCP connections per second through the VIP path
// (connect to the service's VIP, the eBPF redirect to the engine, 64 bytes each way, the upstream closes) with
// 1,000 permission rules and 1,000 workload identities loaded (meshext-vip-permissions: every connect looks the
// client's identity and its verdict up in the kernel) against the same agent with no policy (meshext-vip), in the
// same run. Target: >= 0.98x. Needs root (cgroup, bpffs, a network namespace of its own, as --vip elsewhere).
import { readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { parseBenchArgs } from './lib/cli.mjs';
import { runScenario } from './lib/runner.mjs';
import { runClient } from './lib/procs.mjs';
import { startNodeUpstream, CLIENTS } from './lib/upstreams.mjs';
import { inBenchNetns, runInNetns, vipProbe } from './lib/vip.mjs';
import { IDENTITIES } from './lib/permissions.mjs';
import { REPO } from './lib/targets.mjs';

const opts = parseBenchArgs(process.argv.slice(2), { concurrency: { type: 'string', default: '16' }, 'bpf-stats': { type: 'boolean', default: false } },
  '\n  --concurrency N     parallel connect loops (default 16)' +
  '\n  --bpf-stats         also measure the connect4 hook itself: ns per run from the kernel\'s BPF run-time stats' +
  '\n                      (sets kernel.bpf_stats_enabled for the run and restores it)');
const probe = await vipProbe();
if (!probe.ok) {
  process.stderr.write(`bench permissions: the VIP path cannot run here: ${probe.reason}\n`);
  process.exit(2);
}
if (!inBenchNetns()) process.exit(await runInNetns());
if (!opts.targetsGiven) opts.targets = ['meshext-vip', 'meshext-vip-permissions'];
const seconds = opts.quick ? 3 : 8;
// The kernel's own account of the hook (run_time_ns / run_cnt of mx_connect4): the decision's cost without the
// noise of the rest of the connection. Global switch, so restored on exit.
const STATS = '/proc/sys/kernel/bpf_stats_enabled';
if (opts['bpf-stats'] && inBenchNetns()) {
  const before = readFileSync(STATS, 'utf8').trim();
  writeFileSync(STATS, '1');
  process.once('exit', () => writeFileSync(STATS, before));
}
/** {runs, ns} of the agent's mx_connect4 program so far, from bpftool. */
function connect4Stats(pinRoot) {
  const list = JSON.parse(execFileSync(process.execPath, [join(REPO, 'bin/meshext.js'), 'bpf', 'list', '--pin-root', pinRoot, '-o', 'json'], { encoding: 'utf8' }));
  const link = list.links.find((l) => l.program === 'mx_connect4');
  const prog = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(link.progId)], { encoding: 'utf8' }));
  return { runs: prog.run_cnt ?? 0, ns: prog.run_time_ns ?? 0 };
}
const last = (text) => JSON.parse(text.trim().split('\n').pop());

await runScenario({
  id: 'permissions',
  subject: 'meshext-vip-permissions',
  title: `MeshTrafficPermission at connect(): new TCP connections/s through the VIP path (${seconds}s, ${opts.concurrency} loops), ${IDENTITIES} rules and ${IDENTITIES} identities against no policy`,
  opts,
  budgetSeconds: opts.runs * opts.targets.length * (seconds + 60) + 180,
  async setup() {
    const up = await startNodeUpstream(['once'], { maxSeconds: opts.runs * 200 + 600 });
    return {
      services: [{ name: 'bench-once', protocol: 'tcp', upstreamPort: up.ports.once }],
      notes: [
        `meshext-vip-permissions: a Mesh forbidding access by default and ${IDENTITIES} MeshTrafficPermission allow rules (Exact spiffeID, 10 policies), ${IDENTITIES} systemd-unit cgroups given identities by the unit rule; the clients run in the first, so each connect looks up the service, the cgroup's identity and the verdict`,
        'meshext-vip: the same agent, no MeshTrafficPermission: the connect hook does no access lookup',
        'both: clients resolve the service name once (through the captured DNS) and connect to its VIP; every target of this run shares one network namespace with only loopback',
      ],
    };
  },
  async measure(target) {
    const [cmd, args] = target.wrap(process.execPath, [join(CLIENTS, 'tcp-connrate.mjs'), '--host', target.host('bench-once'), '--port', String(target.port('bench-once')), '--seconds', '1', '--concurrency', opts.concurrency]);
    await runClient('tcp-connrate-warm', cmd, args, { maxSeconds: 60 });
    const cpu0 = target.cpuMs();
    const k0 = opts['bpf-stats'] ? connect4Stats(target.pinRoot) : undefined;
    const [cmd2, args2] = target.wrap(process.execPath, [join(CLIENTS, 'tcp-connrate.mjs'), '--host', target.host('bench-once'), '--port', String(target.port('bench-once')), '--seconds', String(seconds), '--concurrency', opts.concurrency]);
    const cr = last(await runClient('tcp-connrate', cmd2, args2, { maxSeconds: seconds + 60 }));
    if (cr.errors > 0) throw new Error(`${cr.errors} connections failed (a denied connect fails with EPERM: the client's identity must be allowed)`);
    const k1 = k0 ? connect4Stats(target.pinRoot) : undefined;
    const hookNs = k0 && k1 && k1.runs > k0.runs ? (k1.ns - k0.ns) / (k1.runs - k0.runs) : NaN;
    return { cps: cr.connsPerSec, cpuUs: ((target.cpuMs() - cpu0) * 1000) / cr.conns, hookNs };
  },
  metrics: [
    { key: 'cps', label: 'conns/s', higherIsBetter: true },
    { key: 'cpuUs', label: 'agent CPU us/conn', higherIsBetter: false },
    // Context (--bpf-stats): the connect4 hook's own time per run, as the kernel counts it.
    { key: 'hookNs', label: 'connect4 hook ns', higherIsBetter: false, noRatio: true },
  ],
  targets: [{ label: 'conns/s >= 0.98x without policy', metric: 'cps', op: '>=', factor: 0.98, against: 'meshext-vip' }],
});
