import test from 'ava';
import net from 'node:net';
import { once } from 'node:events';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { blackhole, closeServer, ipEp, listen, newProxy, proxyToBlackhole, roundTrip, settle, snap, svc, tcpEcho, until } from '../helpers/proxy.js';
import { FastPath, type RelayConnectError } from '../../src/proxy/fastpath.js';
import { native, type RelayClosedEvent } from '../../src/redirect/native.js';
import { ConfigError, resolveConfig } from '../../src/agent/config.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Collects everything a socket receives until it closes, and how it ended. */
function collect(s: net.Socket): Promise<{ data: Buffer; error?: string }> {
  const chunks: Buffer[] = [];
  let error: string | undefined;
  s.on('data', (d: Buffer) => chunks.push(d));
  s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  // Half-open sockets close only once both sides ended.
  s.on('end', () => s.end());
  return new Promise((resolve) => s.on('close', () => resolve({ data: Buffer.concat(chunks), ...(error ? { error } : {}) })));
}

function connect(port: number): Promise<net.Socket> {
  const c = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  return once(c, 'connect').then(() => c);
}

/** A proxy on the native path in front of one upstream server; `handler` serves each upstream connection. */
async function setup(handler: (s: net.Socket) => void, o: Parameters<typeof newProxy>[0] = {}) {
  const upSockets = new Set<net.Socket>();
  const up = await listen(net.createServer({ allowHalfOpen: true }, (s) => {
    upSockets.add(s);
    s.on('error', () => {});
    handler(s);
  }));
  const s = svc({ endpoints: [ipEp(up.port)] });
  const { proxy, stats } = newProxy(o);
  proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  const metric = (name: string): number | undefined => stats.get(name, { service: s.kri });
  const done = async (): Promise<void> => {
    await proxy.close();
    for (const u of upSockets) u.destroy();
    await closeServer(up.srv);
  };
  return { proxy, stats, s, port: l.port, up, metric, done };
}

test.serial('relay: several MiB each way arrive byte-exact and are counted from the engine', async (t) => {
  const toUp = randomBytes(6 * 1024 * 1024 + 17);
  const toClient = randomBytes(5 * 1024 * 1024 + 3);
  let upGot: Promise<{ data: Buffer }> | undefined;
  const env = await setup((s) => {
    upGot = collect(s);
    s.end(toClient);
  });
  const c = await connect(env.port);
  const got = collect(c);
  c.end(toUp);
  const r = await got;
  t.is(env.proxy.dataPath(), 'native');
  t.is(r.error, undefined);
  t.is(sha(r.data), sha(toClient));
  t.is(sha((await upGot!).data), sha(toUp));
  await settle(env.proxy);
  await until(() => env.proxy.activeConnections() === 0 && env.metric('meshext_upstream_cx_active') === 0, 'close');
  t.is(env.metric('meshext_upstream_cx_tx_bytes_total'), toUp.length);
  t.is(env.metric('meshext_upstream_cx_rx_bytes_total'), toClient.length);
  t.is(env.metric('meshext_downstream_cx_active'), 0);
  t.is(env.proxy.clusters()[0]?.endpoints[0]?.active, 0);
  t.is(env.proxy.engineStats()?.sessions, 0);
  await env.done();
});

test.serial('relay: a short exchange is copied; bulk traffic moves to splice(2) pipes', async (t) => {
  const env = await setup((s) => s.pipe(s));
  t.is(await roundTrip(env.port, 'short'), 'short');
  await settle(env.proxy);
  t.like(env.proxy.engineStats(), { pipesPooled: 0, pipesInUse: 0 }, 'a short exchange takes no pipe');
  const big = randomBytes(4 * 1024 * 1024);
  const c = await connect(env.port);
  const got = collect(c);
  c.end(big);
  t.is(sha((await got).data), sha(big));
  await settle(env.proxy);
  // A direction splices once a read fills the buffer (the 4 MiB upload does at once; the echo coming back
  // may arrive in smaller pieces and stay copied); pipes go back to the pool when the session ends.
  t.true((env.proxy.engineStats()?.pipesPooled ?? 0) >= 1, 'bulk traffic took a pipe');
  t.is(env.proxy.engineStats()?.pipesInUse, 0);
  t.is(env.metric('meshext_upstream_cx_tx_bytes_total'), big.length + 5);
  await env.done();
});

