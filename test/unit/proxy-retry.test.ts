// MeshRetry enforcement in the engine, against loopback stand-ins that fail, delay or answer: HTTP/1.1, HTTP/2
// and gRPC request retries (retryOn, numRetries, perTryTimeout, back-off, host selection, which requests may be
// sent again and which never are), and tcp.maxConnectAttempt.
import test from 'ava';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { closeServer, ipEp, listen, proxyFor, refusedPort, roundTrip, svc, tcpEcho } from '../helpers/proxy.js';
import type { EffectiveRetry } from '../../src/snapshot/meshretry.js';

type Any = any;

const policy = (r: Omit<EffectiveRetry, 'policies'>): EffectiveRetry => ({ ...r, policies: ['test'] });

interface Seen {
  method: string;
  url: string;
  body: string;
  at: number;
}

/**
 * An HTTP/1.1 stand-in with switches: `status` answers every request with it (200 by default), `delayMs` holds
 * each answer that long; every request is recorded with its body and arrival time.
 */
async function upstream(o: { status?: number; delayMs?: number; name: string }): Promise<{ srv: http.Server; port: number; seen: Seen[]; set: (p: { status?: number; delayMs?: number }) => void }> {
  const seen: Seen[] = [];
  let status = o.status ?? 200;
  let delayMs = o.delayMs ?? 0;
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', body: Buffer.concat(chunks).toString('latin1'), at: Date.now() });
      const answer = (): void => {
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.end(`${o.name} ${status}`);
      };
      if (delayMs > 0) {
        const timer = setTimeout(answer, delayMs);
        res.on('close', () => clearTimeout(timer));
      } else {
        answer();
      }
    });
  });
  const r = await listen(srv);
  return { ...r, seen, set: (p) => ((status = p.status ?? status), (delayMs = p.delayMs ?? delayMs)) };
}

/** One HTTP/1.1 request on a fresh connection: status and body. */
function h1(port: number, method: string, path: string, body?: string | Buffer): Promise<{ status: number; body: string; ms: number }> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false, headers: body !== undefined ? { 'content-length': Buffer.byteLength(body) } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('latin1'), ms: Date.now() - start }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const count = (p: { stats: Any }, name: string, kri: string): number => p.stats.get(name, { service: kri }) ?? 0;

test('http/1.1: retryOn [5xx] over one failing endpoint out of two: every request gets 200, each failure is retried on the other endpoint', async (t) => {
  const bad = await upstream({ status: 503, name: 'bad' });
  const good = await upstream({ name: 'good' });
  const s = svc({ protocol: 'http', endpoints: [ipEp(bad.port), ipEp(good.port)], retry: policy({ http: { numRetries: 1, retryOn: ['5xx'] } }) });
  const p = await proxyFor(s);
  const got = [];
  for (let i = 0; i < 10; i++) got.push(await h1(p.port, 'GET', `/r${i}`));
  t.deepEqual(got.map((r) => r.status), Array(10).fill(200));
  t.true(bad.seen.length >= 4, `round-robin sent ${bad.seen.length} first attempts to the failing endpoint`);
  // Every request that failed was retried exactly once, on the other endpoint (previous hosts omitted).
  t.is(good.seen.length, 10);
  t.is(count(p, 'meshext_upstream_rq_retry_total', s.kri), bad.seen.length);
  t.is(count(p, 'meshext_upstream_rq_retry_success_total', s.kri), bad.seen.length);
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '5xx' }), undefined, 'the retried 503s never reached a client');
  await p.close();
  await closeServer(bad.srv);
  await closeServer(good.srv);
});

test('http/1.1: without a policy the same failing endpoint reaches clients (the control for the test above)', async (t) => {
  const bad = await upstream({ status: 503, name: 'bad' });
  const good = await upstream({ name: 'good' });
  const s = svc({ protocol: 'http', endpoints: [ipEp(bad.port), ipEp(good.port)] });
  const p = await proxyFor(s);
  const got = [];
  for (let i = 0; i < 6; i++) got.push((await h1(p.port, 'GET', '/')).status);
  t.true(got.includes(503));
  t.is(p.proxy.currentPlans()[0]?.retry, undefined);
  await p.close();
  await closeServer(bad.srv);
  await closeServer(good.srv);
});

