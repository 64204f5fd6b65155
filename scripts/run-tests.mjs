#!/usr/bin/env node
// Runs every AVA test and ends with the plain `N passed, N failed` line the CI reads.
// AVA's own summary is not parsed by CI, and a run in which no test executed must fail.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const args = ['ava', '--tap', ...process.argv.slice(2)];
const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
let pass = 0;
let fail = 0;
let skip = 0;
const rl = createInterface({ input: child.stdout });
rl.on('line', (line) => {
  process.stdout.write(line + '\n');
  if (/^ok \d+/.test(line)) {
    if (/# SKIP/i.test(line)) skip++;
    else pass++;
  } else if (/^not ok \d+/.test(line)) {
    if (/# TODO/i.test(line)) skip++;
    else fail++;
  }
});
child.on('close', (code) => {
  const ran = pass + fail;
  const tail = skip > 0 ? `, ${skip} skipped` : '';
  process.stdout.write(`\n${pass} passed, ${fail} failed${tail}\n`);
  if (ran === 0) {
    process.stderr.write('run-tests: no test executed\n');
    process.exit(1);
  }
  process.exit(fail > 0 || code !== 0 ? 1 : 0);
});
