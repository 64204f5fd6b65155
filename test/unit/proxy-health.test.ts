// Endpoint health in the engine and the control plane: MeshHealthCheck active checks (HTTP, HTTP over TLS, gRPC,
// TCP) driving priority failover, MeshCircuitBreaker outlier detection (ejection and return after the base
// ejection time) and connection limits, against loopback stand-ins with health and status switches.
import test from 'ava';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { blackhole, closeServer, ipEp, listen, proxyFor, roundTrip, svc, tcpEcho, tlsCfg, until } from '../helpers/proxy.js';
import { makePki } from '../helpers/certs.js';
import type { ClusterInfo } from '../../src/proxy/index.js';
import type { MeshCircuitBreakerConf, MeshHealthCheckConf } from '../../src/resources/types.js';
import type { CompiledEndpoint } from '../../src/snapshot/types.js';

type Any = any;
const INTERVAL = '200ms';
const INTERVAL_MS = 200;

const hc = (conf: MeshHealthCheckConf): { conf: MeshHealthCheckConf; policies: string[] } => ({ conf, policies: ['hc'] });
const cb = (conf: MeshCircuitBreakerConf): { conf: MeshCircuitBreakerConf; policies: string[] } => ({ conf, policies: ['cb'] });
const prio = (e: CompiledEndpoint, priority: number): CompiledEndpoint => ({ ...e, priority });

/** An HTTP/1.1 stand-in named `name`: /health answers `health`, /slow after 1 s, anything else `status` with the name as body. */
async function standIn(
  name: string,
  port = 0,
  opts?: https.ServerOptions,
): Promise<{ port: number; srv: http.Server; hits: () => number; setHealth: (s: number) => void; setStatus: (s: number) => void; close: () => Promise<void> }> {
  let health = 200;
  let status = 200;
  let hits = 0;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    req.resume();
    if (req.url === '/health') {
      res.writeHead(health, { 'content-type': 'text/plain' }).end(`${name} health`);
      return;
    }
    hits++;
    if (req.url === '/slow') {
      setTimeout(() => res.end(name), 1000);
      return;
    }
    res.writeHead(status, { 'content-type': 'text/plain' }).end(name);
  };
  const srv = opts ? https.createServer(opts, handler) : http.createServer(handler);
  srv.keepAliveTimeout = 100;
  srv.listen(port, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    srv,
    hits: () => hits,
    setHealth: (s) => (health = s),
    setStatus: (s) => (status = s),
    close: async () => {
      srv.closeAllConnections();
      await closeServer(srv);
    },
  };
}

/** One request through the proxy on a fresh connection: status, body and whether it was marked overloaded. */
function get(port: number, path = '/'): Promise<{ status: number; body: string; overloaded?: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ...(res.headers['x-envoy-overloaded'] === 'true' ? { overloaded: true } : {}) }));
    });
    req.on('error', reject);
  });
}

function endpointOf(clusters: ClusterInfo[], port: number): ClusterInfo['endpoints'][number] {
  const e = clusters[0]?.endpoints.find((x) => x.address === `127.0.0.1:${port}`);
  if (!e) throw new Error(`no endpoint 127.0.0.1:${port} in /clusters`);
  return e;
}

