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
import { native } from '../../src/native/addon.js';
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

/** A proxy in front of one upstream server; `handler` serves each upstream connection. */
async function setup(handler: (s: net.Socket) => void, o: Parameters<typeof newProxy>[0] = {}) {
  const upSockets = new Set<net.Socket>();
  const up = await listen(net.createServer({ allowHalfOpen: true }, (s) => {
    upSockets.add(s);
    s.on('error', () => {});
    handler(s);
  }));
  const s = svc({ endpoints: [ipEp(up.port)] });
  const { proxy, stats } = newProxy(o);
  await proxy.setSnapshot(snap([s]));
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
  t.is(env.stats.get('meshext_engine_connections'), 2);
  const { remaining } = await env.proxy.drain(20);
  t.is(remaining, 2);
  for (const r of await Promise.all(closed)) t.is(r.error, undefined);
  await settle(env.proxy);
  await until(() => env.proxy.activeConnections() === 0, 'close');
  t.is(env.metric('meshext_downstream_cx_active'), 0);
  t.is(env.metric('meshext_upstream_cx_active'), 0);
  await until(() => env.stats.get('meshext_engine_connections') === 0, 'engine sessions gauge');
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
  await proxy.setSnapshot(snap([s]));
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
  await proxy.setSnapshot(snap([s]));
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

test.serial('relay: client bytes sent before the upstream connected go first; a server-first greeting and bulk pass both ways', async (t) => {
  const greeting = Buffer.from('220 server speaks first\r\n');
  const early = Buffer.from('EHLO early\r\n');
  const bulk = randomBytes(3 * 1024 * 1024);
  let upGot: Promise<{ data: Buffer }> | undefined;
  // The client speaks before the engine has connected upstream: its bytes wait in its socket meanwhile.
  const env = await setup((s) => {
    upGot = collect(s);
    s.write(greeting);
    s.once('data', () => s.write(bulk));
  });
  const c = await connect(env.port);
  c.write(early);
  let received = 0;
  c.on('data', (d: Buffer) => (received += d.length));
  const clientGot = collect(c);
  await until(() => received === greeting.length + bulk.length, 'greeting and bulk from the upstream');
  c.end(bulk);
  t.is(sha((await upGot!).data), sha(Buffer.concat([early, bulk])));
  t.is(sha((await clientGot).data), sha(Buffer.concat([greeting, bulk])));
  await settle(env.proxy);
  await until(() => env.metric('meshext_upstream_cx_active') === 0, 'closed');
  t.is(env.metric('meshext_upstream_cx_rx_bytes_total'), greeting.length + bulk.length);
  t.is(env.metric('meshext_upstream_cx_tx_bytes_total'), early.length + bulk.length);
  await env.done();
});

test.serial('relay: an endpoint refused at once (no such unix socket) fails over to the next without waiting', async (t) => {
  const echo = await tcpEcho();
  const s = svc({ endpoints: [{ kind: 'unix', path: join(tmpdir(), `meshext-missing-${process.pid}.sock`) }, ipEp(echo.port)] });
  const { proxy, stats } = newProxy({ connectTimeoutMs: 60_000 });
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  const started = Date.now();
  t.is(await roundTrip(l.port, 'next'), 'next');
  t.true(Date.now() - started < 5000);
  await settle(proxy);
  t.is(stats.get('meshext_upstream_cx_connect_fail_total', { service: s.kri }), 1);
  t.regex(proxy.clusters()[0]?.endpoints[0]?.lastError ?? '', /failed: ENOENT/);
  await proxy.close();
  await closeServer(echo.srv);
});

test.serial('relay: stopping the engine closes live and still-connecting connections; the books are final when close() returns', async (t) => {
  const hole = await blackhole();
  t.teardown(hole.close);
  const echo = await tcpEcho();
  const live = svc({ endpoints: [ipEp(echo.port)] });
  const waiting = svc({ endpoints: [ipEp(hole.port)] });
  const { proxy, stats } = newProxy({ connectTimeoutMs: 60_000 });
  await proxy.setSnapshot(snap([live, waiting]));
  const ll = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, live.id);
  const lw = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, waiting.id);
  const a = await connect(ll.port);
  const aGot = collect(a);
  a.write('a');
  await once(a, 'data');
  const b = await connect(lw.port);
  const bGot = collect(b);
  await until(() => proxy.activeConnections() === 2, 'both placed');
  await proxy.close();
  t.is(proxy.activeConnections(), 0);
  for (const x of [live, waiting]) {
    t.is(stats.get('meshext_downstream_cx_active', { service: x.kri }), 0);
    t.is(stats.get('meshext_upstream_cx_active', { service: x.kri }), 0);
  }
  t.is(stats.get('meshext_upstream_cx_rx_bytes_total', { service: live.kri }), 1);
  t.is(stats.get('meshext_upstream_cx_connect_timeout_total', { service: waiting.kri }), 0);
  t.is((await aGot).data.toString(), 'a');
  t.is((await bGot).data.length, 0);
  await closeServer(echo.srv);
});

