// Engine routes: plain TCP services whose connections the native engine routes and connects by itself
// (src/proxy/engine-routes.ts), with JS keeping the books, failover and health.
import test from 'ava';
import net from 'node:net';
import { once } from 'node:events';
import { closeServer, ipEp, newProxy, proxyToBlackhole, roundTrip, settle, snap, svc, tcpEcho, until } from '../helpers/proxy.js';
import { native } from '../../src/redirect/native.js';

/** A loopback port nothing listens on (connects are refused). */
async function refusedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

test.serial('routes: the engine routes and connects plain TCP connections itself; the books match the JS path', async (t) => {
  const echo = await tcpEcho();
  const s = svc({ endpoints: [ipEp(echo.port)] });
  const { proxy, stats } = newProxy();
  proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  for (let i = 0; i < 3; i++) t.is(await roundTrip(l.port, `ping-${i}`), `ping-${i}`);
  await settle(proxy);
  t.is(proxy.engineStats()?.routed, 3);
  t.is(stats.get('meshext_relay_routed_total'), 3);
  const m = (name: string): number | undefined => stats.get(name, { service: s.kri });
  t.is(m('meshext_downstream_cx_total'), 3);
  t.is(m('meshext_downstream_cx_active'), 0);
  t.is(m('meshext_upstream_cx_total'), 3);
  t.is(m('meshext_upstream_cx_active'), 0);
  t.is(m('meshext_upstream_cx_tx_bytes_total'), 18);
  t.is(m('meshext_upstream_cx_rx_bytes_total'), 18);
  t.is(proxy.clusters()[0]?.endpoints[0]?.total, 3);
  await proxy.close();
  t.is(stats.get('meshext_relay_routed_total'), 3);
  // A new engine keeps the counter going from where the stopped one left it.
  proxy.setSnapshot(snap([s], 2));
  const again = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  t.is(await roundTrip(again.port, 'again'), 'again');
  await settle(proxy);
  t.is(proxy.engineStats()?.routed, 1);
  t.is(stats.get('meshext_relay_routed_total'), 4);
  await proxy.close();
  await closeServer(echo.srv);
});

test.serial("routes: a failed first pick fails over in JS, and a backed-off endpoint is no longer the engine's pick", async (t) => {
  const echo = await tcpEcho();
  const dead = await refusedPort();
  const s = svc({ endpoints: [ipEp(dead), ipEp(echo.port)] });
  const { proxy, stats } = newProxy();
  proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  const fails = (): number => stats.get('meshext_upstream_cx_connect_fail_total', { service: s.kri }) ?? 0;
  // Round-robin: connections 1, 3 and 5 are first sent to the dead endpoint and fail over; the third failure
  // backs it off (FAIL_THRESHOLD).
  for (let i = 0; i < 6; i++) t.is(await roundTrip(l.port, `c${i}`), `c${i}`);
  await settle(proxy);
  t.is(proxy.engineStats()?.routed, 6);
  t.is(fails(), 3);
  t.is(stats.get('meshext_upstream_cx_total', { service: s.kri }), 9);
  const [down, up] = proxy.clusters()[0]?.endpoints ?? [];
  t.like(down, { healthy: false, consecutiveFailures: 3, total: 3 });
  t.like(up, { healthy: true, total: 6, active: 0 });
  // While it is backed off (1 s), the engine must not pick it, also where round-robin would (connection 7).
  for (let i = 6; i < 10; i++) {
    const backedOff = proxy.clusters()[0]?.endpoints[0]?.healthy === false;
    t.is(await roundTrip(l.port, `c${i}`), `c${i}`);
    await settle(proxy);
    if (backedOff && proxy.clusters()[0]?.endpoints[0]?.healthy === false) t.is(fails(), 3, `connection ${i + 1} was sent to the backed-off endpoint`);
  }
  t.is(echo.accepted(), 10);
  await proxy.close();
  await closeServer(echo.srv);
});

test.serial('routes: the transparent listener routes by the local address when no original-destination source is given', async (t) => {
  const echo = await tcpEcho();
  const { proxy } = newProxy();
  const l = await proxy.listenTransparent({ address: '127.0.0.1', port: 0 });
  // The connection's local address is the VIP:port the service owns.
  proxy.setSnapshot(snap([svc({ endpoints: [ipEp(echo.port)], vip: '127.0.0.1', port: l.port })]));
  t.is(await roundTrip(l.port, 'by local address'), 'by local address');
  await settle(proxy);
  t.is(proxy.engineStats()?.routed, 1);
  await proxy.close();

  // With an originalDst callback (the engine cannot run it) and no map, JS routes: served, not engine-routed.
  const cb = newProxy({ originalDst: () => ({ address: '242.0.0.10', port: 5432 }) });
  cb.proxy.setSnapshot(snap([svc({ endpoints: [ipEp(echo.port)], vip: '242.0.0.10', port: 5432 })]));
  const l2 = await cb.proxy.listenTransparent({ address: '127.0.0.1', port: 0 });
  t.is(await roundTrip(l2.port, 'by callback'), 'by callback');
  await settle(cb.proxy);
  t.is(cb.proxy.engineStats()?.routed, 0);
  t.is(cb.stats.get('meshext_downstream_cx_total', { service: cb.proxy.clusters()[0]?.kri ?? '' }), 1);
  await cb.proxy.close();
  await closeServer(echo.srv);
});