test.serial('relay: client half-close reaches the upstream, which keeps answering', async (t) => {
  const env = await setup((s) => {
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    // Answers only after the client's FIN arrived: proves the FIN went through and the other way stays open.
    s.on('end', () => {
      s.write('got:' + Buffer.concat(chunks).toString());
      setImmediate(() => s.end(' bye'));
    });
  });
  const c = await connect(env.port);
  const got = collect(c);
  c.end('question');
  t.is((await got).data.toString(), 'got:question bye');
  await env.done();
});

test.serial('relay: upstream half-close reaches the client, which keeps sending', async (t) => {
  let upGot: Promise<{ data: Buffer }> | undefined;
  const env = await setup((s) => {
    upGot = collect(s);
    s.end('greeting then FIN');
  });
  const c = await connect(env.port);
  const chunks: Buffer[] = [];
  c.on('data', (d: Buffer) => chunks.push(d));
  await once(c, 'end');
  t.is(Buffer.concat(chunks).toString(), 'greeting then FIN');
  c.write('still ');
  c.end('talking');
  t.is((await upGot!).data.toString(), 'still talking');
  await settle(env.proxy);
  await until(() => env.proxy.activeConnections() === 0, 'close');
  await env.done();
});

test.serial('relay: an upstream reset resets the client', async (t) => {
  const env = await setup((s) => {
    s.once('data', () => s.resetAndDestroy());
  });
  const c = await connect(env.port);
  const got = collect(c);
  c.write('provoke');
  t.is((await got).error, 'ECONNRESET');
  await settle(env.proxy);
  await until(() => env.proxy.activeConnections() === 0 && env.metric('meshext_upstream_cx_active') === 0, 'close');
  await env.done();
});

test.serial('relay: a client reset resets the upstream', async (t) => {
  let upGot: Promise<{ data: Buffer; error?: string }> | undefined;
  let seen!: () => void;
  const arrived = new Promise<void>((r) => (seen = r));
  const env = await setup((s) => {
    upGot = collect(s);
    s.once('data', () => seen());
  });
  const c = await connect(env.port);
  c.write('hello');
  await arrived;
  c.resetAndDestroy();
  t.is((await upGot!).error, 'ECONNRESET');
  await settle(env.proxy);
  await until(() => env.proxy.activeConnections() === 0, 'close');
  await env.done();
});

test.serial('relay: an idle connection is closed after the configured idle timeout', async (t) => {
  const env = await setup(() => {}, { tcpIdleTimeoutMs: 150 });
  const c = await connect(env.port);
  const got = collect(c);
  c.write('one');
  const r = await got;
  t.is(r.error, undefined);
  await settle(env.proxy);
  await until(() => env.proxy.activeConnections() === 0 && env.metric('meshext_upstream_cx_active') === 0, 'close');
  t.is(env.metric('meshext_upstream_cx_tx_bytes_total'), 3);
  await env.done();
});

test.serial('relay: drain force-closes relayed connections at its deadline and settles the gauges', async (t) => {
  const env = await setup(() => {});
  const conns = await Promise.all([connect(env.port), connect(env.port)]);
  const closed = conns.map(collect);
  // The engine routes and connects before JS hears of a connection: wait for both sides.
  await until(() => env.proxy.engineStats()?.sessions === 2 && env.proxy.activeConnections() === 2, 'hand-over');
  t.is(env.proxy.activeConnections(), 2);
  t.is(env.stats.get('meshext_relay_sessions'), 2);
  const { remaining } = await env.proxy.drain(20);
  t.is(remaining, 2);
  for (const r of await Promise.all(closed)) t.is(r.error, undefined);
  await settle(env.proxy);
  await until(() => env.proxy.activeConnections() === 0, 'close');
  t.is(env.metric('meshext_downstream_cx_active'), 0);
  t.is(env.metric('meshext_upstream_cx_active'), 0);
  await until(() => env.stats.get('meshext_relay_sessions') === 0, 'engine sessions gauge');
  await env.done();
});

