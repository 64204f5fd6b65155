import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { native } from '../../src/native/addon.js';
import { Redirector, type AccessTable } from '../../src/redirect/index.js';
import { JsonChild, fixture, privilegedTest, runJson, spawnInCgroup, tempCgroup, tempNetns, tempPinRoot } from '../helpers/privileged.js';

const VIPS = '242.0.0.0/8';

async function runClient(cg: string | null, netns: string, host: string, port: number): Promise<Record<string, unknown>> {
  const r = await runJson(spawnInCgroup(cg, process.execPath, [fixture('client'), host, String(port)], { netns }));
  return Object.assign({}, ...r.lines, { stderr: r.stderr });
}

privilegedTest('connect-time access: the verdict maps allow one cgroup, refuse others with EPERM, climb to a listed ancestor, count and record denials', async (t) => {
  const root = tempCgroup(t);
  const cg = (name: string): string => {
    const p = join(root, name);
    mkdirSync(p, { recursive: true });
    return p;
  };
  const a = cg('kubepods/podA');
  const aChild = cg('kubepods/podA/container1'); // a container sub-cgroup the agent never listed
  const b = cg('system.slice/b.service');
  const shadow = cg('system.slice/c.service');
  const nobody = cg('unknown');
  const pinRoot = tempPinRoot(t);
  const ns = tempNetns(t);
  const l = new JsonChild(t, spawnInCgroup(null, process.execPath, [fixture('listener'), '127.0.0.1', '0'], { netns: ns }));
  const line = await l.next((x) => 'listening' in x || 'exited' in x);
  const port = line.listening as number;
  const r = await Redirector.start({ vipCidr: VIPS, proxy: { address: '127.0.0.1', port }, cgroupPath: root, pinRoot, exemptSelf: false });
  t.teardown(() => r.close());
  const id = (p: string): bigint => native().cgroupId(p);

  // Before any access table: everyone reaches the VIP.
  t.is((await runClient(b, ns, '242.1.2.3', 8080)).data, 'hello\n');

  const table: AccessTable = {
    cgroups: new Map([
      [id(a), 1],
      [id(b), 2],
      [id(shadow), 3],
    ]),
    services: [
      { vip: '242.1.2.3', port: 8080, svc: 7, unlisted: 'denyDefault', noIdentity: 'denyNoIdentity', verdicts: new Map([[1, 'allow'], [3, 'shadowDeny']]) },
    ],
  };
  r.setAccess(table);

  t.is((await runClient(a, ns, '242.1.2.3', 8080)).data, 'hello\n', 'identity 1 allowed');
  t.is((await runClient(aChild, ns, '242.1.2.3', 8080)).data, 'hello\n', 'a sub-cgroup takes its ancestor pod identity');
  t.is((await runClient(b, ns, '242.1.2.3', 8080)).error, 'EPERM', 'identity 2 is not listed: the mesh default denies');
  t.is((await runClient(nobody, ns, '242.1.2.3', 8080)).error, 'EPERM', 'no identity: fail closed');
  t.is((await runClient(shadow, ns, '242.1.2.3', 8080)).data, 'hello\n', 'shadow deny lets it through');
  t.is((await runClient(b, ns, '242.1.2.4', 8080)).data, 'hello\n', 'a VIP without a policy is untouched');
  t.is((await runClient(b, ns, '242.1.2.3', 8081)).data, 'hello\n', 'another port of the VIP is another key');

  // `bpf list` shows each access map's size.
  const sizes = Object.fromEntries(r.describe().maps.map((m) => [m.name, [m.entries, m.maxEntries]]));
  t.like(sizes, { mx_cg_ident: [3, 65536], mx_svc_access: [1, 16384], mx_verdict: [2, 262144], mx_denials: [3, 4096] });
  const c = r.accessCounters([7]).get(7);
  t.deepEqual(c, { allowed: 2, denied_rule: 0, denied_default: 1, denied_no_identity: 1, shadow_denied: 1 });
  const denials = r.takeDenials().sort((x, y) => Number(x.ident - y.ident));
  t.deepEqual(
    denials.map((d) => ({ cg: d.cgroupId, svc: d.svc, ident: d.ident, verdict: d.verdict, count: d.count })),
    [
      { cg: id(nobody), svc: 7, ident: 0, verdict: 4, count: 1n },
      { cg: id(b), svc: 7, ident: 2, verdict: 3, count: 1n },
      { cg: id(shadow), svc: 7, ident: 3, verdict: 5, count: 1n },
    ],
  );
  t.deepEqual(r.takeDenials(), [], 'taken once');

  // A new table flips the outcome for new connections; the removed service no longer costs a lookup.
  r.setAccess({ cgroups: table.cgroups, services: [{ ...table.services[0]!, unlisted: 'allow', verdicts: new Map([[1, 'denyRule']]) }] });
  t.is((await runClient(a, ns, '242.1.2.3', 8080)).error, 'EPERM');
  t.is((await runClient(b, ns, '242.1.2.3', 8080)).data, 'hello\n');
  r.setAccess({ cgroups: new Map(), services: [] });
  t.is((await runClient(a, ns, '242.1.2.3', 8080)).data, 'hello\n', 'no policy: allowed');
  const listing = r.describe();
  for (const m of ['mx_cg_ident', 'mx_svc_access', 'mx_verdict']) t.like(listing.maps.find((x) => x.name === m), { entries: 0 }, m);
});

