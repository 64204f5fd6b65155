// Hand edits of the IPAM state file: each bad entry is dropped with an error naming file, entry and value;
// the rest is kept, the original is kept aside, and nothing stops the allocator from opening.
import test from 'ava';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ipam, STATE_FILE } from '../../../src/ipam/index.js';
import { checkState } from '../../../src/ipam/state.js';
import { parseCidr } from '../../../src/ipam/cidr.js';
import { captureLog } from '../../helpers/log.js';

const dir = (): Promise<string> => mkdtemp(join(tmpdir(), 'meshext-ipam-state-'));
const T0 = Date.parse('2026-01-01T00:00:00Z');
const alloc = (vip: string, at = '2025-12-01T00:00:00.000Z'): { vip: string; allocatedAt: string } => ({ vip, allocatedAt: at });

async function openWith(content: unknown, cidr = '242.0.0.0/8'): Promise<{ ipam: Ipam; d: string; path: string; cap: ReturnType<typeof captureLog> }> {
  const d = await dir();
  const path = join(d, STATE_FILE);
  await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
  const cap = captureLog();
  const ipam = await Ipam.open({ stateDir: d, cidr, log: cap.log, now: () => T0 });
  return { ipam, d, path, cap };
}

const state = (allocations: unknown, tombstones: unknown = []): unknown => ({ version: 1, cidr: '242.0.0.0/8', allocations, tombstones });

test('a duplicate VIP: the earlier holder keeps it, the other entry is dropped with an error and gets a new VIP', async (t) => {
  const { ipam, path, cap } = await openWith(state({ 'm/late': alloc('242.0.0.1', '2025-12-02T00:00:00.000Z'), 'm/early': alloc('242.0.0.1'), 'm/ok': alloc('242.0.0.2') }));
  const [err] = cap.find(/allocations\["m\/late"\]\.vip/);
  t.like(err, { level: 50, code: 'MESHEXT_E_IPAM_STATE', file: path, entry: 'allocations["m/late"].vip', value: '242.0.0.1' });
  t.regex(String(err?.msg), /^IPAM state .*ipam\.json: allocations\["m\/late"\]\.vip "242\.0\.0\.1" is also the VIP of m\/early.*entry dropped, m\/late gets a new VIP$/);
  t.deepEqual(Object.fromEntries(ipam.allocations()), { 'm/early': '242.0.0.1', 'm/ok': '242.0.0.2' });
  const r = await ipam.assign(['m/early', 'm/ok', 'm/late']);
  t.is((r.get('m/late') as { vip: string }).vip, '242.0.0.3');
  // The cleaned state is written back (so the error is said once), the hand-edited original kept aside.
  t.is(JSON.parse(await readFile(path, 'utf8')).allocations['m/late'].vip, '242.0.0.3');
  t.true((await readdir(join(path, '..'))).some((f) => f.startsWith(`${STATE_FILE}.bad-`)));
  await Ipam.open({ stateDir: join(path, '..'), cidr: '242.0.0.0/8', log: cap.log });
  t.is(cap.find(/is also the VIP/).length, 1);
});

test('a VIP outside the CIDR, in 127/8 or not an address is dropped with an error naming it; the rest is kept', async (t) => {
  const { ipam, path, cap } = await openWith(state({ 'm/out': alloc('10.0.0.1'), 'm/lo': alloc('127.0.0.1'), 'm/word': alloc('banana'), 'm/none': 'x', 'm/ok': alloc('242.0.0.7') }));
  t.deepEqual(Object.fromEntries(ipam.allocations()), { 'm/ok': '242.0.0.7' });
  const byEntry = new Map(cap.lines().filter((l) => l.code === 'MESHEXT_E_IPAM_STATE').map((l) => [l.entry, l]));
  t.like(byEntry.get('allocations["m/out"].vip'), { file: path, value: '10.0.0.1' });
  t.regex(String(byEntry.get('allocations["m/out"].vip')?.msg), /"10\.0\.0\.1" is outside the VIP CIDR 242\.0\.0\.0\/8; entry dropped, m\/out gets a new VIP/);
  t.regex(String(byEntry.get('allocations["m/lo"].vip')?.msg), /"127\.0\.0\.1" is a loopback address/);
  t.regex(String(byEntry.get('allocations["m/word"].vip')?.msg), /"banana" is not an IPv4 address/);
  t.regex(String(byEntry.get('allocations["m/none"]')?.msg), /"x" must be \{vip, allocatedAt\}/);
});

