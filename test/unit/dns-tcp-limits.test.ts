import test, { type ExecutionContext } from 'ava';
import net from 'node:net';
import { DnsServer, type DnsServerOptions } from '../../src/dns/index.js';
import { Registry } from '../../src/stats/registry.js';
import { ask, blackHole, closed, decodeReply, framed, makeQuery, nextReply, openTcp, tcpQuery, until } from '../helpers/dns.js';

const OWNED = 'web.extsvc.mesh.local';
/** An owned name whose answer is about 1.7 KB. */
const BIG = 'many.extsvc.mesh.local';

/** A resolver owning OWNED whose only upstream never answers, so a forwarded query keeps its connection busy. */
async function resolver(t: ExecutionContext, opts: Partial<DnsServerOptions> = {}): Promise<{ port: number; stats: Registry }> {
  const hole = await blackHole('127.0.0.9', { tcp: true });
  const stats = new Registry();
  const server = new DnsServer({
    listen: [{ address: '127.0.0.1', port: 0 }],
    upstreams: [{ address: '127.0.0.9', port: hole.port }],
    upstreamTimeoutMs: 30_000,
    queryTimeoutMs: 30_000,
    stats,
    ...opts,
  });
  await server.start();
  server.setRecords(
    new Map([
      [OWNED, { v4: ['242.0.0.1'], v6: [] }],
      [BIG, { v4: Array.from({ length: 100 }, (_, i) => `242.1.0.${i + 1}`), v6: [] }],
    ]),
  );
  t.teardown(async () => {
    await server.stop();
    await hole.close();
  });
  return { port: server.addresses()[0]?.port ?? 0, stats };
}

async function answered(t: ExecutionContext, s: net.Socket): Promise<void> {
  const r = await tcpQuery(s, makeQuery(OWNED, 'A'));
  t.is(r && decodeReply(r).answers[0]?.data, '242.0.0.1');
}

/** Sends a forwarded query (to the black hole): the connection then has a query outstanding. */
function busy(s: net.Socket): void {
  void tcpQuery(s, makeQuery('pending.example', 'A'));
}

async function open(t: ExecutionContext, port: number, localAddress: string): Promise<net.Socket> {
  const s = await openTcp(port, { localAddress });
  t.teardown(() => s.destroy());
  return s;
}

/** A client that sends a framed query one byte every `everyMs`; resolves how many bytes it sent before the server closed it. */
function trickle(port: number, localAddress: string, everyMs: number, onSocket: (s: net.Socket) => void): Promise<{ sent: number; total: number }> {
  const bytes = framed(makeQuery(OWNED, 'A'));
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    onSocket(s);
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const step = (): void => {
      if (s.destroyed || sent >= bytes.length) return;
      s.write(bytes.subarray(sent, sent + 1));
      sent++;
      timer = setTimeout(step, everyMs);
    };
    s.on('error', () => {});
    s.on('connect', step);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ sent, total: bytes.length });
    });
  });
}

test('TCP limit options are checked and named', (t) => {
  for (const [name, value] of [['tcpReadTimeoutMs', 0], ['tcpMaxConnectionsPerClient', 0], ['queryTimeoutMs', 1.5]] as const) {
    const err = t.throws(() => new DnsServer({ [name]: value }));
    t.is((err as { code?: string }).code, 'MESHEXT_E_DNS_OPTION');
    t.regex(err?.message ?? '', new RegExp(`${name}=${value} must be an integer`));
  }
});

test('a query trickled in a byte at a time is cut at the read timeout, though every byte would reset an idle timer', async (t) => {
  const { port, stats } = await resolver(t, { tcpReadTimeoutMs: 400 });
  let sock: net.Socket | undefined;
  let replied = false;
  // ~35 bytes at one per 100 ms: the query would be whole after about 3.5 s, far past the 400 ms deadline.
  const result = trickle(port, '127.0.0.1', 100, (s) => {
    sock = s;
    s.on('data', () => (replied = true));
  });
  t.teardown(() => sock?.destroy());
  const { sent, total } = await result;
  t.false(replied);
  t.true(sent < total, `closed after ${sent} of ${total} bytes`);
  t.is(stats.get('meshext_dns_tcp_cx_read_timeout_total'), 1);
  // A new connection that sends nothing at all is closed by the same deadline.
  const silent = await open(t, port, '127.0.0.1');
  await closed(silent);
  t.is(stats.get('meshext_dns_tcp_cx_read_timeout_total'), 2);
  t.is(stats.get('meshext_dns_tcp_cx_idle_timeout_total'), 0);
  await until(() => stats.get('meshext_dns_tcp_cx_active') === 0);
  t.pass();
});

test('the read timeout is per query: a connection asking now and then, its queries split in two writes, lives on', async (t) => {
  const { port, stats } = await resolver(t, { tcpReadTimeoutMs: 1000 });
  const s = await open(t, port, '127.0.0.1');
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  // Four queries over about 2 s, twice the read timeout: each gets its own deadline from its first byte.
  for (let i = 0; i < 4; i++) {
    const bytes = framed(makeQuery(OWNED, 'A'));
    const reply = nextReply(s);
    s.write(bytes.subarray(0, 5));
    await sleep(100);
    s.write(bytes.subarray(5));
    const r = await reply;
    t.is(r && decodeReply(r).answers[0]?.data, '242.0.0.1');
    await sleep(400);
  }
  t.false(s.closed);
  t.is(stats.get('meshext_dns_tcp_cx_read_timeout_total'), 0);
});

