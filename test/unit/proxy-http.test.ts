import test from 'ava';
import http from 'node:http';
import https from 'node:https';
import { makePki, type TestPki } from '../helpers/certs.js';
import { closeServer, ipEp, listen, newProxy, proxyFor, snap, svc, tlsCfg } from '../helpers/proxy.js';

let pki: TestPki;
test.before(() => {
  pki = makePki();
});
test.after.always(() => pki?.cleanup());

interface Seen {
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** An upstream that echoes method, headers and body as JSON and counts its connections. */
async function upstream(tlsOpts?: https.ServerOptions): Promise<{ srv: http.Server; port: number; conns: () => number; seen: Seen[] }> {
  const seen: Seen[] = [];
  let conns = 0;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      seen.push({ headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes' });
      res.end(JSON.stringify({ method: req.method, url: req.url, host: req.headers.host, body }));
    });
  };
  const srv = tlsOpts ? https.createServer(tlsOpts, handler) : http.createServer(handler);
  srv.on(tlsOpts ? 'secureConnection' : 'connection', () => conns++);
  const r = await listen(srv);
  return { ...r, conns: () => conns, seen };
}

/** One request through the proxy listener. */
function get(port: number, o: { path?: string; method?: string; headers?: http.OutgoingHttpHeaders; body?: string; agent?: http.Agent } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: o.path ?? '/', method: o.method ?? 'GET', headers: o.headers, agent: o.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

test('http: keep-alive upstream reuse, bodies both ways, hop-by-hop stripped, no x-forwarded-*', async (t) => {
  const up = await upstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 10; i++) {
    const r = await get(p.port, { method: 'POST', path: `/items/${i}`, body: `payload-${i}`, agent, headers: { host: 'api.extsvc.mesh.local', connection: 'keep-alive, x-hop', 'x-hop': '1', 'x-app': 'kept' } });
    t.is(r.status, 200);
    t.is(r.headers['x-upstream'], 'yes');
    t.deepEqual(JSON.parse(r.body), { method: 'POST', url: `/items/${i}`, host: 'api.extsvc.mesh.local', body: `payload-${i}` });
  }
  agent.destroy();
  t.true(up.conns() < 10, `upstream saw ${up.conns()} connections for 10 requests`);
  const h = up.seen[0]?.headers ?? {};
  t.is(h['x-app'], 'kept');
  t.is(h['x-hop'], undefined);
  t.is(h['x-forwarded-for'], undefined);
  t.is(h['x-forwarded-proto'], undefined);
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '2xx' }), 10);
  await p.close();
  await closeServer(up.srv);
});

test('http: Host is the endpoint hostname for DNS endpoints, the client Host for IP endpoints', async (t) => {
  const up = await upstream();
  const dnsSvc = svc({ protocol: 'http', endpoints: [{ kind: 'dns', address: 'localhost', port: up.port }] });
  const p = await proxyFor(dnsSvc);
  t.is(JSON.parse((await get(p.port, { headers: { host: 'mes.extsvc.mesh.local' } })).body).host, 'localhost');
  // An absolute-form target cannot steer the upstream to another virtual host: origin form, the Host rule.
  const abs = JSON.parse((await get(p.port, { path: 'http://other.example/elsewhere?q=1', headers: { host: 'mes.extsvc.mesh.local' } })).body) as { url: string; host: string };
  t.deepEqual([abs.url, abs.host], ['/elsewhere?q=1', 'localhost']);
  await p.close();
  const ipSvc = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const q = await proxyFor(ipSvc);
  t.is(JSON.parse((await get(q.port, { headers: { host: 'mes.extsvc.mesh.local' } })).body).host, 'mes.extsvc.mesh.local');
  await q.close();
  await closeServer(up.srv);
});

