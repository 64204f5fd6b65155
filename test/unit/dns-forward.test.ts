import test, { type ExecutionContext } from 'ava';
import dnsPacket from 'dns-packet';
import { DnsServer, type DnsServerOptions } from '../../src/dns/index.js';
import { Registry } from '../../src/stats/registry.js';
import { TestUpstream, answerA, ask, blackHole, dig, makeQuery, rcodeOf, udpExchange, until, type UpstreamHandler } from '../helpers/dns.js';

async function upstream(t: ExecutionContext, address: string, handler: UpstreamHandler): Promise<TestUpstream> {
  const u = await new TestUpstream(address, handler).start();
  t.teardown(() => u.stop());
  return u;
}

async function resolver(t: ExecutionContext, upstreams: Array<{ address: string; port: number }>, opts: Partial<DnsServerOptions> = {}): Promise<{ port: number; stats: Registry; server: DnsServer }> {
  const stats = new Registry();
  const server = new DnsServer({ listen: [{ address: '127.0.0.1', port: 0 }], upstreams, stats, upstreamTimeoutMs: 300, ...opts });
  await server.start();
  server.setRecords(new Map([['owned.mesh.local', { v4: ['242.0.0.1'], v6: [] }]]));
  t.teardown(() => server.stop());
  return { port: server.addresses()[0]?.port ?? 0, stats, server };
}

test('unknown names are forwarded over the client transport with a fresh id; the client id is restored', async (t) => {
  const up = await upstream(t, '127.0.0.2', (q) => [answerA(q, q.questions?.[0]?.name === 'nx.example' ? [] : ['192.0.2.7'])]);
  const { port, stats } = await resolver(t, [{ address: '127.0.0.2', port: up.port }]);
  const u = await ask(port, 'www.example.org', 'A', { id: 1111 });
  t.is(u.id, 1111);
  t.deepEqual(u.answers.map((a) => a.data), ['192.0.2.7']);
  const tc = await ask(port, 'www.example.org', 'A', { id: 2222, transport: 'tcp' });
  t.is(tc.id, 2222);
  t.deepEqual(tc.answers.map((a) => a.data), ['192.0.2.7']);
  t.deepEqual(up.seen.map((s) => s.transport), ['udp', 'tcp']);
  t.false(up.seen.every((s, i) => s.id === [1111, 2222][i]), 'upstream ids are chosen by the resolver');
  const nx = await dig(port, ['nx.example', 'A']);
  t.is(nx.status, 'NXDOMAIN');
  t.is(stats.get('meshext_dns_queries_total', { qtype: 'A', outcome: 'forwarded' }), 2);
  t.is(stats.get('meshext_dns_queries_total', { qtype: 'A', outcome: 'nxdomain' }), 1);
  t.is(stats.get('meshext_dns_queries_in_flight'), 0);
});

test('failover: a black-holed and a refused upstream are skipped, in order', async (t) => {
  const hole = await blackHole('127.0.0.5');
  t.teardown(() => hole.close());
  const closed = await blackHole('127.0.0.6');
  await closed.close(); // nothing listens there now: ECONNREFUSED
  const good = await upstream(t, '127.0.0.7', (q) => [answerA(q, ['192.0.2.8'])]);
  const ups = [{ address: '127.0.0.5', port: hole.port }, { address: '127.0.0.6', port: closed.port }, { address: '127.0.0.7', port: good.port }];
  const { port, stats } = await resolver(t, ups);
  for (const transport of ['udp', 'tcp'] as const) {
    const r = await ask(port, 'fail.example', 'A', { transport });
    t.deepEqual(r.answers.map((a) => a.data), ['192.0.2.8'], transport);
  }
  t.is(stats.get('meshext_dns_upstream_failures_total', { upstream: `127.0.0.5:${hole.port}` }), 2);
  t.is(stats.get('meshext_dns_upstream_failures_total', { upstream: `127.0.0.6:${closed.port}` }), 2);
  const d = await dig(port, ['fail.example', 'A']);
  t.deepEqual(d.answers, ['192.0.2.8']);
});

