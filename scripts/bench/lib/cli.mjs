// Shared command-line options of every scenario script.
import { parseArgs } from 'node:util';

export const ALL_TARGETS = ['direct', 'haproxy', 'nginx', 'meshext'];
// Targets a scenario adds itself when it supports them (meshext-vip: the origination scenarios, --vip;
// meshext-policies: the policy scenario).
const EXTRA_TARGETS = ['meshext-vip', 'meshext-policies', 'meshext-vip-permissions'];

const USAGE = `options:
  --runs N            runs per target; the table shows medians (default 3, --quick: 3)
  --quick             smaller sizes and shorter runs (a smoke run of the whole harness)
  --targets LIST      comma-separated subset of ${ALL_TARGETS.join(',')} (default: all), and
                      ${EXTRA_TARGETS.join(',')} where a scenario supports it
  --peer-workers N    HAProxy threads / nginx worker processes (default 1: meshext runs one event loop)
  --cores N           N cores for every proxy: meshext --data-threads N, HAProxy nbthread N, nginx
                      worker_processes N (default 1); above 1 the targets become >= 0.9x the best peer
                      on every throughput figure
  --format text|md    table layout (md for RESULTS.md)
  --json FILE         also write the raw per-run figures and medians as JSON
  -h, --help`;

/** Parse argv into bench options; exits with usage on error or --help. Extra scenario options may be given. */
export function parseBenchArgs(argv, extra = {}, extraUsage = '') {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        runs: { type: 'string' },
        quick: { type: 'boolean', default: false },
        targets: { type: 'string' },
        'peer-workers': { type: 'string' },
        cores: { type: 'string', default: '1' },
        format: { type: 'string', default: 'text' },
        json: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
        ...extra,
      },
      strict: true,
    }));
  } catch (e) {
    process.stderr.write(`${e.message}\n${USAGE}${extraUsage}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}${extraUsage}\n`);
    process.exit(0);
  }
  const runs = values.runs === undefined ? 3 : Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) die(`--runs must be an integer 1..50, got ${values.runs}`);
  const targets = values.targets ? values.targets.split(',').map((s) => s.trim()).filter(Boolean) : ALL_TARGETS;
  for (const t of targets) if (![...ALL_TARGETS, ...EXTRA_TARGETS].includes(t)) die(`--targets: unknown target "${t}" (known: ${[...ALL_TARGETS, ...EXTRA_TARGETS].join(', ')})`);
  const cores = Number(values.cores);
  if (!Number.isInteger(cores) || cores < 1 || cores > 64) die(`--cores must be an integer 1..64, got ${values.cores}`);
  const peerWorkers = Number(values['peer-workers'] ?? cores);
  if (!Number.isInteger(peerWorkers) || peerWorkers < 1 || peerWorkers > 64) die(`--peer-workers must be an integer 1..64, got ${values['peer-workers']}`);
  if (cores > 1 && peerWorkers !== cores) die(`--cores ${cores} gives the peers ${cores} workers; --peer-workers ${peerWorkers} contradicts it`);
  if (!['text', 'md'].includes(values.format)) die(`--format must be text or md, got ${values.format}`);
  // meshext's engine threads: its default (1) unless --cores asks for more.
  return { ...values, runs, targets, targetsGiven: values.targets !== undefined, peerWorkers, cores, dataThreads: cores };
}

function die(msg) {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}