test('http: 403 when the mesh forbids access, 503 naming the reason when the upstream is down', async (t) => {
  const up = await upstream();
  const denied = svc({ protocol: 'http', mesh: 'payments', endpoints: [ipEp(up.port)], forbidden: true });
  const p = await proxyFor(denied);
  const r = await get(p.port);
  t.is(r.status, 403);
  t.is(r.body.trim(), 'MeshExternalService access denied by Mesh "payments" setting routing.defaultForbidMeshExternalServiceAccess');
  t.is(p.stats.get('meshext_access_denied_total', { service: denied.kri }), 1);
  t.is(up.conns(), 0);
  await p.close();
  const port = up.port;
  await closeServer(up.srv);
  const down = svc({ protocol: 'http', endpoints: [ipEp(port)] });
  const q = await proxyFor(down);
  const d = await get(q.port);
  t.is(d.status, 503);
  t.regex(d.body, /upstream unavailable: connect to 127\.0\.0\.1:\d+ failed: ECONNREFUSED/);
  t.is(q.stats.get('meshext_upstream_rq_total', { service: down.kri, code_class: '5xx' }), 1);
  await q.close();
});

test('https: TLS origination to an HTTP/1.1 upstream; verification failure is a 503 with the reason', async (t) => {
  const good = await upstream({ key: pki.good.key, cert: pki.good.cert });
  const s = svc({ protocol: 'http', endpoints: [{ kind: 'dns', address: 'localhost', port: good.port }], tls: tlsCfg({ ca: pki.ca }) });
  const p = await proxyFor(s);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 3; i++) t.is((await get(p.port, { agent })).status, 200);
  agent.destroy();
  t.is(good.conns(), 1, 'TLS connection reused');
  await p.close();
  await closeServer(good.srv);
  const bad = await upstream({ key: pki.wrongName.key, cert: pki.wrongName.cert });
  const s2 = svc({ protocol: 'http', endpoints: [ipEp(bad.port)], tls: tlsCfg({ ca: pki.ca }) });
  const q = await proxyFor(s2);
  const r = await get(q.port);
  t.is(r.status, 503);
  t.regex(r.body, /certificate name mismatch/);
  // The reason is counted from the engine's report, which reaches JS after the client's 503.
  await q.proxy.settled();
  t.is(q.stats.get('meshext_upstream_tls_verify_fail_total', { service: s2.kri, reason: 'name_mismatch' }), 1);
  await q.close();
  await closeServer(bad.srv);
});

test('http: drain finishes the in-flight request, then closes idle keep-alive connections', async (t) => {
  let release: () => void = () => {};
  const slow = http.createServer((req, res) => {
    if (req.url === '/warm') res.end('warm');
    else release = () => res.end('late');
  });
  const up = await listen(slow);
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const agent = new http.Agent({ keepAlive: true });
  t.is((await get(p.port, { agent, path: '/warm' })).body, 'warm');
  const inflight = get(p.port, { agent: new http.Agent({ keepAlive: true }), path: '/slow' });
  while (p.proxy.activeConnections() < 2) await new Promise((r) => setTimeout(r, 5));
  await p.proxy.stopAccepting();
  const drained = p.proxy.drain(10_000);
  await new Promise((r) => setTimeout(r, 50));
  release();
  const r = await inflight;
  t.is(r.body, 'late');
  t.is(r.headers.connection, 'close');
  t.deepEqual(await drained, { remaining: 0 });
  agent.destroy();
  await p.close();
  await closeServer(slow);
});

