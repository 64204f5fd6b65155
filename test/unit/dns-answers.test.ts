import test, { type ExecutionContext } from 'ava';
import dnsPacket from 'dns-packet';
import { DnsServer, type DnsServerOptions, type DnsRecordSet } from '../../src/dns/index.js';
import { Registry } from '../../src/stats/registry.js';
import { TestUpstream, answerA, ask, closed, decodeReply, dig, makeQuery, openTcp, rcodeOf, tcpExchange, tcpQuery, udpExchange } from '../helpers/dns.js';

const RECORDS = new Map<string, DnsRecordSet>([
  ['Web.Extsvc.Mesh.Local', { v4: ['242.0.0.1'], v6: [] }],
  ['v6only.extsvc.mesh.local.', { v4: [], v6: ['fd00::1'] }],
  ['many.extsvc.mesh.local', { v4: Array.from({ length: 100 }, (_, i) => `242.1.0.${i + 1}`), v6: [] }],
  ['fifty.extsvc.mesh.local', { v4: Array.from({ length: 50 }, (_, i) => `242.2.0.${i + 1}`), v6: [] }],
]);

/** Starts a resolver on a free port whose upstream records every query it gets (to prove nothing leaks). */
async function start(t: ExecutionContext, opts: Partial<DnsServerOptions> = {}): Promise<{ port: number; upstream: TestUpstream; stats: Registry; server: DnsServer }> {
  const upstream = await new TestUpstream('127.0.0.2', (q) => [answerA(q, ['192.0.2.1'])]).start();
  const stats = new Registry();
  const server = new DnsServer({ listen: [{ address: '127.0.0.1', port: 0 }], upstreams: [{ address: '127.0.0.2', port: upstream.port }], stats, ...opts });
  await server.start();
  server.setRecords(RECORDS);
  t.teardown(async () => {
    await server.stop();
    await upstream.stop();
  });
  const port = server.addresses()[0]?.port ?? 0;
  return { port, upstream, stats, server };
}

test('A for an owned name is authoritative, TTL 30, echoes the question case, keeps the id, over UDP and TCP', async (t) => {
  const { port, upstream, stats } = await start(t);
  for (const transport of ['udp', 'tcp'] as const) {
    const r = await ask(port, 'WEB.extsvc.MESH.local', 'A', { transport, id: 4242 });
    t.is(r.id, 4242);
    t.true(r.flag_qr && r.flag_aa);
    t.is(rcodeOf(r), 'NOERROR');
    t.deepEqual(r.answers?.map((a) => [a.name, a.type, a.ttl, a.data]), [['WEB.extsvc.MESH.local', 'A', 30, '242.0.0.1']]);
    t.is(r.questions?.[0]?.name, 'WEB.extsvc.MESH.local');
  }
  t.is(upstream.seen.length, 0);
  t.is(stats.get('meshext_dns_queries_total', { qtype: 'A', outcome: 'answered' }), 2);
  t.is(stats.get('meshext_dns_records'), 4);
});

test('dig: A case-insensitive with and without trailing dot, AAAA dual-stack mapped, IPv6 VIP', async (t) => {
  const { port } = await start(t);
  for (const name of ['web.extsvc.mesh.local', 'WEB.EXTSVC.MESH.LOCAL.', 'Web.ExtSvc.mesh.local']) {
    const a = await dig(port, [name, 'A']);
    t.is(a.status, 'NOERROR', name);
    t.true(a.flags.includes('aa'), name);
    t.deepEqual(a.answers, ['242.0.0.1'], name);
    t.regex(a.raw, new RegExp(`^${name.replace(/\.$/, '').replace(/\./g, '\\.')}\\.\\s+30\\s+IN\\s+A`, 'm'));
  }
  const aaaa = await dig(port, ['web.extsvc.mesh.local', 'AAAA']);
  t.is(aaaa.status, 'NOERROR');
  t.deepEqual(aaaa.answers, ['::ffff:242.0.0.1']);
  const v6 = await dig(port, ['v6only.extsvc.mesh.local', 'AAAA']);
  t.deepEqual(v6.answers, ['fd00::1']);
  const v6a = await dig(port, ['v6only.extsvc.mesh.local', 'A']);
  t.is(v6a.status, 'NOERROR');
  t.deepEqual(v6a.answers, []);
});

