// Plans in the engine: every connection is routed, balanced and served by the plan installed for its service;
// a reload installs new plans at once, connections in flight keep theirs, and HTTP exchanges take the plan
// current when they start.
import test from 'ava';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { closeServer, ipEp, newProxy, proxyFor, proxyToBlackhole, refusedPort, removableName, roundTrip, settle, snap, svc, tcpEcho, until } from '../helpers/proxy.js';

test.serial('plans: the engine routes and connects every connection; its counters are the books', async (t) => {
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  const s = svc({ endpoints: [ipEp(echo.port)] });
  const { proxy, stats } = newProxy();
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  for (let i = 0; i < 3; i++) t.is(await roundTrip(l.port, `ping-${i}`), `ping-${i}`);
  await settle(proxy);
  const m = (name: string): number | undefined => stats.get(name, { service: s.kri });
  t.is(stats.get('meshext_engine_cx_accepted_total'), 3);
  t.is(m('meshext_downstream_cx_total'), 3);
  t.is(m('meshext_downstream_cx_active'), 0);
  t.is(m('meshext_upstream_cx_total'), 3);
  t.is(m('meshext_upstream_cx_active'), 0);
  t.is(m('meshext_upstream_cx_tx_bytes_total'), 18);
  t.is(m('meshext_upstream_cx_rx_bytes_total'), 18);
  t.is(proxy.clusters()[0]?.endpoints[0]?.total, 3);
  const c = proxy.engineCounters()?.services.find((x) => x.service === s.id);
  t.is(c?.counters[0], 3, 'downstream connections as the engine counted them');
  await proxy.close();
  // After the engine stopped, its final counts stay readable.
  t.is(m('meshext_downstream_cx_total'), 3);
});

test.serial("plans: a failed first pick fails over in the engine, and a backed-off endpoint is no longer picked", async (t) => {
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  const dead = await refusedPort();
  const s = svc({ endpoints: [ipEp(dead), ipEp(echo.port)] });
  const { proxy, stats } = newProxy();
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  const fails = (): number => stats.get('meshext_upstream_cx_connect_fail_total', { service: s.kri }) ?? 0;
  // Round-robin: connections 1, 3 and 5 are first sent to the dead endpoint and fail over; the third failure
  // backs it off (FAIL_THRESHOLD).
  for (let i = 0; i < 6; i++) {
    t.is(await roundTrip(l.port, `c${i}`), `c${i}`);
    await settle(proxy);
  }
  t.is(fails(), 3);
  t.is(stats.get('meshext_upstream_cx_total', { service: s.kri }), 9);
  const [down, up] = proxy.clusters()[0]?.endpoints ?? [];
  t.like(down, { healthy: false, consecutiveFailures: 3, total: 3 });
  t.like(up, { healthy: true, total: 6, active: 0 });
  // While it is backed off (1 s), the engine must not pick it, also where round-robin would. Only connections
  // made wholly inside the back-off are checked; at least one must have been.
  let checked = 0;
  for (let i = 6; i < 10; i++) {
    const backedOff = proxy.clusters()[0]?.endpoints[0]?.healthy === false;
    t.is(await roundTrip(l.port, `c${i}`), `c${i}`);
    await settle(proxy);
    if (backedOff && proxy.clusters()[0]?.endpoints[0]?.healthy === false) {
      checked++;
      t.is(fails(), 3, `connection ${i + 1} was sent to the backed-off endpoint`);
    }
  }
  t.true(checked > 0, 'no connection was made while the endpoint was backed off: nothing was checked');
  t.is(echo.accepted(), 10);
});

