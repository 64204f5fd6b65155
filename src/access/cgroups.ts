/**
 * The cgroup tree under the attach point, with the identity of each cgroup that has one. Cgroup ids are the
 * inode numbers of cgroup2 directories (what bpf_get_current_cgroup_id returns). Sub-cgroups are listed with
 * their ancestor's identity so the connect hook finds them in one lookup; the hook still climbs to the nearest
 * listed ancestor for a sub-cgroup created since the last scan.
 */
import { readdirSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import type { IdentityResolver, IdentityRule } from './identity.js';

/** One cgroup with an identity. */
export interface CgroupIdentity {
  /** Path relative to the scan root, starting with `/`. */
  path: string;
  id: string;
  rule: IdentityRule;
}

/** Directories a scan visits at most (a node has hundreds to a few thousand cgroups). */
export const MAX_CGROUPS = 65536;

/** Walks `root`: cgroup id → identity for every cgroup that has one, the directories without one, and every cgroup's path. */
export function scanCgroups(
  root: string,
  resolver: IdentityResolver,
  maxDirs = MAX_CGROUPS,
): { identities: Map<bigint, CgroupIdentity>; plain: string[]; paths: Map<bigint, string> } {
  const identities = new Map<bigint, CgroupIdentity>();
  const plain: string[] = [];
  const paths = new Map<bigint, string>();
  const stack: Array<{ dir: string; rel: string; parent: CgroupIdentity | undefined }> = [{ dir: root, rel: '/', parent: undefined }];
  let seen = 0;
  while (stack.length > 0 && seen < maxDirs) {
    const { dir, rel, parent } = stack.pop() as { dir: string; rel: string; parent: CgroupIdentity | undefined };
    seen++;
    let ident: CgroupIdentity | undefined;
    const own = rel === '/' ? undefined : resolver.own(rel);
    // A sub-cgroup keeps its nearest ancestor's identity whatever its name says (whoever may create it could name
    // it after another workload); only an explicit mapping, which the operator wrote, changes it.
    if (own?.rule === 'override' || (own && !parent)) ident = { path: rel, id: own.id, rule: own.rule };
    else if (parent) ident = { path: rel, id: parent.id, rule: parent.rule };
    try {
      const st = statSync(dir, { bigint: true });
      const id = st.ino;
      paths.set(id, rel);
      if (ident) identities.set(id, ident);
      else plain.push(dir);
      // A cgroup2 (kernfs) directory's link count is 2 + its sub-cgroups: a leaf (most cgroups: containers,
      // services) needs no readdir, which is what a scan spends its time on (every cgroup holds tens of control
      // files). Its mtime cannot serve: kernfs does not update it when a sub-cgroup is created.
      if (st.nlink === 2n) continue;
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) stack.push({ dir: join(dir, e.name), rel: rel === '/' ? `/${e.name}` : `${rel}/${e.name}`, parent: ident });
      }
    } catch {
      /* removed while we walked: its processes are gone too */
    }
  }
  return { identities, plain, paths };
}

/**
 * Calls `onChange` soon after a cgroup appears in a directory that has no identity yet (where a new pod or unit
 * cgroup is created), so its identity is in the maps before its first process runs for long. Watches are
 * re-pointed after each scan; a periodic rescan (the caller's) is the safety net.
 */
export class CgroupWatcher {
  private readonly watchers = new Map<string, FSWatcher>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly onChange: () => void,
    private readonly debounceMs = 10,
    private readonly maxWatches = 4096,
  ) {}

  /** Watches exactly these directories (the ones a scan found without identity). */
  watch(dirs: readonly string[]): void {
    const want = new Set(dirs.slice(0, this.maxWatches));
    for (const [d, w] of this.watchers) {
      if (!want.has(d)) {
        w.close();
        this.watchers.delete(d);
      }
    }
    for (const d of want) {
      if (this.watchers.has(d)) continue;
      try {
        // Only 'rename' (an entry created or removed): 'change' fires on every write to a control file such as
        // cgroup.procs, which whoever owns a delegated cgroup can do a hundred times a second.
        const w = watch(d, { persistent: false }, (event) => {
          if (event === 'rename') this.changed();
        });
        w.on('error', () => {
          w.close();
          this.watchers.delete(d);
        });
        this.watchers.set(d, w);
      } catch {
        /* gone already */
      }
    }
  }

  /** Number of directories watched. */
  get size(): number {
    return this.watchers.size;
  }

  close(): void {
    clearTimeout(this.timer);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }

  private changed(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.onChange();
    }, this.debounceMs);
  }
}