test('AAAA is the ::ffff:f200:1 mapped form in dual-stack and NODATA in IPv4-only mode', async (t) => {
  const dual = await start(t);
  const r = await ask(dual.port, 'web.extsvc.mesh.local', 'AAAA');
  // 16 bytes ::ffff:f200:0001, whatever the text form.
  t.is(r.raw.subarray(r.raw.length - 16).toString('hex'), '00000000000000000000ffff' + 'f2000001');
  const v4 = await start(t, { ipFamilyMode: 'ipv4' });
  const n = await dig(v4.port, ['web.extsvc.mesh.local', 'AAAA']);
  t.is(n.status, 'NOERROR');
  t.true(n.flags.includes('aa'));
  t.deepEqual(n.answers, []);
  t.is(v4.upstream.seen.length, 0);
});

test('other types for owned names are NODATA and never forwarded', async (t) => {
  const { port, upstream, stats } = await start(t);
  for (const type of ['TXT', 'MX', 'SRV', 'HTTPS', 'ANY', 'PTR', 'CAA']) {
    const d = await dig(port, ['web.extsvc.mesh.local', type]);
    t.is(d.status, 'NOERROR', type);
    t.true(d.flags.includes('aa'), type);
    t.deepEqual(d.answers, [], type);
  }
  const viaPacket = await ask(port, 'web.extsvc.mesh.local', 'TXT', { transport: 'tcp' });
  t.deepEqual(viaPacket.answers, []);
  t.is(upstream.seen.length, 0);
  t.is(stats.get('meshext_dns_queries_total', { qtype: 'TXT', outcome: 'answered' }), 2);
});

test('TTL is configurable', async (t) => {
  const { port } = await start(t, { ttl: 5 });
  const r = await ask(port, 'web.extsvc.mesh.local', 'A');
  t.is(r.answers?.[0]?.ttl, 5);
});

test('EDNS: OPT answered with 1232 and DO echoed; no OPT without EDNS; unknown version gets BADVERS', async (t) => {
  const { port } = await start(t);
  const withOpt = await ask(port, 'web.extsvc.mesh.local', 'A', { edns: 4096 });
  const opt = withOpt.additionals.find((a) => a.type === 'OPT');
  t.is(opt?.udpPayloadSize, 1232);
  const without = await ask(port, 'web.extsvc.mesh.local', 'A');
  t.is(without.additionals?.length, 0);
  const dnssec = await dig(port, ['web.extsvc.mesh.local', 'A', '+dnssec']);
  t.regex(dnssec.raw, /EDNS: version: 0, flags: do; udp: 1232/);
  const badvers = await dig(port, ['web.extsvc.mesh.local', 'A', '+edns=1', '+noednsnegotiation']);
  t.is(badvers.status, 'BADVERS');
});

test('big answers: truncated with TC over UDP (512 without EDNS, capped at 1232), complete over TCP', async (t) => {
  const { port } = await start(t);
  // 50 A records (~840 bytes): too big for 512, fits an EDNS client.
  const small = await ask(port, 'fifty.extsvc.mesh.local', 'A');
  t.true(small.flag_tc);
  t.deepEqual(small.answers, []);
  t.is(small.questions?.[0]?.name, 'fifty.extsvc.mesh.local');
  const edns = await ask(port, 'fifty.extsvc.mesh.local', 'A', { edns: 1232 });
  t.false(edns.flag_tc);
  t.is(edns.answers?.length, 50);
  // 100 records (~1640 bytes): even +bufsize=4096 is truncated (we never send more than 1232 over UDP).
  const big = await ask(port, 'many.extsvc.mesh.local', 'A', { edns: 4096 });
  t.true(big.flag_tc);
  t.true(big.raw.length <= 1232);
  const tcp = await ask(port, 'many.extsvc.mesh.local', 'A', { transport: 'tcp' });
  t.false(tcp.flag_tc);
  t.is(tcp.answers?.length, 100);
  // dig without +tcp gets TC and retries over TCP by itself.
  const d = await dig(port, ['many.extsvc.mesh.local', 'A', '+bufsize=4096']);
  t.regex(d.raw, /Truncated, retrying in TCP mode/);
  t.is(d.answers.length, 100);
  const noedns = await dig(port, ['fifty.extsvc.mesh.local', 'A', '+noedns']);
  t.regex(noedns.raw, /Truncated, retrying in TCP mode/);
  t.is(noedns.answers.length, 50);
  const fits = await dig(port, ['fifty.extsvc.mesh.local', 'A', '+bufsize=1232']);
  t.notRegex(fits.raw, /Truncated/);
  t.is(fits.answers.length, 50);
});