test.serial('plans: a lower priority takes traffic only while every better endpoint is down, and gives it back', async (t) => {
  const primary = await tcpEcho();
  t.teardown(() => closeServer(primary.srv));
  const backup = await tcpEcho();
  t.teardown(() => closeServer(backup.srv));
  const s = svc({ endpoints: [{ ...ipEp(backup.port), priority: 1 }, { ...ipEp(primary.port), priority: 0 }] });
  const { proxy } = newProxy();
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  for (let i = 0; i < 4; i++) t.is(await roundTrip(l.port, `p${i}`), `p${i}`);
  t.is(primary.accepted(), 4);
  t.is(backup.accepted(), 0);
  // The primary goes away: connections fail over to the backup (and the primary is backed off).
  await closeServer(primary.srv);
  for (let i = 0; i < 4; i++) t.is(await roundTrip(l.port, `b${i}`), `b${i}`);
  t.is(backup.accepted(), 4);
  await settle(proxy);
  t.is(proxy.clusters()[0]?.endpoints.find((e) => e.priority === 0)?.healthy, false);
  // It comes back: once its back-off ends, traffic returns to it.
  const again = net.createServer({ allowHalfOpen: true }, (c) => c.pipe(c));
  t.teardown(() => closeServer(again));
  await new Promise<void>((r) => again.listen(primary.port, '127.0.0.1', r));
  let backTo = 0;
  again.on('connection', () => backTo++);
  await until(() => proxy.clusters()[0]?.endpoints.find((e) => e.priority === 0)?.healthy === true, 'back-off over', 5000);
  for (let i = 0; i < 3; i++) t.is(await roundTrip(l.port, `r${i}`), `r${i}`);
  t.is(backTo, 3);
});

test.serial('plans: a ban applied by reload stops new TCP connections at once; lifting it lets them through again', async (t) => {
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  const named = svc({ endpoints: [{ kind: 'dns', address: 'localhost', port: echo.port }] });
  const { proxy, stats } = newProxy();
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([named]));
  const a = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, named.id);
  for (let round = 0; round < 3; round++) {
    t.is(await roundTrip(a.port, `allowed-${round}`), `allowed-${round}`);
    await proxy.setSnapshot(snap([{ ...named, forbidden: true }], 2 * round + 2));
    t.is(await roundTrip(a.port, `denied-${round}`), '');
    await proxy.setSnapshot(snap([named], 2 * round + 3));
  }
  await settle(proxy);
  t.is(stats.get('meshext_access_denied_total', { service: named.kri }), 3);
  t.is(echo.accepted(), 3);
});

test.serial('plans: a ban applied by reload answers the next request on a kept-alive HTTP connection with 403', async (t) => {
  const up = http.createServer((_req, res) => res.end('ok'));
  t.teardown(() => closeServer(up));
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const s = svc({ protocol: 'http', endpoints: [ipEp((up.address() as net.AddressInfo).port)] });
  const { proxy, port } = await proxyFor(s);
  t.teardown(() => proxy.close());
  const l = { port };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const get = (): Promise<number> =>
    new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: l.port, path: '/', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      }).on('error', reject);
    });
  t.is(await get(), 200);
  await proxy.setSnapshot(snap([{ ...s, forbidden: true }], 2));
  t.is(await get(), 403);
  await proxy.setSnapshot(snap([s], 3));
  t.is(await get(), 200);
  t.is(proxy.engineStats()?.sessions, 1, 'all three on one client connection');
});

test.serial("plans: when a DNS name's TTL runs out the engine moves to its new answer", async (t) => {
  const first = await tcpEcho();
  t.teardown(() => closeServer(first.srv));
  const port = first.port;
  let secondAccepted = 0;
  const second = net.createServer((s) => {
    secondAccepted++;
    s.on('error', () => {});
    s.pipe(s);
  });
  t.teardown(() => closeServer(second));
  await new Promise<void>((r) => second.listen(port, '127.0.0.2', r));
  let answer = '127.0.0.1';
  const resolver = { resolve4: async () => [{ address: answer, ttl: 1 }], resolve6: async () => [] };
  const s = svc({ endpoints: [{ kind: 'dns', address: 'upstream.example', port }] });
  const { proxy, stats } = newProxy({ resolver });
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  for (let i = 0; i < 3; i++) t.is(await roundTrip(l.port, `old-${i}`), `old-${i}`);
  t.is(first.accepted(), 3);
  answer = '127.0.0.2';
  // The answer's TTL is 1 s: after it the name is resolved again and the plans reinstalled.
  await until(() => proxy.clusters()[0]?.endpoints[0]?.addresses[0] === `127.0.0.2:${port}`, 'the new answer in the plan', 5000);
  for (let i = 0; i < 3; i++) t.is(await roundTrip(l.port, `new-${i}`), `new-${i}`);
  await settle(proxy);
  t.is(secondAccepted, 3);
  t.is(stats.get('meshext_upstream_cx_connect_fail_total', { service: s.kri }), 0);
});