test.serial('relay: closing the proxy stops the engine and accounts live connections before it returns', async (t) => {
  const env = await setup((s) => s.write('hi'));
  const c = await connect(env.port);
  let seen = '';
  c.on('data', (d: Buffer) => (seen += d.toString()));
  const got = collect(c);
  // The greeting has crossed the engine: the session is connected and relaying.
  await until(() => env.proxy.engineStats()?.sessions === 1 && seen === 'hi', 'relaying');
  await env.proxy.settled();
  t.is(env.metric('meshext_upstream_cx_active'), 1);
  await env.proxy.close();
  t.is(env.proxy.activeConnections(), 0);
  t.is(env.metric('meshext_downstream_cx_active'), 0);
  t.is(env.metric('meshext_upstream_cx_active'), 0);
  t.is(env.metric('meshext_upstream_cx_rx_bytes_total'), 2);
  t.is((await got).data.toString(), 'hi');
  await env.done();
});

test.serial('relay: timers of closed sessions do not pile up under connection churn', async (t) => {
  const echo = await tcpEcho();
  const s = svc({ endpoints: [ipEp(echo.port)] });
  const { proxy } = newProxy();
  proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  // More closed sessions than the compaction threshold (1,024 stale entries on a loop with none open).
  const total = 1300;
  for (let done = 0; done < total; done += 100) {
    await Promise.all(Array.from({ length: 100 }, () => new Promise<void>((resolve) => {
      const c = net.connect({ host: '127.0.0.1', port: l.port });
      c.on('connect', () => c.end('x'));
      c.on('data', () => {});
      c.on('close', () => resolve());
    })));
  }
  await settle(proxy);
  await until(() => proxy.activeConnections() === 0, 'all closed');
  const st = proxy.engineStats();
  t.is(st?.sessions, 0);
  // Each session armed its one-hour idle timer; without compaction all 1,300 entries would remain.
  t.true((st?.timers ?? Infinity) <= 1024, `timers: ${st?.timers}`);
  await proxy.close();
  await closeServer(echo.srv);
});

test.serial('relay: a live session keeps one idle timer entry once its connect deadline has passed', async (t) => {
  const echo = await tcpEcho();
  const s = svc({ endpoints: [ipEp(echo.port)] });
  const { proxy } = newProxy({ connectTimeoutMs: 200 });
  proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  const clients = await Promise.all(Array.from({ length: 50 }, () => connect(l.port)));
  await until(() => proxy.engineStats()?.sessions === 50 && echo.accepted() === 50, 'all connected');
  // Let every connect deadline fire: each must retire its own heap entry, not start a second idle chain.
  await new Promise((r) => setTimeout(r, 400));
  const st = proxy.engineStats();
  t.true((st?.timers ?? Infinity) <= 50, `timers: ${st?.timers} for 50 sessions`);
  for (const c of clients) c.destroy();
  await proxy.close();
  await closeServer(echo.srv);
});

/** An accepted client connection whose early bytes Node has already read into its buffer, and an upstream server that speaks first. */
async function clientWithBufferedBytes(upstreamSays: Buffer, clientSays: Buffer) {
  let upSock: net.Socket | undefined;
  const up = await listen(net.createServer({ allowHalfOpen: true }, (s) => {
    upSock = s;
    s.on('error', () => {});
    s.write(upstreamSays);
  }));
  let accepted!: (s: net.Socket) => void;
  const acc = new Promise<net.Socket>((r) => (accepted = r));
  const front = await listen(net.createServer({ allowHalfOpen: true }, (s) => accepted(s)));
  const client = await connect(front.port);
  client.write(clientSays);
  const inner = await acc;
  inner.pause();
  // Wait until Node has read the early payload into its buffer: it must survive the hand-over.
  await until(() => inner.readableLength === clientSays.length, 'buffered bytes');
  const upSocket = async (): Promise<net.Socket> => {
    await until(() => upSock !== undefined, 'upstream accepted');
    return upSock as net.Socket;
  };
  return { client, inner, upPort: up.port, upSocket, servers: [up.srv, front.srv] };
}