test.serial('relay: the engine dials IPv6 endpoints, zone included', async (t) => {
  const up = await listen(net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s)), '::1');
  // A zone (`%lo`, as net.isIP accepts it) is the scope id; an unknown one fails that attempt, not the proxy.
  const s = svc({ endpoints: [ipEp(up.port, '::1%nosuchif0'), ipEp(up.port, '::1%lo')] });
  const { proxy, stats } = newProxy();
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  const c = await connect(l.port);
  const got = collect(c);
  c.end('over v6');
  t.is((await got).data.toString(), 'over v6');
  await settle(proxy);
  await until(() => stats.get('meshext_upstream_cx_active', { service: s.kri }) === 0, 'closed');
  t.is(stats.get('meshext_upstream_cx_rx_bytes_total', { service: s.kri }), 7);
  t.is(stats.get('meshext_upstream_cx_connect_fail_total', { service: s.kri }), 1);
  t.regex(proxy.clusters()[0]?.endpoints[0]?.lastError ?? '', /\[::1%nosuchif0\]:\d+ failed: EINVAL/);
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
  await proxy.setSnapshot(snap([s]));
  const err = (await proxy.listenOutbound({ address: '127.0.0.1', port: busy.port }, s.id).catch((e: unknown) => e)) as NodeJS.ErrnoException;
  t.like(err, { code: 'EADDRINUSE', errno: -98, syscall: 'listen', message: `listen EADDRINUSE: address already in use 127.0.0.1:${busy.port}` });
  const l6 = await proxy.listenOutbound({ address: '::1', port: 0 }, s.id);
  t.deepEqual({ address: l6.address, family: l6.family }, { address: '::1', family: 'IPv6' });
  const c = net.connect({ host: '::1', port: l6.port, allowHalfOpen: true });
  await once(c, 'connect');
  const got = collect(c);
  c.end('via an engine listener');
  t.is((await got).data.toString(), 'via an engine listener');
  await settle(proxy);
  await until(() => proxy.activeConnections() === 0, 'closed');
  t.is(stats.get('meshext_downstream_cx_total', { service: s.kri }), 1);
  // The listener is not a connection: the engine's session count is back to zero.
  t.is(proxy.engineStats()?.sessions, 0);
  await proxy.close();
  await closeServer(echo.srv);
  await closeServer(busy.srv);
});