test.serial("plans: each address of a DNS name's last answer is tried in turn: a refused first address fails over to the next", async (t) => {
  // tcpEcho listens on 127.0.0.1 only, so a connect to 127.0.0.2 at its port is refused.
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  const port = echo.port;
  const resolver = { resolve4: async () => [{ address: '127.0.0.2', ttl: 3600 }, { address: '127.0.0.1', ttl: 3600 }], resolve6: async () => [] };
  const s = svc({ endpoints: [{ kind: 'dns', address: 'two.example', port }] });
  const { proxy, stats } = newProxy({ resolver });
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([s]));
  // Both addresses are in the plan, in answer order.
  t.deepEqual(proxy.clusters()[0]?.endpoints[0]?.addresses, [`127.0.0.2:${port}`, `127.0.0.1:${port}`]);
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  t.is(await roundTrip(l.port, 'via the second address'), 'via the second address');
  await settle(proxy);
  // One connection, two attempts: 127.0.0.2 refused, then 127.0.0.1.
  t.is(stats.get('meshext_upstream_cx_connect_fail_total', { service: s.kri }), 1);
  t.is(stats.get('meshext_upstream_cx_total', { service: s.kri }), 2);
  t.is(echo.accepted(), 1);
  // The endpoint (the name, not an address) connected in the end: it is healthy, its failure cleared.
  t.like(proxy.clusters()[0]?.endpoints[0], { address: `two.example:${port}`, healthy: true, consecutiveFailures: 0, total: 2 });
});

test.serial('plans: a connection in flight keeps its plan when its service is removed; later ones find no route', async (t) => {
  const { proxy, stats, s, port, close } = await proxyToBlackhole();
  t.teardown(close);
  t.teardown(() => proxy.close());
  const c = net.connect({ host: '127.0.0.1', port });
  c.on('error', () => {});
  await once(c, 'connect');
  await until(() => proxy.activeConnections() === 1, 'connecting');
  await proxy.setSnapshot(snap([], 2));
  // The removed service's series stay until that connection ends.
  t.is(stats.get('meshext_downstream_cx_active', { service: s.kri }), 1);
  t.is(await roundTrip(port, 'gone'), '');
  await proxy.settled();
  t.is(stats.get('meshext_downstream_cx_no_route_total'), 1);
  t.is(proxy.activeConnections(), 1);
  // The client gives up (RST) while the upstream is still being connected: that ends the connection at once.
  c.resetAndDestroy();
  await until(() => stats.get('meshext_downstream_cx_active', { service: s.kri }) === undefined, 'series of the removed service gone');
});

test.serial('plans: a service that cannot be served refuses at once (TCP reset, HTTP 503 with the reason), never hangs', async (t) => {
  const tcp = svc({ endpoints: [], extension: 'Lambda' });
  const http1 = svc({ protocol: 'http', endpoints: [], extension: 'Lambda' });
  const { proxy } = newProxy({ connectTimeoutMs: 60_000 });
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([tcp, http1]));
  const lt = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, tcp.id);
  const lh = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, http1.id);
  const started = Date.now();
  t.is(await roundTrip(lt.port, 'x'), '');
  const reply = await new Promise<string>((resolve) => {
    http.get({ host: '127.0.0.1', port: lh.port, path: '/' }, (res) => {
      let b = '';
      res.on('data', (d: Buffer) => (b += d.toString()));
      res.on('end', () => resolve(`${res.statusCode} ${b.trim()}`));
    });
  });
  t.is(reply, '503 upstream unavailable: MeshExternalService extension Lambda is not supported by meshext');
  // A hang detector, not a latency bound: waiting on a connect would take the 60 s connect timeout, and a
  // shared 2-core machine can stall a healthy run for a second or two.
  t.true(Date.now() - started < 10_000, 'refused at once');
  t.regex(proxy.clusters().find((c) => c.service === tcp.id)?.error ?? '', /extension Lambda is not supported/);
});