test('http/1.1: retries stop at numRetries; the last failure goes to the client and is counted as retries exhausted', async (t) => {
  const bad = await upstream({ status: 503, name: 'bad' });
  const s = svc({ protocol: 'http', endpoints: [ipEp(bad.port)], retry: policy({ http: { numRetries: 2, retryOn: ['503'], backOff: { baseMs: 1 } } }) });
  const p = await proxyFor(s);
  const r = await h1(p.port, 'GET', '/');
  t.is(r.status, 503);
  t.is(bad.seen.length, 3, 'the first attempt and two retries');
  t.is(count(p, 'meshext_upstream_rq_retry_total', s.kri), 2);
  t.is(count(p, 'meshext_upstream_rq_retry_limit_exceeded_total', s.kri), 1);
  await p.close();
  await closeServer(bad.srv);
});

test('http/1.1: a POST is not retried by default; listed in retryOn (HttpMethodPost) it is, with its body intact', async (t) => {
  const bad = await upstream({ status: 503, name: 'bad' });
  const good = await upstream({ name: 'good' });
  const deflt = svc({ protocol: 'http', endpoints: [ipEp(bad.port)], retry: policy({ http: { numRetries: 3, retryOn: ['5xx'] } }) });
  const p = await proxyFor(deflt);
  const r = await h1(p.port, 'POST', '/order', 'item=1');
  t.is(r.status, 503);
  t.is(bad.seen.length, 1, 'the POST reached the upstream once');
  t.is(count(p, 'meshext_upstream_rq_retry_total', deflt.kri), 0);
  await p.close();

  bad.seen.length = 0;
  const allowed = svc({ protocol: 'http', endpoints: [ipEp(bad.port), ipEp(good.port)], retry: policy({ http: { numRetries: 1, retryOn: ['5xx', 'HttpMethodPost'] } }) });
  const q = await proxyFor(allowed);
  for (let i = 0; i < 4; i++) t.is((await h1(q.port, 'POST', '/order', `item=${i}`)).status, 200);
  t.deepEqual(good.seen.map((x) => x.body).sort(), ['item=0', 'item=1', 'item=2', 'item=3']);
  t.true(bad.seen.length >= 1);
  for (const x of bad.seen) t.true(good.seen.some((g) => g.body === x.body), 'each failed POST was sent again whole');
  // Only the methods listed are retried now: a GET that fails is not.
  good.set({ status: 503 });
  t.is((await h1(q.port, 'GET', '/')).status, 503);
  await q.close();
  await closeServer(bad.srv);
  await closeServer(good.srv);
});

test('http/1.1: retriableRequestHeaders choose which requests are retried: a POST with an Idempotency-Key is, one without and a plain GET are not', async (t) => {
  const bad = await upstream({ status: 503, name: 'bad' });
  const good = await upstream({ name: 'good' });
  const s = svc({ protocol: 'http', endpoints: [ipEp(bad.port), ipEp(good.port)], retry: policy({ http: { numRetries: 1, retryOn: ['5xx'], requestHeaders: [{ name: 'idempotency-key', type: 'Present' }] } }) });
  const p = await proxyFor(s);
  const keyed = (i: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: p.port, method: 'POST', path: '/pay', agent: false, headers: { 'idempotency-key': `k${i}`, 'content-length': 3 } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(`p=${i}`);
    });
  for (let i = 0; i < 4; i++) t.is(await keyed(i), 200);
  t.true(bad.seen.length >= 1);
  const plain = [];
  for (let i = 0; i < 4; i++) plain.push((await h1(p.port, 'POST', '/pay', 'p')).status, (await h1(p.port, 'GET', '/')).status);
  t.true(plain.includes(503), 'without the header neither a POST nor a GET is retried');
  // Only the keyed POSTs that first went to the failing endpoint were retried.
  t.is(count(p, 'meshext_upstream_rq_retry_total', s.kri), bad.seen.filter((x) => /^p=\d/.test(x.body)).length);
  await p.close();
  await closeServer(bad.srv);
  await closeServer(good.srv);
});

