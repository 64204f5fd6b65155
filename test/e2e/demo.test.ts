/** The README's first command: `npm start` runs the agent on examples/ and every seed scenario answers. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { privilegedTest } from '../helpers/privileged.js';

privilegedTest('demo (npm start --once) answers all seed scenarios through the agent and cleans up', async (t) => {
  const root = process.cwd();
  const child = spawn(process.execPath, [path.join(root, 'scripts/demo.mjs'), '--once'], {
    env: { ...process.env, MESHEXT_DEMO_ADMIN_PORT: '19911' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  t.teardown(() => clearTimeout(timer));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  t.is(code, 0, out);
  t.regex(out, /8 of 8 scenarios answered through meshext/);
  const { existsSync } = await import('node:fs');
  t.false(existsSync('/sys/fs/bpf/meshext-demo/v1'), 'demo pins removed by cleanup');
});
