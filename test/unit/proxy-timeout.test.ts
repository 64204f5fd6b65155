// MeshTimeout enforcement in the engine: http.requestTimeout (Envoy's route timeout) for HTTP/1.1, HTTP/2 and
// gRPC clients, connectionTimeout and idleTimeout through the plan, against loopback upstreams that delay.
import test from 'ava';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { blackhole, closeServer, ipEp, listen, proxyFor, svc, until } from '../helpers/proxy.js';
import type { EffectiveTimeouts } from '../../src/snapshot/meshtimeout.js';

type Any = any;
const SLOW_MS = 3000;
const TIMEOUT_MS = 1000;
const MEDIUM_MS = 600;

const policy = (t: Omit<EffectiveTimeouts, 'policies'>): EffectiveTimeouts => ({ ...t, policies: ['test'] });

/** An HTTP/1.1 upstream: /slow answers after SLOW_MS (and records whether it was reset first), /head-then-stall sends headers only, the rest at once. */
async function delayingUpstream(): Promise<{ srv: http.Server; port: number; aborted: () => number }> {
  let aborted = 0;
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/slow') {
        const timer = setTimeout(() => res.end('slow'), SLOW_MS);
        res.on('close', () => {
          if (!res.writableFinished) {
            aborted++;
            clearTimeout(timer);
          }
        });
      } else if (req.url === '/medium') {
        setTimeout(() => res.end('medium'), MEDIUM_MS);
      } else if (req.url === '/trickle') {
        // Six chunks 200 ms apart: never idle for long, slow in total.
        let n = 0;
        const timer = setInterval(() => {
          res.write(`chunk${n}`);
          if (++n === 6) {
            clearInterval(timer);
            res.end();
          }
        }, 200);
        res.on('close', () => clearInterval(timer));
      } else if (req.url === '/head-then-stall') {
        res.writeHead(200, { 'content-length': '10' });
        res.write('part');
        res.on('close', () => aborted++);
      } else {
        res.end(`fast ${req.url}`);
      }
    });
  });
  const r = await listen(srv);
  return { ...r, aborted: () => aborted };
}

/** One keep-alive HTTP/1.1 client connection: send a request, read one whole response. */
function h1Client(port: number): { ask: (path: string) => Promise<{ status: number; body: string; ms: number }>; closed: () => boolean; destroy: () => void } {
  const c = net.connect({ host: '127.0.0.1', port });
  let buf = '';
  let closed = false;
  let waiter: (() => void) | undefined;
  c.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    waiter?.();
  });
  c.on('close', () => {
    closed = true;
    waiter?.();
  });
  c.on('error', () => undefined);
  const ask = async (path: string): Promise<{ status: number; body: string; ms: number }> => {
    const start = Date.now();
    c.write(`GET ${path} HTTP/1.1\r\nHost: h\r\n\r\n`);
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end >= 0) {
        const head = buf.slice(0, end);
        const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? '0');
        if (buf.length >= end + 4 + len) {
          const body = buf.slice(end + 4, end + 4 + len);
          buf = buf.slice(end + 4 + len);
          return { status: Number(head.split(' ')[1]), body, ms: Date.now() - start };
        }
      }
      if (closed) throw new Error(`connection closed before a whole response to ${path} (got ${JSON.stringify(buf)})`);
      await new Promise<void>((r) => (waiter = r));
    }
  };
  return { ask, closed: () => closed, destroy: () => c.destroy() };
}

test('http/1.1: a request slower than requestTimeout gets 504 at the timeout, the upstream request is reset, the connection serves the next request', async (t) => {
  const up = await delayingUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)], timeouts: policy({ requestMs: TIMEOUT_MS }) });
  const p = await proxyFor(s);
  const c = h1Client(p.port);
  const slow = await c.ask('/slow');
  t.is(slow.status, 504);
  t.is(slow.body, 'upstream request timeout\n');
  t.true(slow.ms >= TIMEOUT_MS - 50 && slow.ms < SLOW_MS - 500, `answered after ${slow.ms} ms`);
  await until(() => up.aborted() === 1, 'upstream request reset');
  const fast = await c.ask('/fast');
  t.deepEqual([fast.status, fast.body], [200, 'fast /fast']);
  t.false(c.closed());
  t.is(p.stats.get('meshext_upstream_rq_timeout_total', { service: s.kri }), 1);
  t.is(p.stats.get('meshext_upstream_rq_total', { service: s.kri, code_class: '5xx' }), 1);
  c.destroy();
  await p.close();
  await closeServer(up.srv);
});

