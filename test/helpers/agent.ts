/** An agent in this process on loopback (no redirect, no BPF), with its log lines captured. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { Agent } from '../../src/agent/agent.js';
import { resolveConfig, type RawOptions } from '../../src/agent/config.js';
import { captureLog, type CapturedLog } from './log.js';

export interface TestAgent {
  agent: Agent;
  /** The agent's log lines. */
  log: CapturedLog;
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
      options: { config: [configDir], redirect: 'off', dns: 'off', stateDir: path.join(dir, 'state'), admin: '127.0.0.1:0', adminSocket: path.join(dir, 'admin.sock'), accessLogDir: path.join(dir, 'logs'), logFormat: 'json', ...options },
    },
  ]);
  const log = captureLog('debug');
  const agent = new Agent(cfg, log.log);
  t.teardown(() => agent.shutdown({ drainMs: 0 }));
  await agent.start();
  const ready = log.find(/^meshext ready$/)[0];
  const adminPort = Number(String(ready?.admin ?? '').split(':').pop());
  return { agent, log, adminPort, configDir };
}