test('active HTTP checks: a priority-0 endpoint failing its checks moves traffic to priority 1 within one interval, and its recovery brings it back', async (t) => {
  const a = await standIn('a');
  const b = await standIn('b');
  const s = svc({
    protocol: 'http',
    endpoints: [ipEp(a.port), prio(ipEp(b.port), 1)],
    healthCheck: hc({ interval: INTERVAL, timeout: '1s', unhealthyThreshold: 1, healthyThreshold: 1, http: { path: '/health' } }),
  });
  const p = await proxyFor(s);
  for (let i = 0; i < 3; i++) t.is((await get(p.port)).body, 'a');
  a.setHealth(503);
  const failedAt = Date.now();
  await until(() => endpointOf(p.proxy.clusters(), a.port).health === 'unhealthy', 'a unhealthy', 3000);
  t.true(Date.now() - failedAt <= INTERVAL_MS + 800, `unhealthy after ${Date.now() - failedAt} ms`);
  for (let i = 0; i < 3; i++) t.is((await get(p.port)).body, 'b');
  const ep = endpointOf(p.proxy.clusters(), a.port);
  t.is(ep.priority, 0);
  t.false(ep.healthy);
  t.regex(ep.reason ?? '', /active health check.*HTTP status 503 is not an expected status/);
  t.is(ep.lastCheck?.ok, false);
  t.true(Date.now() - Date.parse(ep.lastCheck?.at ?? '') < 2000);
  t.is(endpointOf(p.proxy.clusters(), b.port).health, 'healthy');
  a.setHealth(200);
  const backAt = Date.now();
  await until(() => endpointOf(p.proxy.clusters(), a.port).health === 'healthy', 'a healthy again', 3000);
  t.true(Date.now() - backAt <= INTERVAL_MS + 800, `healthy after ${Date.now() - backAt} ms`);
  for (let i = 0; i < 3; i++) t.is((await get(p.port)).body, 'a');
  t.true((p.stats.get('meshext_upstream_health_check_failure_total', { service: s.kri }) ?? 0) >= 1);
  t.true((p.stats.get('meshext_upstream_health_check_success_total', { service: s.kri }) ?? 0) >= 2);
  t.is(p.stats.get('meshext_upstream_health_check_healthy_endpoints', { service: s.kri }), 2);
  await p.close();
  await a.close();
  await b.close();
});

test('active checks: a killed priority-0 endpoint sends traffic to priority 1; restarted, it takes traffic again within one interval', async (t) => {
  let a = await standIn('a');
  const aPort = a.port;
  const b = await standIn('b');
  const s = svc({
    protocol: 'http',
    endpoints: [ipEp(aPort), prio(ipEp(b.port), 1)],
    healthCheck: hc({ interval: INTERVAL, timeout: '1s', unhealthyThreshold: 1, healthyThreshold: 1, http: { path: '/health' } }),
  });
  const p = await proxyFor(s);
  t.is((await get(p.port)).body, 'a');
  await a.close();
  // Clients keep coming while it is down: every one is served by priority 1, and the failed connects pile up
  // the passive back-off of the dead endpoint.
  const until1500 = Date.now() + 1500;
  while (Date.now() < until1500) {
    t.is((await get(p.port)).body, 'b');
    await new Promise((r) => setTimeout(r, 50));
  }
  t.is(endpointOf(p.proxy.clusters(), aPort).health, 'unhealthy');
  a = await standIn('a', aPort);
  const restarted = Date.now();
  await until(() => endpointOf(p.proxy.clusters(), aPort).health === 'healthy', 'a back', 3000);
  t.is((await get(p.port)).body, 'a');
  t.true(Date.now() - restarted <= INTERVAL_MS + 800, `traffic back after ${Date.now() - restarted} ms`);
  await p.close();
  await a.close();
  await b.close();
});

test('outlier detection: an endpoint answering 503 is ejected after consecutive gateway failures and comes back after the base ejection time', async (t) => {
  const a = await standIn('a');
  const b = await standIn('b');
  a.setStatus(503);
  const s = svc({
    protocol: 'http',
    endpoints: [ipEp(a.port), ipEp(b.port)],
    circuitBreaker: cb({ outlierDetection: { baseEjectionTime: '1s', maxEjectionPercent: 50, detectors: { gatewayFailures: { consecutive: 3 } } } }),
  });
  const p = await proxyFor(s);
  const seen: string[] = [];
  for (let i = 0; i < 12; i++) {
    const r = await get(p.port);
    seen.push(`${r.status}:${r.body}`);
    await p.proxy.settled();
  }
  t.is(seen.filter((x) => x === '503:a').length, 3, seen.join(' '));
  t.deepEqual(seen.slice(-5), ['200:b', '200:b', '200:b', '200:b', '200:b']);
  const ep = endpointOf(p.proxy.clusters(), a.port);
  t.is(ep.health, 'ejected');
  t.is(ep.ejections, 1);
  t.regex(ep.reason ?? '', /ejected by outlier detection \(consecutive_gateway_failure\)/);
  t.is(p.stats.get('meshext_upstream_outlier_ejections_total', { service: s.kri, detector: 'consecutive_gateway_failure' }), 1);
  t.is(p.stats.get('meshext_upstream_outlier_ejections_active', { service: s.kri }), 1);
  a.setStatus(200);
  await new Promise((r) => setTimeout(r, 1100));
  const after = new Set<string>();
  for (let i = 0; i < 4; i++) after.add((await get(p.port)).body);
  t.deepEqual([...after].sort(), ['a', 'b']);
  t.is(endpointOf(p.proxy.clusters(), a.port).health, 'healthy');
  await p.close();
  await a.close();
  await b.close();
});

