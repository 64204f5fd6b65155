import test from 'ava';
import fc from 'fast-check';
import http from 'node:http';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeServer, ipEp, listen, proxyFor, svc, until } from '../helpers/proxy.js';

/** Writes raw bytes to the proxy and collects everything until the proxy closes (or `until` matches). */
function raw(port: number, bytes: string | Buffer, stop?: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port });
    let got = '';
    c.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (stop?.(got)) {
        c.destroy();
        resolve(got);
      }
    });
    c.on('error', reject);
    c.on('close', () => resolve(got));
    c.on('connect', () => c.write(bytes));
  });
}

/** An upstream answering `url` (and counting requests), or `handler` when given. */
async function echoUpstream(handler?: http.RequestListener): Promise<{ srv: http.Server; port: number; requests: string[] }> {
  const requests: string[] = [];
  const srv = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (handler) return handler(req, res);
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => res.end(`${req.method} ${req.url} ${Buffer.concat(chunks).length}`));
  });
  const r = await listen(srv);
  return { ...r, requests };
}

test('http/1.1: the engine serves HTTP/1.1 clients; a keep-alive client is one engine connection', async (t) => {
  const up = await echoUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const text = await raw(p.port, 'GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
  t.regex(text, /^HTTP\/1\.1 200 OK\r\n/);
  t.true(text.endsWith('GET /x 0'));
  const c = net.connect({ host: '127.0.0.1', port: p.port });
  let got = '';
  c.on('data', (d: Buffer) => (got += d.toString()));
  c.write('GET /y HTTP/1.1\r\nHost: h\r\n\r\n');
  await until(() => got.endsWith('GET /y 0'), 'keep-alive answer');
  t.is(p.proxy.engineStats()?.sessions, 1);
  t.is(p.stats.get('meshext_downstream_cx_active', { service: s.kri }), 1);
  c.destroy();
  await until(() => p.proxy.activeConnections() === 0, 'client closed');
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '2xx' }), 2);
  await p.proxy.close();
  await closeServer(up.srv);
});

test('http/1.1: pipelined requests are answered in order on one connection', async (t) => {
  const up = await echoUpstream((req, res) => {
    // Later requests answer sooner: order must still follow the requests.
    const delay = req.url === '/1' ? 30 : 0;
    setTimeout(() => res.end(`answer${req.url}`), delay);
  });
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const reqs = ['/1', '/2', '/3'].map((u) => `GET ${u} HTTP/1.1\r\nHost: h\r\n\r\n`).join('') + 'POST /4 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc';
  const text = await raw(p.port, reqs);
  const bodies = [...text.matchAll(/\r\n\r\n(answer\/\d)/g)].map((m) => m[1]);
  t.deepEqual(bodies, ['answer/1', 'answer/2', 'answer/3', 'answer/4']);
  t.is((text.match(/HTTP\/1\.1 200/g) ?? []).length, 4);
  t.regex(text, /Connection: close\r\n\r\nanswer\/4$/);
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '2xx' }), 4);
  await p.proxy.close();
  await closeServer(up.srv);
});

test('http/1.1: chunked bodies both ways, trailers included, bytes unchanged', async (t) => {
  let seenTe: string | undefined;
  let seenBody = '';
  const up = await echoUpstream((req, res) => {
    seenTe = req.headers['transfer-encoding'];
    req.setEncoding('latin1');
    req.on('data', (d: string) => (seenBody += d));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-sum' });
      res.write('part1-');
      setTimeout(() => {
        res.write('part2');
        res.addTrailers({ 'x-sum': 'ok' });
        res.end();
      }, 10);
    });
  });
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const r = await new Promise<{ body: string; te?: string; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: p.port, method: 'POST', path: '/c', agent: false }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ body, te: res.headers['transfer-encoding'], trailers: res.trailers }));
    });
    req.on('error', reject);
    req.write('hello ');
    setTimeout(() => req.end('world'), 10);
  });
  t.is(seenTe, 'chunked');
  t.is(seenBody, 'hello world');
  t.is(r.body, 'part1-part2');
  t.is(r.te, 'chunked');
  t.deepEqual(r.trailers, { 'x-sum': 'ok' });
  await p.proxy.close();
  await closeServer(up.srv);
});