test('http/1.1: a PUT body larger than the 64 KiB retry buffer is streamed and never sent again; a small one is resent whole', async (t) => {
  const bad = await upstream({ status: 503, name: 'bad' });
  const s = svc({ protocol: 'http', endpoints: [ipEp(bad.port)], retry: policy({ http: { numRetries: 2, retryOn: ['5xx'], backOff: { baseMs: 1 } } }) });
  const p = await proxyFor(s);
  const big = 'x'.repeat(200 * 1024);
  const r = await h1(p.port, 'PUT', '/blob', big);
  t.is(r.status, 503);
  t.is(bad.seen.length, 1, 'the large body went upstream once');
  t.is(bad.seen[0]?.body.length, big.length);
  t.is(count(p, 'meshext_retry_or_shadow_abandoned_total', s.kri), 1);
  const small = 'y'.repeat(10_000);
  t.is((await h1(p.port, 'PUT', '/blob', small)).status, 503);
  t.deepEqual(bad.seen.slice(1).map((x) => x.body === small), [true, true, true], 'the small body, three times whole');
  await p.close();
  await closeServer(bad.srv);
});

test('http/1.1: perTryTimeout ends a slow attempt and the retry goes to the other endpoint; without a retry left it is a 504', async (t) => {
  const slow = await upstream({ delayMs: 3000, name: 'slow' });
  const fast = await upstream({ name: 'fast' });
  const s = svc({ protocol: 'http', endpoints: [ipEp(slow.port), ipEp(fast.port)], retry: policy({ http: { numRetries: 1, perTryMs: 300, retryOn: ['5xx'], backOff: { baseMs: 1 } } }) });
  const p = await proxyFor(s);
  for (let i = 0; i < 4; i++) {
    const r = await h1(p.port, 'GET', `/p${i}`);
    t.is(r.status, 200);
    t.true(r.ms < 1500, `answered after ${r.ms} ms`);
  }
  t.true(count(p, 'meshext_upstream_rq_per_try_timeout_total', s.kri) >= 1);
  await p.close();
  const alone = svc({ protocol: 'http', endpoints: [ipEp(slow.port)], retry: policy({ http: { numRetries: 1, perTryMs: 300, retryOn: ['5xx'], backOff: { baseMs: 1 } } }) });
  const q = await proxyFor(alone);
  const r = await h1(q.port, 'GET', '/alone');
  t.is(r.status, 504);
  t.is(r.body, 'upstream per-try timeout\n');
  t.true(r.ms >= 550 && r.ms < 1500, `two attempts of 300 ms, answered after ${r.ms} ms`);
  t.is(count(q, 'meshext_upstream_rq_per_try_timeout_total', alone.kri), 2);
  await q.close();
  await closeServer(slow.srv);
  await closeServer(fast.srv);
});

test('http/1.1: a slow POST is not retried on its per-try timeout', async (t) => {
  const slow = await upstream({ delayMs: 3000, name: 'slow' });
  const s = svc({ protocol: 'http', endpoints: [ipEp(slow.port)], retry: policy({ http: { numRetries: 3, perTryMs: 300, retryOn: ['5xx'] } }) });
  const p = await proxyFor(s);
  const r = await h1(p.port, 'POST', '/slow', 'pay=1');
  t.is(r.status, 504);
  t.true(r.ms < 1000, `answered after ${r.ms} ms`);
  await new Promise((res) => setTimeout(res, 300));
  t.is(slow.seen.length, 1, 'the POST reached the upstream once');
  t.is(count(p, 'meshext_upstream_rq_retry_total', s.kri), 0);
  await p.close();
  await closeServer(slow.srv);
});

test('http/1.1: retries wait the jittered back-off: below the maximum interval, and not all at once', async (t) => {
  const bad = await upstream({ status: 503, name: 'bad' });
  const s = svc({ protocol: 'http', endpoints: [ipEp(bad.port)], retry: policy({ http: { numRetries: 3, retryOn: ['5xx'], backOff: { baseMs: 200, maxMs: 200 } } }) });
  const p = await proxyFor(s);
  const gaps: number[] = [];
  for (let i = 0; i < 5; i++) {
    bad.seen.length = 0;
    t.is((await h1(p.port, 'GET', '/')).status, 503);
    t.is(bad.seen.length, 4);
    for (let k = 1; k < bad.seen.length; k++) gaps.push((bad.seen[k]?.at ?? 0) - (bad.seen[k - 1]?.at ?? 0));
  }
  const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
  t.true(gaps.every((g) => g < 200 + 60), `every wait below the 200 ms maximum: ${gaps.join(', ')}`);
  // Uniform in [0, 200): a mean near 100 ms; without a back-off it would be about 1 ms.
  t.true(mean > 40, `mean wait ${mean.toFixed(1)} ms`);
  await p.close();
  await closeServer(bad.srv);
});