test('an upstream the resolver cannot connect to fails over (no route, as in a netns with only loopback), and alone gives SERVFAIL', async (t) => {
  // Connecting to the limited broadcast address fails on every host: EACCES (no SO_BROADCAST) when there is
  // a route, ENETUNREACH when there is none; dgram hands that error to the connect callback, not to 'error'.
  const unreachable = { address: '255.255.255.255', port: 53 };
  const good = await upstream(t, '127.0.0.7', (q) => [answerA(q, ['192.0.2.8'])]);
  const { port, stats } = await resolver(t, [unreachable, { address: '127.0.0.7', port: good.port }]);
  for (const transport of ['udp', 'tcp'] as const) {
    t.deepEqual((await ask(port, 'noroute.example', 'A', { transport })).answers.map((a) => a.data), ['192.0.2.8'], transport);
  }
  t.is(stats.get('meshext_dns_upstream_failures_total', { upstream: '255.255.255.255:53' }), 2);
  const alone = await resolver(t, [unreachable]);
  for (const transport of ['udp', 'tcp'] as const) t.is(rcodeOf(await ask(alone.port, 'noroute.example', 'A', { transport })), 'SERVFAIL', transport);
  // The resolver is still there: owned names are answered after the failed connects.
  t.deepEqual((await ask(alone.port, 'owned.mesh.local', 'A')).answers.map((a) => a.data), ['242.0.0.1']);
});

test('SERVFAIL when every upstream fails; an upstream SERVFAIL moves on to the next', async (t) => {
  const hole = await blackHole('127.0.0.5');
  t.teardown(() => hole.close());
  const { port, stats } = await resolver(t, [{ address: '127.0.0.5', port: hole.port }]);
  for (const transport of ['udp', 'tcp'] as const) {
    const r = await ask(port, 'dead.example', 'A', { transport, id: 99 });
    t.is(r.id, 99);
    t.is(rcodeOf(r), 'SERVFAIL');
    t.is(r.questions?.[0]?.name, 'dead.example');
  }
  t.is(stats.get('meshext_dns_queries_total', { qtype: 'A', outcome: 'servfail' }), 2);
  const failing = await upstream(t, '127.0.0.8', (q) => [{ ...answerA(q, []), flags: 2 }]);
  const good = await upstream(t, '127.0.0.9', (q) => [answerA(q, ['192.0.2.9'])]);
  const second = await resolver(t, [{ address: '127.0.0.8', port: failing.port }, { address: '127.0.0.9', port: good.port }]);
  t.deepEqual((await ask(second.port, 'x.example', 'A')).answers.map((a) => a.data), ['192.0.2.9']);
  t.is(failing.seen.length, 1);
});

test('a query to black-holed upstreams gets SERVFAIL within its query timeout, over UDP and TCP', async (t) => {
  // Three upstreams that never answer (TCP accepted, never answered), each try allowed 5 s: without a
  // deadline over the whole query the client would wait 15 s; the client here gives up after 2 s.
  const holes = await Promise.all(['127.0.0.5', '127.0.0.6', '127.0.0.7'].map((a) => blackHole(a, { tcp: true })));
  for (const h of holes) t.teardown(() => h.close());
  const ups = holes.map((h, i) => ({ address: `127.0.0.${5 + i}`, port: h.port }));
  const { port, stats } = await resolver(t, ups, { upstreamTimeoutMs: 5000, queryTimeoutMs: 300 });
  for (const transport of ['udp', 'tcp'] as const) {
    const r = await ask(port, 'hole.example', 'A', { transport, id: 77 });
    t.is(rcodeOf(r), 'SERVFAIL', transport);
    t.is(r.id, 77);
  }
  t.is(stats.get('meshext_dns_query_timeout_total'), 2);
  t.is(stats.get('meshext_dns_queries_in_flight'), 0);
});

test('the TC→TCP retry is bounded by the query timeout: a TCP side that never answers still yields the truncated reply', async (t) => {
  const up = await upstream(t, '127.0.0.2', (q, transport) => (transport === 'udp' ? [{ ...answerA(q, []), flags: dnsPacket.TRUNCATED_RESPONSE }] : []));
  const { port, stats } = await resolver(t, [{ address: '127.0.0.2', port: up.port }], { upstreamTimeoutMs: 5000, queryTimeoutMs: 300 });
  const r = await ask(port, 'tc.example', 'A');
  t.true(r.flag_tc, 'the client is told to retry over TCP itself');
  t.deepEqual(up.seen.map((s) => s.transport), ['udp', 'tcp']);
  t.is(stats.get('meshext_dns_query_timeout_total'), 0, 'a reply was relayed, so this is no timeout');
});

