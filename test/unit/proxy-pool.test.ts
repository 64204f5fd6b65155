// Which upstream connections HTTP/1.1 requests find in the pool: one made to any address of a DNS endpoint
// (not only its first), and never a bridged HTTP/2 one the upstream has told GOAWAY (it takes no new streams:
// the next request, even a POST that is never retried, gets a fresh connection instead of a 503).
import test from 'ava';
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { closeServer, ipEp, listen, newProxy, proxyFor, snap, svc } from '../helpers/proxy.js';

test('http2 service, HTTP/1.1 client: a bridged upstream that sent GOAWAY is not reused; the next POST succeeds', async (t) => {
  const all: http2.ServerHttp2Session[] = [];
  const srv = http2.createServer();
  srv.on('session', (ss) => all.push(ss));
  srv.on('stream', (stream, headers) => {
    let body = '';
    stream.on('data', (d: Buffer) => (body += d.toString()));
    stream.on('end', () => {
      stream.respond({ ':status': 200 });
      stream.end(`${String(headers[':method'])} ${body}`);
      // This connection takes no further streams.
      stream.session?.goaway();
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  // Node stops reading a session it sent GOAWAY on, so its close would wait for them: end them first.
  t.teardown(async () => {
    for (const ss of all) ss.destroy();
    await new Promise((r) => srv.close(r));
  });
  const s = svc({ protocol: 'http2', endpoints: [ipEp((srv.address() as { port: number }).port)] });
  const { proxy, port } = await proxyFor(s);
  t.teardown(() => proxy.close());
  const l = { port };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const send = (method: string, body: string): Promise<string> =>
    new Promise((resolve) => {
      const r = http.request({ host: '127.0.0.1', port: l.port, method, path: '/', agent, headers: { 'content-length': Buffer.byteLength(body) } }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(`${res.statusCode} ${b}`));
      });
      r.on('error', (e) => resolve(`error ${e.message}`));
      r.end(body);
    });
  t.is(await send('GET', ''), '200 GET ');
  t.is(await send('POST', 'once'), '200 POST once');
  t.is(await send('POST', 'twice'), '200 POST twice');
  t.is(all.length, 3, 'one upstream connection per request: none was reused after its GOAWAY');
});

test('http service: a connection made to the second address of a DNS endpoint (the first refused) is reused from the pool', async (t) => {
  let conns = 0;
  const srv = http.createServer((_q, res) => res.end('ok'));
  srv.on('connection', () => conns++);
  // Only 127.0.0.1 listens: 127.0.0.2, the answer's first address, refuses.
  const { port } = await listen(srv as unknown as net.Server, '127.0.0.1');
  t.teardown(() => closeServer(srv as unknown as net.Server));
  const resolver = { resolve4: async () => [{ address: '127.0.0.2', ttl: 300 }, { address: '127.0.0.1', ttl: 300 }], resolve6: async () => [] };
  const s = svc({ protocol: 'http', endpoints: [{ kind: 'dns', address: 'two.example', port }] });
  const { proxy, stats } = newProxy({ resolver });
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  for (let i = 0; i < 4; i++) {
    const got = await new Promise<string>((resolve) =>
      http.get({ host: '127.0.0.1', port: l.port, path: '/', agent }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(`${res.statusCode} ${b}`));
      }),
    );
    t.is(got, '200 ok');
  }
  t.is(conns, 1, 'the pooled connection to 127.0.0.1 served every request');
  t.is(stats.get('meshext_upstream_cx_connect_fail_total', { service: s.kri }), 1);
});
