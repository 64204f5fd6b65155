// One scenario run: set up upstreams, start every target, measure them run by run (targets interleaved
// so drift on a shared machine hits all of them alike), print medians with ratios and target verdicts,
// and always stop every process and remove the temp dir.
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir, cpus, release } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { startTarget } from './targets.mjs';
import { lastLines, stopAll, removeOnExit } from './procs.mjs';
import { scenarioTable, formatTable, fmtNum } from './stats.mjs';

/** One line describing the machine and the peer versions, for tables and RESULTS.md. */
export function machineInfo() {
  // Some tools print their version on stderr and exit non-zero (wrk -v); read both streams either way.
  const v = (cmd, args, re) => {
    try {
      const out = execFileSync('sh', ['-c', `${cmd} ${args.join(' ')} 2>&1 || true`], { encoding: 'utf8' });
      return re.exec(out)?.[1] ?? 'missing';
    } catch {
      return 'missing';
    }
  };
  const cpu = cpus();
  return [
    `${cpu.length}x ${cpu[0]?.model.trim() ?? 'cpu'}`,
    `Linux ${release()}`,
    `node ${process.versions.node}`,
    `haproxy ${v('haproxy', ['-v'], /version (\S+)/)}`,
    `nginx ${v('nginx', ['-v'], /nginx\/(\S+)/)}`,
    `wrk ${v('wrk', ['-v'], /wrk (\S+)/)}`,
    `h2load ${v('h2load', ['--version'], /nghttp2\/(\S+)/)}`,
  ].join(', ');
}

/**
 * spec: {id, title, opts (from parseBenchArgs), budgetSeconds, setup(dir) -> {services, notes?}, freshPerRun?,
 *        measure(target, ctx) -> {metric: number}, metrics, targets (PASS/FAIL rules), targetNames?,
 *        subject? (the row the targets judge; default meshext)}
 * Returns the result object that is also written with --json.
 */