test('http/1.1: connect failures on every endpoint are retried after the back-off (connect-failure is a default condition)', async (t) => {
  const dead = await refusedPort();
  const s = svc({ protocol: 'http', endpoints: [ipEp(dead)], retry: policy({ http: { numRetries: 2, backOff: { baseMs: 1 } } }) });
  const p = await proxyFor(s);
  const r = await h1(p.port, 'POST', '/', 'x');
  t.is(r.status, 503);
  t.is(count(p, 'meshext_upstream_cx_connect_fail_total', s.kri), 3, 'a POST no upstream received may be retried');
  t.is(count(p, 'meshext_upstream_rq_retry_total', s.kri), 2);
  await p.close();
});

test('concurrency: HTTP/1.1 keep-alive and HTTP/2 clients over an endpoint that answers 503 or drops the connection: every request gets 200', async (t) => {
  // The flaky endpoint fails every request, half with 503, half by closing the connection (a reset). With one
  // retry, no client may see a failure only if every retry goes to the other endpoint: concurrent requests move
  // the round-robin between an attempt and its retry, so this holds only because previous hosts are omitted
  // (checked: without the omission some requests fail here).
  let flip = 0;
  const flaky = await listen(
    http.createServer((req, res) => {
      req.resume();
      req.on('end', () => (flip++ % 2 === 0 ? res.writeHead(503).end('no') : req.socket.destroy()));
    }),
  );
  const good = await upstream({ name: 'good' });
  const s = svc({ protocol: 'http', endpoints: [ipEp(flaky.port), ipEp(good.port)], retry: policy({ http: { numRetries: 1, retryOn: ['5xx'], backOff: { baseMs: 2 } } }) });
  const p = await proxyFor(s);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  const h1one = (i: number): Promise<number | string> =>
    new Promise((resolve) => {
      const body = i % 3 === 0 ? `put-${i}` : undefined;
      const req = http.request({ host: '127.0.0.1', port: p.port, method: body ? 'PUT' : 'GET', path: `/c${i}`, agent, headers: body ? { 'content-length': body.length } : {} }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      req.end(body);
    });
  const h1 = await Promise.all(Array.from({ length: 400 }, (_, i) => h1one(i)));
  t.deepEqual([...new Set(h1)], [200]);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  const h2 = [];
  for (let k = 0; k < 4; k++) h2.push(...(await Promise.all(Array.from({ length: 50 }, (_, i) => h2Req(session, i % 3 === 0 ? 'PUT' : 'GET', `/d${i}`, i % 3 === 0 ? `put-${i}` : undefined)))));
  t.deepEqual([...new Set(h2.map((r) => r.status))], [200]);
  t.true(count(p, 'meshext_upstream_rq_retry_total', s.kri) >= 200, 'about half of 600 first attempts failed and were retried');
  session.close();
  agent.destroy();
  await p.close();
  await closeServer(flaky.srv);
  await closeServer(good.srv);
});

/** An HTTP/2 stand-in answering `status` to every stream. */
async function h2Upstream(status: number): Promise<{ srv: http2.Http2Server; port: number; streams: () => number }> {
  let streams = 0;
  const srv = http2.createServer();
  srv.on('stream', (stream) => {
    streams++;
    stream.on('data', () => undefined);
    stream.on('end', () => {
      stream.respond({ ':status': status });
      stream.end(`h2 ${status}`);
    });
  });
  const r = await listen(srv);
  return { ...r, streams: () => streams };
}

function h2Req(session: http2.ClientHttp2Session, method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': method, ':path': path });
    let status = 0;
    let data = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (d: Buffer) => (data += d.toString()));
    req.on('end', () => resolve({ status, body: data }));
    req.on('error', reject);
    req.end(body);
  });
}

