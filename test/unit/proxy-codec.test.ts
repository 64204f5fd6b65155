import test from 'ava';
import { execFile } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import { promisify } from 'node:util';
import https from 'node:https';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makePki, type TestPki } from '../helpers/certs.js';
import { closeServer, ipEp, listen, newProxy, proxyFor, settle, snap, svc, tlsCfg } from '../helpers/proxy.js';

const run = promisify(execFile);

let pki: TestPki;
test.before(() => {
  pki = makePki();
});
test.after.always(() => pki?.cleanup());

/** `n` concurrent POSTs (distinct bodies) over one HTTP/2 client connection; resolves with each reply body. */
async function concurrentPosts(port: number, n: number, size: number): Promise<Array<{ status: number; body: string }>> {
  const c = http2.connect(`http://127.0.0.1:${port}`);
  c.on('error', () => {});
  const one = (i: number): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const r = c.request({ ':method': 'POST', ':path': `/p${i}` });
      let status = 0;
      let body = '';
      r.on('response', (h) => (status = Number(h[':status'])));
      r.setEncoding('utf8');
      r.on('data', (d: string) => (body += d));
      r.on('end', () => resolve({ status, body }));
      r.on('error', reject);
      r.end(Buffer.alloc(size, 97 + (i % 26)));
    });
  const out = await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
  c.close();
  return out;
}

/** curl through the proxy; returns status, the HTTP version curl used, and the body. */
async function curl(args: string[]): Promise<{ status: number; version: string; body: string }> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '20', '-w', '\n%{http_code} %{http_version}', ...args]);
  const nl = stdout.lastIndexOf('\n');
  const [status, version] = stdout.slice(nl + 1).split(' ');
  return { status: Number(status), version: version ?? '', body: stdout.slice(0, nl) };
}

test('codec auto: an HTTP/2 prior-knowledge client of an http service reaches the HTTP/1.1 upstream', async (t) => {
  const seen: Array<{ version: string; host?: string; body: string }> = [];
  const up = await listen(
    http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        seen.push({ version: req.httpVersion, host: req.headers.host, body: Buffer.concat(chunks).toString() });
        res.writeHead(202, { 'x-up': 'h1' });
        res.end(`${req.method} ${req.url} via HTTP/${req.httpVersion}`);
      });
    }),
  );
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const h2 = await curl(['--http2-prior-knowledge', '-H', 'host: api.extsvc.mesh.local', '--data-binary', 'hello', `http://127.0.0.1:${p.port}/things?x=1`]);
  t.is(h2.status, 202);
  t.is(h2.version, '2');
  t.is(h2.body, 'POST /things?x=1 via HTTP/1.1');
  const h1 = await curl(['--http1.1', `http://127.0.0.1:${p.port}/plain`]);
  t.is(h1.status, 202);
  t.is(h1.version, '1.1');
  t.is(h1.body, 'GET /plain via HTTP/1.1');
  t.deepEqual(seen[0], { version: '1.1', host: 'api.extsvc.mesh.local', body: 'hello' });
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '2xx' }), 2);
  await p.close();
  await closeServer(up.srv);
});