test('http/1.1: a policy without requestTimeout gets Kuma\'s 15 s default: a 3 s response is waited for', async (t) => {
  const up = await delayingUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)], timeouts: policy({ connectMs: 1000 }) });
  const p = await proxyFor(s);
  t.is(p.proxy.currentPlans()[0]?.timeouts.requestMs, 15_000);
  const c = h1Client(p.port);
  const slow = await c.ask('/slow');
  t.deepEqual([slow.status, slow.body], [200, 'slow']);
  t.is(p.stats.get('meshext_upstream_rq_timeout_total', { service: s.kri }), 0);
  c.destroy();
  await p.close();
  await closeServer(up.srv);
});

test('http/1.1: a response begun but not complete at the timeout is cut, never passed off as whole', async (t) => {
  const up = await delayingUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)], timeouts: policy({ requestMs: 300 }) });
  const p = await proxyFor(s);
  const c = h1Client(p.port);
  await t.throwsAsync(c.ask('/head-then-stall'), { message: /connection closed before a whole response/ });
  await until(() => up.aborted() === 1, 'upstream request reset');
  t.is(p.stats.get('meshext_upstream_rq_timeout_total', { service: s.kri }), 1);
  await p.close();
  await closeServer(up.srv);
});

/** An h2c upstream: /slow answers after SLOW_MS, the rest at once. */
async function h2Upstream(): Promise<{ srv: http2.Http2Server; port: number; resets: () => number }> {
  let resets = 0;
  const srv = http2.createServer();
  srv.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    if (headers[':path'] === '/slow') {
      const timer = setTimeout(() => {
        stream.respond({ ':status': 200 });
        stream.end('slow');
      }, SLOW_MS);
      stream.on('close', () => {
        if (stream.rstCode !== 0 && stream.rstCode !== undefined) {
          resets++;
          clearTimeout(timer);
        }
      });
      return;
    }
    if (headers[':path'] === '/medium') {
      setTimeout(() => {
        stream.respond({ ':status': 200 });
        stream.end('medium');
      }, MEDIUM_MS);
      return;
    }
    stream.respond({ ':status': 200 });
    stream.end(`fast ${String(headers[':path'])}`);
  });
  const r = await listen(srv);
  return { ...r, resets: () => resets };
}

function h2Get(session: http2.ClientHttp2Session, path: string): Promise<{ status: number; body: string; ms: number }> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': path });
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => resolve({ status, body, ms: Date.now() - start }));
    req.on('error', reject);
    req.end();
  });
}

test('http2: a stream slower than requestTimeout gets 504 at the timeout, its upstream stream is reset, the session serves the next stream', async (t) => {
  const up = await h2Upstream();
  const s = svc({ protocol: 'http2', endpoints: [ipEp(up.port)], timeouts: policy({ requestMs: TIMEOUT_MS }) });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  session.on('error', () => undefined);
  const slow = await h2Get(session, '/slow');
  t.is(slow.status, 504);
  t.is(slow.body, 'upstream request timeout\n');
  t.true(slow.ms >= TIMEOUT_MS - 50 && slow.ms < SLOW_MS - 500, `answered after ${slow.ms} ms`);
  await until(() => up.resets() === 1, 'upstream stream reset');
  const fast = await h2Get(session, '/fast');
  t.deepEqual([fast.status, fast.body], [200, 'fast /fast']);
  t.false(session.closed);
  t.is(p.stats.get('meshext_upstream_rq_timeout_total', { service: s.kri }), 1);
  session.close();
  await p.close();
  await closeServer(up.srv as unknown as net.Server);
});