for (const splice of [true, false]) {
  test.serial(`relay: bytes Node buffered before the hand-over go first; the engine dials the upstream (${splice ? 'splice' : 'copy'} mode)`, async (t) => {
    const greeting = Buffer.from('220 server speaks first\r\n');
    const early = Buffer.from('EHLO early\r\n');
    const p = await clientWithBufferedBytes(greeting, early);
    const fast = FastPath.start(1);
    let closed!: (e: RelayClosedEvent) => void;
    const ended = new Promise<RelayClosedEvent>((r) => (closed = r));
    const relayed = fast.adoptTcpClient(p.inner, 0, closed, { splice });
    if (!relayed) return t.fail('the engine refused the client');
    t.true(p.inner.destroyed);
    let connected = 0;
    await relayed.connect('127.0.0.1', p.upPort, 5000, () => connected++);
    t.is(connected, 1);
    const upSock = await p.upSocket();
    const upGot = collect(upSock);
    const clientGot = collect(p.client);
    const bulk = randomBytes(3 * 1024 * 1024);
    p.client.end(bulk);
    upSock.end(bulk);
    t.is(sha((await upGot).data), sha(Buffer.concat([early, bulk])));
    t.is(sha((await clientGot).data), sha(Buffer.concat([greeting, bulk])));
    const ev = await ended;
    t.is(ev.reason, 'done');
    t.is(ev.rx, greeting.length + bulk.length);
    t.is(ev.tx, early.length + bulk.length);
    // The early bytes were read by Node (counted on its socket), so the engine counts only what it moved.
    t.is(ev.downstreamRx, bulk.length);
    t.is(ev.downstreamTx, greeting.length + bulk.length);
    fast.stop();
    for (const s of p.servers) await closeServer(s);
  });
}

test.serial('relay: an engine-side connect reports refusals at once and the session takes the next target', async (t) => {
  const p = await clientWithBufferedBytes(Buffer.from('up'), Buffer.from('hi'));
  const dead = await listen(net.createServer());
  await closeServer(dead.srv);
  const fast = FastPath.start(1);
  const relayed = fast.adoptTcpClient(p.inner, 0, () => {});
  if (!relayed) return t.fail('the engine refused the client');
  const err = await relayed.connect('127.0.0.1', dead.port, 5000, () => t.fail('not connected')).catch((e: RelayConnectError) => e);
  t.is((err as RelayConnectError).code, 'ECONNREFUSED');
  t.false((err as RelayConnectError).timedOut);
  const bad = await relayed.connect('not-an-ip', 1, 5000, () => t.fail('not connected')).catch((e: RelayConnectError) => e);
  t.is((bad as RelayConnectError).code, 'EINVAL');
  await relayed.connect('127.0.0.1', p.upPort, 5000, () => {});
  const got = collect(p.client);
  const upGot = collect(await p.upSocket());
  p.client.end();
  (await p.upSocket()).end();
  t.is((await got).data.toString(), 'up');
  t.is((await upGot).data.toString(), 'hi');
  fast.stop();
  for (const s of p.servers) await closeServer(s);
});

test.serial('relay: stopping the engine closes live and still-connecting sessions and reports them synchronously', async (t) => {
  const p = await clientWithBufferedBytes(Buffer.from('a'), Buffer.from('b'));
  const q = await clientWithBufferedBytes(Buffer.from('c'), Buffer.from('d'));
  const hole = await blackhole();
  t.teardown(hole.close);
  const fast = FastPath.start(1);
  const events: RelayClosedEvent[] = [];
  const live = fast.adoptTcpClient(p.inner, 0, (e) => events.push(e));
  const waiting = fast.adoptTcpClient(q.inner, 0, (e) => events.push(e));
  if (!live || !waiting) return t.fail('the engine refused a client');
  await live.connect('127.0.0.1', p.upPort, 5000, () => {});
  const pending = waiting.connect('127.0.0.1', hole.port, 60_000, () => t.fail('a blackhole never answers')).catch((e: RelayConnectError) => e.code);
  const clientGot = collect(p.client);
  const upGot = collect(await p.upSocket());
  await until(() => fast.stats().sessions === 2, 'placed');
  fast.stop();
  t.is(events.length, 2);
  t.deepEqual(events.map((e) => e.reason), ['engine-stop', 'engine-stop']);
  t.is(await pending, 'ESESSIONGONE');
  t.is(fast.size, 0);
  t.is((await clientGot).data.toString(), 'a');
  t.is((await upGot).data.toString(), 'b');
  t.is(fast.adoptTcpClient(new net.Socket(), 0, () => {}), null);
  for (const s of [...p.servers, ...q.servers]) await closeServer(s);
});