export async function runScenario(spec) {
  const { opts } = spec;
  const dir = mkdtempSync(join(tmpdir(), `meshext-bench-${spec.id}-`));
  removeOnExit(dir);
  const started = Date.now();
  const deadline = started + spec.budgetSeconds * 1000;
  const names = spec.targetNames ?? opts.targets;
  const rows = names.map((n) => ({ name: n, peer: n === 'haproxy' || n === 'nginx', direct: n === 'direct', values: {}, error: undefined }));
  const running = new Map();
  let notes = [];
  try {
    const setup = await spec.setup(dir);
    notes = setup.notes ?? [];
    const start = async (row) => {
      try {
        running.set(row.name, await startTarget(row.name, setup.services, { dir, peerWorkers: opts.peerWorkers, dataThreads: opts.dataThreads, maxSeconds: spec.budgetSeconds + 30 }));
      } catch (e) {
        row.error = e.message;
        process.stderr.write(`bench ${spec.id}: ${row.name} did not start: ${e.message}\n`);
      }
    };
    // freshPerRun: a new process per run, for figures (memory) that a previous run would leave behind.
    if (!spec.freshPerRun) for (const row of rows) await start(row);
    for (let run = 0; run < opts.runs; run++) {
      if (Date.now() > deadline) {
        notes.push(`stopped after ${run} run(s): scenario budget of ${spec.budgetSeconds}s used up`);
        break;
      }
      // Rotate the order each run so no target always goes first (cold caches) or last.
      const order = rows.map((_, i) => rows[(i + run) % rows.length]);
      for (const row of order) {
        if (spec.freshPerRun && !row.error) await start(row);
        const target = running.get(row.name);
        if (!target || row.error) continue;
        try {
          const figures = await spec.measure(target, { dir, run, setup });
          for (const [k, v] of Object.entries(figures)) (row.values[k] ??= []).push(v);
          process.stderr.write(`bench ${spec.id}: run ${run + 1}/${opts.runs} ${row.name}: ${Object.entries(figures).map(([k, v]) => `${k}=${fmtNum(v)}`).join(' ')}\n`);
        } catch (e) {
          // A target that died mid-run (a crash says nothing) fails its clients in their own words, e.g. on
          // the VIP path a name-resolution error (the DNS redirect fails open to the unreachable nameserver):
          // say first that it is gone.
          const ended = target.proc?.ended;
          const message = ended ? `${row.name} is not running any more (${ended}), and then: ${e.message}` : e.message;
          row.error = message.split('\n')[0].slice(0, 300);
          // What the proxy itself said (its warnings and errors) usually tells why.
          const said = target.proc ? lastLines(target.proc.stderr + target.proc.stdout, 8) : '';
          process.stderr.write(`bench ${spec.id}: ${row.name} failed: ${message}${said ? `\n  ${row.name} said:\n${said}` : ''}\n`);
        }
        if (spec.freshPerRun) {
          await target.stop();
          running.delete(row.name);
        }
      }
    }
  } finally {
    await Promise.all([...running.values()].map((t) => t.stop()));
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
  const targets = opts.cores > 1 ? coresTargets(spec) : spec.targets;
  const { table, summary, medians } = scenarioTable(rows, spec.metrics, targets, spec.subject);
  // The VIP path is meshext too: judged by the same targets, unless it is the baseline they compare against.
  if (rows.some((r) => r.name === 'meshext-vip') && !targets.some((t) => t.against === 'meshext-vip')) {
    summary.push(...scenarioTable(rows, spec.metrics, targets, 'meshext-vip').summary.map((v) => ({ ...v, label: `${v.label} (VIP path)` })));
  }
  const result = {
    id: spec.id,
    title: spec.title,
    subject: spec.subject ?? 'meshext',
    date: new Date().toISOString(),
    machine: machineInfo(),
    runs: opts.runs,
    quick: opts.quick,
    peerWorkers: opts.peerWorkers,
    cores: opts.cores,
    dataThreads: opts.dataThreads,
    seconds: (Date.now() - started) / 1000,
    rows,
    medians,
    summary,
    notes,
  };
  printResult(result, table, opts.format);
  if (opts.json) writeFileSync(opts.json, JSON.stringify(result, null, 2) + '\n');
  return result;
}

function printResult(result, table, format) {
  const out = [];
  const h = format === 'md' ? '### ' : '== ';
  out.push(`\n${h}${result.title}`);
  out.push(`median of ${result.runs} run(s); peers with ${result.peerWorkers} worker(s), meshext with ${result.dataThreads ?? 1} data thread(s); ${result.machine}`);
  out.push('');
  out.push(formatTable(table, format));
  for (const r of result.rows) if (r.error) out.push(`${r.name}: ${r.error}`);
  if (result.summary.length) {
    const rows = [[`target (${result.subject})`, result.subject, 'bound', 'verdict']];
    for (const s of result.summary) rows.push([s.label, fmtNum(s.value), fmtNum(s.bound), s.verdict]);
    out.push(formatTable(rows, format));
  }
  for (const n of result.notes) out.push(`note: ${n}`);
  process.stdout.write(out.join('\n') + '\n');
}

/**
 * The targets of a multi-core run (--cores N > 1): every throughput figure (higher is better) at least 0.9x the
 * best peer's. A scenario without one (memory) keeps its own targets.
 */
export function coresTargets(spec) {
  const throughput = spec.metrics.filter((m) => m.higherIsBetter);
  if (throughput.length === 0) return spec.targets;
  return throughput.map((m) => ({ label: `${m.label} >= 0.9x best peer (multi-core)`, metric: m.key, op: '>=', factor: 0.9, against: 'peer' }));
}

/** Read a JSON result written by a scenario (all.mjs). */
export function readResult(file) {
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** Request-rate scenarios (HTTP/1.1, HTTP/2) share one set of figures and the issue's targets for them. */
export const REQUEST_METRICS = [
  { key: 'rps', label: 'req/s', higherIsBetter: true },
  { key: 'p50', label: 'p50 us', higherIsBetter: false },
  { key: 'p99', label: 'p99 us', higherIsBetter: false },
];
export const REQUEST_TARGETS = [
  { label: 'req/s >= 0.8x best peer', metric: 'rps', op: '>=', factor: 0.8, against: 'peer' },
  { label: 'p99 <= 1.5x best peer', metric: 'p99', op: '<=', factor: 1.5, against: 'peer' },
];
