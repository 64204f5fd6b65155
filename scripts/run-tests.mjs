#!/usr/bin/env node
// Runs every AVA test and ends with the plain `N passed, N failed` line the CI reads.
// AVA's own summary is not parsed by CI, and a run in which no test executed must fail.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

// A run killed from outside (SIGKILL, a CI timeout) cannot run its teardowns: remove what such runs left
// (test/helpers/leftovers.ts; only what is over an hour old and holds no process) before this one starts.
const leftovers = new URL('../dist/test/helpers/leftovers.js', import.meta.url);
let afterRun = () => undefined;
try {
  const { sweepLeftovers, removeAgentCgroupIfMade } = await import(leftovers.href);
  afterRun = removeAgentCgroupIfMade();
  const removed = sweepLeftovers({ olderThanMs: 3_600_000 });
  if (removed.length) process.stderr.write(`run-tests: removed ${removed.length} leftovers of interrupted earlier runs: ${removed.join(', ')}\n`);
} catch (e) {
  if (e.code !== 'ERR_MODULE_NOT_FOUND') process.stderr.write(`run-tests: could not sweep leftovers of earlier runs: ${e.message}\n`);
}

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
  afterRun();
  const ran = pass + fail;
  const tail = skip > 0 ? `, ${skip} skipped` : '';
  process.stdout.write(`\n${pass} passed, ${fail} failed${tail}\n`);
  if (ran === 0) {
    process.stderr.write('run-tests: no test executed\n');
    process.exit(1);
  }
  process.exit(fail > 0 || code !== 0 ? 1 : 0);
});
