// Bounded resources on the data path: a head that trickles in gets 408 after the header timeout (an idle keep-alive
// connection is not a slow head), the connection cap resets what is over it at once, and at the descriptor limit
// new connections are reset rather than left hanging in a backlog, while the rest of the process keeps answering.
import test from 'ava';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { connectionCapFor, FD_RESERVE } from '../../src/engine/engine.js';
import { closeServer, ipEp, proxyFor, svc, tcpEcho, until } from '../helpers/proxy.js';

/** Opens a connection and reports how it ended: the bytes it read, or the error, within a hang bound. */
function dial(port: number, send: string | null, holdMs = 0): Promise<{ data: string; error?: string; socket: net.Socket }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let data = '';
    let done = false;
    const finish = (error?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(hang);
      resolve({ data, ...(error ? { error } : {}), socket: s });
    };
    const hang = setTimeout(() => finish('HANG'), 10_000);
    s.on('connect', () => {
      if (send !== null) s.write(send);
    });
    s.on('data', (d: Buffer) => {
      data += d.toString();
      if (send !== null && data.length >= send.length && holdMs === 0) finish();
      if (holdMs > 0 && data.length >= (send ?? '').length) setTimeout(() => finish(), holdMs);
    });
    s.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
    s.on('close', () => finish());
  });
}

test('http: a request head that trickles in gets 408 after the header timeout, however often bytes arrive', async (t) => {
  const up = http.createServer((_req, res) => res.end('ok'));
  up.listen(0, '127.0.0.1');
  await once(up, 'listening');
  t.teardown(() => closeServer(up));
  const s = svc({ protocol: 'http', endpoints: [ipEp((up.address() as net.AddressInfo).port)] });
  const p = await proxyFor(s, { httpHeaderTimeoutMs: 400 });
  t.teardown(() => p.close());

  const c = net.connect({ host: '127.0.0.1', port: p.port });
  t.teardown(() => c.destroy());
  await once(c, 'connect');
  let reply = '';
  c.on('data', (d: Buffer) => (reply += d.toString()));
  c.on('error', () => {});
  const head = 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(200);
  let i = 0;
  // One byte every 50 ms keeps the connection busy far longer than the idle timeout would notice.
  const drip = setInterval(() => {
    if (i < head.length && !c.destroyed) c.write(head[i++]!);
  }, 50);
  t.teardown(() => clearInterval(drip));
  await until(() => reply.length > 0, '408 reply', 8000);
  clearInterval(drip);
  t.regex(reply, /^HTTP\/1\.1 408 /);
  t.regex(reply, /request header timeout/);
  t.true(i < head.length, 'answered while bytes were still trickling in');
  await until(() => p.stats.get('meshext_downstream_rq_header_timeout_total', { service: s.kri }) === 1, 'counted');
});

test('http: an idle keep-alive connection is not a slow head: it serves its next request after the header timeout', async (t) => {
  const up = http.createServer((_req, res) => res.end('ok'));
  up.listen(0, '127.0.0.1');
  await once(up, 'listening');
  t.teardown(() => closeServer(up));
  const s = svc({ protocol: 'http', endpoints: [ipEp((up.address() as net.AddressInfo).port)] });
  const p = await proxyFor(s, { httpHeaderTimeoutMs: 200 });
  t.teardown(() => p.close());
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const get = (): Promise<string> =>
    new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: p.port, path: '/', agent }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(`${res.statusCode} ${b}`));
      }).on('error', reject);
    });
  t.is(await get(), '200 ok');
  await new Promise((r) => setTimeout(r, 600));
  t.is(await get(), '200 ok');
  t.is(p.stats.get('meshext_downstream_cx_total', { service: s.kri }), 1, 'the same connection');
});

