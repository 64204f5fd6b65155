import test from 'ava';
import http2 from 'node:http2';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { makePki, type TestPki } from '../helpers/certs.js';
import { captureLog } from '../helpers/log.js';
import { ipEp, proxyFor, svc, tlsCfg, until } from '../helpers/proxy.js';
import type { Proxy } from '../../src/proxy/index.js';

let pki: TestPki;
test.before(() => {
  pki = makePki();
});
test.after.always(() => pki?.cleanup());

type Any = any;
const def = protoLoader.loadSync(join(process.cwd(), 'test/fixtures/echo.proto'), { keepCase: true });
const EchoService = (grpc.loadPackageDefinition(def) as Any).meshext.test.Echo;

/** A gRPC echo server (plaintext or TLS). */
async function grpcServer(creds = grpc.ServerCredentials.createInsecure()): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  server.addService(EchoService.service, {
    Unary: (call: Any, cb: Any) => cb(null, { text: `echo:${call.request.text}` }),
    Bidi: (call: Any) => {
      call.on('data', (m: Any) => call.write({ text: `echo:${m.text}` }));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? reject(e) : resolve(p))));
  return { server, port };
}

function client(port: number): Any {
  return new EchoService(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

function unary(c: Any, text: string): Promise<{ text?: string; err?: grpc.ServiceError }> {
  return new Promise((resolve) => c.Unary({ text }, (err: grpc.ServiceError | null, res: Any) => resolve(err ? { err } : { text: res.text })));
}

/** Client connections open in the engine. */
function nativeSessions(p: { proxy: Proxy }): number {
  return p.proxy.engineStats()?.sessions ?? 0;
}

test('grpc: unary and bidi-streaming calls through the proxy', async (t) => {
  const up = await grpcServer();
  const s = svc({ protocol: 'grpc', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const c = client(p.port);
  t.deepEqual(await unary(c, 'hi'), { text: 'echo:hi' });
  const call = c.Bidi();
  const got: string[] = [];
  call.on('data', (m: Any) => got.push(m.text));
  const done = new Promise((r) => call.on('status', r));
  for (const w of ['a', 'b', 'c']) call.write({ text: w });
  call.end();
  const status = (await done) as grpc.StatusObject;
  t.is(status.code, grpc.status.OK);
  t.deepEqual(got, ['echo:a', 'echo:b', 'echo:c']);
  t.true((p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '2xx' }) ?? 0) >= 2);
  t.is(p.stats.get('meshext_upstream_cx_total', { service: s.kri }), 1, 'one upstream HTTP/2 session for all calls');
  t.is(nativeSessions(p), 1, 'the gRPC connection is served by the native engine');
  c.close();
  await p.close();
  up.server.forceShutdown();
});

test('grpc: UNAVAILABLE when the upstream is down, PERMISSION_DENIED when the mesh forbids access', async (t) => {
  const up = await grpcServer();
  const port = up.port;
  up.server.forceShutdown();
  const s = svc({ protocol: 'grpc', endpoints: [ipEp(port)] });
  const p = await proxyFor(s);
  const c = client(p.port);
  const r = await unary(c, 'x');
  t.is(r.err?.code, grpc.status.UNAVAILABLE);
  t.regex(r.err?.details ?? '', /upstream unavailable: connect to 127\.0\.0\.1:\d+ failed: ECONNREFUSED/);
  c.close();
  await p.close();
  const d = svc({ protocol: 'grpc', mesh: 'm1', endpoints: [ipEp(port)], forbidden: true });
  const logged = captureLog();
  const q = await proxyFor(d, { log: logged.log });
  const c2 = client(q.port);
  const r2 = await unary(c2, 'x');
  t.is(r2.err?.code, grpc.status.PERMISSION_DENIED);
  t.regex(r2.err?.details ?? '', /Mesh "m1" setting routing.defaultForbidMeshExternalServiceAccess/);
  t.is(q.stats.get('meshext_access_denied_total', { service: d.kri }), 1);
  t.is(q.stats.get('meshext_upstream_rq_total', { service: d.kri, code_class: '4xx' }), undefined, 'a denial is not an upstream response');
  await q.proxy.settled();
  // The denial names the call, as HTTP/1 denials name method and path (one admission rule for both).
  t.like(logged.find(/access denied/)[0], { method: 'POST', path: '/meshext.test.Echo/Unary', mesh: 'm1' });
  c2.close();
  await q.close();
});

test('grpcs: TLS origination with ALPN h2 and SNI from the DNS endpoint; unknown CA is UNAVAILABLE with the reason', async (t) => {
  const up = await grpcServer(grpc.ServerCredentials.createSsl(null, [{ private_key: pki.good.key, cert_chain: pki.good.cert }]));
  const s = svc({ protocol: 'grpc', endpoints: [{ kind: 'dns', address: 'localhost', port: up.port }], tls: tlsCfg({ ca: pki.ca }) });
  const p = await proxyFor(s);
  const c = client(p.port);
  t.deepEqual(await unary(c, 'tls'), { text: 'echo:tls' });
  t.is(p.stats.get('meshext_upstream_tls_handshake_total', { service: s.kri }), 1);
  c.close();
  await p.close();
  up.server.forceShutdown();
  // Unknown CA → UNAVAILABLE with the reason.
  const bad = await grpcServer(grpc.ServerCredentials.createSsl(null, [{ private_key: pki.unknownCa.key, cert_chain: pki.unknownCa.cert }]));
  const s2 = svc({ protocol: 'grpc', endpoints: [{ kind: 'dns', address: 'localhost', port: bad.port }], tls: tlsCfg({ ca: pki.ca }) });
  const q = await proxyFor(s2);
  const c2 = client(q.port);
  const r = await unary(c2, 'x');
  t.is(r.err?.code, grpc.status.UNAVAILABLE);
  t.regex(r.err?.details ?? '', /unable to (get local issuer|verify the first) certificate \(UNABLE_TO_/);
  c2.close();
  await q.close();
  bad.server.forceShutdown();
});

const h2cStreaming = test.macro(async (t) => {
  const authorities: string[] = [];
  const srv = http2.createServer();
  srv.on('stream', (stream, headers) => {
    authorities.push(String(headers[':authority']));
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('end', () => {
      stream.respond({ ':status': 201, 'x-up': '1' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': String(Buffer.concat(chunks).length) }));
      stream.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const upPort = (srv.address() as { port: number }).port;
  const s = svc({ protocol: 'http2', endpoints: [ipEp(upPort)] });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  const req = session.request({ ':method': 'POST', ':path': '/upload', ':authority': 'files.extsvc.mesh.local' });
  const body = Buffer.alloc(200_000, 7);
  req.end(body);
  const res = await new Promise<{ status: number; len: number; trailers: http2.IncomingHttpHeaders }>((resolve) => {
    let status = 0;
    let len = 0;
    let trailers: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (d: Buffer) => (len += d.length));
    req.on('trailers', (tr) => (trailers = tr));
    req.on('end', () => resolve({ status, len, trailers }));
  });
  t.is(res.status, 201);
  t.is(res.len, body.length);
  t.is(res.trailers['x-checksum'], String(body.length));
  t.deepEqual(authorities, ['files.extsvc.mesh.local']);
  t.is(nativeSessions(p), 1);
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '2xx' }), 1);
  session.close();
  await p.close();
  await new Promise((r) => srv.close(r));
  const q = await proxyFor(svc({ protocol: 'http2', endpoints: [ipEp(upPort)] }));
  const s2 = http2.connect(`http://127.0.0.1:${q.port}`);
  const r2 = s2.request({ ':path': '/' });
  r2.end();
  const st = await new Promise<number>((resolve) => r2.on('response', (h) => resolve(Number(h[':status']))));
  t.is(st, 503);
  s2.close();
  await q.close();
});
test('http2: h2c client to an h2c upstream with streaming body, trailers and authority rule; 503 when down', h2cStreaming);

test('http2: a new upstream session is opened after the upstream sends GOAWAY and closes', async (t) => {
  let sessions = 0;
  const srv = http2.createServer();
  srv.on('session', (sess) => {
    sessions++;
    sess.on('error', () => {});
  });
  srv.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200 });
    stream.end('ok');
    // Retire the connection after each request (GOAWAY, then close), as servers do on restart.
    const sess = stream.session;
    stream.on('close', () => {
      sess?.goaway(http2.constants.NGHTTP2_NO_ERROR);
      setImmediate(() => sess?.destroy());
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const upPort = (srv.address() as { port: number }).port;
  const p = await proxyFor(svc({ protocol: 'http2', endpoints: [ipEp(upPort)] }));
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  for (let i = 0; i < 3; i++) {
    const req = session.request({ ':path': `/${i}` });
    req.end();
    const st = await new Promise<number>((resolve) => req.on('response', (h) => resolve(Number(h[':status']))));
    t.is(st, 200);
    req.resume();
    await new Promise((r) => req.on('close', r));
    await new Promise((r) => setTimeout(r, 20));
  }
  t.is(nativeSessions(p), 1);
  session.close();
  t.is(sessions, 3);
  await p.close();
  await new Promise((r) => srv.close(r));
});

test('http2: streams beyond the upstream\'s SETTINGS_MAX_CONCURRENT_STREAMS go to more upstream connections; counts are exact at scrape', async (t) => {
  const held: http2.ServerHttp2Stream[] = [];
  let release: () => void = () => {};
  const all = new Promise<void>((r) => (release = r));
  const total = 25;
  const srv = http2.createServer({ settings: { maxConcurrentStreams: 10 } });
  srv.on('session', (sess) => sess.on('error', () => {}));
  srv.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    // Answer only once every request is open at the same time, so the limit really binds.
    held.push(stream);
    if (held.length === total) release();
    void all.then(() => {
      stream.respond({ ':status': 200 });
      stream.end(String(headers[':path']));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const upPort = (srv.address() as { port: number }).port;
  const s = svc({ protocol: 'http2', endpoints: [ipEp(upPort)] });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  const bodies = await Promise.all(
    Array.from({ length: total }, (_, i) => {
      const req = session.request({ ':path': `/${i}` });
      req.end();
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      return new Promise<string>((resolve) => req.on('end', () => resolve(body)));
    }),
  );
  t.deepEqual(bodies, Array.from({ length: total }, (_, i) => `/${i}`));
  t.true((p.stats.get('meshext_upstream_cx_total', { service: s.kri }) ?? 0) >= 3, 'at most 10 streams per upstream connection');
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '2xx' }), total);
  const cx = p.stats.get('meshext_upstream_cx_total', { service: s.kri }) ?? 0;
  session.close();
  await new Promise((r) => session.on('close', r));
  // The engine reports the end of the client connection; its idle upstream connections stay open, parked
  // for the next client of the service, which reuses one instead of dialling.
  for (let i = 0; i < 200 && p.proxy.activeConnections() > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.is(p.proxy.activeConnections(), 0);
  t.is(p.stats.get('meshext_upstream_cx_active', { service: s.kri }), cx);
  const again = http2.connect(`http://127.0.0.1:${p.port}`);
  const req = again.request({ ':path': '/again' });
  req.end();
  req.resume();
  await new Promise((r) => req.on('end', r));
  t.is(p.stats.get('meshext_upstream_cx_total', { service: s.kri }), cx, 'a parked upstream connection was reused');
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '2xx' }), total + 1);
  again.close();
  await new Promise((r) => again.on('close', r));
  // Stopping the proxy closes parked connections too, and each is accounted.
  await p.close();
  t.is(p.stats.get('meshext_upstream_cx_active', { service: s.kri }), 0);
  t.true((p.stats.get('meshext_upstream_cx_rx_bytes_total', { service: s.kri }) ?? 0) > 0, 'upstream bytes counted from the engine');
  await new Promise((r) => srv.close(r));
});

test('http2: drain sends GOAWAY to the client and lets the in-flight stream finish', async (t) => {
  let respond: () => void = () => {};
  let arrived: () => void = () => {};
  const requestIn = new Promise<void>((r) => (arrived = r));
  const srv = http2.createServer();
  srv.on('stream', (stream) => {
    stream.on('error', () => {});
    respond = () => {
      stream.respond({ ':status': 200 });
      stream.end('late');
    };
    arrived();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const upPort = (srv.address() as { port: number }).port;
  const p = await proxyFor(svc({ protocol: 'http2', endpoints: [ipEp(upPort)] }));
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  session.on('error', () => {});
  const goaway = new Promise((r) => session.once('goaway', r));
  const req = session.request({ ':path': '/slow' });
  req.end();
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (d: string) => (body += d));
  const ended = new Promise((r) => req.on('end', r));
  await requestIn;
  t.is(nativeSessions(p), 1, 'the client connection is served by the native engine');
  const drained = p.proxy.drain(5000);
  await goaway;
  respond();
  await ended;
  t.is(body, 'late');
  t.deepEqual(await drained, { remaining: 0 });
  await p.close();
  await new Promise((r) => srv.close(r));
});

test('http2: a DNS endpoint sets :authority to its hostname (Envoy auto_host_rewrite) on the native path', async (t) => {
  const seen: string[] = [];
  const srv = http2.createServer();
  srv.on('stream', (stream, headers) => {
    seen.push(`${String(headers[':authority'])} ${String(headers[':scheme'])} ${headers.host === undefined ? 'no-host' : 'host'}`);
    stream.respond({ ':status': 204 });
    stream.end();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const upPort = (srv.address() as { port: number }).port;
  const s = svc({ protocol: 'grpc', endpoints: [{ kind: 'dns', address: 'localhost', port: upPort }] });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  const req = session.request({ ':path': '/x', ':authority': 'api.extsvc.mesh.local' });
  req.end();
  const status = await new Promise<number>((resolve) => req.on('response', (h) => resolve(Number(h[':status']))));
  t.is(status, 204);
  t.deepEqual(seen, ['localhost http no-host']);
  t.is(nativeSessions(p), 1);
  session.close();
  await p.close();
  await new Promise((r) => srv.close(r));
});

test('grpc: client connections spread over two engine threads; response counts stay exact', async (t) => {
  const up = await grpcServer();
  const s = svc({ protocol: 'grpc', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s, { dataThreads: 2 });
  // Separate channels (grpc-js shares a subchannel per target unless the options differ).
  const clients = [0, 1, 2, 3].map((i) => new EchoService(`127.0.0.1:${p.port}`, grpc.credentials.createInsecure(), { 'grpc.meshext.test.channel': i }));
  const replies = await Promise.all(clients.flatMap((c, i) => [0, 1, 2, 3, 4].map((j) => unary(c, `${i}.${j}`))));
  t.deepEqual(
    replies.map((r) => r.text),
    clients.flatMap((_, i) => [0, 1, 2, 3, 4].map((j) => `echo:${i}.${j}`)),
  );
  t.is(p.proxy.engineStats()?.threads, 2);
  t.is(nativeSessions(p), 4);
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '2xx' }), 20);
  for (const c of clients) c.close();
  await p.close();
  up.server.forceShutdown();
});

test('http2: a parked upstream connection the upstream closes is let go and accounted; the next client dials anew', async (t) => {
  const upSessions = new Set<http2.ServerHttp2Session>();
  const srv = http2.createServer();
  srv.on('session', (sess) => {
    upSessions.add(sess);
    sess.on('error', () => {});
    sess.on('close', () => upSessions.delete(sess));
  });
  srv.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.end('ok');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const upPort = (srv.address() as { port: number }).port;
  const s = svc({ protocol: 'http2', endpoints: [ipEp(upPort)] });
  const p = await proxyFor(s);
  const get = async (): Promise<string> => {
    const c = http2.connect(`http://127.0.0.1:${p.port}`);
    const req = c.request({ ':path': '/' });
    req.end();
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    await new Promise((r) => req.on('end', r));
    c.close();
    await new Promise((r) => c.on('close', r));
    return body;
  };
  const settle = async (cond: () => boolean): Promise<void> => {
    for (let i = 0; i < 300 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  };
  const active = (): number | undefined => p.stats.get('meshext_upstream_cx_active', { service: s.kri });
  t.is(await get(), 'ok');
  await settle(() => p.proxy.activeConnections() === 0);
  t.is(active(), 1, 'parked after the client left');
  // The upstream closes its idle connection (as servers do after their keep-alive timeout).
  for (const sess of upSessions) sess.destroy();
  await settle(() => active() === 0);
  t.is(active(), 0, 'the closed parked connection is released and accounted');
  t.is(await get(), 'ok');
  t.is(p.stats.get('meshext_upstream_cx_total', { service: s.kri }), 2);
  await p.close();
  await new Promise((r) => srv.close(r));
});

test('http2: a parked upstream connection is closed after the upstream idle timeout, with no client coming', async (t) => {
  let upstreamClosed = 0;
  const srv = http2.createServer();
  srv.on('session', (sess) => sess.on('close', () => upstreamClosed++));
  srv.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.end('ok');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const s = svc({ protocol: 'http2', endpoints: [ipEp((srv.address() as { port: number }).port)] });
  const p = await proxyFor(s, { httpUpstreamIdleTimeoutMs: 300 });
  const c = http2.connect(`http://127.0.0.1:${p.port}`);
  const req = c.request({ ':path': '/' });
  req.end();
  req.resume();
  await new Promise((r) => req.on('end', r));
  c.close();
  await new Promise((r) => c.on('close', r));
  await until(() => p.proxy.activeConnections() === 0, 'client gone');
  t.is(p.stats.get('meshext_upstream_cx_active', { service: s.kri }), 1, 'parked after the client left');
  t.is(upstreamClosed, 0);
  await until(() => upstreamClosed === 1, 'parked upstream connection closed by the proxy after 300 ms');
  await until(() => p.stats.get('meshext_upstream_cx_active', { service: s.kri }) === 0, 'upstream gauge settled');
  await p.close();
  await new Promise((r) => srv.close(r));
});

test('grpc and http2: every call picks its endpoint, as Envoy does: sequential calls on one client connection spread over the endpoints', async (t) => {
  // Two gRPC servers that say who answered.
  const named = async (name: string): Promise<{ server: grpc.Server; port: number }> => {
    const server = new grpc.Server();
    server.addService(EchoService.service, { Unary: (_call: Any, cb: Any) => cb(null, { text: name }), Bidi: (call: Any) => call.end() });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    return { server, port };
  };
  const a = await named('a');
  const b = await named('b');
  t.teardown(() => {
    a.server.forceShutdown();
    b.server.forceShutdown();
  });
  const p = await proxyFor(svc({ protocol: 'grpc', endpoints: [ipEp(a.port), ipEp(b.port)] }));
  t.teardown(() => p.close());
  const c = client(p.port);
  t.teardown(() => c.close());
  const who: string[] = [];
  for (let i = 0; i < 6; i++) who.push((await unary(c, 'x')).text ?? 'error');
  t.deepEqual([...who].sort(), ['a', 'a', 'a', 'b', 'b', 'b'], who.join(','));
  t.is(nativeSessions(p), 1, 'one client connection');

  // With one endpoint gone, its calls fail over to the other: nothing fails.
  a.server.forceShutdown();
  const after: string[] = [];
  for (let i = 0; i < 4; i++) after.push((await unary(c, 'y')).text ?? 'error');
  t.deepEqual(after, ['b', 'b', 'b', 'b']);
});