test('http: a reused keep-alive connection the upstream closed is retried once on a new one for idempotent requests', async (t) => {
  // Upstream A closes every connection right after its response; upstream B accepts the second request
  // on a connection and then closes without answering: the deterministic form of the keep-alive race.
  const closeAfter = http.createServer((_req, res) => {
    res.on('finish', () => res.socket?.destroy());
    res.end('a');
  });
  closeAfter.keepAliveTimeout = 1;
  const a = await listen(closeAfter);
  const perConn = new WeakMap<object, number>();
  const dropSecond = http.createServer((req, res) => {
    const n = (perConn.get(req.socket) ?? 0) + 1;
    perConn.set(req.socket, n);
    if (n > 1) req.socket.destroy();
    else res.end('b');
  });
  const b = await listen(dropSecond);
  const sa = svc({ protocol: 'http', endpoints: [ipEp(a.port)] });
  const sb = svc({ protocol: 'http', endpoints: [ipEp(b.port)] });
  const { proxy, stats } = newProxy();
  await proxy.setSnapshot(snap([sa, sb]));
  const pa = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, sa.id);
  const pb = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, sb.id);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const statusesA: number[] = [];
  for (let i = 0; i < 30; i++) statusesA.push((await get(pa.port, { agent })).status);
  t.deepEqual(statusesA, new Array(30).fill(200));
  const methods = ['GET', 'PUT', 'DELETE', 'OPTIONS', 'TRACE', 'GET'];
  for (const method of methods) {
    const r = await get(pb.port, { agent, method, body: method === 'PUT' ? '' : undefined });
    t.is(r.status, 200, method);
  }
  // Every request after the first found its pooled connection closed and was replayed exactly once.
  t.is(stats.get('meshext_upstream_rq_retry_total', { service: sb.kri }), methods.length - 1);
  t.is(stats.get('meshext_upstream_rq_total', { service: sb.kri, code_class: '5xx' }), undefined);
  // A POST may have had effects upstream: it is never replayed, the client sees the failure.
  const post = await get(pb.port, { agent, method: 'POST', body: 'x' });
  t.is(post.status, 503);
  t.regex(post.body, /closed the reused connection/);
  t.is(stats.get('meshext_upstream_rq_retry_total', { service: sb.kri }), methods.length - 1);
  agent.destroy();
  await proxy.close();
  await closeServer(closeAfter);
  await closeServer(dropSecond);
});

test('http: every dialled upstream connection carries a request; the pool settles at the concurrency', async (t) => {
  const up = await upstream();
  let open = 0;
  let idleNever = 0;
  up.srv.on('connection', (sock) => {
    open++;
    let requests = 0;
    sock.on('data', () => requests++);
    sock.on('close', () => {
      open--;
      if (requests === 0) idleNever++;
    });
  });
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const concurrency = 20;
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  // Waves of concurrent requests make sockets free up while others are being dialled: the race in
  // which a dialled socket used to be left unused and open.
  for (let wave = 0; wave < 15; wave++) {
    const rs = await Promise.all(Array.from({ length: concurrency * 2 }, (_, i) => get(p.port, { path: `/w${wave}/${i}`, agent })));
    t.true(rs.every((r) => r.status === 200));
  }
  t.true(up.conns() <= concurrency * 2, `upstream saw ${up.conns()} connections for ${concurrency} concurrent clients`);
  agent.destroy();
  await p.close();
  await new Promise((r) => setTimeout(r, 50));
  t.is(idleNever, 0, 'no upstream connection was opened without carrying a request');
  t.is(open, 0);
  await closeServer(up.srv);
});

test('http: sequential requests on one kept-alive client connection are balanced over the endpoints, each with its own pool', async (t) => {
  const a = await upstream();
  const b = await upstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(a.port), ipEp(b.port)] });
  const p = await proxyFor(s);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 6; i++) t.is((await get(p.port, { agent, path: `/r${i}` })).status, 200);
  t.is(a.seen.length, 3);
  t.is(b.seen.length, 3);
  // One upstream connection per endpoint, each reused.
  t.is(a.conns(), 1);
  t.is(b.conns(), 1);
  // A reload that drops an endpoint: its pooled connection is not used again.
  await p.proxy.setSnapshot(snap([{ ...s, endpoints: [ipEp(b.port)] }], 2));
  for (let i = 0; i < 3; i++) t.is((await get(p.port, { agent, path: `/s${i}` })).status, 200);
  t.is(a.seen.length, 3);
  t.is(b.seen.length, 6);
  agent.destroy();
  await p.close();
  await closeServer(a.srv);
  await closeServer(b.srv);
});