test('outlier detection: maxEjectionPercent keeps the last endpoints in, and no detector set ejects nothing', async (t) => {
  const a = await standIn('a');
  const b = await standIn('b');
  a.setStatus(502);
  b.setStatus(502);
  const s = svc({
    protocol: 'http',
    endpoints: [ipEp(a.port), ipEp(b.port)],
    circuitBreaker: cb({ outlierDetection: { baseEjectionTime: '10s', maxEjectionPercent: 10, detectors: { totalFailures: { consecutive: 2 } } } }),
  });
  const p = await proxyFor(s);
  for (let i = 0; i < 8; i++) {
    await get(p.port);
    await p.proxy.settled();
  }
  // One is always allowed; a second would be 100 % > 10 %.
  const states = [a.port, b.port].map((port) => endpointOf(p.proxy.clusters(), port).health).sort();
  t.deepEqual(states, ['ejected', 'healthy']);
  t.is(p.stats.get('meshext_upstream_outlier_ejections_total', { service: s.kri, detector: 'consecutive_5xx' }), 1);
  await p.close();
  const off = svc({ protocol: 'http', endpoints: [ipEp(a.port), ipEp(b.port)], circuitBreaker: cb({ outlierDetection: { baseEjectionTime: '10s' } }) });
  const q = await proxyFor(off);
  for (let i = 0; i < 8; i++) await get(q.port);
  await q.proxy.settled();
  t.deepEqual(q.proxy.clusters()[0]?.endpoints.map((e) => e.health), ['healthy', 'healthy']);
  await q.close();
  await a.close();
  await b.close();
});

test('connectionLimits.maxRequests: an HTTP/1.1 request over the limit gets 503 at once, counted; the next one after it is served', async (t) => {
  const a = await standIn('a');
  const s = svc({ protocol: 'http', endpoints: [ipEp(a.port)], circuitBreaker: cb({ connectionLimits: { maxRequests: 1 } }) });
  const p = await proxyFor(s);
  t.deepEqual(p.proxy.currentPlans()[0]?.limits, { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1 });
  const slow = get(p.port, '/slow');
  await until(() => a.hits() === 1, 'slow request upstream');
  const over = await get(p.port, '/');
  t.is(over.status, 503);
  t.true(over.overloaded, 'x-envoy-overloaded: true, as Envoy marks its circuit breakers\' 503');
  t.regex(over.body, /upstream overflow: 1 requests already in flight \(MeshCircuitBreaker maxRequests\)/);
  t.is((await slow).body, 'a');
  t.deepEqual(await get(p.port, '/'), { status: 200, body: 'a' });
  t.is(p.stats.get('meshext_upstream_rq_pending_overflow_total', { service: s.kri }), 1);
  await p.close();
  await a.close();
});