test('http2 client to an HTTP/1.1 upstream (bridged): 504 at the timeout, then the next stream works', async (t) => {
  const up = await delayingUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)], timeouts: policy({ requestMs: TIMEOUT_MS }) });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  session.on('error', () => undefined);
  const slow = await h2Get(session, '/slow');
  t.is(slow.status, 504);
  t.true(slow.ms >= TIMEOUT_MS - 50 && slow.ms < SLOW_MS - 500, `answered after ${slow.ms} ms`);
  await until(() => up.aborted() === 1, 'upstream request reset');
  const fast = await h2Get(session, '/fast');
  t.deepEqual([fast.status, fast.body], [200, 'fast /fast']);
  session.close();
  await p.close();
  await closeServer(up.srv);
});

const def = protoLoader.loadSync(join(process.cwd(), 'test/fixtures/echo.proto'), { keepCase: true });
const EchoService = (grpc.loadPackageDefinition(def) as Any).meshext.test.Echo;

test('grpc: a call slower than requestTimeout ends with DEADLINE_EXCEEDED at the timeout; the next call on the channel works', async (t) => {
  let cancelled = 0;
  const server = new grpc.Server();
  server.addService(EchoService.service, {
    Unary: (call: Any, cb: Any) => {
      if (call.request.text !== 'slow') return cb(null, { text: `echo:${call.request.text}` });
      const timer = setTimeout(() => cb(null, { text: 'late' }), SLOW_MS);
      call.on('cancelled', () => {
        cancelled++;
        clearTimeout(timer);
      });
    },
    Bidi: (call: Any) => call.end(),
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, n) => (e ? reject(e) : resolve(n))));
  const s = svc({ protocol: 'grpc', endpoints: [ipEp(port)], timeouts: policy({ requestMs: TIMEOUT_MS }) });
  const p = await proxyFor(s);
  const c = new EchoService(`127.0.0.1:${p.port}`, grpc.credentials.createInsecure());
  const call = (text: string): Promise<{ text?: string; err?: grpc.ServiceError; ms: number }> => {
    const start = Date.now();
    return new Promise((resolve) => c.Unary({ text }, (err: grpc.ServiceError | null, res: Any) => resolve(err ? { err, ms: Date.now() - start } : { text: res.text, ms: Date.now() - start })));
  };
  const slow = await call('slow');
  t.is(slow.err?.code, grpc.status.DEADLINE_EXCEEDED);
  t.is(slow.err?.details, 'upstream request timeout');
  t.true(slow.ms >= TIMEOUT_MS - 50 && slow.ms < SLOW_MS - 500, `answered after ${slow.ms} ms`);
  await until(() => cancelled === 1, 'upstream call cancelled');
  t.is((await call('fast')).text, 'echo:fast');
  t.is(p.stats.get('meshext_upstream_rq_timeout_total', { service: s.kri }), 1);
  c.close();
  await p.close();
  server.forceShutdown();
});

test('connectionTimeout: a connect to a black hole fails at the policy\'s time, not the agent default', async (t) => {
  const hole = await blackhole();
  t.teardown(hole.close);
  const s = svc({ protocol: 'http', endpoints: [ipEp(hole.port)], timeouts: policy({ connectMs: 400 }) });
  // The agent's own connect timeout is long: only the policy can make this fail early.
  const p = await proxyFor(s, { connectTimeoutMs: 30_000 });
  const c = h1Client(p.port);
  const r = await c.ask('/x');
  t.is(r.status, 503);
  t.regex(r.body, /timed out after 400 ms/);
  t.true(r.ms >= 350 && r.ms < 10_000, `failed after ${r.ms} ms`);
  t.is(p.stats.get('meshext_upstream_cx_connect_timeout_total', { service: s.kri }), 1);
  c.destroy();
  await p.close();
});

test('idleTimeout: a pooled upstream connection of an http service is closed after the policy\'s idle timeout', async (t) => {
  const up = await delayingUpstream();
  let upstreamClosed = 0;
  up.srv.on('connection', (sock: net.Socket) => sock.on('close', () => upstreamClosed++));
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)], timeouts: policy({ idleMs: 300 }) });
  const p = await proxyFor(s);
  const c = h1Client(p.port);
  t.is((await c.ask('/a')).status, 200);
  // The client connection stays (its keep-alive idle timeout is the agent's); the upstream one goes.
  await until(() => upstreamClosed === 1, 'pooled upstream connection closed', 5000);
  t.false(c.closed());
  c.destroy();
  await p.close();
  await closeServer(up.srv);
});

