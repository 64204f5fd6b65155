// Workload identities from cgroup paths (src/access/identity.ts) and the verdict table built from them (table.ts).
import test from 'ava';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { IdentityResolver, compileGlob, podUidOf, unitOf, validateOverrides } from '../../src/access/identity.js';
import { CgroupWatcher, scanCgroups } from '../../src/access/cgroups.js';
import { AccessIndexer } from '../../src/access/table.js';
import { AccessControl } from '../../src/access/index.js';
import type { AccessTable, Redirector } from '../../src/redirect/index.js';
import { Registry } from '../../src/stats/registry.js';
import { createLogger } from '../../src/log.js';
import type { CompiledService } from '../../src/snapshot/types.js';

const UID = '3f2a6c1e-8b4d-4e5f-9a0b-1c2d3e4f5a6b';
const pods = new Map([[UID, { namespace: 'shop', serviceAccount: 'checkout', mesh: 'default' }]]);
const rules = { zone: 'zone-1', hostMesh: 'default', node: 'node-1', overrides: [], pods };

test('pod cgroups in both kubelet layouts (cgroupfs and systemd) name the pod; unknown pods have no identity', (t) => {
  t.is(podUidOf(`/kubepods/burstable/pod${UID}`), UID);
  t.is(podUidOf(`/kubepods/pod${UID}/0123abcd`), UID, 'guaranteed QoS, container sub-cgroup');
  t.is(podUidOf(`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID.replace(/-/g, '_')}.slice/cri-containerd-12.scope`), UID);
  t.is(podUidOf(`/system.slice/pod${UID}`), undefined, 'a pod-shaped name outside kubepods is not a pod');
  const r = new IdentityResolver(rules);
  t.deepEqual(r.own(`/kubepods/burstable/pod${UID}/abc`), { id: 'spiffe://default.zone-1.mesh.local/ns/shop/sa/checkout', rule: 'pod' });
  t.is(r.own('/kubepods/burstable/pod00000000-0000-0000-0000-000000000000'), undefined);
});

test('systemd services of the system manager get a host identity; sessions, scopes and user units do not', (t) => {
  t.is(unitOf('/system.slice/nginx.service'), 'nginx.service');
  t.is(unitOf('/system.slice/nginx.service/worker'), 'nginx.service');
  t.is(unitOf('/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service'), undefined);
  t.is(unitOf('/system.slice/docker-12ab.scope'), undefined);
  const r = new IdentityResolver(rules);
  t.deepEqual(r.own('/system.slice/getty@tty1.service'), { id: 'spiffe://default.zone-1.mesh.local/host/node-1/unit/getty_tty1.service', rule: 'unit' });
});