test('tcp: over the connection cap a new connection is reset at once; a slot that frees is usable again', async (t) => {
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  const p = await proxyFor(svc({ endpoints: [ipEp(echo.port)] }), { maxConnections: 2 });
  t.teardown(() => p.close());
  const held = [await dial(p.port, 'a', 1), await dial(p.port, 'b', 1)];
  t.deepEqual(held.map((h) => h.data), ['a', 'b']);
  const over = await dial(p.port, 'c');
  t.not(over.data, 'c');
  t.not(over.error, 'HANG');
  await until(() => p.stats.get('meshext_engine_cx_overflow_total', { reason: 'max_connections' }) === 1, 'overflow counted');
  held[0]!.socket.destroy();
  await until(() => p.proxy.engineCounters()?.downstreamLive === 1, 'slot freed');
  const again = await dial(p.port, 'd');
  t.is(again.data, 'd');
  held[1]!.socket.destroy();
  again.socket.destroy();
});

test('the automatic cap leaves the reserve below the descriptor limit, and none for an unlimited one', (t) => {
  t.is(connectionCapFor(1_048_576), Math.floor((1_048_576 - FD_RESERVE) / 4));
  t.is(connectionCapFor(1024), 192);
  t.is(connectionCapFor(100), 16, 'a floor, so a tiny limit still serves');
  t.is(connectionCapFor(-1), 0);
});

/** The limits fixture under `prlimit --nofile=N`; returns its ports and a way to read its counters. */
async function limitedProxy(t: import('ava').ExecutionContext, nofile: number, upstream: number, cap: string, protocol: string) {
  const fixture = join(process.cwd(), 'test/fixtures/engine/limits.mjs');
  const child = spawn('prlimit', [`--nofile=${nofile}:${nofile}`, process.execPath, fixture, String(upstream), cap, protocol], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const first = JSON.parse((await lines.next()).value as string) as { port: number; health: number };
  return {
    ...first,
    counters: async (): Promise<Partial<Record<string, number>>> => {
      child.stdin!.write('stats\n');
      return JSON.parse((await lines.next()).value as string) as Record<string, number>;
    },
  };
}

async function healthz(port: number): Promise<string> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path: '/healthz', timeout: 5000 }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(b));
      })
      .on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
      .on('timeout', () => resolve('timeout'));
  });
}

/**
 * Opens a connection that sends nothing yet. Resolves 'reset' when the proxy resets it within `watchMs`, else
 * 'open' (accepted by the kernel; whether the proxy took it shows when a request is sent).
 */
function idle(port: number, watchMs: number): Promise<{ state: 'open' | 'reset'; socket: net.Socket }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let done = false;
    const finish = (state: 'open' | 'reset'): void => {
      if (!done) (done = true), resolve({ state, socket: s });
    };
    s.on('connect', () => setTimeout(() => finish('open'), watchMs));
    s.on('error', () => finish('reset'));
    s.on('close', () => finish('reset'));
  });
}

/** Sends a request on an open connection: the status line, 'reset', or 'HANG' when nothing comes in 5 s. */
function ask(s: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    if (s.destroyed) return resolve('reset');
    let data = '';
    const hang = setTimeout(() => resolve('HANG'), 5000);
    const end = (v: string): void => {
      clearTimeout(hang);
      resolve(v);
    };
    s.on('data', (d: Buffer) => {
      data += d.toString();
      if (data.includes('\r\n')) end(data.slice(0, data.indexOf('\r\n')));
    });
    s.on('error', () => end('reset'));
    s.on('close', () => end(data ? data.split('\r\n')[0]! : 'reset'));
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  });
}