test('codec auto: an HTTP/1.1 client of an http2 service is proxied to the HTTP/2 upstream', async (t) => {
  const srv = http2.createServer();
  const authorities: string[] = [];
  srv.on('stream', (stream, headers) => {
    authorities.push(String(headers[':authority']));
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('end', () => {
      stream.respond({ ':status': 201, 'x-up': 'h2' });
      stream.end(`${String(headers[':method'])} ${String(headers[':path'])} body=${Buffer.concat(chunks).toString()} via HTTP/2`);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const upPort = (srv.address() as { port: number }).port;
  const s = svc({ protocol: 'http2', endpoints: [ipEp(upPort)] });
  const p = await proxyFor(s);
  const h1 = await curl(['--http1.1', '-i', '-H', 'host: files.extsvc.mesh.local', '--data-binary', 'abc', `http://127.0.0.1:${p.port}/up`]);
  t.is(h1.status, 201);
  t.is(h1.version, '1.1');
  t.regex(h1.body, /^x-up: h2\r?$/m);
  t.true(h1.body.endsWith('POST /up body=abc via HTTP/2'), h1.body);
  const h2 = await curl(['--http2-prior-knowledge', `http://127.0.0.1:${p.port}/again`]);
  t.is(h2.status, 201);
  t.is(h2.version, '2');
  t.is(h2.body, 'GET /again body= via HTTP/2');
  t.is(authorities[0], 'files.extsvc.mesh.local');
  // The HTTP/1.1 client's requests go over a bridged upstream connection (HTTP/1.1 over HTTP/2); the HTTP/2
  // client's streams are relayed over a connection of its own.
  t.is(p.stats.get('meshext_upstream_cx_total', { service: s.kri }), 2);
  await p.close();
  await new Promise<void>((r) => srv.close(() => r()));
});

test('codec auto: concurrent HTTP/2 POSTs to an http service with a TLS upstream each get an HTTP/1.1 connection of their own', async (t) => {
  const N = 6;
  let conns = 0;
  // The upstream answers once all N requests are in (at the latest after 5 s): no HTTP/1.1 connection comes
  // free for reuse before then, so each of the N concurrent streams needs a connection of its own. (Answering
  // at once lets the engine reuse a connection an earlier stream has finished with, and the count varies.)
  let arrived = 0;
  let allIn = (): void => {};
  const gate = new Promise<void>((r) => (allIn = r));
  const fallback = setTimeout(() => allIn(), 5000);
  t.teardown(() => clearTimeout(fallback));
  const up = https.createServer({ key: pki.good.key, cert: pki.good.cert }, (req, res) => {
    let n = 0;
    let first = '';
    req.on('data', (d: Buffer) => {
      if (!first) first = d.toString('latin1', 0, 1);
      n += d.length;
    });
    req.on('end', () => {
      if (++arrived === N) allIn();
      void gate.then(() => res.end(`${req.method} ${req.url} ${n} ${first} HTTP/${req.httpVersion}`));
    });
  });
  up.on('secureConnection', () => conns++);
  const { port: upPort } = await listen(up);
  const s = svc({ protocol: 'http', endpoints: [{ kind: 'dns', address: 'localhost', port: upPort }], tls: tlsCfg({ ca: pki.ca }) });
  const p = await proxyFor(s);
  const replies = await concurrentPosts(p.port, N, 200_000);
  t.deepEqual(
    replies,
    replies.map((_, i) => ({ status: 200, body: `POST /p${i} 200000 ${String.fromCharCode(97 + (i % 26))} HTTP/1.1` })),
  );
  t.true(conns >= 1 && conns <= N, `${conns} upstream connections`);
  t.is(conns, N, 'one HTTP/1.1 connection per concurrent stream');
  await settle(p.proxy);
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '2xx' }), N);
  t.is(p.stats.get('meshext_upstream_tls_handshake_total', { service: s.kri }), conns);
  await p.close();
  await closeServer(up);
});

test('codec auto: an HTTP/1.1 client of an http2 service over TLS (ALPN h2), chunked both ways; 403 for a denied one', async (t) => {
  const srv = http2.createSecureServer({ key: pki.good.key, cert: pki.good.cert });
  srv.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('end', () => {
      stream.respond({ ':status': 200 }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-sum': String(Buffer.concat(chunks).length) }));
      stream.end(`${String(headers[':scheme'])} ${String(headers[':path'])} ${Buffer.concat(chunks).length}`);
    });
  });
  const { port: upPort } = await listen(srv);
  const s = svc({ protocol: 'http2', endpoints: [{ kind: 'dns', address: 'localhost', port: upPort }], tls: tlsCfg({ ca: pki.ca }) });
  const denied = svc({ protocol: 'http2', mesh: 'm9', endpoints: [ipEp(upPort)], forbidden: true });
  const { proxy, stats } = newProxy();
  await proxy.setSnapshot(snap([s, denied]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  const d = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, denied.id);
  const file = join(pki.dir, 'upload.bin');
  writeFileSync(file, 'z'.repeat(300_000));
  const r = await curl(['--http1.1', '-H', 'transfer-encoding: chunked', '--data-binary', `@${file}`, `http://127.0.0.1:${l.port}/upload`]);
  t.is(r.status, 200);
  t.is(r.version, '1.1');
  t.is(r.body, 'https /upload 300000');
  const no = await curl(['--http1.1', `http://127.0.0.1:${d.port}/`]);
  t.is(no.status, 403);
  t.regex(no.body, /Mesh "m9" setting routing.defaultForbidMeshExternalServiceAccess/);
  await settle(proxy);
  t.is(stats.get('meshext_access_denied_total', { service: denied.kri }), 1);
  t.is(stats.get('meshext_upstream_cx_total', { service: denied.kri }), 0);
  await proxy.close();
  await new Promise<void>((res) => srv.close(() => res()));
});