test('http/1.1: large bodies stream both ways intact', async (t) => {
  const download = randomBytes(6 * 1024 * 1024);
  let uploadHash = '';
  const up = await echoUpstream((req, res) => {
    const h = createHash('sha256');
    req.on('data', (d: Buffer) => h.update(d));
    req.on('end', () => {
      uploadHash = h.digest('hex');
      res.writeHead(200, { 'content-length': download.length });
      res.end(download);
    });
  });
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const upload = randomBytes(5 * 1024 * 1024 + 7);
  const got = await new Promise<Buffer>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: p.port, method: 'PUT', path: '/big', agent: false, headers: { 'content-length': upload.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve(Buffer.concat(chunks)));
    });
    req.on('error', reject);
    req.end(upload);
  });
  t.is(uploadHash, createHash('sha256').update(upload).digest('hex'));
  t.is(got.length, download.length);
  t.true(got.equals(download));
  await p.proxy.close();
  await closeServer(up.srv);
});

test('http/1.1: Expect 100-continue gets the interim response before the body is sent', async (t) => {
  const srv = http.createServer((req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => res.end(`got ${n}`));
  });
  srv.on('checkContinue', (req, res) => {
    res.writeContinue();
    srv.emit('request', req, res);
  });
  const up = await listen(srv);
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const r = await new Promise<{ continued: boolean; body: string }>((resolve, reject) => {
    let continued = false;
    const req = http.request({ host: '127.0.0.1', port: p.port, method: 'POST', path: '/e', agent: false, headers: { expect: '100-continue', 'content-length': 5 } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ continued, body }));
    });
    req.on('continue', () => {
      continued = true;
      req.end('12345');
    });
    req.on('error', reject);
  });
  t.deepEqual(r, { continued: true, body: 'got 5' });
  await p.proxy.close();
  await closeServer(srv);
});

