import test from 'ava';
import dgram from 'node:dgram';
import ipaddr from 'ipaddr.js';
import { DnsServer, type DnsRecordSet } from '../../src/dns/index.js';
import { decodeReply, makeQuery } from '../helpers/dns.js';

/** Generation g: every name has three A addresses 10.g.x.1-3 and one v6 fd00::g:x. */
function table(gen: number, names: number): Map<string, DnsRecordSet> {
  const m = new Map<string, DnsRecordSet>();
  for (let i = 0; i < names; i++) m.set(`svc${i}.mesh.local`, { v4: [1, 2, 3].map((k) => `10.${gen}.${i}.${k}`), v6: [`fd00::${gen}:${i}`] });
  return m;
}

function expectA(g: number, i: number): string[] {
  return [1, 2, 3].map((k) => ipaddr.parse(`10.${g}.${i}.${k}`).toNormalizedString()).sort();
}

function expectAAAA(g: number, i: number): string[] {
  const mapped = [1, 2, 3].map((k) => ipaddr.parse(`::ffff:10.${g}.${i}.${k}`).toNormalizedString());
  return [...mapped, ipaddr.parse(`fd00::${g}:${i}`).toNormalizedString()].sort();
}

test('setRecords during a query flood: every answer comes wholly from one table', async (t) => {
  const server = new DnsServer({ listen: [{ address: '127.0.0.1', port: 0 }], upstreams: [] });
  await server.start();
  t.teardown(() => server.stop());
  const names = 50;
  server.setRecords(table(0, names));
  const port = server.addresses()[0]?.port ?? 0;

  const client = dgram.createSocket('udp4');
  t.teardown(() => client.close());
  const total = 6000;
  const window = 64;
  let sent = 0;
  let received = 0;
  const gensSeen = new Set<number>();
  const problems: string[] = [];
  let gen = 0;
  // Swap tables continuously while queries are in flight.
  const swapper = setInterval(() => server.setRecords(table(++gen % 200, names)), 1);
  t.teardown(() => clearInterval(swapper));

  await new Promise<void>((resolve) => {
    const sendOne = (): void => {
      const i = sent++;
      client.send(makeQuery(`SVC${i % names}.mesh.local`, i % 2 ? 'A' : 'AAAA', { id: i & 0xffff }), port, '127.0.0.1');
    };
    client.on('message', (m) => {
      const r = decodeReply(m);
      const idx = (r.id ?? 0) % names;
      const q = r.questions?.[0];
      const got = r.answers.map((a) => ipaddr.parse(String(a.data)).toNormalizedString()).sort();
      // The generation is read from the first address (10.g.i.1 or its mapped form); the whole set must
      // then be exactly that generation's set for this name.
      const first = ipaddr.parse(String(r.answers.find((a) => !String(a.data).startsWith('fd00'))?.data ?? '0.0.0.0'));
      const bytes = first.toByteArray();
      const g = bytes[bytes.length - 3] ?? -1;
      const want = q?.type === 'A' ? expectA(g, idx) : expectAAAA(g, idx);
      if (JSON.stringify(got) !== JSON.stringify(want)) problems.push(`${q?.type} ${q?.name}: ${got.join(',')}`);
      gensSeen.add(g);
      received++;
      if (sent < total) sendOne();
      else if (received === total) resolve();

    });
    // UDP may lose a packet under load; stop (and fail below) instead of hanging if progress stalls.
    let last = -1;
    const watchdog = setInterval(() => {
      if (received === last) {
        clearInterval(watchdog);
        resolve();
      }
      last = received;
    }, 2000);
    t.teardown(() => clearInterval(watchdog));
    for (let i = 0; i < window; i++) sendOne();
  });
  t.is(received, total);
  clearInterval(swapper);
  t.deepEqual(problems, []);
  t.true(gensSeen.size > 1, `answers span several tables (${gensSeen.size})`);
});
