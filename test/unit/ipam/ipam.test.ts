// VIP allocation: sequential, persisted, quarantine after release, exhaustion, bad CIDR, logging.
import test from 'ava';
import { mkdtemp, readFile, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ipam, STATE_FILE, vipQuarantineMs } from '../../../src/ipam/index.js';
import { DNS_TTL_SECONDS } from '../../../src/dns/index.js';
import { captureLog } from '../../helpers/log.js';

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

test('exhaustion with a /30 fails only the services without a VIP, then reuses the oldest released VIP once its quarantine is over', async (t) => {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const ipam = await Ipam.open({ stateDir: await dir(), cidr: '10.1.1.0/30', quarantineMs: 60_000, now: () => now });
  const r = await ipam.assign(['m/a', 'm/b', 'm/c']);
  t.is(vip(r, 'm/a'), '10.1.1.1');
  t.is(vip(r, 'm/b'), '10.1.1.2');
  const c = r.get('m/c');
  t.true(c !== undefined && 'error' in c && c.error.startsWith('No addresses left'));
  t.deepEqual(ipam.waitingServices(), ['m/c']);
  t.is(ipam.msUntilAvailable(), undefined, 'nothing frees up without a release');
  await ipam.release(['m/a']);
  now += 1000;
  const r2 = await ipam.assign(['m/c', 'm/b']);
  t.regex((r2.get('m/c') as { error: string }).error, /quarantined \(first until 2026-01-01T00:01:00\.000Z\)/);
  t.is(ipam.msUntilAvailable(), 59_000);
  now += 59_000;
  t.is(ipam.msUntilAvailable(), 0);
  const r3 = await ipam.assign(['m/c', 'm/b']);
  t.is(vip(r3, 'm/c'), '10.1.1.1');
  t.is(vip(r3, 'm/b'), '10.1.1.2');
  t.deepEqual(ipam.waitingServices(), []);
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

test('concurrent assigns in one process do not hand out the same VIP', async (t) => {
  const ipam = await Ipam.open({ stateDir: await dir(), cidr: '242.0.0.0/8' });
  const rs = await Promise.all(['a', 'b', 'c', 'd'].map((n) => ipam.assign([`m/${n}`])));
  const vips = rs.map((r, i) => vip(r, `m/${'abcd'[i]}`));
  t.is(new Set(vips).size, 4);
});

// ---- quarantine of released VIPs (injected clock) ----

const T0 = Date.parse('2026-01-01T00:00:00Z');

test('the quarantine is twice the DNS TTL the resolver answers with, by default', async (t) => {
  t.is(vipQuarantineMs(DNS_TTL_SECONDS), 2 * DNS_TTL_SECONDS * 1000);
  const d = await dir();
  const ipam = await Ipam.open({ stateDir: d, cidr: '10.0.0.0/24', now: () => T0 });
  await ipam.assign(['m/a']);
  await ipam.release(['m/a']);
  const st = JSON.parse(await readFile(join(d, STATE_FILE), 'utf8')) as { tombstones: Array<{ id: string; releasedAt: string; until: string }> };
  t.is(Date.parse(st.tombstones[0]?.until ?? '') - Date.parse(st.tombstones[0]?.releasedAt ?? ''), vipQuarantineMs(DNS_TTL_SECONDS));
});

test('the quarantine survives a restart: only quarantined addresses left means refusal, until it ends', async (t) => {
  const d = await dir();
  let now = T0;
  const clock = (): number => now;
  const a = await Ipam.open({ stateDir: d, cidr: '10.1.1.0/30', quarantineMs: 60_000, now: clock });
  await a.assign(['m/a', 'm/b']);
  await a.release(['m/a']);
  now += 30_000;
  const b = await Ipam.open({ stateDir: d, cidr: '10.1.1.0/30', quarantineMs: 60_000, now: clock });
  const r = await b.assign(['m/b', 'm/new']);
  t.regex((r.get('m/new') as { error: string }).error, /^No addresses left in 10\.1\.1\.0\/30: .*quarantined \(first until 2026-01-01T00:01:00\.000Z\)/);
  t.is(b.msUntilAvailable(), 30_000);
  now += 30_000;
  const c = await Ipam.open({ stateDir: d, cidr: '10.1.1.0/30', quarantineMs: 60_000, now: clock });
  t.is(vip(await c.assign(['m/new']), 'm/new'), '10.1.1.1');
});

test('a service that comes back within its quarantine gets its old VIP, even in a full range', async (t) => {
  let now = T0;
  const ipam = await Ipam.open({ stateDir: await dir(), cidr: '10.1.1.0/30', quarantineMs: 60_000, now: () => now });
  await ipam.assign(['m/a', 'm/b']);
  await ipam.release(['m/a']);
  now += 1000;
  const r = await ipam.assign(['m/other', 'm/a']);
  t.is(vip(r, 'm/a'), '10.1.1.1');
  t.true('error' in (r.get('m/other') ?? { vip: '' }));
});

test('a new service never gets a released VIP while never-used addresses remain, even after the quarantine', async (t) => {
  let now = T0;
  const ipam = await Ipam.open({ stateDir: await dir(), cidr: '10.0.0.0/29', quarantineMs: 60_000, now: () => now });
  await ipam.assign(['m/a', 'm/b']);
  await ipam.release(['m/a']);
  now += 3_600_000;
  const r = await ipam.assign(['m/c', 'm/d', 'm/e', 'm/f', 'm/g']);
  t.deepEqual(['m/c', 'm/d', 'm/e', 'm/f', 'm/g'].map((id) => vip(r, id)), ['10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.0.6', '10.0.0.1']);
});

test('allocation, release, reuse after quarantine, exhaustion and CIDR change are logged once each; a steady assign logs nothing', async (t) => {
  const d = await dir();
  let now = T0;
  const cap = captureLog();
  const ipam = await Ipam.open({ stateDir: d, cidr: '10.1.1.0/30', quarantineMs: 60_000, now: () => now, log: cap.log });
  await ipam.assign(['m/a', 'm/b', 'm/c']);
  t.like(cap.find(/^VIP allocated$/)[0], { component: 'ipam', service: 'm/a', vip: '10.1.1.1', level: 30 });
  t.like(cap.find(/could not allocate a VIP/)[0], { service: 'm/c', cidr: '10.1.1.0/30', level: 50 });
  const before = cap.lines().length;
  await ipam.assign(['m/a', 'm/b', 'm/c']);
  t.is(cap.lines().length, before, 'nothing changed, nothing logged (the waiting service was already reported)');
  await ipam.release(['m/a']);
  t.like(cap.find(/VIP released/)[0], { service: 'm/a', vip: '10.1.1.1', quarantinedUntil: '2026-01-01T00:01:00.000Z' });
  now += 60_000;
  await ipam.assign(['m/b', 'm/c']);
  t.like(cap.find(/reusing a released VIP after its quarantine/)[0], { service: 'm/c', vip: '10.1.1.1', previousOwner: 'm/a' });
  t.is(cap.find(/could not allocate/).length, 1);
  await Ipam.open({ stateDir: d, cidr: '10.2.0.0/24', log: cap.log });
  t.like(cap.find(/VIP CIDR changed/)[0], { previous: '10.1.1.0/30', cidr: '10.2.0.0/24', keptOutside: 2, level: 40 });
  await Ipam.open({ stateDir: d, cidr: '10.2.0.0/24', log: cap.log });
  t.is(cap.find(/VIP CIDR changed/).length, 1, 'the change is persisted and reported once');
});