test('a loopback VIP is refused even when the file claims a loopback CIDR', async (t) => {
  const { ipam, cap } = await openWith({ version: 1, cidr: '127.0.0.0/8', allocations: { 'm/lo': alloc('127.0.0.9') }, tombstones: [] });
  t.is(ipam.allocations().size, 0);
  t.is(cap.find(/is a loopback address/).length, 1);
});

test('allocations: null is named as such; tombstones are kept', async (t) => {
  const { ipam, path, cap } = await openWith(state(null, [{ id: 'm/gone', vip: '242.0.0.1', releasedAt: '2025-12-31T23:59:30.000Z', until: '2026-01-01T00:00:30.000Z' }]));
  const [err] = cap.find(/allocations null/);
  t.like(err, { file: path, entry: 'allocations', value: null });
  t.regex(String(err?.msg), /allocations null must be an object of "mesh\/name": \{vip, allocatedAt\}/);
  // The kept tombstone still quarantines its VIP.
  t.deepEqual((await ipam.assign(['m/new'])).get('m/new'), { vip: '242.0.0.2' });
});

test('an unparseable state file does not stop the allocator: said loudly, kept aside, started empty', async (t) => {
  const { ipam, path, d, cap } = await openWith('{"version": 1, "allocations": {');
  const [err] = cap.find(/is not valid JSON/);
  t.like(err, { level: 50, code: 'MESHEXT_E_IPAM_STATE', file: path });
  const kept = String(err?.keptAs);
  t.is(await readFile(kept, 'utf8'), '{"version": 1, "allocations": {');
  t.is(ipam.allocations().size, 0);
  t.is((await ipam.assign(['m/a'])).size, 1);
  t.is(JSON.parse(await readFile(join(d, STATE_FILE), 'utf8')).allocations['m/a'].vip, '242.0.0.1');
});

test('a tombstone with an unreadable time is quarantined from now, never freed early', async (t) => {
  const { ipam, cap } = await openWith({ version: 1, cidr: '10.1.1.0/30', allocations: { 'm/b': alloc('10.1.1.2') }, tombstones: [{ id: 'm/a', vip: '10.1.1.1', releasedAt: 'yesterday' }] }, '10.1.1.0/30');
  t.regex(String(cap.find(/tombstones\[0\]/)[0]?.msg), /has no readable releasedAt time; 10\.1\.1\.1 is quarantined from now/);
  t.regex((((await ipam.assign(['m/c'])).get('m/c')) as { error: string }).error, /quarantined/);
});

test('a state file from before the quarantine (no `until`) is read without complaint', async (t) => {
  const { ipam, cap } = await openWith({ version: 1, cidr: '10.1.1.0/30', allocations: { 'm/b': alloc('10.1.1.2') }, tombstones: [{ id: 'm/a', vip: '10.1.1.1', releasedAt: '2025-01-01T00:00:00.000Z' }] }, '10.1.1.0/30');
  t.deepEqual(cap.find(/IPAM state/), []);
  t.is(ipam.allocations().get('m/b'), '10.1.1.2');
  t.true('vip' in ((await ipam.assign(['m/c'])).get('m/c') ?? {}), 'a release a year ago is long out of quarantine');
});

test('a loopback VIP CIDR the operator configured is read back from the file, so VIPs stay across restarts', async (t) => {
  const range = parseCidr('127.77.0.0/16');
  const { state, problems } = checkState({ version: 1, cidr: '127.77.0.0/16', allocations: { 'm/a': { vip: '127.77.0.5', allocatedAt: new Date().toISOString() } }, tombstones: [] }, range, { now: Date.now(), quarantineMs: 60_000 });
  t.deepEqual(problems, []);
  t.is(state.allocations['m/a']?.vip, '127.77.0.5');
  // Outside the configured range, loopback stays refused.
  const other = checkState({ version: 1, cidr: '127.77.0.0/16', allocations: { 'm/b': { vip: '127.0.0.9', allocatedAt: new Date().toISOString() } }, tombstones: [] }, range, { now: Date.now(), quarantineMs: 60_000 });
  t.regex(other.problems[0]?.message ?? '', /is outside the VIP CIDR|loopback/);
});