test.serial('relay: without a loadable addon, `meshext run` stops at once with one line saying why', async (t) => {
  // A copy of the compiled package without native/build: the loader fails, as on a host without the addon.
  const dir = mkdtempSync(join(tmpdir(), 'meshext-noaddon-'));
  try {
    cpSync(join(process.cwd(), 'package.json'), join(dir, 'package.json'));
    cpSync(join(process.cwd(), 'dist/src'), join(dir, 'dist/src'), { recursive: true });
    cpSync(join(process.cwd(), 'bin'), join(dir, 'bin'), { recursive: true });
    symlinkSync(join(process.cwd(), 'node_modules'), join(dir, 'node_modules'));
    const r = spawnSync(process.execPath, [join(dir, 'bin/meshext.js'), 'run', '--config', join(process.cwd(), 'examples/universal'), '--redirect', 'off', '--dns', 'off', '--state-dir', join(dir, 'state'), '--admin', '127.0.0.1:0', '--log-format', 'json'], { encoding: 'utf8', timeout: 60_000 });
    t.is(r.status, 1, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { level: number; msg: string; err?: string; code?: string });
    const fatal = lines.filter((l) => l.level >= 60);
    t.is(fatal.length, 1);
    t.is(fatal[0]?.msg, 'cannot start');
    t.is(fatal[0]?.code, 'MESHEXT_E_ENGINE');
    t.regex(fatal[0]?.err ?? '', /^the data-plane engine cannot start: meshext native addon not loadable \(run `npm run build:native`\): .*meshext_native\.node: not found/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.serial('relay: out of descriptors, new connections are closed at once (never left hanging), the engine says so, and serves again once fds are free', async (t) => {
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
await proxy.setSnapshot({ generation: 1, services: [svc], byVipPort: new Map(), byHostname: new Map(), outbounds: [], rejected: [], warnings: [], vipCidr: '242.0.0.0/8' });
const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, svc.id);
console.log(JSON.stringify({ port: l.port }));
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
  const port = Number(/"port":(\d+)/.exec(out)?.[1]);
  const clients: net.Socket[] = [];
  for (let i = 0; i < 60; i++) {
    const c = net.connect({ host: '127.0.0.1', port });
    c.on('error', () => {});
    clients.push(c);
  }
  // Either accept(2) fails (the waiting connections are reset with the reserve descriptor) or the upstream
  // socket cannot be made (the client is reset at once): both are said, with the errno.
  await until(() => /out of file descriptors.*EMFILE|EMFILE.*out of file descriptors|upstream connect failed.*EMFILE|EMFILE.*upstream connect failed/.test(out), 'running out of fds said');
  // Beyond the limit a client is closed quickly, not left waiting.
  const started = Date.now();
  const refused = await roundTrip(port, 'x');
  t.true(refused === '' && Date.now() - started < 5000, `a client at the limit got ${JSON.stringify(refused)} after ${Date.now() - started} ms`);
  for (const c of clients) c.destroy();
  // Once the held connections are gone the listener accepts again by itself.
  let answer = '';
  const end = Date.now() + 10_000;
  while (answer !== 'back' && Date.now() < end) {
    answer = await roundTrip(port, 'back');
    if (answer !== 'back') await new Promise((r) => setTimeout(r, 50));
  }
  t.is(answer, 'back');
  t.true((out.match(/out of file descriptors/g)?.length ?? 0) <= 1, 'running out is logged once, not once per refusal');
  await closeServer(echo.srv);
});

test('relay: a stale engine handle is a TypeError naming it; so are malformed listen and install arguments', (t) => {
  const addon = native();
  const engine = addon.engineStart(1, () => {});
  t.throws(() => addon.engineClose(engine, 'one' as unknown as number), { instanceOf: TypeError, message: 'id must be a number, got one' });
  t.throws(() => addon.engineInstall(engine, { source: 'nowhere' } as never), { instanceOf: TypeError, message: 'install.source must be local or map, got nowhere' });
  const plan = { service: 'm/a', keys: ['@m/a'], protocol: 'tcp', endpoints: [{ label: 'x', priority: 0, targets: [{ address: '127.0.0.1', port: 70000 }] }], timeouts: { connectMs: 1, tcpIdleMs: 1, httpIdleMs: 1, httpHeaderMs: 1, upstreamIdleMs: 1, requestMs: 0, maxStreamMs: 0, streamIdleMs: 0, maxConnectionMs: 0 } };
  t.throws(() => addon.engineInstall(engine, { source: 'local', plans: [plan] } as never), { instanceOf: TypeError, message: 'install.plans[0].endpoints[0].targets[0].port must be an integer 0..65535, got 70000' });
  t.throws(() => addon.engineInstall(engine, { source: 'local', plans: [{ ...plan, protocol: 'udp' }] } as never), { instanceOf: TypeError, message: 'install.plans[0].protocol must be tcp, http, http2 or grpc, got udp' });
  const ok = { ...plan, endpoints: [{ ...plan.endpoints[0], targets: [{ address: '127.0.0.1', port: 1 }] }] };
  // A service may have several plans (a Dataplane's outbounds with policies of their own), each for its own keys.
  t.deepEqual(addon.engineInstall(engine, { source: 'local', plans: [ok, { ...ok, keys: ['@m/a/dp'] }] } as never), { errors: [] });
  t.deepEqual(addon.engineInstall(engine, { source: 'local', plans: [ok, ok] } as never), { errors: [{ service: 'm/a', code: 'MESHEXT_E_KEY_CONFLICT', error: 'key @m/a is routed to service m/a already; ignored for this one' }] });
  t.deepEqual(addon.engineInstall(engine, { source: 'local', plans: [ok] } as never), { errors: [] });
  t.throws(() => addon.engineListen(engine, 'localhost', 0, 8), { instanceOf: TypeError, message: 'listen address must be an IP literal, got localhost' });
  addon.engineStop(engine);
  t.throws(() => addon.engineClose(engine, 1), { instanceOf: TypeError, message: `engine ${engine} is not running` });
  t.throws(() => addon.engineCounters(engine), { instanceOf: TypeError, message: `engine ${engine} is not running` });
});

test('relay: --data-threads is validated with the option named; --data-path is gone', (t) => {
  const base = { name: 'flags', options: { config: ['/x'] } };
  t.is(resolveConfig([base]).dataThreads, 1);
  t.is(resolveConfig([base, { name: 'env', options: { dataThreads: '2' } }]).dataThreads, 2);
  const e2 = t.throws(() => resolveConfig([base, { name: 'flags', options: { dataThreads: '0' } }]), { instanceOf: ConfigError });
  t.regex(e2?.message ?? '', /--data-threads: invalid value "0"/);
  t.false('dataPath' in resolveConfig([base]));
});