test('connectionLimits over HTTP/2: a stream over maxRequests, or needing a connection over maxConnections, gets 503 marked overloaded, counted', async (t) => {
  const up = http2.createServer();
  up.on('stream', (st, h) => {
    const answer = (body: string): void => {
      st.respond({ ':status': 200 });
      st.end(body);
    };
    if (h[':path'] === '/slow') setTimeout(() => answer('slow'), 800);
    else answer('fast');
  });
  const { port } = await listen(up);
  const s = svc({ protocol: 'http2', endpoints: [ipEp(port)], circuitBreaker: cb({ connectionLimits: { maxRequests: 1 } }) });
  const p = await proxyFor(s);
  const c = http2.connect(`http://127.0.0.1:${p.port}`);
  const ask = (path: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve) => {
      const r = c.request({ ':path': path });
      let body = '';
      let status = 0;
      r.on('response', (h) => {
        status = Number(h[':status']);
        if (status === 503) t.is(h['x-envoy-overloaded'], 'true');
      });
      r.on('data', (d: Buffer) => (body += d.toString()));
      r.on('end', () => resolve({ status, body }));
    });
  const slow = ask('/slow');
  await new Promise((r) => setTimeout(r, 200));
  const over = await ask('/fast');
  t.is(over.status, 503);
  t.regex(over.body, /MeshCircuitBreaker maxRequests/);
  t.deepEqual(await slow, { status: 200, body: 'slow' });
  t.deepEqual(await ask('/fast'), { status: 200, body: 'fast' });
  t.is(p.stats.get('meshext_upstream_rq_pending_overflow_total', { service: s.kri }), 1);
  c.close();
  await p.close();
  // maxConnections: a stream that needs a second upstream connection (one stream per bridged HTTP/1.1 upstream
  // connection) is refused, marked overloaded too.
  const h1 = await standIn('h1');
  const bridged = svc({ protocol: 'http', endpoints: [ipEp(h1.port)], circuitBreaker: cb({ connectionLimits: { maxConnections: 1 } }) });
  const q = await proxyFor(bridged);
  const c2 = http2.connect(`http://127.0.0.1:${q.port}`);
  const ask2 = (path: string): Promise<{ status: number; overloaded: boolean }> =>
    new Promise((resolve) => {
      const r = c2.request({ ':path': path });
      let status = 0;
      let overloaded = false;
      r.on('response', (h) => {
        status = Number(h[':status']);
        overloaded = h['x-envoy-overloaded'] === 'true';
      });
      r.on('end', () => resolve({ status, overloaded }));
      r.on('error', () => resolve({ status: -1, overloaded }));
      r.resume();
    });
  const held = ask2('/slow');
  await until(() => h1.hits() === 1, 'slow request upstream');
  t.deepEqual(await ask2('/'), { status: 503, overloaded: true });
  t.is((await held).status, 200);
  t.is(q.stats.get('meshext_upstream_cx_overflow_total', { service: bridged.kri }), 1);
  c2.close();
  await q.close();
  await h1.close();
  await closeServer(up as unknown as net.Server);
});

test('connectionLimits.maxConnections: a TCP client over the limit is closed at once and counted', async (t) => {
  const echo = await tcpEcho();
  const s = svc({ protocol: 'tcp', endpoints: [ipEp(echo.port)], circuitBreaker: cb({ connectionLimits: { maxConnections: 1 } }) });
  const p = await proxyFor(s);
  const held = net.connect({ host: '127.0.0.1', port: p.port });
  held.write('hold');
  await new Promise((r) => held.once('data', r));
  t.is(await roundTrip(p.port, 'second'), '');
  t.is(p.stats.get('meshext_upstream_cx_overflow_total', { service: s.kri }), 1);
  t.is(echo.accepted(), 1);
  held.destroy();
  await until(() => p.stats.get('meshext_upstream_cx_active', { service: s.kri }) === 0 || p.proxy.engineCounters()?.services[0]?.counters[3] === 0, 'held closed');
  t.is(await roundTrip(p.port, 'third'), 'third');
  await p.close();
  await closeServer(echo.srv);
});

test('connectionLimits.maxPendingRequests: TCP clients beyond the connects under way are closed and counted', async (t) => {
  // A listener that never accepts (full backlog): connects stay under way until the connect timeout.
  const hole = await blackhole();
  const s = svc({ protocol: 'tcp', endpoints: [ipEp(hole.port)], circuitBreaker: cb({ connectionLimits: { maxPendingRequests: 1 } }) });
  const p = await proxyFor(s, { connectTimeoutMs: 1500 });
  const first = roundTrip(p.port, 'one');
  await new Promise((r) => setTimeout(r, 100));
  const start = Date.now();
  t.is(await roundTrip(p.port, 'two'), '');
  t.true(Date.now() - start < 1000, 'refused at once, not after the connect timeout');
  t.is(p.stats.get('meshext_upstream_rq_pending_overflow_total', { service: s.kri }), 1);
  await first;
  await p.close();
  await hole.close();
});