test('http2: retryOn [5xx] over one failing endpoint out of two: every stream gets 200; a POST is not retried', async (t) => {
  const bad = await h2Upstream(503);
  const good = await h2Upstream(200);
  const s = svc({ protocol: 'http2', endpoints: [ipEp(bad.port), ipEp(good.port)], retry: policy({ http: { numRetries: 1, retryOn: ['5xx'], backOff: { baseMs: 1 } } }) });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  const got = [];
  for (let i = 0; i < 8; i++) got.push((await h2Req(session, 'GET', `/s${i}`)).status);
  t.deepEqual(got, Array(8).fill(200));
  t.true(bad.streams() >= 3);
  t.is(count(p, 'meshext_upstream_rq_retry_total', s.kri), bad.streams());
  const before = bad.streams() + good.streams();
  const posts = [];
  for (let i = 0; i < 4; i++) posts.push((await h2Req(session, 'POST', '/p', 'body')).status);
  t.true(posts.includes(503), `POSTs: ${posts.join(',')}`);
  t.is(bad.streams() + good.streams() - before, 4, 'each POST went upstream once');
  session.close();
  await p.close();
  await closeServer(bad.srv as unknown as net.Server);
  await closeServer(good.srv as unknown as net.Server);
});

test('http2: a POST carrying the retriable request header is retried; one without it is not', async (t) => {
  let n = 0;
  const srv = http2.createServer();
  srv.on('stream', (stream) => {
    stream.resume();
    stream.on('end', () => {
      stream.respond({ ':status': n++ % 2 === 0 ? 503 : 200 });
      stream.end();
    });
  });
  const up = await listen(srv);
  const s = svc({ protocol: 'http2', endpoints: [ipEp(up.port)], retry: policy({ http: { numRetries: 1, retryOn: ['5xx'], backOff: { baseMs: 1 }, requestHeaders: [{ name: 'idempotency-key', type: 'Prefix', value: 'k-' }] } }) });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  const post = (headers: Record<string, string>): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = session.request({ ':method': 'POST', ':path': '/pay', ...headers });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.resume();
      req.end('body');
    });
  t.is(await post({ 'idempotency-key': 'k-1' }), 200, 'the 503 was retried');
  t.is(await post({ 'idempotency-key': 'other' }), 503, 'the prefix does not match: not retried');
  t.is(n, 3);
  session.close();
  await p.close();
  await closeServer(srv as unknown as net.Server);
});

test('http2: a retried stream sends its body again whole (PUT within the buffer)', async (t) => {
  const bodies: string[] = [];
  let n = 0;
  const srv = http2.createServer();
  srv.on('stream', (stream) => {
    let b = '';
    stream.on('data', (d: Buffer) => (b += d.toString()));
    stream.on('end', () => {
      bodies.push(b);
      stream.respond({ ':status': n++ === 0 ? 502 : 200 });
      stream.end();
    });
  });
  const up = await listen(srv);
  const s = svc({ protocol: 'http2', endpoints: [ipEp(up.port)], retry: policy({ http: { numRetries: 2, retryOn: ['GatewayError'], backOff: { baseMs: 1 } } }) });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  const payload = 'z'.repeat(40_000);
  t.is((await h2Req(session, 'PUT', '/x', payload)).status, 200);
  t.deepEqual(bodies.map((b) => b.length), [payload.length, payload.length]);
  t.true(bodies.every((b) => b === payload));
  session.close();
  await p.close();
  await closeServer(srv as unknown as net.Server);
});

test('http2: a PUT body past the 64 KiB buffer streams upstream once and is never resent', async (t) => {
  const bodies: number[] = [];
  const srv = http2.createServer();
  srv.on('stream', (stream) => {
    let n = 0;
    stream.on('data', (d: Buffer) => (n += d.length));
    stream.on('end', () => {
      bodies.push(n);
      stream.respond({ ':status': 503 });
      stream.end();
    });
  });
  const up = await listen(srv);
  const s = svc({ protocol: 'http2', endpoints: [ipEp(up.port)], retry: policy({ http: { numRetries: 2, retryOn: ['5xx'], backOff: { baseMs: 1 } } }) });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  const big = 'b'.repeat(300 * 1024);
  t.is((await h2Req(session, 'PUT', '/big', big)).status, 503);
  t.deepEqual(bodies, [big.length], 'one attempt, the whole body');
  t.is(count(p, 'meshext_retry_or_shadow_abandoned_total', s.kri), 1);
  session.close();
  await p.close();
  await closeServer(srv as unknown as net.Server);
});

