import test from 'ava';
import dgram from 'node:dgram';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import dnsPacket from 'dns-packet';
import { DnsServer } from '../../src/dns/index.js';

/** Datagrams the kernel dropped on the IPv4 UDP socket bound to `port` (last column of /proc/net/udp). */
function udpDrops(port: number): number {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let drops = 0;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(hex)) drops += Number(f[f.length - 1]);
  }
  return drops;
}
import { Engine, dnsFitReply, dnsServfail } from '../../src/engine/engine.js';
import { Registry } from '../../src/stats/registry.js';
import { TestUpstream, answerA, ask, makeQuery, until } from '../helpers/dns.js';

const valid = [
  makeQuery('owned.mesh.local', 'A', { id: 1 }),
  makeQuery('owned.mesh.local', 'AAAA', { id: 2, edns: 1232 }),
  makeQuery('elsewhere.example', 'TXT', { id: 3, edns: 4096 }),
];

/** Valid queries with random byte flips, truncation, extension, and header count rewrites. */
const mutated = fc
  .tuple(
    fc.constantFrom(...valid),
    fc.array(fc.tuple(fc.nat(80), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
    fc.option(fc.nat(80)),
    fc.uint8Array({ maxLength: 40 }),
    fc.option(fc.tuple(fc.constantFrom(4, 6, 8, 10), fc.integer({ min: 0, max: 0xffff }))),
  )
  .map(([base, flips, cut, tail, count]) => {
    let b = Buffer.concat([Buffer.from(base), Buffer.from(tail)]);
    for (const [pos, v] of flips) if (pos < b.length) b[pos] = v;
    if (count && b.length >= 12) b.writeUInt16BE(count[1], count[0]);
    if (cut !== null) b = b.subarray(0, cut);
    return b;
  });

const anyPacket = fc.oneof(
  fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
  mutated,
  // compression-pointer soup after a plausible header
  fc.array(fc.constantFrom(0xc0, 0x0c, 0x3f, 0x00, 0x01, 0x29), { minLength: 1, maxLength: 300 }).map((a) => Buffer.concat([Buffer.from([0, 1, 1, 0, 0, 1, 0, 9, 0, 9, 0, 9]), Buffer.from(a)])),
);

test('the engine\'s parser and reply builders take any bytes: no crash, and every reply parses back', (t) => {
  const engine = Engine.start(1);
  t.teardown(() => engine.stop());
  engine.dnsTable([{ name: 'owned.mesh.local', a: Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 242, 0, 0, 1]), aCount: 1, aaaa: Buffer.alloc(0), aaaaCount: 0 }]);
  fc.assert(
    fc.property(anyPacket, fc.constantFrom('udp' as const, 'tcp' as const), (b, transport) => {
      const r = engine.dnsResolve(b, transport);
      // Whatever the engine sends is a well-formed response to this query (dns-packet decodes it).
      if (r && 'reply' in r) dnsPacket.decode(r.reply);
      const sf = dnsServfail(b);
      if (sf) dnsPacket.decode(sf);
      dnsFitReply(b, b, transport);
      return true;
    }),
    { numRuns: 20_000, seed: 42 },
  );
  t.pass();
});

test('thousands of hostile packets over UDP and TCP: the resolver keeps answering and in-flight returns to 0', async (t) => {
  const up = await new TestUpstream('127.0.0.2', (q) => [answerA(q, [])]).start();
  t.teardown(() => up.stop());
  const stats = new Registry();
  const server = new DnsServer({ listen: [{ address: '127.0.0.1', port: 0 }], upstreams: [{ address: '127.0.0.2', port: up.port }], upstreamTimeoutMs: 500, stats });
  await server.start();
  t.teardown(() => server.stop());
  server.setRecords(new Map([['owned.mesh.local', { v4: ['242.0.0.1'], v6: [] }]]));
  const port = server.addresses()[0]?.port ?? 0;

  const packets = fc.sample(anyPacket, { numRuns: 6000, seed: 7 });
  const udp = dgram.createSocket('udp4');
  t.teardown(() => udp.close());
  udp.on('message', () => {});
  for (let i = 0; i < packets.length; i++) {
    udp.send(packets[i] ?? Buffer.alloc(0), port, '127.0.0.1');
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 2));
  }

  // TCP: random frames (some with lying length prefixes) on several connections, plus raw garbage.
  const frames = fc.sample(anyPacket, { numRuns: 2000, seed: 8 });
  const conns: Array<Promise<void>> = [];
  for (let c = 0; c < 10; c++) {
    conns.push(
      new Promise<void>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port });
        s.on('data', () => {});
        s.on('error', () => {});
        s.on('close', () => resolve());
        const mine = frames.slice(c * 200, c * 200 + 200).map((f) => {
          const len = Buffer.alloc(2);
          len.writeUInt16BE(c === 9 ? 0xffff : f.length); // the last connection lies about sizes
          return Buffer.concat([len, f]);
        });
        s.end(Buffer.concat(mine));
      }),
    );
  }
  await Promise.all(conns);

  for (const transport of ['udp', 'tcp'] as const) {
    const r = await ask(port, 'OWNED.mesh.local', 'A', { transport });
    t.deepEqual(r.answers.map((a) => a.data), ['242.0.0.1'], transport);
  }
  await until(() => stats.get('meshext_dns_queries_in_flight') === 0);
  // UDP is lossy: on a loaded machine the kernel drops datagrams the resolver never sees; count those too.
  t.true(stats.sum('meshext_dns_queries_total') + udpDrops(port) > 5000);
  t.true(stats.sum('meshext_dns_queries_total', { outcome: 'formerr' }) > 0);
  t.true(stats.sum('meshext_dns_queries_total', { outcome: 'dropped' }) > 0);
});
