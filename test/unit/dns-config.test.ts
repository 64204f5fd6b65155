import test from 'ava';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readResolvConf, recordsFromSnapshot } from '../../src/dns/index.js';
import { mappedV6 } from '../../src/dns/records.js';
import { qtypeLabel } from '../../src/dns/metrics.js';
import type { CompiledService, Snapshot } from '../../src/snapshot/types.js';

function tmpFile(t: import('ava').ExecutionContext, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshext-dns-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const p = join(dir, 'resolv.conf');
  writeFileSync(p, text);
  return p;
}

test('readResolvConf takes nameserver lines in order, skips comments, junk and duplicates', (t) => {
  const p = tmpFile(
    t,
    ['# generated', 'search cluster.local', 'nameserver 10.96.0.10', '; nameserver 9.9.9.9', 'nameserver not-an-ip', 'nameserver 2001:db8::53 # v6', 'nameserver 10.96.0.10', 'nameserver 127.0.0.1:5353', 'nameserver [::1]:5300', 'options ndots:5'].join('\n'),
  );
  t.deepEqual(readResolvConf(p), [
    { address: '10.96.0.10', port: 53 },
    { address: '2001:db8::53', port: 53 },
    { address: '127.0.0.1', port: 5353 },
    { address: '::1', port: 5300 },
  ]);
});

test('readResolvConf errors name the file', (t) => {
  t.throws(() => readResolvConf('/nonexistent/resolv.conf'), { code: 'MESHEXT_E_DNS_RESOLV_CONF', message: /\/nonexistent\/resolv\.conf: ENOENT/ } as never);
  const empty = tmpFile(t, 'search x\n');
  t.throws(() => readResolvConf(empty), { message: new RegExp(`${empty.replace(/[.]/g, '\\.')} has no usable "nameserver"`) });
});

test('mapped IPv6 form and bounded qtype labels', (t) => {
  t.is(mappedV6('242.0.0.1'), '::ffff:f200:1');
  t.is(mappedV6('242.255.16.254'), '::ffff:f2ff:10fe');
  t.is(qtypeLabel(1), 'A');
  t.is(qtypeLabel(28), 'AAAA');
  t.is(qtypeLabel(65), 'HTTPS');
  t.is(qtypeLabel(4321), 'OTHER');
  t.is(qtypeLabel(undefined), 'OTHER');
});

test('recordsFromSnapshot maps every hostname to its service VIP by family', (t) => {
  const svc = (name: string, vip: string, hostnames: string[]): CompiledService =>
    ({ id: `default/${name}`, name, mesh: 'default', vip, hostnames }) as unknown as CompiledService;
  const a = svc('a', '242.0.0.1', ['a.extsvc.mesh.local', 'a.default.svc']);
  const b = svc('b', 'fd00:242::2', ['b.extsvc.mesh.local']);
  const byHostname = new Map<string, CompiledService>([...a.hostnames.map((h) => [h, a] as const), ...b.hostnames.map((h) => [h, b] as const)]);
  const snap = { generation: 1, services: [a, b], byHostname, byVipPort: new Map(), outbounds: [], rejected: [], warnings: [], vipCidr: '242.0.0.0/8' } as Snapshot;
  t.deepEqual(
    [...recordsFromSnapshot(snap)],
    [
      ['a.extsvc.mesh.local', { v4: ['242.0.0.1'], v6: [] }],
      ['a.default.svc', { v4: ['242.0.0.1'], v6: [] }],
      ['b.extsvc.mesh.local', { v4: [], v6: ['fd00:242::2'] }],
    ],
  );
});
