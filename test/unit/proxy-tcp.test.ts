import test from 'ava';
import net from 'node:net';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blackhole, closeServer, ipEp, newProxy, refusedPort, roundTrip, settle, snap, svc, tcpEcho, until } from '../helpers/proxy.js';

test('tcp: bytes flow both ways and half-close propagates', async (t) => {
  const echo = await tcpEcho();
  const s = svc({ endpoints: [ipEp(echo.port)] });
  const { proxy, stats } = newProxy();
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  t.is(await roundTrip(l.port, 'hello through the proxy'), 'hello through the proxy');
  await settle(proxy);
  await until(() => stats.get('meshext_upstream_cx_active', { service: s.kri }) === 0, 'upstream close');
  t.is(stats.get('meshext_upstream_cx_total', { service: s.kri }), 1);
  t.is(stats.get('meshext_downstream_cx_total', { service: s.kri }), 1);
  t.is(stats.get('meshext_upstream_cx_tx_bytes_total', { service: s.kri }), 23);
  t.is(stats.get('meshext_upstream_cx_rx_bytes_total', { service: s.kri }), 23);
  await proxy.close();
  await closeServer(echo.srv);
});

test('tcp: transparent listener routes by original destination; unknown VIP is reset and counted', async (t) => {
  const echo = await tcpEcho();
  const { proxy, stats } = newProxy();
  // Without the BPF map the original destination is the address the client connected to: a listener on every
  // loopback address, reached at 127.0.0.1 (a service's "VIP") or at 127.0.0.2 (no service).
  const l = await proxy.listenTransparent({ address: '0.0.0.0', port: 0 });
  const s = svc({ endpoints: [ipEp(echo.port)], vip: '127.0.0.1', port: l.port });
  await proxy.setSnapshot(snap([s]));
  t.is(await roundTrip(l.port, 'routed'), 'routed');
  t.is(await roundTrip(l.port, 'nowhere', '127.0.0.2'), '');
  await proxy.settled();
  t.is(stats.get('meshext_downstream_cx_no_route_total'), 1);
  t.is(stats.get('meshext_engine_cx_accepted_total'), 2);
  t.is(echo.accepted(), 1);
  await proxy.close();
  await closeServer(echo.srv);
});

test('tcp: forbidden service closes at once and counts the denial', async (t) => {
  const echo = await tcpEcho();
  const s = svc({ endpoints: [ipEp(echo.port)], forbidden: true });
  const { proxy, stats } = newProxy();
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  t.is(await roundTrip(l.port, 'denied?'), '');
  t.is(stats.get('meshext_access_denied_total', { service: s.kri }), 1);
  t.is(echo.accepted(), 0);
  // Toggling the flag takes effect on the next connection.
  await proxy.setSnapshot(snap([{ ...s, forbidden: false }], 2));
  t.is(await roundTrip(l.port, 'allowed'), 'allowed');
  await proxy.close();
  await closeServer(echo.srv);
});

test('tcp: unix-socket endpoint', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshext-unix-'));
  const path = join(dir, 'up.sock');
  const srv = net.createServer({ allowHalfOpen: true }, (c) => c.pipe(c));
  srv.listen(path);
  await new Promise((r) => srv.once('listening', r));
  const s = svc({ endpoints: [{ kind: 'unix', path }] });
  const { proxy } = newProxy();
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  t.is(await roundTrip(l.port, 'over unix'), 'over unix');
  await proxy.close();
  await closeServer(srv);
  rmSync(dir, { recursive: true, force: true });
});

test('tcp: DNS-name endpoint (localhost) is resolved and dialled', async (t) => {
  const echo = await tcpEcho();
  const s = svc({ endpoints: [{ kind: 'dns', address: 'localhost', port: echo.port }] });
  const { proxy } = newProxy();
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  t.is(await roundTrip(l.port, 'by name'), 'by name');
  await proxy.close();
  await closeServer(echo.srv);
});