test('idleTimeout: a tcp connection idle for the policy\'s idle timeout is closed', async (t) => {
  const echo = net.createServer((sock) => sock.pipe(sock));
  const { port } = await listen(echo);
  const s = svc({ protocol: 'tcp', endpoints: [ipEp(port)], timeouts: policy({ idleMs: 300 }) });
  const p = await proxyFor(s);
  const c = net.connect({ host: '127.0.0.1', port: p.port });
  c.on('error', () => undefined);
  let closed = false;
  c.on('close', () => (closed = true));
  let got = '';
  c.on('data', (d: Buffer) => (got += d.toString()));
  c.write('ping');
  await until(() => got === 'ping', 'echo');
  await until(() => closed, 'idle tcp connection closed', 5000);
  t.pass();
  await p.close();
  await closeServer(echo);
});

test('maxStreamDuration: an upstream request older than the limit is reset and answered 504; the connection serves the next request', async (t) => {
  const up = await delayingUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)], timeouts: policy({ requestMs: 0, maxStreamMs: TIMEOUT_MS }) });
  const p = await proxyFor(s);
  const c = h1Client(p.port);
  const slow = await c.ask('/slow');
  t.deepEqual([slow.status, slow.body], [504, 'upstream max stream duration reached\n']);
  t.true(slow.ms >= TIMEOUT_MS - 50 && slow.ms < SLOW_MS - 500, `answered after ${slow.ms} ms`);
  await until(() => up.aborted() === 1, 'upstream request reset');
  t.is((await c.ask('/fast')).status, 200);
  t.is(p.stats.get('meshext_upstream_rq_max_duration_reached_total', { service: s.kri }), 1);
  t.is(p.stats.get('meshext_upstream_rq_timeout_total', { service: s.kri }), 0);
  c.destroy();
  await p.close();
  await closeServer(up.srv);
});

test('maxStreamDuration: reached while the request body is still arriving, the client gets 408 and the connection closes', async (t) => {
  const up = await delayingUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)], timeouts: policy({ maxStreamMs: 300 }) });
  const p = await proxyFor(s);
  const c = net.connect({ host: '127.0.0.1', port: p.port });
  let got = '';
  c.on('data', (d: Buffer) => (got += d.toString('latin1')));
  const closed = new Promise<void>((r) => c.on('close', () => r()));
  c.write('POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc');
  await closed;
  t.regex(got, /^HTTP\/1\.1 408 /);
  t.true(got.endsWith('upstream max stream duration reached\n'));
  t.is(p.stats.get('meshext_upstream_rq_max_duration_reached_total', { service: s.kri }), 1);
  await p.close();
  await closeServer(up.srv);
});

test('maxStreamDuration: an HTTP/2 stream past the limit gets 504, its upstream stream is reset, the session goes on', async (t) => {
  const up = await h2Upstream();
  const s = svc({ protocol: 'http2', endpoints: [ipEp(up.port)], timeouts: policy({ requestMs: 0, maxStreamMs: TIMEOUT_MS }) });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  session.on('error', () => undefined);
  const slow = await h2Get(session, '/slow');
  t.deepEqual([slow.status, slow.body], [504, 'upstream max stream duration reached\n']);
  t.true(slow.ms >= TIMEOUT_MS - 50 && slow.ms < SLOW_MS - 500, `answered after ${slow.ms} ms`);
  await until(() => up.resets() === 1, 'upstream stream reset');
  t.is((await h2Get(session, '/fast')).status, 200);
  t.is(p.stats.get('meshext_upstream_rq_max_duration_reached_total', { service: s.kri }), 1);
  session.close();
  await p.close();
  await closeServer(up.srv as unknown as net.Server);
});

