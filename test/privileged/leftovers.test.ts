// The sweep of stale test leftovers (test/helpers/leftovers.ts): it removes what a killed run left, and only that.
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findCgroup2Mount } from '../../src/redirect/cgroup.js';
import { sweepLeftovers } from '../helpers/leftovers.js';
import { privilegedTest, tempCgroup } from '../helpers/privileged.js';

privilegedTest('the leftover sweep removes a stale empty netns, cgroup tree and bpffs mount, and keeps young or occupied ones', async (t) => {
  const tag = `mxsweep${process.pid}-`;
  const prefix = { netns: `${tag}ns-`, cgroup: `${tag}cg-`, bpffs: `${tag}fs-` };
  const ns = `${prefix.netns}a`;
  t.is(spawnSync('ip', ['netns', 'add', ns]).status, 0);
  t.teardown(() => spawnSync('ip', ['netns', 'del', ns]));
  const cg = join(findCgroup2Mount(), `${prefix.cgroup}a`);
  mkdirSync(join(cg, 'pod', 'ctr'), { recursive: true });
  const fs = mkdtempSync(join(tmpdir(), prefix.bpffs));
  t.is(spawnSync('mount', ['-t', 'bpf', 'bpf', fs]).status, 0);
  // An occupied cgroup of the same shape is kept (a sleeping process in it).
  const busy = tempCgroup(t, `${prefix.cgroup}busy`);
  const sleeper = spawnSync('sh', ['-c', `echo $$ > '${busy}/cgroup.procs'; exec sleep 30 >/dev/null 2>&1 &`]);
  t.is(sleeper.status, 0);

  t.deepEqual(sweepLeftovers({ olderThanMs: 60_000, prefix }), [], 'young leftovers are kept: they may be a live run');
  const removed = sweepLeftovers({ olderThanMs: 60_000, now: Date.now() + 120_000, prefix });
  t.deepEqual(removed.sort(), [`bpffs ${fs}`, `cgroup ${cg}`, `netns ${ns}`].sort());
  t.false(existsSync(cg));
  t.false(existsSync(fs));
  t.false(existsSync(join('/run/netns', ns)));
  t.true(existsSync(busy), 'a cgroup with a process in it is kept');
});