test('tcp: DNS answers are cached for their TTL and re-resolved after it', async (t) => {
  const echo = await tcpEcho();
  const calls: string[] = [];
  let ttl = 3600;
  const resolver = {
    resolve4: async (name: string) => {
      calls.push(name);
      return [{ address: '127.0.0.1', ttl }];
    },
    resolve6: async () => {
      throw Object.assign(new Error('no AAAA'), { code: 'ENODATA' });
    },
  };
  const s = svc({ endpoints: [{ kind: 'dns', address: 'db.example.test', port: echo.port }] });
  const { proxy } = newProxy({ resolver });
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  t.is(await roundTrip(l.port, 'a'), 'a');
  t.is(await roundTrip(l.port, 'b'), 'b');
  t.is(calls.length, 1, 'second connection served from cache');
  await proxy.close();
  // A 1 s TTL expires; the next connection resolves again.
  ttl = 1;
  const p2 = newProxy({ resolver });
  await p2.proxy.setSnapshot(snap([s]));
  const l2 = await p2.proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  t.is(await roundTrip(l2.port, 'c'), 'c');
  const before = calls.length;
  await new Promise((r) => setTimeout(r, 1100));
  t.is(await roundTrip(l2.port, 'd'), 'd');
  t.is(calls.length, before + 1);
  await p2.proxy.close();
  await closeServer(echo.srv);
});

test('tcp: failover to the next endpoint, back-off skips a failing one, health is reported', async (t) => {
  const echo = await tcpEcho();
  const deadPort = await refusedPort();
  const s = svc({ endpoints: [ipEp(deadPort), ipEp(echo.port)] });
  const { proxy, stats } = newProxy();
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  for (let i = 0; i < 6; i++) t.is(await roundTrip(l.port, `m${i}`), `m${i}`);
  const c = proxy.clusters().find((x) => x.service === s.id);
  const deadEp = c?.endpoints.find((e) => e.address === `127.0.0.1:${deadPort}`);
  t.truthy(deadEp);
  t.false(deadEp?.healthy);
  t.is(deadEp?.consecutiveFailures, 3, 'dialled only until the back-off started');
  t.regex(deadEp?.lastError ?? '', /ECONNREFUSED/);
  t.is(stats.get('meshext_upstream_cx_connect_fail_total', { service: s.kri }), 3);
  t.is(echo.accepted(), 6);
  await proxy.close();
  await closeServer(echo.srv);
});

test('tcp: all endpoints down closes the client; endpoints in the VIP CIDR are never dialled', async (t) => {
  const dead = await refusedPort();
  const a = svc({ endpoints: [ipEp(dead)] });
  const b = svc({ endpoints: [ipEp(80, '242.0.0.7')] });
  const { proxy, stats } = newProxy();
  await proxy.setSnapshot(snap([a, b]));
  const la = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, a.id);
  const lb = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, b.id);
  t.is(await roundTrip(la.port, 'x'), '');
  t.is(await roundTrip(lb.port, 'x'), '');
  t.is(stats.get('meshext_upstream_cx_total', { service: b.kri }), 0);
  t.regex(proxy.clusters().find((x) => x.service === b.id)?.endpoints[0]?.lastError ?? '', /VIP CIDR/);
  await proxy.close();
});

// Run on one and on two engine threads (connections spread across loops).
for (const dataThreads of [1, 2]) {
test.serial(`tcp: 1,000 concurrent connections on ${dataThreads} engine thread(s), every byte accounted for`, async (t) => {
  const echo = await tcpEcho();
  const s = svc({ endpoints: [ipEp(echo.port)] });
  const { proxy, stats } = newProxy({ dataThreads });
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  const N = 1000;
  let sent = 0;
  const one = (i: number): Promise<boolean> =>
    new Promise((resolve) => {
      const payload = randomBytes(1000 + (i % 7) * 3000);
      sent += payload.length;
      const want = createHash('sha256').update(payload).digest('hex');
      const h = createHash('sha256');
      const c = net.connect({ host: '127.0.0.1', port: l.port, allowHalfOpen: true });
      c.on('data', (d: Buffer) => h.update(d));
      c.on('error', () => resolve(false));
      c.on('connect', () => c.end(payload));
      c.on('end', () => resolve(h.digest('hex') === want));
    });
  const results = await Promise.all(Array.from({ length: N }, (_, i) => one(i)));
  t.is(results.filter(Boolean).length, N);
  await settle(proxy);
  await until(() => proxy.activeConnections() === 0 && stats.get('meshext_upstream_cx_active', { service: s.kri }) === 0, 'all closed');
  t.is(stats.get('meshext_upstream_cx_total', { service: s.kri }), N);
  t.is(stats.get('meshext_downstream_cx_total', { service: s.kri }), N);
  t.is(stats.get('meshext_upstream_cx_tx_bytes_total', { service: s.kri }), sent);
  t.is(stats.get('meshext_upstream_cx_rx_bytes_total', { service: s.kri }), sent);
  t.is(stats.get('meshext_downstream_cx_active', { service: s.kri }), 0);
  t.is(proxy.engineStats()?.threads, dataThreads);
  t.is(proxy.engineStats()?.sessions, 0);
  t.is(proxy.engineStats()?.pipesInUse, 0);
  t.is(proxy.clusters()[0]?.endpoints[0]?.active, 0);
  await proxy.close();
  await closeServer(echo.srv);
});
}

