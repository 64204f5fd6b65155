// A crash in the data plane is reported before the process dies: which signal, on which engine thread, and a
// backtrace; a fatal signal anywhere else still reaches the handler that was there before (or the default).
import test from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';

const ADDON = join(process.cwd(), 'dist/src/native/addon.js');

/** Runs `code` (an ES module body with `addon`, the test addon) in a child with core dumps off. */
async function run(code: string): Promise<{ signal: string | null; stderr: string }> {
  const script = `import { nativeForTests } from ${JSON.stringify(ADDON)}; const addon = nativeForTests(); ${code}; setTimeout(() => {}, 5000);`;
  const child = spawn('sh', ['-c', 'ulimit -c 0; exec "$0" --input-type=module -e "$1"', process.execPath, script], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code_, signal] = (await once(child, 'exit')) as [number | null, string | null];
  return { signal: signal ?? (code_ !== null && code_ > 128 ? `exit ${code_}` : null), stderr };
}

test('a fault on an engine thread names the signal, the thread and the address, with a backtrace, and still dies of it', async (t) => {
  const r = await run(`addon.crashOnEngineThread('fault')`);
  t.is(r.signal, 'SIGSEGV');
  t.regex(r.stderr, /^meshext: fatal SIGSEGV on thread mx-engine-test \(address 0x0\); backtrace/m);
  t.regex(r.stderr, /meshext_native_test\.node\(/, 'the backtrace names the addon frames');
});

test('a stack overflow on an engine thread is reported too (the handler runs on a stack of its own)', async (t) => {
  const r = await run(`addon.crashOnEngineThread('overflow')`);
  t.is(r.signal, 'SIGSEGV');
  t.regex(r.stderr, /^meshext: fatal SIGSEGV on thread mx-engine-test \(address 0x[0-9a-f]+\); backtrace/m);
});

test('an abort on an engine thread is reported and still aborts', async (t) => {
  const r = await run(`addon.crashOnEngineThread('abort')`);
  t.is(r.signal, 'SIGABRT');
  t.regex(r.stderr, /^meshext: fatal SIGABRT on thread mx-engine-test; backtrace/m);
});

test('a fatal signal on another thread is not reported as the engine and keeps its default action', async (t) => {
  const r = await run(`const e = addon.engineStart(1, () => {}); process.kill(process.pid, 'SIGSEGV')`);
  t.is(r.signal, 'SIGSEGV');
  t.notRegex(r.stderr, /meshext: fatal/);
});
