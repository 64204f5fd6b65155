/**
 * What privileged test helpers (privileged.ts) leave behind when a run is killed from outside (SIGKILL, a CI
 * timeout) before their teardowns run: network namespaces, cgroups (with BPF programs attached through links
 * pinned in a private bpffs) and those bpffs mounts. scripts/run-tests.mjs sweeps them before a run. Only what
 * is old enough to belong to no live run, and only cgroups and namespaces no process is in, are removed:
 * nothing is killed.
 */
import { existsSync, readdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findCgroup2Mount } from '../../src/redirect/cgroup.js';

export const LEFTOVER_PREFIX = { netns: 'mxt-', cgroup: 'meshext-test-', bpffs: 'meshext-bpffs-' } as const;

export interface SweepOptions {
  /** Only what was last changed longer ago than this is removed (a live run's resources are younger). */
  olderThanMs: number;
  now?: number;
  prefix?: Partial<Record<keyof typeof LEFTOVER_PREFIX, string>>;
}

const old = (path: string, o: SweepOptions): boolean => {
  try {
    return (o.now ?? Date.now()) - statSync(path).mtimeMs > o.olderThanMs;
  } catch {
    return false;
  }
};

/** Whether any process is in the cgroup or below it. */
function occupied(dir: string): boolean {
  if (readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim() !== '') return true;
  return readdirSync(dir, { withFileTypes: true }).some((e) => e.isDirectory() && occupied(join(dir, e.name)));
}

function rmTree(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmTree(join(dir, e.name));
  rmdirSync(dir);
}

/** Removes stale leftovers of earlier runs (as root; otherwise nothing); returns what was removed. */
export function sweepLeftovers(o: SweepOptions): string[] {
  if (process.getuid?.() !== 0) return [];
  const p = { ...LEFTOVER_PREFIX, ...o.prefix };
  const removed: string[] = [];
  // bpffs first: unmounting drops the pinned links, which detaches the programs from the cgroups below.
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, dir, type] = line.split(' ');
    if (type !== 'bpf' || !dir?.startsWith(join(tmpdir(), p.bpffs)) || !old(dir, o)) continue;
    if (spawnSync('umount', [dir]).status === 0) {
      rmdirSync(dir);
      removed.push(`bpffs ${dir}`);
    }
  }
  if (existsSync('/run/netns')) {
    for (const name of readdirSync('/run/netns')) {
      if (!name.startsWith(p.netns) || !old(join('/run/netns', name), o)) continue;
      const pids = spawnSync('ip', ['netns', 'pids', name], { encoding: 'utf8' });
      if (pids.status !== 0 || pids.stdout.trim() !== '') continue;
      if (spawnSync('ip', ['netns', 'del', name]).status === 0) removed.push(`netns ${name}`);
    }
  }
  const cg2 = findCgroup2Mount();
  for (const name of readdirSync(cg2)) {
    const dir = join(cg2, name);
    if (!name.startsWith(p.cgroup) || !old(dir, o) || occupied(dir)) continue;
    try {
      rmTree(dir);
      removed.push(`cgroup ${dir}`);
    } catch {
      /* a process joined meanwhile, or the kernel still holds it: next time */
    }
  }
  return removed;
}

/**
 * The cgroup the agent moves itself into when it starts in the cgroup2 root. Tests that run agents concurrently
 * cannot tell which of them made it, so the test runner removes it after the run when the run made it and it is
 * empty (a real agent's is never empty). Returns a function doing that.
 */
export function removeAgentCgroupIfMade(): () => string | undefined {
  if (process.getuid?.() !== 0) return () => undefined;
  const dir = join(findCgroup2Mount(), 'meshext.agent');
  if (existsSync(dir)) return () => undefined;
  return () => {
    try {
      rmdirSync(dir);
      return dir;
    } catch {
      return undefined; // not made after all, or a process is in it
    }
  };
}