test.serial('plans: a DNS-name endpoint whose record is removed (NXDOMAIN) gets no more traffic', async (t) => {
  const named = await tcpEcho();
  t.teardown(() => closeServer(named.srv));
  const other = await tcpEcho();
  t.teardown(() => closeServer(other.srv));
  const { resolver, remove } = removableName();
  const s = svc({ endpoints: [{ kind: 'dns', address: 'api.example', port: named.port }, ipEp(other.port)] });
  const { proxy } = newProxy({ resolver });
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  for (let i = 0; i < 4; i++) t.is(await roundTrip(l.port, `a${i}`), `a${i}`);
  t.is(named.accepted(), 2, 'round-robin over both while the name resolves');
  remove();
  await until(() => proxy.clusters()[0]?.endpoints[0]?.addresses.length === 0, 'the NXDOMAIN answer in the plan', 5000);
  t.regex(proxy.clusters()[0]?.endpoints[0]?.lastError ?? '', /cannot resolve endpoint api\.example: no such name \(ENOTFOUND\)/);
  for (let i = 0; i < 4; i++) t.is(await roundTrip(l.port, `b${i}`), `b${i}`);
  t.is(named.accepted(), 2, 'no connection went to the removed name');
  t.is(other.accepted(), 6);
});

test.serial("plans: a Dataplane's own plan serves its outbound key with its own values; the service's books stay one", async (t) => {
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  // Dataplane a's outbounds have a 150 ms idle timeout of their own (a Dataplane-targeted MeshTimeout); the
  // service's own plan keeps the agent's hour.
  const s = svc({ endpoints: [ipEp(echo.port)], dataplanes: [{ dataplane: 'a', key: '@default/dp-svc/a', policies: { timeouts: { idleMs: 150, policies: ['a-only'] } } }], name: 'dp-svc' });
  const { proxy, stats } = newProxy();
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([s]));
  t.deepEqual(proxy.currentPlans().map((p) => [p.dataplane ?? null, p.keys.filter((k) => k.startsWith('@')), p.timeouts.tcpIdleMs]), [
    [null, ['@default/dp-svc'], 3_600_000],
    ['a', ['@default/dp-svc/a'], 150],
  ]);
  const own = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  const viaA = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id, '@default/dp-svc/a');
  const idleClose = async (port: number): Promise<boolean> => {
    const c = net.connect({ host: '127.0.0.1', port });
    c.on('error', () => {});
    await once(c, 'connect');
    const closed = once(c, 'close').then(() => true);
    const r = await Promise.race([closed, new Promise<boolean>((res) => setTimeout(() => res(false), 600))]);
    c.destroy();
    return r;
  };
  const [a, service] = await Promise.all([idleClose(viaA.port), idleClose(own.port)]);
  t.true(a, "a's outbound connection is closed by a's idle timeout");
  t.false(service, "the service's own outbound keeps the service's idle timeout");
  await settle(proxy);
  // One service: one set of counters, one /clusters entry, both connections counted on its endpoint.
  t.is(stats.get('meshext_downstream_cx_total', { service: s.kri }), 2);
  t.deepEqual(proxy.clusters().map((c) => [c.service, c.endpoints[0]?.total]), [[s.id, 2]]);
  t.is(proxy.engineCounters()?.services.filter((x) => x.service === s.id).length, 1);
});