test('active HTTP checks run over the endpoint\'s own TLS settings: verified against its CA, failing when the chain is not trusted', async (t) => {
  const pki = makePki();
  t.teardown(() => pki.cleanup());
  const a = await standIn('a', 0, { key: pki.good.key, cert: pki.good.cert });
  const conf = hc({ interval: INTERVAL, timeout: '1s', unhealthyThreshold: 1, healthyThreshold: 1, http: { path: '/health', expectedStatuses: [200, 204] } });
  const good = svc({ protocol: 'http', endpoints: [ipEp(a.port)], tls: tlsCfg({ ca: pki.ca }), healthCheck: conf });
  const p = await proxyFor(good);
  await until(() => (p.stats.get('meshext_upstream_health_check_success_total', { service: good.kri }) ?? 0) >= 2, 'checks pass over TLS', 3000);
  t.is(endpointOf(p.proxy.clusters(), a.port).health, 'healthy');
  a.setHealth(500);
  await until(() => endpointOf(p.proxy.clusters(), a.port).health === 'unhealthy', 'unhealthy over TLS', 3000);
  // Checks are not traffic: they count in no connection metric of the service.
  t.is(p.stats.get('meshext_upstream_cx_total', { service: good.kri }), 0);
  await p.close();
  a.setHealth(200);
  const untrusted = svc({ protocol: 'http', endpoints: [ipEp(a.port)], tls: tlsCfg({ ca: pki.otherCa }), healthCheck: conf });
  const q = await proxyFor(untrusted);
  await until(() => endpointOf(q.proxy.clusters(), a.port).health === 'unhealthy', 'untrusted chain fails the check', 3000);
  t.regex(endpointOf(q.proxy.clusters(), a.port).reason ?? '', /TLS handshake with 127\.0\.0\.1:\d+ failed/);
  await q.close();
  await a.close();
});

const healthDef = protoLoader.loadSync(join(process.cwd(), 'test/fixtures/health.proto'), { keepCase: true });
const HealthService = (grpc.loadPackageDefinition(healthDef) as Any).grpc.health.v1.Health;

test('active gRPC checks: grpc.health.v1 NOT_SERVING takes the endpoint out, SERVING brings it back; the service name is sent', async (t) => {
  let serving = 1;
  const asked: string[] = [];
  const server = new grpc.Server();
  server.addService(HealthService.service, {
    Check: (call: Any, cb2: Any) => {
      asked.push(call.request.service);
      cb2(null, { status: serving });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, n) => (e ? reject(e) : resolve(n))));
  const s = svc({ protocol: 'grpc', endpoints: [ipEp(port)], healthCheck: hc({ interval: INTERVAL, timeout: '1s', unhealthyThreshold: 2, healthyThreshold: 2, grpc: { serviceName: 'payments' } }) });
  const p = await proxyFor(s);
  await until(() => (p.stats.get('meshext_upstream_health_check_success_total', { service: s.kri }) ?? 0) >= 1, 'a passing check', 3000);
  t.is(asked[0], 'payments');
  serving = 2;
  await until(() => endpointOf(p.proxy.clusters(), port).health === 'unhealthy', 'NOT_SERVING twice', 3000);
  t.regex(endpointOf(p.proxy.clusters(), port).reason ?? '', /failed 2 active health check\(s\) in a row: gRPC health check status NOT_SERVING/);
  serving = 1;
  await until(() => endpointOf(p.proxy.clusters(), port).health === 'healthy', 'SERVING twice', 3000);
  await p.close();
  server.forceShutdown();
});