test('streamIdleTimeout: an exchange with no bytes either way for the limit gets 408; one that keeps moving is not cut', async (t) => {
  const up = await delayingUpstream();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)], timeouts: policy({ requestMs: 0, streamIdleMs: 500 }) });
  const p = await proxyFor(s);
  const c = h1Client(p.port);
  const slow = await c.ask('/slow');
  t.deepEqual([slow.status, slow.body], [408, 'stream timeout\n']);
  t.true(slow.ms >= 450 && slow.ms < SLOW_MS - 500, `answered after ${slow.ms} ms`);
  await until(() => up.aborted() === 1, 'upstream request reset');
  // Chunked, 1.2 s in total, never 500 ms without a byte.
  const c2 = net.connect({ host: '127.0.0.1', port: p.port });
  let got = '';
  c2.on('data', (d: Buffer) => (got += d.toString('latin1')));
  c2.write('GET /trickle HTTP/1.1\r\nHost: h\r\n\r\n');
  await until(() => got.endsWith('0\r\n\r\n'), 'whole chunked response');
  t.regex(got, /^HTTP\/1\.1 200 /);
  t.true(got.includes('chunk5'));
  t.is((await c.ask('/fast')).status, 200, 'the first connection serves the next request');
  t.is(p.stats.get('meshext_downstream_rq_idle_timeout_total', { service: s.kri }), 1);
  c.destroy();
  c2.destroy();
  await p.close();
  await closeServer(up.srv);
});

test('streamIdleTimeout: an idle HTTP/2 stream gets 408, the session goes on', async (t) => {
  const up = await h2Upstream();
  const s = svc({ protocol: 'http2', endpoints: [ipEp(up.port)], timeouts: policy({ requestMs: 0, streamIdleMs: 500 }) });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  session.on('error', () => undefined);
  const slow = await h2Get(session, '/slow');
  t.deepEqual([slow.status, slow.body], [408, 'stream timeout\n']);
  t.true(slow.ms >= 450 && slow.ms < SLOW_MS - 500, `answered after ${slow.ms} ms`);
  await until(() => up.resets() === 1, 'upstream stream reset');
  t.is((await h2Get(session, '/fast')).status, 200);
  t.is(p.stats.get('meshext_downstream_rq_idle_timeout_total', { service: s.kri }), 1);
  session.close();
  await p.close();
  await closeServer(up.srv as unknown as net.Server);
});

test('maxConnectionDuration: an HTTP/1.1 upstream connection past it finishes its request, then is closed and not reused', async (t) => {
  const up = await delayingUpstream();
  let opened = 0;
  let closed = 0;
  up.srv.on('connection', (sock: net.Socket) => {
    opened++;
    sock.on('close', () => closed++);
  });
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)], timeouts: policy({ maxConnectionMs: 300 }) });
  const p = await proxyFor(s);
  const c = h1Client(p.port);
  // The duration passes while this request is in flight: it is not cut.
  t.deepEqual(await c.ask('/medium').then((r) => [r.status, r.body]), [200, 'medium']);
  await until(() => closed === 1, 'the old upstream connection closed after its request');
  t.deepEqual(await c.ask('/fast').then((r) => [r.status, r.body]), [200, 'fast /fast']);
  t.is(opened, 2, 'the next request went on a new connection');
  t.is(p.stats.get('meshext_upstream_cx_max_duration_reached_total', { service: s.kri }), 1);
  c.destroy();
  await p.close();
  await closeServer(up.srv);
});

test('maxConnectionDuration: an HTTP/2 upstream connection past it takes no new stream and closes once its streams are done', async (t) => {
  const up = await h2Upstream();
  let sessions = 0;
  let sessionsClosed = 0;
  up.srv.on('session', (sess: http2.ServerHttp2Session) => {
    sessions++;
    sess.on('close', () => sessionsClosed++);
  });
  const s = svc({ protocol: 'http2', endpoints: [ipEp(up.port)], timeouts: policy({ maxConnectionMs: 300 }) });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  session.on('error', () => undefined);
  const medium = await h2Get(session, '/medium');
  t.deepEqual([medium.status, medium.body], [200, 'medium']);
  await until(() => sessionsClosed === 1, 'the old upstream connection closed once its stream was done');
  t.is((await h2Get(session, '/fast')).status, 200);
  t.is(sessions, 2, 'the next stream went on a new connection');
  t.is(p.stats.get('meshext_upstream_cx_max_duration_reached_total', { service: s.kri }), 1);
  session.close();
  await p.close();
  await closeServer(up.srv as unknown as net.Server);
});