test('an explicit mapping wins over the rules; globs: * within a segment, ** across', (t) => {
  t.true(compileGlob('/system.slice/*.service').test('/system.slice/a.service'));
  t.false(compileGlob('/system.slice/*.service').test('/system.slice/a.service/b'));
  t.true(compileGlob('/apps/**').test('/apps/x/y'));
  const r = new IdentityResolver({ ...rules, overrides: validateOverrides([{ cgroup: '/system.slice/nginx.service', spiffeID: 'spiffe://example.org/web' }], 'map.yaml') });
  t.deepEqual(r.own('/system.slice/nginx.service'), { id: 'spiffe://example.org/web', rule: 'override' });
  t.throws(() => validateOverrides([{ cgroup: 'system.slice', spiffeID: 'spiffe://x/y' }], 'map.yaml'), { message: /map.yaml: \[0\].cgroup: expected a cgroup path glob starting with \// });
  t.throws(() => validateOverrides([{ cgroup: '/a', spiffeID: 'spiffe://X/y' }], 'map.yaml'), { message: /map.yaml: \[0\].spiffeID: "spiffe:\/\/X\/y" is not a SPIFFE ID: trust domain characters/ });
});

test('a scan lists sub-cgroups with their ancestor identity, and a mapping covers its whole subtree', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'cg-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  for (const d of ['system.slice/a.service/sub', 'system.slice/b.service/inner.service', `kubepods/burstable/pod${UID}/c1`, 'user.slice']) mkdirSync(join(root, d), { recursive: true });
  const r = new IdentityResolver({ ...rules, overrides: [{ cgroup: '/system.slice/b.service', spiffeID: 'spiffe://example.org/b' }] });
  const { identities, plain } = scanCgroups(root, r);
  const byPath = Object.fromEntries([...identities.values()].map((i) => [i.path, i.id]));
  t.is(byPath['/system.slice/a.service/sub'], 'spiffe://default.zone-1.mesh.local/host/node-1/unit/a.service');
  t.is(byPath['/system.slice/b.service/inner.service'], 'spiffe://example.org/b', 'the mapping covers the subtree, not the unit rule');
  t.is(byPath[`/kubepods/burstable/pod${UID}/c1`], 'spiffe://default.zone-1.mesh.local/ns/shop/sa/checkout');
  t.truthy(identities.get(BigInt(statSync(join(root, 'system.slice/a.service')).ino)), 'keys are the inode numbers (cgroup ids)');
  t.true(plain.includes(join(root, 'user.slice')) && plain.includes(join(root, 'kubepods/burstable')));
});

test('a pod names its mesh by the label only; a mesh that is not a known Mesh or not a DNS label gives no identity', (t) => {
  const cg = `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID.replace(/-/g, '_')}.slice/cri-containerd-abc.scope`;
  const withMesh = (mesh: string, meshes?: Set<string>) =>
    new IdentityResolver({ ...rules, ...(meshes ? { meshes } : {}), pods: new Map([[UID, { namespace: 'attacker', serviceAccount: 'default', mesh }]]) }).own(cg);
  // The forgery the annotation allowed: a trust domain that carries a path matching an allow Prefix of kube-system.
  t.is(withMesh('default.zone-1.mesh.local/ns/kube-system/sa/x'), undefined);
  t.is(withMesh('Default'), undefined, 'not a DNS label');
  t.is(withMesh('a.b'), undefined, 'a dot would put the mesh in someone else\'s trust domain');
  t.is(withMesh('payments', new Set(['default'])), undefined, 'not a Mesh the agent knows');
  t.deepEqual(withMesh('payments', new Set(['default', 'payments'])), { id: 'spiffe://payments.zone-1.mesh.local/ns/attacker/sa/default', rule: 'pod' });
  // Every computed ID is checked: a zone with an uppercase letter makes no valid trust domain.
  t.is(new IdentityResolver({ ...rules, zone: 'Zone' }).own(`/kubepods/burstable/pod${UID}`), undefined);
  t.is(new IdentityResolver({ ...rules, zone: 'Zone' }).own('/system.slice/a.service'), undefined);
});

test('the shallowest pod or unit segment decides: a nested cgroup named after another workload does not take its identity', (t) => {
  const VICTIM = '99999999-8888-7777-6666-555555555555';
  const both = new Map([...pods, [VICTIM, { namespace: 'payments', serviceAccount: 'api', mesh: 'default' }]]);
  const r = new IdentityResolver({ ...rules, pods: both });
  const attacker = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replace(/-/g, '_')}.slice/cri-containerd-x.scope`;
  const self = 'spiffe://default.zone-1.mesh.local/ns/shop/sa/checkout';
  t.is(r.own(`${attacker}/kubepods-pod${VICTIM.replace(/-/g, '_')}.slice`)?.id, self);
  t.is(podUidOf(`/kubepods/burstable/pod${UID}/kubepods/pod${VICTIM}`), UID);
  t.is(unitOf('/system.slice/podman.service/ctr/sshd.service'), 'podman.service');
  t.is(r.own('/system.slice/podman.service/ctr/sshd.service')?.id, 'spiffe://default.zone-1.mesh.local/host/node-1/unit/podman.service');
  t.is(r.own(`/system.slice/podman.service/kubepods/pod${VICTIM}`)?.id, 'spiffe://default.zone-1.mesh.local/host/node-1/unit/podman.service', 'a unit cannot become a pod');
  // An unknown pod decides too: nothing below it gets a pod's or a unit's identity.
  const unknown = new IdentityResolver({ ...rules, pods: new Map([[VICTIM, both.get(VICTIM)!]]) });
  t.is(unknown.own(`/kubepods/burstable/pod${UID}/kubepods/pod${VICTIM}`), undefined);

  // The scan: a sub-cgroup keeps its ancestor's identity whatever it is named; only a mapping changes it.
  const root = mkdtempSync(join(tmpdir(), 'cg-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const nested = `kubepods/burstable/pod${UID}/c1/kubepods/pod${VICTIM}`;
  for (const d of [nested, 'system.slice/podman.service/ctr/sshd.service', `kubepods/burstable/pod${VICTIM}`]) mkdirSync(join(root, d), { recursive: true });
  const scanned = (res: IdentityResolver) => Object.fromEntries([...scanCgroups(root, res).identities.values()].map((i) => [i.path, i.id]));
  const byPath = scanned(r);
  t.is(byPath[`/${nested}`], self);
  t.is(byPath['/system.slice/podman.service/ctr/sshd.service'], 'spiffe://default.zone-1.mesh.local/host/node-1/unit/podman.service');
  t.is(byPath[`/kubepods/burstable/pod${VICTIM}`], 'spiffe://default.zone-1.mesh.local/ns/payments/sa/api', 'the real pod keeps its identity');
  const mapped = scanned(new IdentityResolver({ ...rules, pods: both, overrides: [{ cgroup: '/system.slice/podman.service/ctr/**', spiffeID: 'spiffe://example.org/ctr' }] }));
  t.is(mapped['/system.slice/podman.service/ctr/sshd.service'], 'spiffe://example.org/ctr', 'an explicit mapping still applies below');
});

function governed(id: string, vip: string, perm: CompiledService['permissions']): CompiledService {
  return { id, name: id, mesh: 'default', vip, port: 80, permissions: perm } as unknown as CompiledService;
}

test('the table stores only verdicts that differ from the service default; indexes stay stable and identities are never renumbered', (t) => {
  const perm = { policies: ['p'], deny: [], allowWithShadowDeny: [], allow: [{ policy: 'p', type: 'Exact' as const, value: 'spiffe://td/a' }], meshDefault: 'deny' as const };
  const ix = new AccessIndexer();
  const cg = (entries: Array<[number, string]>) => new Map(entries.map(([k, id]) => [BigInt(k), { path: `/${k}`, id, rule: 'override' as const }]));
  const one = ix.build([governed('default/web', '242.0.0.1', perm)], cg([[10, 'spiffe://td/a'], [11, 'spiffe://td/b'], [12, 'spiffe://td/a']]));
  t.deepEqual([...one.table.cgroups], [[10n, 1], [11n, 2], [12n, 1]]);
  t.deepEqual(one.table.services, [{ vip: '242.0.0.1', port: 80, svc: 0, unlisted: 'denyDefault', noIdentity: 'denyNoIdentity', verdicts: new Map([[1, 'allow']]), owner: 'default/web' }]);
  // b goes away, c comes: c gets a new index, not b's.
  const two = ix.build([governed('default/api', '242.0.0.2', perm), governed('default/web', '242.0.0.1', perm)], cg([[10, 'spiffe://td/a'], [13, 'spiffe://td/c']]));
  t.deepEqual([...two.table.cgroups], [[10n, 1], [13n, 3]]);
  t.deepEqual(two.table.services.map((s) => [s.vip, s.svc]), [['242.0.0.2', 1], ['242.0.0.1', 0]], 'web keeps index 0');
});

test('after a restart the indexer keeps the identity numbers the previous agent left, so no cgroup entry changes key', (t) => {
  const perm = { policies: ['p'], deny: [], allowWithShadowDeny: [], allow: [{ policy: 'p', type: 'Exact' as const, value: 'spiffe://td/a' }], meshDefault: 'deny' as const };
  const cg = (entries: Array<[number, string]>) => new Map(entries.map(([k, id]) => [BigInt(k), { path: `/${k}`, id, rule: 'override' as const }]));
  // The previous agent: cgroups 10 and 12 had identity 5 (td/a), 11 had 7 (td/b), 14 had 9 (gone now).
  const ix = new AccessIndexer(new Map([[10n, 5], [11n, 7], [12n, 5], [14n, 9]]));
  const one = ix.build([governed('default/web', '242.0.0.1', perm)], cg([[10, 'spiffe://td/a'], [11, 'spiffe://td/b'], [12, 'spiffe://td/a'], [13, 'spiffe://td/c']]));
  t.deepEqual([...one.table.cgroups], [[10n, 5], [11n, 7], [12n, 5], [13n, 10]], 'new identities above every old number');
  t.deepEqual(one.table.services[0]?.verdicts, new Map([[5, 'allow']]));
  // Two old numbers for one identity: one is kept, the other cgroup moves (its verdicts are written first).
  const two = new AccessIndexer(new Map([[10n, 5], [12n, 6]])).build([], cg([[10, 'spiffe://td/a'], [12, 'spiffe://td/a']]));
  t.deepEqual([...two.table.cgroups], [[10n, 5], [12n, 5]]);
});

/** A Redirector stand-in that records the tables AccessControl writes. */
function fakeRedirector(previous = new Map<bigint, number>(), capacity = { cgroups: 65536, services: 4096, verdicts: 262144 }) {
  const tables: AccessTable[] = [];
  const r = {
    tables,
    fail: undefined as Error | undefined,
    accessCapacity: () => capacity,
    identityIndexes: () => previous,
    setAccess: (tb: AccessTable) => {
      if (r.fail) throw r.fail;
      tables.push(tb);
      return { written: tb.cgroups.size, removed: 0 };
    },
    accessCounters: () => new Map(),
    denials: [] as Array<{ cgroupId: bigint; svc: number; count: bigint; lastNs: bigint; ident: number; verdict: number }>,
    takeDenials: () => r.denials.splice(0),
  };
  return r;
}

function logSink() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) };
  return { lines, log: createLogger({ level: 'debug', stream } as never) };
}

test('on Kubernetes the access maps a previous agent left stay untouched until the first pod list arrives', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'cg-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, `kubepods/burstable/pod${UID}`), { recursive: true });
  const perm = { policies: ['p'], deny: [], allowWithShadowDeny: [], allow: [], meshDefault: 'deny' as const };
  const fake = fakeRedirector(new Map([[BigInt(statSync(join(root, `kubepods/burstable/pod${UID}`)).ino), 3]]));
  const { lines, log } = logSink();
  const ac = new AccessControl({ redirector: fake as unknown as Redirector, root, rules: { zone: 'zone-1', hostMesh: 'default', node: 'node-1', overrides: [] }, stats: new Registry(), log, podsPending: true });
  t.teardown(() => ac.close());
  ac.setServices([governed('default/web', '242.0.0.1', perm)]);
  ac.refresh('rescan');
  t.is(fake.tables.length, 0, 'nothing written while the pods are unknown');
  t.like(ac.status(), { written: false });
  t.truthy(lines.find((l) => /waiting for the first list of this node's pods/.test(String(l.msg))));
  ac.setPods(pods);
  t.is(fake.tables.length, 1);
  t.deepEqual([...fake.tables[0]!.cgroups.values()], [3], 'the pod keeps the number the previous agent gave it');
  t.like(ac.status(), { written: true });

  // No previous agent: nothing to keep, written at once.
  const fresh = fakeRedirector();
  const ac2 = new AccessControl({ redirector: fresh as unknown as Redirector, root, rules: { zone: 'zone-1', hostMesh: 'default', node: 'node-1', overrides: [] }, stats: new Registry(), log, podsPending: true });
  t.teardown(() => ac2.close());
  ac2.setServices([governed('default/web', '242.0.0.1', perm)]);
  t.is(fresh.tables.length, 1);
});

test('verdicts that do not fit the kernel map: the service refuses everyone, reported once (log, metric, dump); its 403 stays until confirmed', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'cg-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  for (const u of ['a', 'b', 'c']) mkdirSync(join(root, `system.slice/${u}.service`), { recursive: true });
  const allowA = { policies: ['p'], deny: [], allowWithShadowDeny: [], allow: [{ policy: 'p', type: 'Prefix' as const, value: 'spiffe://default.zone-1.mesh.local/host/' }], meshDefault: 'deny' as const };
  // Room for 4 verdicts: web needs 3 (a, b, c allowed), api 3 more: api does not fit.
  const fake = fakeRedirector(new Map(), { cgroups: 100, services: 100, verdicts: 4 });
  const { lines, log } = logSink();
  const stats = new Registry();
  const enforced: Array<ReadonlySet<string>> = [];
  const ac = new AccessControl({ redirector: fake as unknown as Redirector, root, rules: { zone: 'zone-1', hostMesh: 'default', node: 'node-1', overrides: [] }, stats, log, onEnforced: (ids) => enforced.push(ids) });
  t.teardown(() => ac.close());
  ac.setServices([governed('default/web', '242.0.0.1', allowA), governed('default/api', '242.0.0.2', allowA)]);
  const tb = fake.tables.at(-1)!;
  t.deepEqual(tb.services.map((x) => [x.vip, x.unlisted, x.noIdentity, x.verdicts.size]), [['242.0.0.1', 'denyDefault', 'denyNoIdentity', 3], ['242.0.0.2', 'denyDefault', 'denyNoIdentity', 0]]);
  t.like(ac.status(), { failClosed: ['default/api'] });
  t.regex(stats.prometheus(), /meshext_access_services_fail_closed 1/);
  ac.setServices([governed('default/web', '242.0.0.1', allowA), governed('default/api', '242.0.0.2', allowA)]);
  ac.refresh('rescan');
  t.is(lines.filter((l) => /maps full/.test(String(l.msg))).length, 1, 'one line, not one per rescan');
  t.deepEqual([...enforced.at(-1)!].sort(), ['default/api', 'default/web']);

  // A failed write: nothing is confirmed (plans keep their 403), one error line however often it is retried.
  fake.fail = Object.assign(new Error('bpf_map_update_elem: E2BIG'), { code: 'MESHEXT_E_BPF' });
  ac.setServices([governed('default/web', '242.0.0.1', allowA)]);
  ac.setServices([governed('default/web', '242.0.0.1', allowA)]);
  t.deepEqual([...enforced.at(-1)!], []);
  t.is(lines.filter((l) => /access maps not updated/.test(String(l.msg))).length, 1);
  t.like(ac.status(), { lastError: 'bpf_map_update_elem: E2BIG' });
});

test('a service index freed in a build is not handed out in the same build; the table names each index\'s owner', (t) => {
  const perm = { policies: ['p'], deny: [], allowWithShadowDeny: [], allow: [], meshDefault: 'deny' as const };
  const ix = new AccessIndexer();
  ix.build([governed('default/old', '242.0.0.1', perm)], new Map());
  const two = ix.build([governed('default/new', '242.0.0.2', perm)], new Map());
  t.deepEqual(two.table.services.map((x) => [x.owner, x.svc]), [['default/new', 1]], 'index 0 held the old service\'s verdicts and counters');
  const three = ix.build([governed('default/new', '242.0.0.2', perm), governed('default/third', '242.0.0.3', perm)], new Map());
  t.deepEqual(three.table.services.map((x) => [x.owner, x.svc]), [['default/new', 1], ['default/third', 0]], 'free again one build later');
});

test('a pod update that changes no identity tuple (uid, namespace, service account, mesh) rewrites nothing', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'cg-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, `kubepods/burstable/pod${UID}`), { recursive: true });
  const perm = { policies: ['p'], deny: [], allowWithShadowDeny: [], allow: [], meshDefault: 'deny' as const };
  const fake = fakeRedirector();
  const ac = new AccessControl({ redirector: fake as unknown as Redirector, root, rules: { zone: 'zone-1', hostMesh: 'default', node: 'node-1', overrides: [] }, stats: new Registry(), log: logSink().log });
  t.teardown(() => ac.close());
  ac.setServices([governed('default/web', '242.0.0.1', perm)]);
  ac.setPods(new Map(pods));
  const n = fake.tables.length;
  ac.setPods(new Map([[UID, { ...pods.get(UID)! }]]));
  t.is(fake.tables.length, n, 'same tuples: no rescan, no write');
  ac.setPods(new Map([[UID, { ...pods.get(UID)!, serviceAccount: 'other' }]]));
  t.is(fake.tables.length, n + 1);
});

test('the cgroup watcher reacts to created cgroups, not to writes to control files', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cgw-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'cgroup.procs'), '');
  let calls = 0;
  const w = new CgroupWatcher(() => calls++, 5);
  t.teardown(() => w.close());
  w.watch([dir]);
  const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
  for (let i = 0; i < 20; i++) writeFileSync(join(dir, 'cgroup.procs'), `${i}\n`);
  await wait(100);
  t.is(calls, 0, 'writes (inotify IN_MODIFY, fs.watch "change") do not rescan');
  mkdirSync(join(dir, 'new.scope'));
  await wait(100);
  t.is(calls, 1);
});

test('a (cgroup, service) pair denied again is logged once per window, with the count of its repeats', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'cg-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const perm = { policies: ['p'], deny: [], allowWithShadowDeny: [], allow: [], meshDefault: 'deny' as const };
  const fake = fakeRedirector();
  const { lines, log } = logSink();
  const ac = new AccessControl({ redirector: fake as unknown as Redirector, root, rules: { zone: 'zone-1', hostMesh: 'default', node: 'node-1', overrides: [] }, stats: new Registry(), log, denialWindowMs: 50, denialPollMs: 3_600_000 });
  t.teardown(() => ac.close());
  ac.setServices([governed('default/web', '242.0.0.1', perm)]);
  const deny = (cg: bigint, count: bigint) => fake.denials.push({ cgroupId: cg, svc: 0, count, lastNs: 0n, ident: 0, verdict: 4 });
  const denied = () => lines.filter((l) => /denied by MeshTrafficPermission/.test(String(l.msg)));
  deny(7n, 1n);
  ac.logDenials();
  t.is(denied().length, 1);
  for (let i = 0; i < 20; i++) {
    deny(7n, 3n);
    ac.logDenials();
  }
  t.is(denied().length, 1, 'repeats within the window: no new line');
  deny(8n, 1n);
  ac.logDenials();
  t.is(denied().length, 2, 'another cgroup is another pair');
  const until = Date.now() + 60;
  while (Date.now() < until) {
    /* the window passes */
  }
  ac.logDenials();
  const rep = denied().at(-1)!;
  t.like(rep, { msg: 'connections denied by MeshTrafficPermission, repeatedly', count: 60, cgroupId: '7', windowSeconds: 0.05 });
  t.is(denied().length, 3, 'the pair without repeats adds no line');
});
