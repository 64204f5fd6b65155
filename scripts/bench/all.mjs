#!/usr/bin/env node
// Runs every scenario one after another (each in its own process, each bounded in time) with the same
// options, then prints one summary of meshext's targets. dns.mjs is included when present. With --cores N
// every scenario runs meshext with N data threads against peers with N workers (dns.mjs, which measures the
// resolver and not the data plane, takes only --runs and --seconds).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseBenchArgs } from './lib/cli.mjs';
import { readResult } from './lib/runner.mjs';
import { formatTable, fmtNum } from './lib/stats.mjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const SCENARIOS = ['tcp-throughput', 'tcp-latency', 'tls-origination', 'http1', 'http2', 'https-origination', 'http2-tls', 'grpc-tls', 'dns', 'memory', 'permissions', 'policies'];
const argv = process.argv.slice(2);
// Scenarios that take --seconds (load per target and run) for longer runs.
const TIMED = ['https-origination', 'http2-tls', 'grpc-tls'];
const opts = parseBenchArgs(argv, { only: { type: 'string' }, seconds: { type: 'string' }, vip: { type: 'string' } },
  '\n  --only LIST         comma-separated scenarios (default: all of ' + SCENARIOS.join(',') + ')' +
  `\n  --seconds N         load per target and run of ${TIMED.join(', ')} (default 10, --quick 3)` +
  `\n  --vip auto|on|off   whether ${TIMED.join(', ')} also measure meshext through the VIP path (default auto)`);
const only = opts.only ? opts.only.split(',') : SCENARIOS;
for (const s of only) if (!SCENARIOS.includes(s)) {
  process.stderr.write(`bench: --only: unknown scenario "${s}"\n`);
  process.exit(2);
}
// Scenario scripts take the shared options; --only and --json belong to this runner, --seconds and --vip to TIMED.
const passOn = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (['--only', '--json', '--seconds', '--vip'].includes(a)) i++;
  else if (!/^--(only|json|seconds|vip)=/.test(a)) passOn.push(a);
}
const timedArgs = [...(opts.seconds ? ['--seconds', opts.seconds] : []), ...(opts.vip ? ['--vip', opts.vip] : [])];
const dir = mkdtempSync(join(tmpdir(), 'meshext-bench-all-'));
const results = [];
let child;
let interrupted = false;
// The scenario (same process group) gets the terminal's Ctrl-C itself and cleans up; stop after it.
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    interrupted = true;
    child?.kill(sig);
  });
}
try {
  for (const s of only) {
    if (interrupted) break;
    const script = join(HERE, `${s}.mjs`);
    if (!existsSync(script)) {
      process.stdout.write(`\n== ${s}: skipped (${script} not present)\n`);
      continue;
    }
    const json = join(dir, `${s}.json`);
    // dns.mjs (written separately) takes only its own options: runs, and a shorter measurement when quick.
    const args = s === 'dns'
      ? ['--runs', String(opts.runs), ...(opts.quick ? ['--seconds', '1'] : [])]
      : [...passOn, ...(TIMED.includes(s) ? timedArgs : []), '--json', json];
    // --foreground keeps the scenario in our process group so Ctrl-C reaches it; its own handlers clean up.
    const code = await new Promise((resolve) => {
      // A scenario's own budget grows with --seconds and --runs; this outer bound follows it.
      const limit = TIMED.includes(s) ? Math.max(1200, opts.runs * 5 * (Number(opts.seconds ?? 10) + 60) + 300) : 1200;
      child = spawn('timeout', ['--foreground', '--kill-after=15', `${limit}s`, process.execPath, script, ...args], { stdio: 'inherit' });
      child.on('exit', (c) => resolve(c));
    });
    if (code !== 0) process.stdout.write(`\n== ${s}: exited with code ${code}\n`);
    if (existsSync(json)) results.push(readResult(json));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const rows = [['scenario', 'target (meshext)', 'meshext', 'bound', 'verdict']];
for (const r of results) for (const s of r.summary ?? []) rows.push([r.id, s.label, fmtNum(s.value), fmtNum(s.bound), s.verdict]);
const shape = opts.cores > 1 ? ` (--cores ${opts.cores}: meshext --data-threads ${opts.cores}, peers with ${opts.cores} workers)` : '';
process.stdout.write(`\n== Summary of meshext targets${shape}\n${formatTable(rows, opts.format)}`);
if (opts.json) {
  const { writeFileSync } = await import('node:fs');
  writeFileSync(opts.json, JSON.stringify(results, null, 2) + '\n');
}