privilegedTest('a restarted agent: the previous verdicts keep being enforced until it writes its own; it reads the old identity numbers back; counters and denial records start afresh', async (t) => {
  const root = tempCgroup(t);
  const a = join(root, 'a');
  const b = join(root, 'b');
  mkdirSync(a);
  mkdirSync(b);
  const pinRoot = tempPinRoot(t);
  const ns = tempNetns(t);
  const l = new JsonChild(t, spawnInCgroup(null, process.execPath, [fixture('listener'), '127.0.0.1', '0'], { netns: ns }));
  const port = (await l.next((x) => 'listening' in x)).listening as number;
  const opts = { vipCidr: VIPS, proxy: { address: '127.0.0.1', port }, cgroupPath: root, pinRoot, exemptSelf: false };
  const first = await Redirector.start(opts);
  const id = (p: string): bigint => native().cgroupId(p);
  const svc = { vip: '242.1.2.3', port: 8080, svc: 0, unlisted: 'denyDefault' as const, noIdentity: 'denyNoIdentity' as const };
  first.setAccess({ cgroups: new Map([[id(a), 1], [id(b), 2]]), services: [{ ...svc, verdicts: new Map([[1, 'allow']]) }] });
  t.is((await runClient(b, ns, '242.1.2.3', 8080)).error, 'EPERM');
  first.close();

  const second = await Redirector.start(opts);
  t.teardown(() => second.close());
  t.is((await runClient(b, ns, '242.1.2.3', 8080)).error, 'EPERM', 'still enforced by the maps the first agent left');
  t.is((await runClient(a, ns, '242.1.2.3', 8080)).data, 'hello\n');
  t.deepEqual([...second.identityIndexes()].sort((x, y) => x[1] - y[1]), [[id(a), 1], [id(b), 2]]);
  // Identities the new agent does not adopt are numbered from 3; the service index 0 is new to it, so its counts start at zero.
  second.setAccess({ cgroups: new Map([[id(a), 3], [id(b), 4]]), services: [{ ...svc, verdicts: new Map([[4, 'allow']]) }] });
  t.is((await runClient(a, ns, '242.1.2.3', 8080)).error, 'EPERM');
  t.is((await runClient(b, ns, '242.1.2.3', 8080)).data, 'hello\n');
  t.like(second.accessCounters([0]).get(0), { allowed: 1, denied_default: 1 }, 'only this agent\'s connects');
  t.deepEqual(second.takeDenials().map((d) => [d.svc, d.ident]), [[0, 3]], 'the first agent\'s records were dropped');
});