test('malformed queries: FORMERR/NOTIMP when the header parses, silence otherwise', async (t) => {
  const { port, stats } = await start(t);
  const base = makeQuery('web.extsvc.mesh.local', 'A', { id: 7 });
  // qdcount = 0 and 2
  for (const qd of [0, 2]) {
    const m = Buffer.from(base);
    m.writeUInt16BE(qd, 4);
    const r = await udpExchange(port, m);
    t.truthy(r);
    t.is((r?.readUInt16BE(2) ?? 0) & 0xf, 1, `qdcount ${qd}`);
    t.is(r?.readUInt16BE(0), 7);
  }
  // opcode STATUS (2) → NOTIMP
  const op = Buffer.from(base);
  op.writeUInt16BE(op.readUInt16BE(2) | (2 << 11), 2);
  const notimp = await udpExchange(port, op);
  t.is((notimp?.readUInt16BE(2) ?? 0) & 0xf, 4);
  // truncated question → FORMERR
  const cut = await udpExchange(port, base.subarray(0, base.length - 3));
  t.is((cut?.readUInt16BE(2) ?? 0) & 0xf, 1);
  // compression pointer in the question → FORMERR
  const ptr = Buffer.concat([base.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
  t.is(((await udpExchange(port, ptr))?.readUInt16BE(2) ?? 0) & 0xf, 1);
  // huge answer count in a small packet → FORMERR without looping
  const huge = Buffer.from(base);
  huge.writeUInt16BE(0xffff, 6);
  t.is(((await tcpExchange(port, huge))?.readUInt16BE(2) ?? 0) & 0xf, 1);
  // QR=1 and short packets get no reply at all
  const resp = Buffer.from(base);
  resp.writeUInt16BE(resp.readUInt16BE(2) | 0x8000, 2);
  t.is(await udpExchange(port, resp, 300), undefined);
  t.is(await udpExchange(port, Buffer.from([1, 2, 3]), 300), undefined);
  t.is(stats.sum('meshext_dns_queries_total', { outcome: 'dropped' }), 2);
  t.is(stats.sum('meshext_dns_queries_total', { outcome: 'formerr' }), 6);
  // still healthy
  t.is((await ask(port, 'web.extsvc.mesh.local', 'A')).answers?.length, 1);
});

test('TCP: pipelined queries on one connection are all answered; oversize frames close it', async (t) => {
  const { port } = await start(t);
  const net = await import('node:net');
  const sock = net.connect({ host: '127.0.0.1', port });
  t.teardown(() => sock.destroy());
  const names = ['web.extsvc.mesh.local', 'v6only.extsvc.mesh.local', 'elsewhere.example', 'WEB.extsvc.mesh.local'];
  const queries = names.map((n, i) => dnsPacket.streamEncode({ type: 'query', id: 100 + i, questions: [{ name: n, type: 'A' }] }));
  sock.write(Buffer.concat(queries));
  sock.end(); // half-close: answers are still owed
  const chunks: Buffer[] = [];
  for await (const c of sock) chunks.push(c as Buffer);
  let buf = Buffer.concat(chunks);
  const ids: number[] = [];
  while (buf.length >= 2) {
    const len = buf.readUInt16BE(0);
    ids.push(dnsPacket.decode(buf.subarray(2, 2 + len)).id ?? -1);
    buf = buf.subarray(2 + len);
  }
  t.deepEqual(ids.sort(), [100, 101, 102, 103]);

  const big = net.connect({ host: '127.0.0.1', port });
  t.teardown(() => big.destroy());
  const hdr = Buffer.alloc(2);
  hdr.writeUInt16BE(60000);
  big.write(hdr);
  await new Promise<void>((r) => big.on('close', () => r()));
  t.pass();
});

test('setRecords validates the whole table and keeps the old one on error', async (t) => {
  const { port, server } = await start(t);
  const err = t.throws(() => server.setRecords(new Map([['ok.mesh', { v4: ['242.0.0.9'], v6: [] }], ['bad.mesh', { v4: ['not-an-ip'], v6: [] }]])));
  t.is((err as Error & { code?: string }).code, 'MESHEXT_E_DNS_RECORD');
  t.regex(err?.message ?? '', /bad\.mesh.*not-an-ip/);
  t.throws(() => server.setRecords(new Map([['bad name!', { v4: ['242.0.0.9'], v6: [] }]])), { message: /bad name!/ });
  t.throws(() => server.setRecords(new Map([['A.mesh', { v4: ['242.0.0.9'], v6: [] }], ['a.mesh.', { v4: ['242.0.0.8'], v6: [] }]])), { message: /given twice/ });
  t.deepEqual((await ask(port, 'web.extsvc.mesh.local', 'A')).answers?.map((a) => a.data), ['242.0.0.1']);
  server.setRecords(new Map([['new.mesh', { v4: ['242.0.0.9'], v6: [] }]]));
  t.deepEqual((await ask(port, 'new.mesh', 'A')).answers?.map((a) => a.data), ['242.0.0.9']);
  // the old name is no longer owned: it is forwarded (the upstream answers 192.0.2.1)
  t.deepEqual((await ask(port, 'web.extsvc.mesh.local', 'A')).answers?.map((a) => a.data), ['192.0.2.1']);
});

test('start rejects clearly when the address is in use, on a bad option and on a forwarding loop', async (t) => {
  const { port } = await start(t);
  const clash = new DnsServer({ listen: [{ address: '127.0.0.1', port }], upstreams: [] });
  const e = await t.throwsAsync(clash.start());
  t.is((e as Error & { code?: string }).code, 'MESHEXT_E_DNS_LISTEN');
  t.regex(e?.message ?? '', new RegExp(`udp 127\\.0\\.0\\.1:${port}: address already in use`));
  t.throws(() => new DnsServer({ ttl: -1 }), { message: /ttl=-1/ });
  t.throws(() => new DnsServer({ listen: [{ address: 'localhost', port: 53 }] }), { message: /listen\[0\]\.address="localhost"/ });
  const free = new DnsServer({ listen: [{ address: '127.0.0.3', port: 0 }], upstreams: [] });
  await free.start();
  const p = free.addresses()[0]?.port ?? 0;
  await free.stop();
  const loop = new DnsServer({ listen: [{ address: '127.0.0.3', port: p }], upstreams: [{ address: '127.0.0.3', port: p }] });
  await t.throwsAsync(loop.start(), { code: 'MESHEXT_E_DNS_LOOP' } as never);
});

test('several listen addresses are served, each with UDP and TCP on one port', async (t) => {
  const server = new DnsServer({ listen: [{ address: '127.0.0.1', port: 0 }, { address: '127.0.0.4', port: 0 }], upstreams: [] });
  await server.start();
  t.teardown(() => server.stop());
  server.setRecords(RECORDS);
  const addrs = server.addresses();
  t.deepEqual(addrs.map((a) => `${a.address}/${a.transport}`), ['127.0.0.1/udp', '127.0.0.1/tcp', '127.0.0.4/udp', '127.0.0.4/tcp']);
  for (const a of addrs) {
    t.not(a.port, 0);
    const r = await ask(a.port, 'web.extsvc.mesh.local', 'A', { transport: a.transport, address: a.address });
    t.is(r.answers[0]?.data, '242.0.0.1');
  }
  // no upstreams configured: unknown names get SERVFAIL
  t.is(rcodeOf(await ask(addrs[0]?.port ?? 0, 'unknown.example', 'A')), 'SERVFAIL');
});

test('TCP: a connection idle after its answers is closed after the idle timeout, and counted', async (t) => {
  const { port, stats } = await start(t, { tcpIdleTimeoutMs: 150 });
  const a = await openTcp(port);
  t.teardown(() => a.destroy());
  const r = await tcpQuery(a, makeQuery('web.extsvc.mesh.local', 'A'));
  t.is(r && decodeReply(r).answers[0]?.data, '242.0.0.1');
  // a says nothing more: closed by the idle timeout
  await closed(a);
  t.is(stats.get('meshext_dns_tcp_cx_idle_timeout_total'), 1);
  t.is(stats.get('meshext_dns_tcp_cx_read_timeout_total'), 0);
  // and the server still takes new connections
  t.is((await ask(port, 'web.extsvc.mesh.local', 'A', { transport: 'tcp' })).answers[0]?.data, '242.0.0.1');
});