test.serial('relay: the engine dials IPv6 endpoints, zone included', async (t) => {
  const up = await listen(net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)), '::1');
  // A zone (`%lo`, as net.isIP accepts it) is the scope id; an unknown one fails that attempt, not the proxy.
  const s = svc({ endpoints: [ipEp(up.port, '::1%nosuchif0'), ipEp(up.port, '::1%lo')] });
  const { proxy, stats } = newProxy();
  proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  const c = await connect(l.port);
  const got = collect(c);
  c.end('over v6');
  t.is((await got).data.toString(), 'over v6');
  t.is(proxy.dataPath(), 'native');
  await settle(proxy);
  await until(() => stats.get('meshext_upstream_cx_active', { service: s.kri }) === 0, 'closed');
  t.is(stats.get('meshext_upstream_cx_rx_bytes_total', { service: s.kri }), 7);
  t.is(stats.get('meshext_upstream_cx_connect_fail_total', { service: s.kri }), 1);
  t.regex(proxy.clusters()[0]?.endpoints[0]?.lastError ?? '', /::1%nosuchif0:\d+ failed: EINVAL/);
  await proxy.close();
  await closeServer(up.srv);
});

test.serial('relay: closing the proxy while the engine is still connecting accounts the connection without a failure', async (t) => {
  const { proxy, stats, s, port, close } = await proxyToBlackhole();
  t.teardown(close);
  const c = await connect(port);
  const got = collect(c);
  await until(() => proxy.engineStats()?.sessions === 1 && stats.get('meshext_upstream_cx_total', { service: s.kri }) === 1, 'connecting');
  await proxy.close();
  t.is(proxy.activeConnections(), 0);
  t.is(stats.get('meshext_downstream_cx_active', { service: s.kri }), 0);
  t.is(stats.get('meshext_upstream_cx_active', { service: s.kri }), 0);
  t.is(stats.get('meshext_upstream_cx_connect_fail_total', { service: s.kri }), 0);
  t.is(stats.get('meshext_upstream_cx_connect_timeout_total', { service: s.kri }), 0);
  t.is((await got).data.length, 0);
});

test.serial('relay: the engine accepts on IPv4 and IPv6; a port in use is refused naming the address as Node does', async (t) => {
  const busy = await listen(net.createServer());
  const echo = await tcpEcho();
  const s = svc({ endpoints: [ipEp(echo.port)] });
  const { proxy, stats } = newProxy();
  proxy.setSnapshot(snap([s]));
  const err = (await proxy.listenOutbound({ address: '127.0.0.1', port: busy.port }, s.id).catch((e: unknown) => e)) as NodeJS.ErrnoException;
  t.like(err, { code: 'EADDRINUSE', errno: -98, syscall: 'listen', message: `listen EADDRINUSE: address already in use 127.0.0.1:${busy.port}` });
  const l6 = await proxy.listenOutbound({ address: '::1', port: 0 }, s.id);
  t.deepEqual({ address: l6.address, family: l6.family }, { address: '::1', family: 'IPv6' });
  const c = net.connect({ host: '::1', port: l6.port, allowHalfOpen: true });
  await once(c, 'connect');
  const got = collect(c);
  c.end('via an engine listener');
  t.is((await got).data.toString(), 'via an engine listener');
  t.is(proxy.dataPath(), 'native');
  await settle(proxy);
  await until(() => proxy.activeConnections() === 0, 'closed');
  t.is(stats.get('meshext_downstream_cx_total', { service: s.kri }), 1);
  // The listener is not a connection: the engine's session count is back to zero.
  t.is(proxy.engineStats()?.sessions, 0);
  await proxy.close();
  await closeServer(echo.srv);
  await closeServer(busy.srv);
});

