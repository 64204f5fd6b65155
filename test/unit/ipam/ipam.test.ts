// VIP allocation: sequential, persisted, no reuse after delete, exhaustion, bad CIDR.
import test from 'ava';
import { mkdtemp, readFile, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ipam, STATE_FILE } from '../../../src/ipam/index.js';

const dir = (): Promise<string> => mkdtemp(join(tmpdir(), 'meshext-ipam-'));
const vip = (m: Map<string, { vip: string } | { error: string }>, id: string): string | undefined => {
  const r = m.get(id);
  return r && 'vip' in r ? r.vip : undefined;
};

test('sequential from the first host address, skipping the network address', async (t) => {
  const ipam = await Ipam.open({ stateDir: await dir(), cidr: '242.0.0.0/8' });
  const r = await ipam.assign(['default/a', 'default/b', 'other/a']);
  t.deepEqual([vip(r, 'default/a'), vip(r, 'default/b'), vip(r, 'other/a')], ['242.0.0.1', '242.0.0.2', '242.0.0.3']);
  t.is(ipam.cidr, '242.0.0.0/8');
  // existing ones are kept
  const again = await ipam.assign(['default/b', 'default/c']);
  t.is(vip(again, 'default/b'), '242.0.0.2');
  t.is(vip(again, 'default/c'), '242.0.0.4');
});

test('persists atomically and survives reopen', async (t) => {
  const d = await dir();
  const a = await Ipam.open({ stateDir: d, cidr: '242.0.0.0/8' });
  await a.assign(['default/a', 'default/b']);
  const state = JSON.parse(await readFile(join(d, STATE_FILE), 'utf8')) as { allocations: Record<string, { vip: string }> };
  t.is(state.allocations['default/b']?.vip, '242.0.0.2');
  t.deepEqual((await readdir(d)).sort(), [STATE_FILE]); // no temp or lock files left
  const b = await Ipam.open({ stateDir: d, cidr: '242.0.0.0/8' });
  const r = await b.assign(['default/c', 'default/a']);
  t.is(vip(r, 'default/a'), '242.0.0.1');
  t.is(vip(r, 'default/c'), '242.0.0.3');
});

test('a released VIP is not handed to another service, even after reopen; the same service gets it back', async (t) => {
  const d = await dir();
  const a = await Ipam.open({ stateDir: d, cidr: '10.0.0.0/24' });
  await a.assign(['m/a', 'm/b']);
  await a.release(['m/a']);
  const b = await Ipam.open({ stateDir: d, cidr: '10.0.0.0/24' });
  const r = await b.assign(['m/new']);
  t.is(vip(r, 'm/new'), '10.0.0.3');
  const back = await b.assign(['m/a']);
  t.is(vip(back, 'm/a'), '10.0.0.1');
});

test('exhaustion with a /30 fails only the services without a VIP, then reuses the oldest tombstone', async (t) => {
  const ipam = await Ipam.open({ stateDir: await dir(), cidr: '10.1.1.0/30' });
  const r = await ipam.assign(['m/a', 'm/b', 'm/c']);
  t.is(vip(r, 'm/a'), '10.1.1.1');
  t.is(vip(r, 'm/b'), '10.1.1.2');
  const c = r.get('m/c');
  t.true(c !== undefined && 'error' in c && c.error.startsWith('No addresses left'));
  await ipam.release(['m/a']);
  const r2 = await ipam.assign(['m/c', 'm/b']);
  t.is(vip(r2, 'm/c'), '10.1.1.1');
  t.is(vip(r2, 'm/b'), '10.1.1.2');
});

test('bad CIDR: clear error naming the value', async (t) => {
  const e = await t.throwsAsync(Ipam.open({ stateDir: await dir(), cidr: '242.0.0.0/33' }));
  t.regex(e?.message ?? '', /invalid VIP CIDR "242\.0\.0\.0\/33"/);
  t.is((e as { code?: string }).code, 'MESHEXT_E_BAD_CIDR');
  await t.throwsAsync(Ipam.open({ stateDir: await dir(), cidr: 'banana' }), { message: /banana/ });
});

test('non-aligned CIDR is masked; env var is the fallback', async (t) => {
  t.is((await Ipam.open({ stateDir: await dir(), cidr: '242.1.2.3/8' })).cidr, '242.0.0.0/8');
  const prev = process.env.KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR;
  process.env.KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR = '10.5.0.0/16';
  try {
    t.is((await Ipam.open({ stateDir: await dir() })).cidr, '10.5.0.0/16');
  } finally {
    if (prev === undefined) delete process.env.KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR;
    else process.env.KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR = prev;
  }
});

test('a VIP outside a changed CIDR is kept', async (t) => {
  const d = await dir();
  await (await Ipam.open({ stateDir: d, cidr: '242.0.0.0/8' })).assign(['m/a']);
  const moved = await Ipam.open({ stateDir: d, cidr: '10.0.0.0/24' });
  const r = await moved.assign(['m/a', 'm/b']);
  t.is(vip(r, 'm/a'), '242.0.0.1');
  t.is(vip(r, 'm/b'), '10.0.0.1');
});

test('IPv6 CIDR works', async (t) => {
  const r = await (await Ipam.open({ stateDir: await dir(), cidr: 'fd00:242::/64' })).assign(['m/a']);
  t.is(vip(r, 'm/a'), 'fd00:242::1');
});

test('a corrupt state file is refused, not silently reset', async (t) => {
  const d = await dir();
  await writeFile(join(d, STATE_FILE), '{not json');
  const e = await t.throwsAsync(Ipam.open({ stateDir: d, cidr: '242.0.0.0/8' }));
  t.is((e as { code?: string }).code, 'MESHEXT_E_IPAM_STATE');
});

test('concurrent assigns in one process do not hand out the same VIP', async (t) => {
  const ipam = await Ipam.open({ stateDir: await dir(), cidr: '242.0.0.0/8' });
  const rs = await Promise.all(['a', 'b', 'c', 'd'].map((n) => ipam.assign([`m/${n}`])));
  const vips = rs.map((r, i) => vip(r, `m/${'abcd'[i]}`));
  t.is(new Set(vips).size, 4);
});
