import { existsSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { Redirector } from '../../src/redirect/index.js';
import { JsonChild, fixture, privilegedTest, runJson, sh, spawnInCgroup, tempBpffs, tempCgroup, tempNetns } from '../helpers/privileged.js';

type LinkMap = Record<string, { action: string; linkId: number }>;

function ourProgsOn(cg: string): string[] {
  const rows = JSON.parse(sh('bpftool', ['-j', 'cgroup', 'show', cg]).stdout.trim() || '[]') as Array<{ name?: string }>;
  return rows.map((r) => r.name ?? '').sort();
}

privilegedTest('loader restart keeps redirecting and updates pinned links in place (same link ids)', async (t) => {
  const cg = tempCgroup(t);
  const pinRoot = join(tempBpffs(t), 'meshext');
  const ns = tempNetns(t);
  const l = new JsonChild(t, spawnInCgroup(null, process.execPath, [fixture('listener'), '127.0.0.1', '0'], { netns: ns }));
  const port = (await l.next((x) => 'listening' in x)).listening as number;
  const opts = JSON.stringify({ vipCidr: '242.0.0.0/8', proxy: { address: '127.0.0.1', port }, cgroupPath: cg, pinRoot, exemptSelf: false });

  const first = await runJson(spawnInCgroup(null, process.execPath, [fixture('loader'), opts]));
  t.is(first.code, 0, first.stderr);
  const links1 = (first.lines[0] as { links: LinkMap }).links;
  t.is(Object.keys(links1).length, 10);
  t.true(Object.values(links1).every((x) => x.action === 'created'));

  // No loader process alive: pinned links keep redirecting.
  const c1 = await runJson(spawnInCgroup(cg, process.execPath, [fixture('client'), '242.3.3.3', '80'], { netns: ns }));
  t.is(Object.assign({}, ...c1.lines).data, 'hello\n', c1.stderr);

  // A loader killed mid-way leaves nothing half-attached that the next start cannot reconcile.
  const killed = spawnInCgroup(null, process.execPath, [fixture('loader'), opts]);
  killed.kill('SIGKILL');
  await runJson(killed);

  const second = await runJson(spawnInCgroup(null, process.execPath, [fixture('loader'), opts]));
  t.is(second.code, 0, second.stderr);
  const links2 = (second.lines[0] as { links: LinkMap }).links;
  for (const [name, v] of Object.entries(links2)) {
    t.is(v.action, 'updated', name);
    t.is(v.linkId, links1[name]!.linkId, `${name} keeps its link id`);
  }
  t.is(ourProgsOn(cg).filter((n) => n.startsWith('mx_')).length, 10, 'no doubled hooks');
  const c2 = await runJson(spawnInCgroup(cg, process.execPath, [fixture('client'), '242.3.3.3', '80'], { netns: ns }));
  t.is(Object.assign({}, ...c2.lines).data, 'hello\n', c2.stderr);

  // `bpf list` shows the links on this cgroup, the maps and the counters.
  const listing = Redirector.list({ pinRoot });
  t.is(listing.links.length, 10);
  t.true(listing.links.every((k) => k.cgroupPath === cg && !k.defunct));
  t.deepEqual(listing.links.map((k) => k.attachType).sort(), ['connect4', 'connect6', 'getpeername4', 'getpeername6', 'recvmsg4', 'recvmsg6', 'sendmsg4', 'sendmsg6', 'sock_ops', 'sock_release']);
  t.is(listing.counters.tcp_redirect, 2);
  const cli = sh(process.execPath, ['bin/meshext.js', 'bpf', 'list', '--pin-root', pinRoot, '-o', 'json']);
  t.is((JSON.parse(cli.stdout) as { links: unknown[] }).links.length, 10);
});

privilegedTest('cleanup detaches and unpins only ours; a foreign multi program on the same cgroup survives', async (t) => {
  const cg = tempCgroup(t);
  const fs = tempBpffs(t);
  const pinRoot = join(fs, 'meshext');
  const foreign = join(fs, 'foreign');
  sh('bpftool', ['prog', 'load', 'bpf/testdata/foreign.bpf.o', foreign]);
  sh('bpftool', ['cgroup', 'attach', cg, 'connect4', 'pinned', foreign, 'multi']);
  t.teardown(() => {
    sh('bpftool', ['cgroup', 'detach', cg, 'connect4', 'pinned', foreign], true);
  });
  const r = await Redirector.start({ vipCidr: '242.0.0.0/8', proxy: { address: '127.0.0.1', port: 15001 }, cgroupPath: cg, pinRoot, exemptSelf: false });
  r.close();
  t.is(ourProgsOn(cg).length, 11);

  const out = sh(process.execPath, ['bin/meshext.js', 'cleanup', '--pin-root', pinRoot]);
  t.regex(out.stdout, /detached 10 links, removed 11 map pins/);
  t.deepEqual(ourProgsOn(cg), ['fx_foreign']);
  t.false(existsSync(pinRoot), 'pin root removed');
  t.deepEqual(readdirSync(dirname(pinRoot)).filter((n) => !n.endsWith('.debug')), ['foreign'], 'only the foreign pin and the kernel .debug iterators remain');
  // Idempotent.
  t.deepEqual(await Redirector.cleanup({ pinRoot }), { links: 0, maps: 0 });
});

privilegedTest('a foreign exclusive program makes start fail naming the cgroup and attach type', async (t) => {
  const cg = tempCgroup(t);
  const fs = tempBpffs(t);
  const foreign = join(fs, 'foreign');
  sh('bpftool', ['prog', 'load', 'bpf/testdata/foreign.bpf.o', foreign]);
  sh('bpftool', ['cgroup', 'attach', cg, 'connect4', 'pinned', foreign]);
  t.teardown(() => {
    sh('bpftool', ['cgroup', 'detach', cg, 'connect4', 'pinned', foreign], true);
  });
  const err = await t.throwsAsync(Redirector.start({ vipCidr: '242.0.0.0/8', proxy: { address: '127.0.0.1', port: 15001 }, cgroupPath: cg, pinRoot: join(fs, 'meshext'), exemptSelf: false }));
  t.is((err as { code?: string }).code, 'MESHEXT_E_BPF_ATTACH_CONFLICT');
  t.true(err!.message.includes(cg) && err!.message.includes('connect4'), err!.message);
});

privilegedTest('links of a removed cgroup are unpinned and recreated on the new attach point', async (t) => {
  const parent = tempCgroup(t);
  const fs = tempBpffs(t);
  const pinRoot = join(fs, 'meshext');
  const gone = join(parent, 'gone');
  const next = join(parent, 'next');
  sh('mkdir', [gone, next]);
  const base = { vipCidr: '242.0.0.0/8', proxy: { address: '127.0.0.1', port: 15001 }, pinRoot, exemptSelf: false };
  (await Redirector.start({ ...base, cgroupPath: gone })).close();
  sh('rmdir', [gone]);
  const r = await Redirector.start({ ...base, cgroupPath: next });
  r.close();
  t.true(Object.values(r.links).every((x) => x.action === 'recreated'));
  t.is(ourProgsOn(next).length, 10);
  t.true(Redirector.list({ pinRoot }).links.every((k) => k.cgroupPath === next));
});

privilegedTest('a program the verifier rejects fails start with the verifier log and the program name', async (t) => {
  const cg = tempCgroup(t);
  const pinRoot = join(tempBpffs(t), 'meshext');
  const saved = process.env.MESHEXT_BPF_OBJECT;
  process.env.MESHEXT_BPF_OBJECT = join(process.cwd(), 'bpf/testdata/bad.bpf.o');
  t.teardown(() => {
    if (saved === undefined) delete process.env.MESHEXT_BPF_OBJECT;
    else process.env.MESHEXT_BPF_OBJECT = saved;
  });
  const err = (await t.throwsAsync(Redirector.start({ vipCidr: '242.0.0.0/8', proxy: { address: '127.0.0.1', port: 15001 }, cgroupPath: cg, pinRoot, exemptSelf: false }))) as Error & { code?: string; program?: string; log?: string; syscall?: string };
  t.is(err.code, 'MESHEXT_E_BPF_LOAD');
  t.is(err.program, 'mx_bad_write');
  t.is(err.syscall, 'bpf_object__load');
  t.regex(err.log ?? '', /invalid bpf_context access/);
  t.deepEqual(ourProgsOn(cg), []);
});