test('active TCP checks: send and receive blocks (base64), fuzzy in order; a wrong answer fails', async (t) => {
  const echo = await tcpEcho();
  const b64 = (x: string): string => Buffer.from(x).toString('base64');
  const s = svc({ protocol: 'tcp', endpoints: [ipEp(echo.port)], healthCheck: hc({ interval: INTERVAL, timeout: '1s', unhealthyThreshold: 1, tcp: { send: b64('ping pong'), receive: [b64('ping'), b64('pong')] } }) });
  const p = await proxyFor(s);
  await until(() => (p.stats.get('meshext_upstream_health_check_success_total', { service: s.kri }) ?? 0) >= 2, 'echo matches', 3000);
  await p.close();
  const wrong = svc({ protocol: 'tcp', endpoints: [ipEp(echo.port)], healthCheck: hc({ interval: INTERVAL, timeout: '300ms', unhealthyThreshold: 1, tcp: { send: b64('ping'), receive: [b64('pong')] } }) });
  const q = await proxyFor(wrong);
  await until(() => endpointOf(q.proxy.clusters(), echo.port).health === 'unhealthy', 'no pong', 3000);
  t.regex(endpointOf(q.proxy.clusters(), echo.port).reason ?? '', /timed out after 300 ms/);
  await q.close();
  await closeServer(echo.srv);
});

test('outlier detection: connections lost before the response are local-origin failures (split mode: the local-origin detector)', async (t) => {
  // Accepts, reads the request, then resets: the connect succeeds, the exchange does not.
  const resetting = net.createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => s.resetAndDestroy());
  });
  const { port: badPort } = await listen(resetting);
  const b = await standIn('b');
  const s = svc({
    protocol: 'http',
    endpoints: [ipEp(badPort), ipEp(b.port)],
    circuitBreaker: cb({ outlierDetection: { baseEjectionTime: '10s', maxEjectionPercent: 50, splitExternalAndLocalErrors: true, detectors: { localOriginFailures: { consecutive: 2 } } } }),
  });
  const p = await proxyFor(s);
  const seen: number[] = [];
  for (let i = 0; i < 10; i++) {
    seen.push((await get(p.port)).status);
    await p.proxy.settled();
  }
  t.is(seen.filter((x) => x === 503).length, 2, seen.join(' '));
  const ep = endpointOf(p.proxy.clusters(), badPort);
  t.is(ep.health, 'ejected');
  t.regex(ep.reason ?? '', /consecutive_local_origin_failure/);
  t.is(p.stats.get('meshext_upstream_outlier_ejections_total', { service: s.kri, detector: 'consecutive_local_origin_failure' }), 1);
  await p.close();
  await closeServer(resetting);
  await b.close();
});

test('connectionLimits.maxConnections: an HTTP/1.1 request needing a new upstream connection over the limit gets 503, marked overloaded', async (t) => {
  const a = await standIn('a');
  const s = svc({ protocol: 'http', endpoints: [ipEp(a.port)], circuitBreaker: cb({ connectionLimits: { maxConnections: 1 } }) });
  const p = await proxyFor(s);
  const slow = get(p.port, '/slow');
  await until(() => a.hits() === 1, 'slow request upstream');
  const over = await get(p.port, '/');
  t.is(over.status, 503);
  t.true(over.overloaded);
  t.regex(over.body, /upstream overflow: 1 upstream connections open \(MeshCircuitBreaker maxConnections\)/);
  t.is((await slow).status, 200);
  t.is(p.stats.get('meshext_upstream_cx_overflow_total', { service: s.kri }), 1);
  await p.close();
  await a.close();
});

