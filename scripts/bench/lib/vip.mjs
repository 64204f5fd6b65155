// The VIP path (target meshext-vip) needs meshext's eBPF redirect: root, cgroup v2, bpffs and the built
// addon. A scenario that measures it runs whole (upstream, peers, meshext, clients) in a network namespace
// of its own with only loopback up, as the project's privileged tests do: 127.0.0.1 works as on the host,
// and the VIP range is unroutable there, so a connect the redirect missed fails instead of leaving the
// machine. nsenter switches only the network namespace; /sys/fs/cgroup and /sys/fs/bpf stay visible.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { REPO } from './targets.mjs';

/** {ok, reason}: whether meshext-vip can run on this machine. */
export async function vipProbe() {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'needs root (cgroup, bpffs, network namespace)' };
  for (const tool of ['ip', 'nsenter']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return { ok: false, reason: `${tool} not installed` };
  }
  const index = join(REPO, 'dist/src/redirect/index.js');
  if (!existsSync(index)) return { ok: false, reason: `${index} missing (npm run build)` };
  try {
    const { Redirector } = await import(index);
    return Redirector.probe();
  } catch (e) {
    return { ok: false, reason: e.message };
  }
}

/** True when this process already runs inside the namespace runInNetns made. */
export function inBenchNetns() {
  return Boolean(process.env.MESHEXT_BENCH_NETNS);
}

/**
 * Run this script again (same argv) inside a new network namespace with loopback up; resolve with its exit
 * code. The namespace is deleted afterwards, also after Ctrl-C (forwarded to the child, which cleans up).
 */
export async function runInNetns() {
  const name = `mxbench-${randomBytes(3).toString('hex')}`;
  const ip = (...args) => spawnSync('ip', args, { encoding: 'utf8' });
  const add = ip('netns', 'add', name);
  if (add.status !== 0) throw new Error(`ip netns add ${name}: ${add.stderr.trim()}`);
  try {
    const up = ip('-n', name, 'link', 'set', 'lo', 'up');
    if (up.status !== 0) throw new Error(`ip -n ${name} link set lo up: ${up.stderr.trim()}`);
    const child = spawn('nsenter', [`--net=/run/netns/${name}`, process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, MESHEXT_BENCH_NETNS: name },
    });
    const forward = (sig) => child.kill(sig);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    const code = await new Promise((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1))));
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
    return code;
  } finally {
    ip('netns', 'del', name);
  }
}