test.serial('at the descriptor limit new connections are reset at once, never left in the backlog; with the automatic cap the control plane keeps answering', async (t) => {
  const up = http.createServer((_req, res) => res.end('ok'));
  up.listen(0, '127.0.0.1');
  await once(up, 'listening');
  t.teardown(() => closeServer(up));
  const upPort = (up.address() as net.AddressInfo).port;
  const open: net.Socket[] = [];
  t.teardown(() => open.forEach((s) => s.destroy()));

  // No cap: idle HTTP connections (one descriptor each) run the process out of descriptors.
  const bare = await limitedProxy(t, 160, upPort, '0', 'http');
  const conns = [];
  for (let i = 0; i < 180; i++) {
    const c = await idle(bare.port, 30);
    conns.push(c);
    open.push(c.socket);
  }
  t.true(conns.some((c) => c.state === 'reset'), 'connections over the limit were reset');
  const bc = await bare.counters();
  t.true((bc.overflowFd ?? 0) > 0, 'refused at the fd limit and counted');
  // Every connection the client believes open was taken by the proxy: a request gets an answer (a 503 when no
  // descriptor is left for the upstream), never silence.
  const answers = await Promise.all(conns.filter((c) => c.state === 'open').map((c) => ask(c.socket)));
  t.false(answers.includes('HANG'), answers.join(','));
  open.splice(0).forEach((s) => s.destroy());

  // 'auto': the cap sits below the limit, so the extra connections are reset by the cap and /healthz answers.
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  const capped = await limitedProxy(t, 400, echo.port, 'auto', 'tcp');
  const cap = connectionCapFor(400);
  for (let i = 0; i < cap + 10; i++) {
    const r = await dial(capped.port, 'y', 1);
    open.push(r.socket);
    t.not(r.error, 'HANG');
  }
  t.is(await healthz(capped.health), 'ok');
  const c = await capped.counters();
  t.is(c.overflowCap, 10);
  t.is(c.overflowFd, 0);
});

test('http2: a header block that never ends (HEADERS without END_HEADERS) closes the connection at the header timeout', async (t) => {
  const up = http.createServer((_req, res) => res.end('ok'));
  up.listen(0, '127.0.0.1');
  await once(up, 'listening');
  t.teardown(() => closeServer(up));
  const s = svc({ protocol: 'http2', endpoints: [ipEp((up.address() as net.AddressInfo).port)] });
  const p = await proxyFor(s, { httpHeaderTimeoutMs: 300 });
  t.teardown(() => p.close());
  const c = net.connect({ host: '127.0.0.1', port: p.port });
  t.teardown(() => c.destroy());
  await once(c, 'connect');
  c.on('error', () => {});
  c.resume(); // read, so the server's GOAWAY and FIN are seen
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
  // HEADERS on stream 1 carrying ":method: GET" (HPACK index 2), END_STREAM but no END_HEADERS: a CONTINUATION
  // is owed and never comes.
  const headers = Buffer.from([0, 0, 1, 1, 0x01, 0, 0, 0, 1, 0x82]);
  c.write(Buffer.concat([preface, settings, headers]));
  const started = Date.now();
  await Promise.race([once(c, 'close'), new Promise((r) => setTimeout(r, 8000))]);
  t.true(c.destroyed || c.readyState === 'closed', 'closed');
  t.true(Date.now() - started < 8000, 'closed by the header timeout, not left open');
  await until(() => p.stats.get('meshext_downstream_rq_header_timeout_total', { service: s.kri }) === 1, 'counted');
});

test('http: while the engine drains, a connection accepted afterwards serves one request and closes', async (t) => {
  const up = http.createServer((_req, res) => res.end('ok'));
  up.listen(0, '127.0.0.1');
  await once(up, 'listening');
  t.teardown(() => closeServer(up));
  const p = await proxyFor(svc({ protocol: 'http', endpoints: [ipEp((up.address() as net.AddressInfo).port)] }));
  t.teardown(() => p.close());
  t.deepEqual(await p.proxy.drain(50), { remaining: 0 }); // nothing open; the listener still accepts
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: p.port, path: '/', agent: new http.Agent({ keepAlive: true }) }, resolve).on('error', reject);
  });
  res.resume();
  t.is(res.statusCode, 200);
  t.is(res.headers.connection, 'close', 'told to go, so the drain can end');
});