privilegedTest('setAccess writes verdicts, then cgroups, then services, and removes in the opposite order', async (t) => {
  const root = tempCgroup(t);
  const pinRoot = tempPinRoot(t);
  const r = await Redirector.start({ vipCidr: VIPS, proxy: { address: '127.0.0.1', port: 9 }, cgroupPath: root, pinRoot, exemptSelf: false });
  t.teardown(() => r.close());
  // Which map each write goes to, in order (the kernel cannot show the order, the addon calls can).
  const internals = r as unknown as { addon: ReturnType<typeof native>; fd(name: string): number };
  const names = new Map(['mx_cg_ident', 'mx_verdict', 'mx_svc_access'].map((n) => [internals.fd(n), n]));
  const calls: string[] = [];
  const addon = internals.addon;
  internals.addon = new Proxy(addon, {
    get(target, prop, recv) {
      const f = Reflect.get(target, prop, recv) as unknown;
      if ((prop === 'mapUpdate' || prop === 'mapDelete') && typeof f === 'function') {
        return (fd: number, ...rest: unknown[]) => {
          if (names.has(fd)) calls.push(`${prop === 'mapUpdate' ? 'put' : 'drop'} ${names.get(fd)}`);
          return (f as (...a: unknown[]) => unknown).call(target, fd, ...rest);
        };
      }
      return f;
    },
  });
  t.teardown(() => {
    internals.addon = addon;
  });
  const svc = { vip: '242.1.2.3', port: 8080, svc: 0, unlisted: 'denyDefault' as const, noIdentity: 'denyNoIdentity' as const };
  r.setAccess({ cgroups: new Map([[native().cgroupId(root), 1]]), services: [{ ...svc, verdicts: new Map([[1, 'allow']]) }] });
  t.deepEqual(calls, ['put mx_verdict', 'put mx_cg_ident', 'put mx_svc_access']);
  calls.length = 0;
  r.setAccess({ cgroups: new Map(), services: [] });
  t.deepEqual(calls, ['drop mx_svc_access', 'drop mx_cg_ident', 'drop mx_verdict']);
});

privilegedTest('a table larger than a kernel map is refused before anything is written; counters restart when an index changes owner', async (t) => {
  const root = tempCgroup(t);
  const pinRoot = tempPinRoot(t);
  const r = await Redirector.start({ vipCidr: VIPS, proxy: { address: '127.0.0.1', port: 9 }, cgroupPath: root, pinRoot, exemptSelf: false });
  t.teardown(() => r.close());
  const cap = r.accessCapacity();
  t.deepEqual(cap, { cgroups: 65536, services: 4096, verdicts: 262144 });
  const many = new Map<number, 'allow'>();
  for (let i = 1; i <= cap.verdicts + 1; i++) many.set(i, 'allow');
  const svc = { vip: '242.1.2.3', port: 8080, svc: 0, unlisted: 'denyDefault' as const, noIdentity: 'denyNoIdentity' as const };
  t.throws(() => r.setAccess({ cgroups: new Map(), services: [{ ...svc, verdicts: many }] }), { code: 'MESHEXT_E_BPF_MAP_FULL', message: /262145 verdict entries; the kernel map holds 262144/ });
  for (const m of ['mx_svc_access', 'mx_verdict']) t.like(r.describe().maps.find((x) => x.name === m), { entries: 0 }, m);

  r.setAccess({ cgroups: new Map(), services: [{ ...svc, verdicts: new Map(), owner: 'default/a' }] });
  const ns = tempNetns(t);
  t.is((await runClient(root, ns, '242.1.2.3', 8080)).error, 'EPERM');
  t.like(r.accessCounters([0]).get(0), { denied_no_identity: 1 });
  r.setAccess({ cgroups: new Map(), services: [{ ...svc, verdicts: new Map(), owner: 'default/b' }] });
  t.like(r.accessCounters([0]).get(0), { denied_no_identity: 0 }, 'the new owner does not inherit the old one\'s counts');
});

privilegedTest('beforeAttach runs with the maps writable and no program attached yet, so access rules are in place before the first redirected connect', async (t) => {
  const root = tempCgroup(t);
  const pinRoot = tempPinRoot(t);
  const ns = tempNetns(t);
  const l = new JsonChild(t, spawnInCgroup(null, process.execPath, [fixture('listener'), '127.0.0.1', '0'], { netns: ns }));
  const port = (await l.next((x) => 'listening' in x)).listening as number;
  let linksThen = -1;
  const r = await Redirector.start({
    vipCidr: VIPS,
    proxy: { address: '127.0.0.1', port },
    cgroupPath: root,
    pinRoot,
    exemptSelf: false,
    beforeAttach: (x) => {
      linksThen = Redirector.list({ pinRoot }).links.length;
      x.setAccess({ cgroups: new Map(), services: [{ vip: '242.1.2.3', port: 8080, svc: 1, unlisted: 'denyDefault', noIdentity: 'denyNoIdentity', verdicts: new Map() }] });
    },
  });
  t.teardown(() => r.close());
  t.is(linksThen, 0);
  t.is(Redirector.list({ pinRoot }).links.length, 10);
  t.is((await runClient(root, ns, '242.1.2.3', 8080)).error, 'EPERM', 'the first connect already meets the rules');
});