test('tcp: a reload keeps endpoint health of unchanged services and picks up changed endpoints', async (t) => {
  const echo = await tcpEcho();
  const dead = await refusedPort();
  const a = svc({ endpoints: [ipEp(dead), ipEp(echo.port)] });
  const { proxy } = newProxy();
  await proxy.setSnapshot(snap([a]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, a.id);
  t.is(await roundTrip(l.port, 'x'), 'x');
  const failures = (): number | undefined => proxy.clusters().find((c) => c.service === a.id)?.endpoints[0]?.consecutiveFailures;
  t.is(failures(), 1);
  const other = svc({ endpoints: [ipEp(echo.port)] });
  await proxy.setSnapshot(snap([a, other], 2));
  t.is(failures(), 1, 'unchanged service keeps its runtime');
  await proxy.setSnapshot(snap([{ ...a, endpoints: [ipEp(echo.port)] }, other], 3));
  t.deepEqual(proxy.clusters().find((c) => c.service === a.id)?.endpoints.map((e) => e.address), [`127.0.0.1:${echo.port}`]);
  t.is(await roundTrip(l.port, 'y'), 'y');
  await proxy.close();
  await closeServer(echo.srv);
});

test('tcp: a connect timeout (SYN never answered) fails over to the next endpoint', async (t) => {
  const hole = await blackhole();
  t.teardown(hole.close);
  const echo = await tcpEcho();
  const s = svc({ endpoints: [ipEp(hole.port), ipEp(echo.port)] });
  const { proxy, stats } = newProxy({ connectTimeoutMs: 300 });
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  t.is(await roundTrip(l.port, 'after-timeout'), 'after-timeout');
  t.is(stats.get('meshext_upstream_cx_connect_timeout_total', { service: s.kri }), 1);
  t.is(stats.get('meshext_upstream_cx_connect_fail_total', { service: s.kri }), 0);
  t.is(echo.accepted(), 1);
  const blackholed = proxy.clusters()[0]?.endpoints.find((e) => e.address === `127.0.0.1:${hole.port}`);
  t.regex(blackholed?.lastError ?? '', /timed out after 300 ms/);
  await proxy.close();
  await closeServer(echo.srv);
});

test('tcp: a service dropped by a reload loses its series once its last connection closes', async (t) => {
  const echo = await tcpEcho();
  const gone = svc({ endpoints: [ipEp(echo.port)] });
  const kept = svc({ endpoints: [ipEp(echo.port)] });
  const { proxy, stats } = newProxy();
  await proxy.setSnapshot(snap([gone, kept]));
  const lg = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, gone.id);
  const lk = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, kept.id);
  t.is(await roundTrip(lk.port, 'k'), 'k');
  const held = net.connect({ host: '127.0.0.1', port: lg.port });
  held.on('error', () => {});
  held.write('x');
  await once(held, 'data');
  await proxy.setSnapshot(snap([kept], 2));
  await proxy.settled();
  // Still in use: its counters stay visible until the connection ends.
  t.is(stats.get('meshext_downstream_cx_active', { service: gone.kri }), 1);
  held.end();
  await until(() => stats.get('meshext_downstream_cx_total', { service: gone.kri }) === undefined, 'series of the removed service to go');
  t.false(stats.prometheus().includes(gone.kri));
  t.is(stats.get('meshext_downstream_cx_total', { service: kept.kri }), 1);
  // A service removed while idle goes at once.
  await proxy.setSnapshot(snap([], 3));
  await proxy.settled();
  t.false(stats.prometheus().includes(kept.kri));
  await proxy.close();
  await closeServer(echo.srv);
});