test.serial('relay: --data-path node relays in Node streams', async (t) => {
  const env = await setup((s) => s.pipe(s), { dataPath: 'node' });
  const c = await connect(env.port);
  const got = collect(c);
  c.end('via node');
  t.is((await got).data.toString(), 'via node');
  t.is(env.proxy.dataPath(), 'node');
  t.is(env.proxy.engineStats(), null);
  await settle(env.proxy);
  await until(() => env.metric('meshext_upstream_cx_active') === 0, 'close');
  t.is(env.metric('meshext_upstream_cx_tx_bytes_total'), 8);
  await env.done();
});

test.serial('relay: without a loadable addon the proxy logs once and relays in Node', async (t) => {
  // A copy of the compiled package without native/build: the real loader fails, as on a host without the addon.
  const dir = mkdtempSync(join(tmpdir(), 'meshext-noaddon-'));
  try {
    cpSync(join(process.cwd(), 'package.json'), join(dir, 'package.json'));
    cpSync(join(process.cwd(), 'dist/src'), join(dir, 'dist/src'), { recursive: true });
    symlinkSync(join(process.cwd(), 'node_modules'), join(dir, 'node_modules'));
    writeFileSync(
      join(dir, 'run.mjs'),
      `import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Proxy } from './dist/src/proxy/index.js';
import { Registry } from './dist/src/stats/registry.js';
const lines = [];
const log = pino({ level: 'info' }, new Writable({ write(c, _e, cb) { lines.push(JSON.parse(c.toString())); cb(); } }));
const up = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)).listen(0, '127.0.0.1');
await new Promise((r) => up.once('listening', r));
const svc = { id: 'default/x', name: 'x', mesh: 'default', kri: 'k', displayName: 'x', namespace: '', labels: {}, vip: '242.0.0.1', port: 80,
  protocol: 'tcp', hostnames: [], forbidden: false, generatorStatus: [], source: { file: 't', index: 0 },
  endpoints: [{ kind: 'ip', address: '127.0.0.1', port: up.address().port, family: 4 }] };
const proxy = new Proxy({ stats: new Registry(), log, systemCaPath: null });
proxy.setSnapshot({ generation: 1, services: [svc], byVipPort: new Map(), byHostname: new Map(), outbounds: [], rejected: [], vipCidr: '242.0.0.0/8' });
const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, svc.id);
const echo = async (msg) => new Promise((resolve) => {
  const c = net.connect({ port: l.port, host: '127.0.0.1', allowHalfOpen: true });
  let got = ''; c.on('data', (d) => (got += d)); c.on('connect', () => c.end(msg)); c.on('close', () => resolve(got));
});
const a = await echo('first'); const b = await echo('second');
await proxy.close(); up.close();
console.log(JSON.stringify({ a, b, dataPath: proxy.dataPath(), warnings: lines.filter((x) => x.msg.includes('native data path unavailable')).length }));
`,
    );
    const r = spawnSync(process.execPath, [join(dir, 'run.mjs')], { encoding: 'utf8', timeout: 60_000 });
    t.is(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { a: string; b: string; dataPath: string; warnings: number };
    t.deepEqual(out, { a: 'first', b: 'second', dataPath: 'node', warnings: 1 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('relay: out of descriptors, the engine pauses accepting, says so, and serves again once fds are free', async (t) => {
  const echo = await tcpEcho();
  const dir = mkdtempSync(join(tmpdir(), 'meshext-emfile-'));
  const dist = (p: string): string => pathToFileURL(join(process.cwd(), 'dist/src', p)).href;
  writeFileSync(
    join(dir, 'run.mjs'),
    `import { Proxy } from '${dist('proxy/index.js')}';
import { Registry } from '${dist('stats/registry.js')}';
import { createLogger } from '${dist('log.js')}';
const svc = { id: 'default/x', name: 'x', mesh: 'default', kri: 'k', displayName: 'x', namespace: '', labels: {}, vip: '242.0.0.1', port: 80,
  protocol: 'tcp', hostnames: [], forbidden: false, generatorStatus: [], source: { file: 't', index: 0 },
  endpoints: [{ kind: 'ip', address: '127.0.0.1', port: Number(process.argv[2]), family: 4 }] };
const proxy = new Proxy({ stats: new Registry(), log: createLogger({ level: 'info' }), systemCaPath: null });
proxy.setSnapshot({ generation: 1, services: [svc], byVipPort: new Map(), byHostname: new Map(), outbounds: [], rejected: [], vipCidr: '242.0.0.0/8' });
const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, svc.id);
console.log(JSON.stringify({ port: l.port, dataPath: proxy.dataPath() }));
`,
  );
  // 64 descriptors: Node and the engine use about half; a few dozen clients exhaust the rest.
  const child = spawn('prlimit', ['--nofile=64', process.execPath, join(dir, 'run.mjs'), String(echo.port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await until(() => /"port":\d+/.test(out), 'the proxy listening');
  t.regex(out, /"dataPath":"native"/);
  const port = Number(/"port":(\d+)/.exec(out)?.[1]);
  const clients: net.Socket[] = [];
  for (let i = 0; i < 60; i++) {
    const c = net.connect({ host: '127.0.0.1', port });
    c.on('error', () => {});
    clients.push(c);
  }
  await until(() => /cannot accept connections; retrying every 100 ms.*EMFILE|EMFILE.*cannot accept connections/.test(out), 'the pause logged');
  for (const c of clients) c.destroy();
  // Once the held connections are gone the listener accepts again by itself.
  let answer = '';
  const end = Date.now() + 10_000;
  while (answer !== 'back' && Date.now() < end) {
    answer = await roundTrip(port, 'back');
    if (answer !== 'back') await new Promise((r) => setTimeout(r, 50));
  }
  t.is(answer, 'back');
  t.is(out.match(/cannot accept connections/g)?.length, 1, 'logged once, not once per retry');
  await closeServer(echo.srv);
});

test('relay: a stale handle (engine, HTTP/1 pool, HTTP/2 counters) is a TypeError naming it', (t) => {
  const addon = native();
  const engine = addon.engineStart(1, () => {});
  const pool = addon.h1PoolCreate(engine, 1, 1000);
  const counters = addon.h2CountersNew();
  // Live handles answer; a session id that is not a number is named as such.
  t.true(Array.isArray(addon.h1PoolStats(pool)) && Array.isArray(addon.h2CountersRead(counters)));
  t.throws(() => addon.engineClose(engine, 'one' as unknown as number, false), { instanceOf: TypeError, message: 'id must be a number, got one' });
  addon.h1PoolFree(pool);
  addon.h2CountersFree(counters);
  addon.engineStop(engine);
  t.throws(() => addon.engineClose(engine, 1, false), { instanceOf: TypeError, message: `engine ${engine} is not running` });
  t.throws(() => addon.h1PoolStats(pool), { instanceOf: TypeError, message: `pool ${pool} does not exist (an HTTP/1 pool handle)` });
  t.throws(() => addon.h2CountersRead(counters), { instanceOf: TypeError, message: `counters ${counters} does not exist (an HTTP/2 counter set handle)` });
});

test('relay: --data-path and --data-threads are validated with the option named', (t) => {
  const base = { name: 'flags', options: { config: ['/x'] } };
  t.is(resolveConfig([base]).dataPath, 'native');
  t.is(resolveConfig([base]).dataThreads, 1);
  const c = resolveConfig([base, { name: 'env', options: { dataPath: 'node', dataThreads: '2' } }]);
  t.is(c.dataPath, 'node');
  t.is(c.dataThreads, 2);
  const e1 = t.throws(() => resolveConfig([base, { name: 'env', options: { dataPath: 'fast' } }]), { instanceOf: ConfigError });
  t.regex(e1?.message ?? '', /MESHEXT_DATA_PATH: invalid value "fast"/);
  const e2 = t.throws(() => resolveConfig([base, { name: 'flags', options: { dataThreads: '0' } }]), { instanceOf: ConfigError });
  t.regex(e2?.message ?? '', /--data-threads: invalid value "0"/);
});
