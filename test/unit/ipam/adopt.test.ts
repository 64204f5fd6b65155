// VIPs Kuma's control plane assigned (status.vip.ip) are adopted, so nodes and sidecars agree.
import test from 'ava';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ipam } from '../../../src/ipam/index.js';

const dir = (): Promise<string> => mkdtemp(join(tmpdir(), 'meshext-ipam-adopt-'));
const vip = (m: Map<string, { vip: string } | { error: string }>, id: string): string | undefined => {
  const r = m.get(id);
  return r && 'vip' in r ? r.vip : undefined;
};

test("a claimed VIP is used; the service that held it locally moves; the claimant's old VIP is tombstoned", async (t) => {
  const d = await dir();
  const ipam = await Ipam.open({ stateDir: d, cidr: '242.0.0.0/8' });
  await ipam.assign(['default/a', 'default/b']); // a=.1, b=.2
  const r = await ipam.adopt(new Map([['default/b', '242.0.0.1']]));
  t.deepEqual(r, { moved: ['default/a'], conflicts: [] });
  const after = await ipam.assign(['default/a', 'default/b', 'default/c']);
  t.is(vip(after, 'default/b'), '242.0.0.1');
  // a gets a fresh address, not b's old one (tombstoned: clients may still hold it).
  t.is(vip(after, 'default/a'), '242.0.0.3');
  t.is(vip(after, 'default/c'), '242.0.0.4');
  // persisted: a reopened IPAM agrees
  const again = await Ipam.open({ stateDir: d, cidr: '242.0.0.0/8' });
  t.is(again.allocations().get('default/b'), '242.0.0.1');
});

test('two claims on one VIP: the holder keeps it, the other is a conflict left to assign', async (t) => {
  const ipam = await Ipam.open({ stateDir: await dir(), cidr: '242.0.0.0/8' });
  await ipam.adopt(new Map([['default/x', '242.0.0.9']]));
  const r = await ipam.adopt(new Map([['default/y', '242.0.0.9'], ['default/x', '242.0.0.9']]));
  t.deepEqual(r.conflicts, [{ id: 'default/y', vip: '242.0.0.9', holder: 'default/x' }]);
  const v = await ipam.assign(['default/x', 'default/y']);
  t.is(vip(v, 'default/x'), '242.0.0.9');
  t.is(vip(v, 'default/y'), '242.0.0.1');
  // an unchanged claim is a no-op
  t.deepEqual(await ipam.adopt(new Map([['default/x', '242.0.0.9']])), { moved: [], conflicts: [] });
});