test('replies with a wrong id or a wrong question are ignored (no poisoning)', async (t) => {
  let honest = true;
  let shout = false;
  const up = await upstream(t, '127.0.0.2', (q) => {
    if (shout) return [answerA(q, ['192.0.2.11'], { questions: [{ name: (q.questions?.[0]?.name ?? '').toUpperCase(), type: 'A', class: 'IN' }] })];
    const wrongId = answerA(q, ['6.6.6.6'], { id: ((q.id ?? 0) + 1) & 0xffff });
    const wrongName = answerA(q, ['6.6.6.7'], { questions: [{ name: 'other.example', type: 'A', class: 'IN' }] });
    const wrongType = answerA(q, ['6.6.6.8'], { questions: [{ name: q.questions?.[0]?.name ?? '', type: 'MX', class: 'IN' }] });
    const notResponse = { ...answerA(q, ['6.6.6.9']), type: 'query' as const };
    return honest ? [wrongId, wrongName, wrongType, notResponse, answerA(q, ['192.0.2.10'])] : [wrongId, wrongName, wrongType, notResponse];
  });
  const { port } = await resolver(t, [{ address: '127.0.0.2', port: up.port }]);
  for (const transport of ['udp', 'tcp'] as const) {
    t.deepEqual((await ask(port, 'poison.example', 'A', { transport })).answers.map((a) => a.data), ['192.0.2.10'], transport);
  }
  honest = false;
  t.is(rcodeOf(await ask(port, 'poison.example', 'A')), 'SERVFAIL');
  // the upstream echoing the name in another case is still accepted (0x20-style case changes)
  shout = true;
  t.deepEqual((await ask(port, 'poison.example', 'A')).answers.map((a) => a.data), ['192.0.2.11']);
});

test('upstream UDP reply with TC is retried over TCP; big forwarded replies are truncated for the client', async (t) => {
  const many = Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`);
  const up = await upstream(t, '127.0.0.2', (q, transport) => {
    if (transport === 'udp') return [{ ...answerA(q, []), flags: dnsPacket.TRUNCATED_RESPONSE }];
    return [answerA(q, many)];
  });
  const { port } = await resolver(t, [{ address: '127.0.0.2', port: up.port }]);
  // EDNS client with 1232: the 40-record answer (~1100 bytes, names uncompressed) fits, obtained upstream via TCP.
  const r = await ask(port, 'big.example', 'A', { edns: 1232 });
  t.false(r.flag_tc);
  t.is(r.answers.length, 40);
  t.deepEqual(up.seen.map((s) => s.transport), ['udp', 'tcp']);
  // Plain client (512): we truncate, keep the question, set TC; dig then retries over TCP.
  const small = await ask(port, 'big.example', 'A');
  t.true(small.flag_tc);
  t.is(small.answers.length, 0);
  t.is(small.questions?.[0]?.name, 'big.example');
  const d = await dig(port, ['big.example', 'A', '+noedns']);
  t.regex(d.raw, /Truncated, retrying in TCP mode/);
  t.is(d.answers.length, 40);
  const b = await dig(port, ['big.example', 'A', '+bufsize=1232']);
  t.notRegex(b.raw, /Truncated/);
  t.is(b.answers.length, 40);
});

test('in-flight bound: beyond maxInFlight queries get SERVFAIL at once and are counted', async (t) => {
  const hole = await blackHole('127.0.0.5');
  t.teardown(() => hole.close());
  const { port, stats } = await resolver(t, [{ address: '127.0.0.5', port: hole.port }], { maxInFlight: 2, upstreamTimeoutMs: 600 });
  const pending = [ask(port, 'a.example', 'A'), ask(port, 'b.example', 'A')];
  await until(() => stats.get('meshext_dns_queries_in_flight') === 2);
  const over = await ask(port, 'c.example', 'A');
  t.is(rcodeOf(over), 'SERVFAIL');
  t.is(rcodeOf(await ask(port, 'd.example', 'A', { transport: 'tcp' })), 'SERVFAIL');
  t.is(stats.get('meshext_dns_overflow_total'), 2);
  // owned names never wait for upstreams, so they are still answered
  t.deepEqual((await ask(port, 'owned.mesh.local', 'A')).answers.map((a) => a.data), ['242.0.0.1']);
  for (const p of await Promise.all(pending)) t.is(rcodeOf(p), 'SERVFAIL');
  t.is(stats.get('meshext_dns_queries_in_flight'), 0);
});

test('stop() aborts forwarded queries in flight', async (t) => {
  const hole = await blackHole('127.0.0.5');
  t.teardown(() => hole.close());
  const { port, stats, server } = await resolver(t, [{ address: '127.0.0.5', port: hole.port }], { upstreamTimeoutMs: 60_000 });
  const p = udpExchange(port, makeQuery('slow.example', 'A'), 300);
  await until(() => stats.get('meshext_dns_queries_in_flight') === 1);
  await server.stop();
  await until(() => stats.get('meshext_dns_queries_in_flight') === 0);
  await p;
  t.pass();
});
