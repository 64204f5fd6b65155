/** cgroup-v2 discovery and agent self-placement. */
import { readFileSync, mkdirSync, writeFileSync, statfsSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const CGROUP2_SUPER_MAGIC = 0x63677270;

/** The first cgroup2 mount in /proc/mounts (hybrid hosts mount it at e.g. /sys/fs/cgroup/unified). */
export function findCgroup2Mount(mounts = '/proc/mounts'): string {
  for (const line of readFileSync(mounts, 'utf8').split('\n')) {
    const [, dir, type] = line.split(' ');
    if (type === 'cgroup2' && dir) return dir.replace(/\\040/g, ' ');
  }
  throw Object.assign(new Error(`no cgroup2 filesystem in ${mounts}; cgroup eBPF hooks need cgroup v2 (mount -t cgroup2 none /sys/fs/cgroup/unified)`), {
    code: 'MESHEXT_E_BPF_NO_CGROUP2',
  });
}

/** Throws unless path is a directory on a cgroup2 filesystem. */
export function assertCgroup2Dir(path: string): void {
  let type: number;
  try {
    type = statfsSync(path).type;
  } catch (err) {
    throw Object.assign(new Error(`cgroup ${path}: ${(err as Error).message}`), { code: 'MESHEXT_E_BPF_CGROUP', path });
  }
  if (type !== CGROUP2_SUPER_MAGIC) {
    throw Object.assign(new Error(`cgroup ${path} is not on a cgroup2 filesystem (found in /proc/mounts: ${findCgroup2Mount()})`), {
      code: 'MESHEXT_E_BPF_CGROUP',
      path,
    });
  }
}

/** This process's cgroup-v2 path relative to the cgroup2 mount (`/` = the root). */
export function ownCgroup2Path(procSelfCgroup = '/proc/self/cgroup'): string {
  const line = readFileSync(procSelfCgroup, 'utf8').split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw Object.assign(new Error(`${procSelfCgroup} has no cgroup-v2 line (0::...)`), { code: 'MESHEXT_E_BPF_NO_CGROUP2' });
  return line.slice(3);
}

export interface SelfPlacement { path: string; moved: boolean }

/**
 * Puts this process in a cgroup of its own so its cgroup id can be exempted. A process in the
 * cgroup2 root (hybrid hosts, `0::/`) shares the root's id with everything else, so it moves to
 * `<cg2>/<name>`; a process already in a child cgroup (systemd unit, k8s container) stays put.
 */
export function placeSelf(name = 'meshext.agent', cg2 = findCgroup2Mount()): SelfPlacement {
  const rel = ownCgroup2Path();
  if (rel !== '/') return { path: join(cg2, rel), moved: false };
  const dir = join(cg2, name);
  if (!existsSync(dir)) mkdirSync(dir);
  writeFileSync(join(dir, 'cgroup.procs'), `${process.pid}\n`);
  return { path: dir, moved: true };
}