test('outlier detection over HTTP/2: streams the upstream resets count against its endpoint, and an HTTP/2 check runs on http2 services', async (t) => {
  const resetting = http2.createServer();
  resetting.on('stream', (st) => {
    st.on('error', () => undefined);
    st.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  });
  const { port: badPort } = await listen(resetting);
  const good = http2.createServer();
  let checks = 0;
  good.on('stream', (st, h) => {
    if (h[':path'] === '/health') checks++;
    st.respond({ ':status': 200 });
    st.end('good');
  });
  const { port: goodPort } = await listen(good);
  const s = svc({
    protocol: 'http2',
    endpoints: [ipEp(badPort), ipEp(goodPort)],
    circuitBreaker: cb({ outlierDetection: { baseEjectionTime: '10s', maxEjectionPercent: 50, splitExternalAndLocalErrors: true, detectors: { localOriginFailures: { consecutive: 2 } } } }),
    healthCheck: hc({ interval: '5s', healthyThreshold: 1, http: { path: '/health' } }),
  });
  const p = await proxyFor(s);
  t.true(p.proxy.currentPlans()[0]?.healthCheck?.check.http2);
  const c = http2.connect(`http://127.0.0.1:${p.port}`);
  const ask = (): Promise<number> =>
    new Promise((resolve) => {
      const r = c.request({ ':path': '/' });
      let status = 0;
      r.on('response', (h) => (status = Number(h[':status'])));
      r.on('error', () => resolve(-1));
      r.on('close', () => resolve(status));
      r.resume();
    });
  const seen: number[] = [];
  for (let i = 0; i < 10; i++) {
    seen.push(await ask());
    await p.proxy.settled();
  }
  t.is(seen.filter((x) => x !== 200).length, 2, seen.join(' '));
  t.is(endpointOf(p.proxy.clusters(), badPort).health, 'ejected');
  await until(() => checks >= 1, 'an HTTP/2 health check reached the good endpoint', 3000);
  c.close();
  await p.close();
  await closeServer(resetting as unknown as net.Server);
  await closeServer(good as unknown as net.Server);
});

test('active gRPC checks over TLS: ALPN h2 and the service\'s CA, as its traffic', async (t) => {
  const pki = makePki();
  t.teardown(() => pki.cleanup());
  const server = new grpc.Server();
  server.addService(HealthService.service, { Check: (_call: Any, done: Any) => done(null, { status: 1 }) });
  const creds = grpc.ServerCredentials.createSsl(null, [{ private_key: pki.good.key, cert_chain: pki.good.cert }]);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (e, n) => (e ? reject(e) : resolve(n))));
  const s = svc({ protocol: 'grpc', endpoints: [ipEp(port)], tls: tlsCfg({ ca: pki.ca }), healthCheck: hc({ interval: INTERVAL, timeout: '1s', unhealthyThreshold: 1, grpc: {} }) });
  const p = await proxyFor(s);
  await until(() => (p.stats.get('meshext_upstream_health_check_success_total', { service: s.kri }) ?? 0) >= 2, 'checks pass over TLS', 3000);
  t.is(p.stats.get('meshext_upstream_health_check_failure_total', { service: s.kri }), 0);
  t.is(endpointOf(p.proxy.clusters(), port).health, 'healthy');
  await p.close();
  server.forceShutdown();
});

test('outlier detection: the failure percentage detector ejects, at its interval, an endpoint failing most of its requests', async (t) => {
  const a = await standIn('a');
  const b = await standIn('b');
  a.setStatus(500);
  const s = svc({
    protocol: 'http',
    endpoints: [ipEp(a.port), ipEp(b.port)],
    circuitBreaker: cb({ outlierDetection: { interval: '200ms', baseEjectionTime: '10s', maxEjectionPercent: 50, detectors: { failurePercentage: { minimumHosts: 2, requestVolume: 5, threshold: 50 } } } }),
  });
  const p = await proxyFor(s);
  t.true(p.proxy.currentPlans()[0]?.countResponses);
  // Traffic keeps coming: each sweep judges the responses of its own interval (a loaded machine may split them).
  for (const end = Date.now() + 5000; endpointOf(p.proxy.clusters(), a.port).health !== 'ejected'; ) {
    if (Date.now() > end) {
      t.fail('a never ejected');
      break;
    }
    await get(p.port);
  }
  t.regex(endpointOf(p.proxy.clusters(), a.port).reason ?? '', /failure_percentage/);
  for (let i = 0; i < 4; i++) t.is((await get(p.port)).body, 'b');
  t.is(p.stats.get('meshext_upstream_outlier_ejections_total', { service: s.kri, detector: 'failure_percentage' }), 1);
  await p.close();
  await a.close();
  await b.close();
});