test.serial('routes: a DNS-name endpoint is routed by the engine once it has an answer; denied services are left to JS', async (t) => {
  const echo = await tcpEcho();
  const named = svc({ endpoints: [{ kind: 'dns', address: 'localhost', port: echo.port }] });
  const denied = svc({ endpoints: [ipEp(echo.port)], forbidden: true });
  const { proxy, stats } = newProxy();
  proxy.setSnapshot(snap([named, denied]));
  const a = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, named.id);
  const b = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, denied.id);
  // The first connection may come before the answer (then JS resolves and dials); the later ones may not.
  for (let i = 0; i < 3; i++) t.is(await roundTrip(a.port, `named-${i}`), `named-${i}`);
  await settle(proxy);
  const routed = proxy.engineStats()?.routed ?? 0;
  t.true(routed >= 2, `routed ${routed} of 3`);
  t.is(await roundTrip(b.port, 'denied'), '');
  await settle(proxy);
  t.is(proxy.engineStats()?.routed, routed);
  t.is(stats.get('meshext_access_denied_total', { service: denied.kri }), 1);
  // The same service allowed again: the engine routes it from the next connection on.
  proxy.setSnapshot(snap([named, { ...denied, forbidden: false }], 2));
  t.is(await roundTrip(b.port, 'allowed'), 'allowed');
  await settle(proxy);
  t.is(proxy.engineStats()?.routed, routed + 1);
  await proxy.close();
  await closeServer(echo.srv);
});

test.serial("routes: when a DNS name's TTL runs out the engine moves to its new answer", async (t) => {
  const first = await tcpEcho();
  const port = first.port;
  let secondAccepted = 0;
  const second = net.createServer((s) => {
    secondAccepted++;
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => second.listen(port, '127.0.0.2', r));
  let answer = '127.0.0.1';
  const resolver = { resolve4: async () => [{ address: answer, ttl: 1 }], resolve6: async () => [] };
  const s = svc({ endpoints: [{ kind: 'dns', address: 'upstream.example', port }] });
  const { proxy, stats } = newProxy({ resolver });
  proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  for (let i = 0; i < 3; i++) t.is(await roundTrip(l.port, `old-${i}`), `old-${i}`);
  t.is(first.accepted(), 3);
  answer = '127.0.0.2';
  // The answer's TTL is 1 s: after it the name is resolved again and the route reinstalled.
  await new Promise((r) => setTimeout(r, 1300));
  for (let i = 0; i < 3; i++) t.is(await roundTrip(l.port, `new-${i}`), `new-${i}`);
  await settle(proxy);
  t.is(secondAccepted, 3);
  t.true((proxy.engineStats()?.routed ?? 0) >= 5, 'connections after the first answer were routed by the engine');
  t.is(stats.get('meshext_upstream_cx_connect_fail_total', { service: s.kri }), 0);
  await proxy.close();
  await closeServer(first.srv);
  await new Promise((r) => second.close(r));
});

test.serial('routes: a connection routed just before its service is removed is still served and accounted; later ones find no route', async (t) => {
  const { proxy, stats, s, port, close } = await proxyToBlackhole();
  t.teardown(close);
  const c = net.connect({ host: '127.0.0.1', port });
  c.on('error', () => {});
  await once(c, 'connect');
  // Wait for the engine to route it without yielding to the event loop, so that JS cannot hear of it before
  // the route goes: the engine then reports the route's final count ahead of the connection's `routed` event.
  const deadline = Date.now() + 5000;
  while (proxy.engineStats()?.sessions !== 1 && Date.now() < deadline);
  t.is(proxy.engineStats()?.sessions, 1);
  t.is(proxy.activeConnections(), 0, 'JS has not heard of the connection yet');
  proxy.setSnapshot(snap([], 2));
  await proxy.settled();
  t.is(proxy.activeConnections(), 1);
  // The removed service's series stay until that connection ends.
  t.is(stats.get('meshext_downstream_cx_active', { service: s.kri }), 1);
  t.is(await roundTrip(port, 'gone'), '');
  t.is(stats.get('meshext_downstream_cx_no_route_total'), 1);
  await proxy.close();
  t.is(proxy.activeConnections(), 0);
  c.destroy();
});

test.serial('routes: relayRoutes and relayListen name what is wrong with their routing arguments', (t) => {
  const addon = native();
  const engine = addon.engineStart(1, () => {});
  t.teardown(() => addon.engineStop(engine));
  const route = { id: 1, keys: ['@x'], targets: [{ address: '127.0.0.1', port: 1 }], connectTimeoutMs: 1000, idleTimeoutMs: 0 };
  const bad = (table: unknown): string => {
    try {
      addon.engineRoutes(engine, table as Parameters<typeof addon.engineRoutes>[1]);
      return 'accepted';
    } catch (e) {
      return (e as Error).message;
    }
  };
  t.is(bad({ source: 'nowhere', routes: [] }), 'table.source must be none, local or map, got nowhere');
  t.is(bad({ source: 'none', routes: [{ ...route, targets: [] }] }), 'table.routes[0].targets must not be empty');
  t.is(bad({ source: 'none', routes: [{ ...route, targets: [{ address: '127.0.0.1', port: 70000 }] }] }), 'table.routes[0].targets[0].port must be an integer 0..65535, got 70000');
  t.is(bad({ source: 'none', routes: [{ ...route, keys: [7] }] }), 'table.routes[0].keys[0] must be a string, got 7');
  t.is(bad({ source: 'map', routes: [] }), 'table.mapFd must be an integer 0..2147483647, got nothing');
  t.deepEqual(addon.engineRoutes(engine, { source: 'none', routes: [route] }), []);
  // Removing a route reports how many connections it routed in all.
  t.deepEqual(addon.engineRoutes(engine, { source: 'none', routes: [] }), [{ id: 1, routed: 0 }]);
  t.false(addon.engineRouteHealth(engine, 1, 0, 1000), 'an uninstalled route has no health to set');
  t.throws(() => addon.engineListen(engine, '127.0.0.1', 0, 16, { routeKey: 7 } as unknown as { routeKey: string }), { message: 'routing.routeKey must be a string, got 7' });
});