test('http/1.1: Upgrade (WebSocket handshake) turns the connection into a byte tunnel', async (t) => {
  const srv = http.createServer((_req, res) => res.end('no'));
  let upgradeHeaders: http.IncomingHttpHeaders = {};
  srv.on('upgrade', (req: http.IncomingMessage, sock: net.Socket, head: Buffer) => {
    upgradeHeaders = req.headers;
    sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc\r\n\r\n');
    if (head.length) sock.write(head);
    sock.on('data', (d: Buffer) => sock.write(Buffer.concat([Buffer.from('echo:'), d])));
    sock.on('end', () => sock.end());
  });
  const up = await listen(srv);
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const c = net.connect({ host: '127.0.0.1', port: p.port });
  await once(c, 'connect');
  c.write('GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n');
  let got = '';
  c.on('data', (d: Buffer) => (got += d.toString('latin1')));
  await until(() => got.includes('\r\n\r\n'), '101 response');
  t.regex(got, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  t.regex(got, /Upgrade: websocket\r\n/);
  t.regex(got, /Connection: upgrade\r\n/i);
  t.is(upgradeHeaders.upgrade, 'websocket');
  t.is(upgradeHeaders['sec-websocket-key'], 'k');
  got = '';
  c.write('frame-1');
  await until(() => got === 'echo:frame-1', 'tunnelled echo');
  // Half-close crosses the tunnel: the upstream ends its side, the client sees the end.
  c.end();
  await once(c, 'close');
  t.is(got, 'echo:frame-1');
  await until(() => p.proxy.activeConnections() === 0, 'tunnel closed');
  await p.proxy.close();
  await closeServer(srv);
});

test('http/1.1: smuggling attempts get 400 and never reach the upstream', async (t) => {
  const up = await echoUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const attacks = [
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: h\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nContent-Length: 40\r\n\r\nGET /admin HTTP/1.1\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n',
    'GET / HTTP/1.1\nHost: h\n\n',
  ];
  for (const a of attacks) {
    const text = await raw(p.port, a);
    t.regex(text, /^HTTP\/1\.1 400 Bad Request\r\n/, JSON.stringify(a));
    t.regex(text, /Connection: close\r\n/, JSON.stringify(a));
  }
  // A chunked body that looks like a request is body, not a second request.
  const body = 'GET /admin HTTP/1.1\r\nHost: h\r\n\r\n';
  const chunked = `POST /ok HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
  const text = await raw(p.port, chunked);
  t.regex(text, /^HTTP\/1\.1 200 OK\r\n/);
  t.true(text.endsWith(`POST /ok ${body.length}`));
  t.deepEqual(up.requests, ['POST /ok']);
  await p.proxy.close();
  await closeServer(up.srv);
});

test('http/1.1: a malformed upstream response is a 502, an HTTP/1.0 client is answered and closed', async (t) => {
  const bad = net.createServer((sock) => {
    sock.on('data', () => sock.end('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd'));
    sock.on('error', () => {});
  });
  const b = await listen(bad);
  const sb = svc({ protocol: 'http', endpoints: [ipEp(b.port)] });
  const pb = await proxyFor(sb);
  const text = await raw(pb.port, 'GET / HTTP/1.1\r\nHost: h\r\n\r\n');
  t.regex(text, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
  t.regex(text, /upstream sent an invalid response: invalid or conflicting Content-Length\n$/);
  t.is(pb.stats.get('meshext_upstream_rq_total', { service: sb.kri, code_class: '5xx' }), 1);
  await pb.proxy.close();
  await closeServer(bad);

  const up = await echoUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const h10 = await raw(p.port, 'GET /old HTTP/1.0\r\n\r\n');
  t.regex(h10, /^HTTP\/1\.1 200 OK\r\n/);
  t.regex(h10, /Connection: close\r\n/);
  t.true(h10.endsWith('GET /old 0'));
  await p.proxy.close();
  await closeServer(up.srv);
});

test('http/1.1: drain closes idle keep-alive clients at once; gauges return to zero', async (t) => {
  const up = await echoUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const c = net.connect({ host: '127.0.0.1', port: p.port });
  await once(c, 'connect');
  let got = '';
  c.on('data', (d: Buffer) => (got += d.toString('latin1')));
  c.write('GET /a HTTP/1.1\r\nHost: h\r\n\r\n');
  await until(() => got.endsWith('GET /a 0'), 'first response');
  t.is(p.stats.get('meshext_downstream_cx_active', { service: s.kri }), 1);
  t.is(p.stats.get('meshext_upstream_cx_active', { service: s.kri }), 1);
  const closed = once(c, 'close');
  t.deepEqual(await p.proxy.drain(5000), { remaining: 0 });
  await closed;
  t.is(p.stats.get('meshext_downstream_cx_active', { service: s.kri }), 0);
  await p.proxy.close();
  // Closing the proxy shuts the pooled upstream connection; its close is accounted natively.
  await until(() => p.stats.get('meshext_upstream_cx_active', { service: s.kri }) === 0, 'upstream connection closed');
  t.true((p.stats.get('meshext_upstream_cx_rx_bytes_total', { service: s.kri }) ?? 0) > 0);
  await closeServer(up.srv);
});

test('http/1.1: an idle keep-alive client is closed after the idle timeout', async (t) => {
  const up = await echoUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s, { httpIdleTimeoutMs: 200 });
  const c = net.connect({ host: '127.0.0.1', port: p.port });
  await once(c, 'connect');
  let got = '';
  c.on('data', (d: Buffer) => (got += d.toString('latin1')));
  c.write('GET /a HTTP/1.1\r\nHost: h\r\n\r\n');
  // The proxy, not the client, ends the connection once it has been idle long enough.
  await once(c, 'close');
  t.true(got.endsWith('GET /a 0'));
  await until(() => p.proxy.activeConnections() === 0, 'client connection accounted closed');
  await p.proxy.close();
  await closeServer(up.srv);
});

test('http/1.1: a pooled connection the upstream closed while idle is dropped, not retried', async (t) => {
  const up = await echoUpstream();
  up.srv.keepAliveTimeout = 50;
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const get = (path: string): Promise<number> =>
    new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: p.port, path, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      }).on('error', reject);
    });
  t.is(await get('/1'), 200);
  // The upstream's keep-alive timeout closes the idle pooled connection; the pool notices at once.
  await until(() => p.stats.get('meshext_upstream_cx_active', { service: s.kri }) === 0, 'idle upstream connection evicted');
  t.is(await get('/2'), 200);
  t.is(p.stats.get('meshext_upstream_rq_retry_total', { service: s.kri }), 0);
  t.is(p.stats.get('meshext_upstream_cx_total', { service: s.kri }), 2);
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '2xx' }), 2);
  agent.destroy();
  await p.proxy.close();
  await closeServer(up.srv);
});

/** Splits a byte stream of pipelined HTTP/1.1 responses (Content-Length or chunked; none for HEAD). */
function splitResponses(buf: Buffer, methods: string[]): Array<{ status: number; headers: Record<string, string>; body: Buffer }> {
  const out: Array<{ status: number; headers: Record<string, string>; body: Buffer }> = [];
  let at = 0;
  for (const method of methods) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n');
    const status = Number((lines[0] ?? '').split(' ')[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
    at = end + 4;
    let body: Buffer = Buffer.alloc(0);
    if (method !== 'HEAD' && status !== 204 && status !== 304) {
      if (headers['transfer-encoding'] === 'chunked') {
        const parts: Buffer[] = [];
        for (;;) {
          const le = buf.indexOf('\r\n', at);
          const size = parseInt(buf.subarray(at, le).toString('latin1'), 16);
          at = le + 2;
          if (size === 0) {
            at = buf.indexOf('\r\n\r\n', at - 2) + 4;
            break;
          }
          parts.push(buf.subarray(at, at + size));
          at += size + 2;
        }
        body = Buffer.concat(parts);
      } else {
        const n = Number(headers['content-length'] ?? 0);
        body = buf.subarray(at, at + n);
        at += n;
      }
    }
    out.push({ status, headers, body });
  }
  return out;
}

test('http/1.1: any pipelined mix of requests, bodies and framings, split anywhere, is forwarded exactly (property)', async (t) => {
  const seen: string[] = [];
  const up = await echoUpstream((req, res) => {
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (d: Buffer) => {
      n += d.length;
      h.update(d);
    });
    req.on('end', () => {
      const echo = `${req.method} ${req.url} ${n}:${h.digest('hex').slice(0, 12)}`;
      seen.push(echo);
      const chunked = req.url?.includes('chunked');
      res.writeHead(200, chunked ? { 'x-echo': echo } : { 'x-echo': echo, 'content-length': Buffer.byteLength(echo) });
      if (chunked && req.method !== 'HEAD') {
        res.write(echo.slice(0, 5));
        res.end(echo.slice(5));
      } else {
        res.end(req.method === 'HEAD' ? undefined : echo);
      }
    });
  });
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const reqArb = fc.record({
    method: fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE'),
    body: fc.uint8Array({ maxLength: 3000 }),
    chunkedReq: fc.boolean(),
    chunkedResp: fc.boolean(),
    chunkSizes: fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 4 }),
  });
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(reqArb, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(20_000), { maxLength: 6 }), async (reqs, cuts) => {
      run++;
      seen.length = 0;
      const wire: Buffer[] = [];
      const expected: string[] = [];
      reqs.forEach((r, i) => {
        const url = `/r${run}-${i}${r.chunkedResp ? '/chunked' : ''}`;
        const hasBody = r.method === 'POST' || r.method === 'PUT';
        const body = hasBody ? Buffer.from(r.body) : Buffer.alloc(0);
        const last = i === reqs.length - 1 ? 'Connection: close\r\n' : '';
        expected.push(`${r.method} ${url} ${body.length}:${createHash('sha256').update(body).digest('hex').slice(0, 12)}`);
        if (hasBody && r.chunkedReq) {
          wire.push(Buffer.from(`${r.method} ${url} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n${last}\r\n`));
          let at = 0;
          for (let k = 0; at < body.length; k++) {
            const n = Math.min(r.chunkSizes[k % r.chunkSizes.length] ?? 1, body.length - at);
            wire.push(Buffer.from(`${n.toString(16)}\r\n`), body.subarray(at, at + n), Buffer.from('\r\n'));
            at += n;
          }
          wire.push(Buffer.from('0\r\n\r\n'));
        } else {
          const cl = hasBody ? `Content-Length: ${body.length}\r\n` : '';
          wire.push(Buffer.from(`${r.method} ${url} HTTP/1.1\r\nHost: h\r\n${cl}${last}\r\n`), body);
        }
      });
      const stream = Buffer.concat(wire);
      const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
      const c = net.connect({ host: '127.0.0.1', port: p.port });
      await once(c, 'connect');
      const chunks: Buffer[] = [];
      c.on('data', (d: Buffer) => chunks.push(d));
      const closed = once(c, 'close');
      let at = 0;
      for (const pt of [...points, stream.length]) {
        c.write(stream.subarray(at, pt));
        at = pt;
        await new Promise((r) => setImmediate(r));
      }
      await closed;
      const responses = splitResponses(Buffer.concat(chunks), reqs.map((r) => r.method));
      const echoes = responses.map((r) => r.headers['x-echo']);
      const bodies = responses.map((r, i) => (reqs[i]?.method === 'HEAD' ? r.headers['x-echo'] : r.body.toString('latin1')));
      return responses.every((r) => r.status === 200) && JSON.stringify(echoes) === JSON.stringify(expected) && JSON.stringify(bodies) === JSON.stringify(expected) && JSON.stringify(seen) === JSON.stringify(expected);
    }),
    { numRuns: 25 },
  );
  t.pass();
  await p.proxy.close();
  await closeServer(up.srv);
});

test('http/1.1: pooled upstream connections idle past the timeout are closed, even with no client left', async (t) => {
  const up = await echoUpstream();
  let upstreamClosed = 0;
  up.srv.on('connection', (sock: net.Socket) => sock.on('close', () => upstreamClosed++));
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s, { httpUpstreamIdleTimeoutMs: 200 });
  const text = await raw(p.port, 'GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
  t.true(text.endsWith('GET /a 0'));
  await until(() => p.proxy.activeConnections() === 0, 'client gone');
  await until(() => upstreamClosed === 1, 'idle upstream connection closed by the proxy');
  await until(() => p.stats.get('meshext_upstream_cx_active', { service: s.kri }) === 0, 'upstream gauge settled');
  await p.proxy.close();
  await closeServer(up.srv);
});

test('http/1.1: with two I/O threads, concurrent keep-alive clients share per-thread pools and counts stay exact', async (t) => {
  const up = await echoUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s, { dataThreads: 2 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const get = (path: string): Promise<string> =>
    new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: p.port, path, agent }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(b));
      }).on('error', reject);
    });
  for (let wave = 0; wave < 5; wave++) {
    const paths = Array.from({ length: 16 }, (_, i) => `/w${wave}/${i}`);
    t.deepEqual(await Promise.all(paths.map(get)), paths.map((x) => `GET ${x} 0`));
  }
  t.is(p.proxy.engineStats()?.threads, 2);
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '2xx' }), 80);
  agent.destroy();
  await p.proxy.close();
  t.is(p.stats.get('meshext_upstream_cx_active', { service: s.kri }), 0);
  await closeServer(up.srv);
});