test('300 trickling clients from one address do not keep another address, or the same one, from TCP answers', async (t) => {
  // Default connection limits (256, 16 per client); the read timeout is lifted so that the limits alone are
  // at work: the attack fills no more than its own 16 slots, each new connection displacing its longest-idle one.
  const { port, stats } = await resolver(t, { tcpReadTimeoutMs: 600_000 });
  const socks: net.Socket[] = [];
  t.teardown(() => {
    for (const s of socks) s.destroy();
  });
  const connected: Array<Promise<void>> = [];
  for (let i = 0; i < 300; i++) {
    connected.push(
      new Promise((r) => {
        void trickle(port, '127.0.0.1', 500, (s) => {
          socks.push(s);
          s.once('connect', () => r());
          s.once('close', () => r());
        });
      }),
    );
  }
  await Promise.all(connected);
  // accepted after all 300 (the kernel queues accepts in order)
  for (const from of ['127.0.0.2', '127.0.0.1']) {
    const s = await open(t, port, from);
    await answered(t, s);
  }
  t.is((await ask(port, OWNED, 'A', { transport: 'tcp' })).answers.length, 1);
  await until(() => (stats.get('meshext_dns_tcp_cx_active') ?? 0) <= 16);
  t.true((stats.get('meshext_dns_tcp_cx_evicted_total') ?? 0) >= 300 - 16);
  t.is(stats.get('meshext_dns_tcp_cx_client_overflow_total'), 0, 'idle tricklers are evicted, not the newcomers refused');
  t.is(stats.get('meshext_dns_tcp_cx_overflow_total'), 0);
});

test('per-client limit: a client whose connections all have queries outstanding is refused at once; others are not', async (t) => {
  const { port, stats } = await resolver(t, { tcpMaxConnectionsPerClient: 2 });
  const a = await open(t, port, '127.0.0.1');
  const b = await open(t, port, '127.0.0.1');
  busy(a);
  busy(b);
  await until(() => stats.get('meshext_dns_queries_in_flight') === 2);
  const c = await open(t, port, '127.0.0.1');
  await closed(c);
  t.is(stats.get('meshext_dns_tcp_cx_client_overflow_total'), 1);
  t.false(a.closed || b.closed, 'busy connections are never evicted');
  // another client still gets in and is answered
  await answered(t, await open(t, port, '127.0.0.2'));
  // a client at its limit with an idle connection: its longest-idle one makes room instead
  const e = await open(t, port, '127.0.0.3');
  await answered(t, e);
  const f = await open(t, port, '127.0.0.3');
  await answered(t, f);
  const g = await open(t, port, '127.0.0.3');
  await closed(e);
  await answered(t, g);
  t.false(f.closed);
  t.is(stats.get('meshext_dns_tcp_cx_evicted_total'), 1);
  t.is(stats.get('meshext_dns_tcp_cx_client_overflow_total'), 1);
});

test('global limit: the connection idle the longest is evicted for a newcomer; with every connection busy the newcomer is refused', async (t) => {
  const { port, stats } = await resolver(t, { tcpMaxConnections: 3 });
  const a = await open(t, port, '127.0.0.1');
  await answered(t, a);
  const b = await open(t, port, '127.0.0.2');
  await answered(t, b);
  const c = await open(t, port, '127.0.0.3');
  busy(c);
  // a has been idle longest (b answered after it; c is waiting for an upstream)
  const d = await open(t, port, '127.0.0.4');
  await closed(a);
  await answered(t, d);
  t.is(stats.get('meshext_dns_tcp_cx_evicted_total'), 1);
  t.false(b.closed || c.closed);
  busy(b);
  busy(d);
  await until(() => stats.get('meshext_dns_queries_in_flight') === 3);
  const e = await open(t, port, '127.0.0.5');
  await closed(e);
  t.is(stats.get('meshext_dns_tcp_cx_overflow_total'), 1);
  await until(() => stats.get('meshext_dns_tcp_cx_active') === 3);
  t.false(b.closed || c.closed || d.closed);
});

test('a client that never reads its answers is not read from either, and is closed as idle while it keeps sending', async (t) => {
  const { port, stats } = await resolver(t, { tcpIdleTimeoutMs: 300 });
  const one = framed(makeQuery(BIG, 'A'));
  const burst = Buffer.concat(Array.from({ length: 200 }, () => one));
  const s = net.connect({ host: '127.0.0.1', port });
  t.teardown(() => s.destroy());
  s.on('error', () => {});
  s.pause(); // never reads: the answers pile up in the socket buffers until the server's writes block
  let sending = true;
  // Without back-pressure the server would go on reading and answering (the idle timer restarting after
  // each answer) for as long as the client sends: here 10 s, during which it must be closed.
  const stopAt = setTimeout(() => (sending = false), 10_000);
  t.teardown(() => clearTimeout(stopAt));
  const pump = setInterval(() => {
    if (sending && !s.destroyed) s.write(burst);
  }, 10);
  t.teardown(() => clearInterval(pump));
  await new Promise<void>((r) => s.on('connect', () => r()));
  await until(() => (stats.get('meshext_dns_tcp_cx_idle_timeout_total') ?? 0) === 1 || !sending);
  t.true(sending, 'closed while the client was still sending');
  t.is(stats.get('meshext_dns_tcp_cx_idle_timeout_total'), 1);
});
