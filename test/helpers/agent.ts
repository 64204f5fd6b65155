/** An agent in this process on loopback (no redirect, no BPF), with its log lines captured. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { ExecutionContext } from 'ava';
import { Agent } from '../../src/agent/agent.js';
import { resolveConfig, type RawOptions } from '../../src/agent/config.js';
import { createLogger } from '../../src/log.js';

export interface TestAgent {
  agent: Agent;
  /** Every log line so far, as written (JSON). */
  log: string[];
  adminPort: number;
  configDir: string;
}

/**
 * Starts an agent on `files` (name → content) with `--redirect off`, after `setup` has added whatever
 * else the config directory should hold; stops it and removes its directories at teardown.
 */
export async function startTestAgent(t: ExecutionContext, files: Record<string, string>, options: RawOptions = {}, setup?: (configDir: string) => void): Promise<TestAgent> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshext-agent-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const configDir = path.join(dir, 'config');
  fs.mkdirSync(configDir);
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(configDir, name), content);
  setup?.(configDir);
  const cfg = resolveConfig([
    {
      name: 'flags',
      options: { config: [configDir], redirect: 'off', dns: 'off', stateDir: path.join(dir, 'state'), admin: '127.0.0.1:0', logFormat: 'json', ...options },
    },
  ]);
  const log: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) log.push(line);
      cb();
    },
  });
  const agent = new Agent(cfg, createLogger({ format: 'json', level: 'debug', stream }));
  t.teardown(() => agent.shutdown({ drainMs: 0 }));
  await agent.start();
  const ready = log.map((l) => JSON.parse(l) as { msg?: string; admin?: string }).find((l) => l.msg === 'meshext ready');
  const adminPort = Number(ready?.admin?.split(':').pop());
  return { agent, log, adminPort, configDir };
}
