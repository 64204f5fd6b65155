import test from 'ava';
import { execFile } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import { promisify } from 'node:util';
import { closeServer, ipEp, listen, newProxy, snap, svc } from '../helpers/proxy.js';
import type { CompiledService } from '../../src/snapshot/types.js';
import type { Proxy } from '../../src/proxy/index.js';

const run = promisify(execFile);

/** curl through the proxy; returns status, the HTTP version curl used, and the body. */
async function curl(args: string[]): Promise<{ status: number; version: string; body: string }> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '20', '-w', '\n%{http_code} %{http_version}', ...args]);
  const nl = stdout.lastIndexOf('\n');
  const [status, version] = stdout.slice(nl + 1).split(' ');
  return { status: Number(status), version: version ?? '', body: stdout.slice(0, nl) };
}

async function proxyFor(s: CompiledService): Promise<{ port: number; proxy: Proxy; stats: ReturnType<typeof newProxy>['stats']; close: () => Promise<void> }> {
  const { proxy, stats } = newProxy();
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  return { port: l.port, proxy, stats, close: () => proxy.close() };
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