test('http2 client to an HTTP/1.1 service (bridged): a 503 from one endpoint of two is retried on the other', async (t) => {
  const bad = await upstream({ status: 503, name: 'bad' });
  const good = await upstream({ name: 'good' });
  const s = svc({ protocol: 'http', endpoints: [ipEp(bad.port), ipEp(good.port)], retry: policy({ http: { retryOn: ['5xx'], backOff: { baseMs: 1 } } }) });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  const got = [];
  for (let i = 0; i < 6; i++) got.push((await h2Req(session, 'GET', `/b${i}`)).status);
  t.deepEqual(got, Array(6).fill(200));
  t.true(bad.seen.length >= 2);
  session.close();
  await p.close();
  await closeServer(bad.srv);
  await closeServer(good.srv);
});

const def = protoLoader.loadSync(join(process.cwd(), 'test/fixtures/echo.proto'), { keepCase: true });
const EchoService = (grpc.loadPackageDefinition(def) as Any).meshext.test.Echo;

/** A gRPC stand-in whose Unary fails with `code` (or echoes when null); counts calls. */
async function grpcUpstream(code: grpc.status | null): Promise<{ server: grpc.Server; port: number; calls: () => number }> {
  let calls = 0;
  const server = new grpc.Server();
  server.addService(EchoService.service, {
    Unary: (call: Any, cb: Any) => {
      calls++;
      if (code !== null) cb({ code, details: 'stand-in failure' });
      else cb(null, { text: `echo:${call.request.text}` });
    },
    Bidi: (call: Any) => call.end(),
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, n) => (e ? reject(e) : resolve(n))));
  return { server, port, calls: () => calls };
}

test('grpc: retryOn [Unavailable] retries a call the upstream answered UNAVAILABLE (grpc-status in a trailers-only response); INTERNAL is not retried', async (t) => {
  const bad = await grpcUpstream(grpc.status.UNAVAILABLE);
  const good = await grpcUpstream(null);
  const s = svc({ protocol: 'grpc', endpoints: [ipEp(bad.port), ipEp(good.port)], retry: policy({ grpc: { numRetries: 1, retryOn: ['Unavailable'], backOff: { baseMs: 1 } } }) });
  const p = await proxyFor(s);
  const c = new EchoService(`127.0.0.1:${p.port}`, grpc.credentials.createInsecure());
  const call = (text: string): Promise<{ text?: string; err?: grpc.ServiceError }> =>
    new Promise((resolve) => c.Unary({ text }, (err: grpc.ServiceError | null, res: Any) => resolve(err ? { err } : { text: res.text })));
  for (let i = 0; i < 6; i++) {
    const r = await call(`m${i}`);
    t.is(r.text, `echo:m${i}`, r.err ? `${r.err.code} ${r.err.details}` : "");
  }
  t.true(bad.calls() >= 2);
  t.is(count(p, 'meshext_upstream_rq_retry_total', s.kri), bad.calls());
  c.close();
  await p.close();
  bad.server.forceShutdown();

  const internal = await grpcUpstream(grpc.status.INTERNAL);
  const s2 = svc({ protocol: 'grpc', endpoints: [ipEp(internal.port)], retry: policy({ grpc: { numRetries: 3, retryOn: ['Unavailable'] } }) });
  const q = await proxyFor(s2);
  const c2 = new EchoService(`127.0.0.1:${q.port}`, grpc.credentials.createInsecure());
  const r = await new Promise<grpc.ServiceError | null>((resolve) => c2.Unary({ text: 'x' }, (err: grpc.ServiceError | null) => resolve(err)));
  t.is(r?.code, grpc.status.INTERNAL);
  t.is(internal.calls(), 1);
  c2.close();
  await q.close();
  internal.server.forceShutdown();
  good.server.forceShutdown();
});

