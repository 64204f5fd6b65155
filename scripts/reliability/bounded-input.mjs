#!/usr/bin/env node
// Bounded input, as a user meets it: generates hostile and maximal config files, runs
// `meshext validate` on each, and prints wall time, peak RSS (VmHWM of the child) and the first
// message. Usage: node scripts/reliability/bounded-input.mjs [REPO_DIR] (default: this repository).
// The 50 MB case writes 50 MB under the system temp directory; everything is removed at the end.
// CASES=regex picks cases by name; a case running past TIMEOUT_S (default 60) is killed and reported.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const repo = path.resolve(process.argv[2] ?? path.join(path.dirname(new URL(import.meta.url).pathname), '../..'));
const MiB = 1024 * 1024;
const mes = (i) => `---\ntype: MeshExternalService\nname: s${i}\nspec:\n  match: {port: 80}\n  endpoints: [{address: a.example, port: 80}, {address: b.example, port: 80}]\n  tls: {enabled: true, verification: {mode: SkipAll, serverName: a.example}}\n`;
const cases = {
  '130k-documents (780 KB)': () => '--- 1\n'.repeat(130_000),
  '10k-services (max documents, 2 MiB)': () => Array.from({ length: 10_000 }, (_, i) => mes(i)).join(''),
  'flow-ints (4 MiB, one sequence)': () => 'x: [' + '1,'.repeat((4 * MiB) / 2 - 8) + '1]\n',
  'keys (1 MiB, one mapping)': () => 'x:\n' + Array.from({ length: MiB / 16 }, (_, i) => `  k${String(i).padStart(9, '0')}: 1`).join('\n') + '\n',
  'keys (25,000 in one mapping, under every limit)': () => 'x:\n' + Array.from({ length: 25_000 }, (_, i) => `  k${String(i).padStart(9, '0')}: 1`).join('\n') + '\n',
  'under-token-limit (one document, 190k tokens)': () => 'type: Mesh\nname: m\nx: [' + '1,'.repeat(63_000) + '1]\n',
  'deep block sequence (400 KB)': () => '- '.repeat(200_000) + 'x\n',
  'billion laughs': () => ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `a${i + 1}: &a${i + 1} [${Array(10).fill(`*a${i}`).join(', ')}]`)].join('\n') + '\n',
  '50 MB': () => 'x: "' + 'y'.repeat(50 * MiB) + '"\n',
};

function run(file) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    // /proc/PID/status of a child is gone once it exits, so the child reports its own high-water mark.
    const child = spawn(process.execPath, ['-e', `process.on('exit', () => process.stderr.write('HWM ' + require('fs').readFileSync('/proc/self/status','utf8').match(/VmHWM:\\s+(\\d+)/)[1] + '\\n')); process.argv = [process.argv[0], ${JSON.stringify(path.join(repo, 'bin/meshext.js'))}, 'validate', ${JSON.stringify(file)}]; import(${JSON.stringify(path.join(repo, 'bin/meshext.js'))})`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, Number(process.env.TIMEOUT_S ?? 60) * 1000);
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => {
      clearTimeout(timer);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const hwm = /HWM (\d+)/.exec(out)?.[1];
      const first = out.split('\n').find((l) => l && !l.startsWith('HWM')) ?? '';
      resolve({ code: timedOut ? 'killed after timeout' : code, ms: Math.round(ms), rssMB: hwm ? Math.round(Number(hwm) / 1024) : undefined, first: first.replace(file, 'FILE').slice(0, 150) });
    });
  });
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshext-bounded-'));
try {
  for (const [name, make] of Object.entries(cases)) {
    if (process.env.CASES && !new RegExp(process.env.CASES).test(name)) continue;
    const file = path.join(dir, 'f.yaml');
    fs.writeFileSync(file, make());
    const size = fs.statSync(file).size;
    const r = await run(file);
    console.log(JSON.stringify({ case: name, bytes: size, exit: r.code, ms: r.ms, peakRssMB: r.rssMB, first: r.first }));
    fs.rmSync(file);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
