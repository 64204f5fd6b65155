/**
 * Privileged test tier: kernel objects (cgroups, bpffs, netns, veth) created per test and always
 * removed in t.teardown, also when the test fails. Outside CI a host that cannot run them skips
 * with the reason; under CI=true the same condition fails the test.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Redirector, findCgroup2Mount } from '../../src/redirect/index.js';
import { LEFTOVER_PREFIX } from './leftovers.js';

let probed: { ok: boolean; reason?: string } | undefined;

/** Probes once: root, cgroup2, bpffs mountable, addon + BPF object + kernel features. */
export function privilegedProbe(): { ok: boolean; reason?: string } {
  if (probed) return probed;
  probed = (() => {
    if (process.getuid?.() !== 0) return { ok: false, reason: 'needs root (cgroup2 writes, bpffs mounts, netns)' };
    try {
      findCgroup2Mount();
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
    for (const tool of ['ip', 'nsenter', 'mount', 'bpftool']) {
      if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return { ok: false, reason: `${tool} not installed (scripts/install-deps.sh)` };
    }
    return Redirector.probe();
  })();
  return probed;
}

/** A serial test that needs privileges: skip with the reason locally, fail under CI=true. */
export function privilegedTest(title: string, fn: (t: ExecutionContext) => Promise<void> | void): void {
  const p = privilegedProbe();
  if (p.ok) {
    test.serial(title, fn);
  } else if (process.env.CI === 'true') {
    test.serial(title, (t) => {
      t.fail(`privileged test cannot run: ${p.reason}`);
    });
  } else {
    test.serial.skip(`${title} (skipped: ${p.reason})`, () => {});
  }
}

export function rand(): string {
  return randomBytes(3).toString('hex');
}

/** Runs a command to completion; throws with stderr on a non-zero exit unless allowFail. */
export function sh(cmd: string, args: string[], allowFail = false): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  const res = { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  if (!allowFail && res.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${res.status}): ${res.stderr.trim()}`);
  return res;
}

function killCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) killCgroupTree(join(dir, e.name));
  const kill = join(dir, 'cgroup.kill');
  if (existsSync(kill)) {
    try {
      writeFileSync(kill, '1');
    } catch {
      /* older kernels: fall through to per-pid kill */
    }
  }
  for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

async function rmCgroupTree(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) await rmCgroupTree(join(dir, e.name));
  for (let i = 0; ; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      // Killed processes leave the cgroup asynchronously.
      if (i >= 50) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** A fresh cgroup `<cg2>/meshext-test-<rand>` (child cgroups allowed), removed with its processes. */
export function tempCgroup(t: ExecutionContext, name = `${LEFTOVER_PREFIX.cgroup}${rand()}`): string {
  const dir = join(findCgroup2Mount(), name);
  mkdirSync(dir);
  t.teardown(async () => {
    killCgroupTree(dir);
    await rmCgroupTree(dir);
  });
  return dir;
}

/** A private bpffs mounted on a temp dir; unmounting drops every pin (and pinned link) in it. */
export function tempBpffs(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), LEFTOVER_PREFIX.bpffs));
  sh('mount', ['-t', 'bpf', 'bpf', dir]);
  t.teardown(() => {
    sh('umount', [dir], true);
    rmdirSync(dir);
  });
  return dir;
}

/** A pin root inside a private bpffs. */
export function tempPinRoot(t: ExecutionContext): string {
  return join(tempBpffs(t), 'meshext');
}

/** A network namespace with lo up; 242/8 is unroutable inside, so a missed redirect fails fast. */
export function tempNetns(t: ExecutionContext): string {
  const name = `${LEFTOVER_PREFIX.netns}${rand()}`;
  sh('ip', ['netns', 'add', name]);
  t.teardown(() => {
    sh('ip', ['netns', 'del', name], true);
  });
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

/** A veth pair between two namespaces with the given CIDR addresses (e.g. 169.254.77.1/30). */
export function tempVeth(t: ExecutionContext, nsA: string, addrA: string, nsB: string, addrB: string): void {
  const id = rand();
  const a = `mxa${id}`;
  const b = `mxb${id}`;
  sh('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
  t.teardown(() => {
    sh('ip', ['-n', nsA, 'link', 'del', a], true);
    sh('ip', ['link', 'del', a], true);
  });
  sh('ip', ['link', 'set', a, 'netns', nsA]);
  sh('ip', ['link', 'set', b, 'netns', nsB]);
  sh('ip', ['-n', nsA, 'addr', 'add', addrA, 'dev', a]);
  sh('ip', ['-n', nsB, 'addr', 'add', addrB, 'dev', b]);
  sh('ip', ['-n', nsA, 'link', 'set', a, 'up']);
  sh('ip', ['-n', nsB, 'link', 'set', b, 'up']);
}

export interface SpawnOpts { netns?: string }

/**
 * Starts cmd inside cgroupPath (joined before exec, so every thread and child is covered) and
 * optionally a netns. nsenter --net keeps /sys intact; `ip netns exec` would hide bpffs/cgroupfs.
 */
export function spawnInCgroup(cgroupPath: string | null, cmd: string, args: string[], opts: SpawnOpts = {}): ChildProcess {
  const inner = opts.netns ? ['nsenter', `--net=/run/netns/${opts.netns}`, cmd, ...args] : [cmd, ...args];
  const join_ = cgroupPath ? `echo $$ > '${cgroupPath}/cgroup.procs' && ` : '';
  return spawn('sh', ['-c', `${join_}exec "$@"`, 'sh', ...inner], { stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Collects stdout JSON lines of a child; resolves when it exits. */
export function runJson(child: ChildProcess): Promise<{ code: number | null; lines: Array<Record<string, unknown>>; stderr: string }> {
  return new Promise((resolve) => {
    const lines: Array<Record<string, unknown>> = [];
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        lines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        lines.push({ raw: l });
      }
    });
    child.on('close', (code) => resolve({ code, lines, stderr }));
  });
}

/** A long-running child whose JSON lines can be awaited one predicate at a time; killed in teardown. */
export class JsonChild {
  readonly lines: Array<Record<string, unknown>> = [];
  private waiters: Array<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  stderr = '';
  exited = false;

  constructor(t: ExecutionContext, readonly child: ChildProcess) {
    t.teardown(() => this.kill());
    child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    child.on('exit', () => {
      this.exited = true;
      for (const w of this.waiters) w.resolve({ exited: true, stderr: this.stderr });
      this.waiters = [];
    });
    createInterface({ input: child.stdout! }).on('line', (l) => {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(l) as Record<string, unknown>;
      } catch {
        rec = { raw: l };
      }
      this.lines.push(rec);
      this.waiters = this.waiters.filter((w) => (w.pred(rec) ? (w.resolve(rec), false) : true));
    });
  }

  /** Resolves with the first (past or future) line matching pred, or {exited} if the child dies. */
  next(pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    const hit = this.lines.find(pred);
    if (hit) return Promise.resolve(hit);
    if (this.exited) return Promise.resolve({ exited: true, stderr: this.stderr });
    return new Promise((resolve) => this.waiters.push({ pred, resolve }));
  }

  kill(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.kill('SIGKILL');
    });
  }
}

/** Path of a compiled fixture script (test/fixtures/bpf/<name>.ts → dist/...). */
export function fixture(name: string): string {
  return join(process.cwd(), 'dist/test/fixtures/bpf', `${name}.js`);
}