test('grpc: perTryTimeout ends a slow attempt, retried on the other endpoint under Kuma\'s default conditions (reset); not under retryOn [Unavailable]: DEADLINE_EXCEEDED', async (t) => {
  const server = new grpc.Server();
  server.addService(EchoService.service, {
    Unary: (call: Any, cb: Any) => {
      const timer = setTimeout(() => cb(null, { text: 'late' }), 3000);
      call.on('cancelled', () => clearTimeout(timer));
    },
    Bidi: (call: Any) => call.end(),
  });
  const slowPort = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, n) => (e ? reject(e) : resolve(n))));
  const good = await grpcUpstream(null);
  // No retryOn: Kuma's gRPC defaults, which include reset (a per-try timeout is one, as in Envoy).
  const conf = policy({ grpc: { numRetries: 1, perTryMs: 300, backOff: { baseMs: 1 } } });
  const s = svc({ protocol: 'grpc', endpoints: [ipEp(slowPort), ipEp(good.port)], retry: conf });
  const p = await proxyFor(s);
  const c = new EchoService(`127.0.0.1:${p.port}`, grpc.credentials.createInsecure());
  const call = (client: Any, text: string): Promise<{ text?: string; err?: grpc.ServiceError; ms: number }> => {
    const start = Date.now();
    return new Promise((resolve) => client.Unary({ text }, (err: grpc.ServiceError | null, res: Any) => resolve(err ? { err, ms: Date.now() - start } : { text: res.text, ms: Date.now() - start })));
  };
  for (let i = 0; i < 4; i++) {
    const r = await call(c, `t${i}`);
    t.is(r.text, `echo:t${i}`);
    t.true(r.ms < 1500, `answered after ${r.ms} ms`);
  }
  t.true(count(p, 'meshext_upstream_rq_per_try_timeout_total', s.kri) >= 1);
  c.close();
  await p.close();
  const alone = svc({ protocol: 'grpc', endpoints: [ipEp(slowPort), ipEp(good.port)], retry: policy({ grpc: { numRetries: 1, perTryMs: 300, retryOn: ['Unavailable'] } }) });
  const q = await proxyFor(alone);
  const c2 = new EchoService(`127.0.0.1:${q.port}`, grpc.credentials.createInsecure());
  // Round-robin: one of two calls starts at the slow endpoint and is not retried.
  const rs = [await call(c2, 'x'), await call(c2, 'y')];
  const failed = rs.filter((r) => r.err);
  t.is(failed.length, 1);
  t.is(failed[0]?.err?.code, grpc.status.DEADLINE_EXCEEDED);
  t.is(failed[0]?.err?.details, 'upstream per-try timeout');
  c2.close();
  await q.close();
  server.forceShutdown();
  good.server.forceShutdown();
});

test('tcp: maxConnectAttempt bounds the connects of one connection, going round the endpoints again', async (t) => {
  const dead = await refusedPort();
  const three = svc({ protocol: 'tcp', endpoints: [ipEp(dead)], retry: policy({ tcp: { maxConnectAttempt: 3 } }) });
  const p = await proxyFor(three);
  t.is(await roundTrip(p.port, 'hello'), '', 'closed without a byte');
  t.is(count(p, 'meshext_upstream_cx_connect_fail_total', three.kri), 3, 'three connects to the one endpoint');
  await p.close();

  const echo = await tcpEcho();
  const one = svc({ protocol: 'tcp', endpoints: [ipEp(dead), ipEp(echo.port)], retry: policy({ tcp: { maxConnectAttempt: 1 } }) });
  const q = await proxyFor(one);
  const results = [];
  for (let i = 0; i < 4; i++) results.push((await roundTrip(q.port, 'hi')) === 'hi' ? 'ok' : 'failed');
  // Round-robin starts every other connection at the dead endpoint: with one attempt there is no failover.
  t.is(results.filter((r) => r === 'failed').length, 2, results.join(','));
  await q.close();

  const deflt = svc({ protocol: 'tcp', endpoints: [ipEp(dead), ipEp(echo.port)] });
  const d = await proxyFor(deflt);
  for (let i = 0; i < 4; i++) t.is(await roundTrip(d.port, 'hi'), 'hi', 'without a policy each endpoint is tried once: failover');
  await d.close();
  await closeServer(echo.srv);
});
