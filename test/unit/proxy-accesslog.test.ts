// MeshAccessLog in the engine: lines for TCP connections and HTTP/1.1, HTTP/2 and gRPC requests, JSON and plain
// formats, written by the writer thread to files; a writer that cannot keep up costs dropped (counted) lines,
// never a stalled request.
import test from 'ava';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, openSync, closeSync, readSync, readFileSync, renameSync, existsSync, statSync, symlinkSync, writeFileSync, constants as fsc } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { closeServer, ipEp, listen, proxyFor as helperProxyFor, refusedPort, snap, svc, tcpEcho, until } from '../helpers/proxy.js';
import { nativeForTests } from '../../src/native/addon.js';
import type { MeshAccessLogBackend } from '../../src/resources/types.js';
import type { CompiledService } from '../../src/snapshot/types.js';

type Any = any;

/** Every field the JSON format documents, one per operator. */
const ALL_FIELDS: Array<{ key: string; value: string }> = [
  { key: 'start_time', value: '%START_TIME%' },
  { key: 'start_epoch', value: '%START_TIME(%s.%3f)%' },
  { key: 'start_day', value: '%START_TIME(%Y-%m-%d)%' },
  { key: 'duration', value: '%DURATION%' },
  { key: 'bytes_received', value: '%BYTES_RECEIVED%' },
  { key: 'bytes_sent', value: '%BYTES_SENT%' },
  { key: 'response_code', value: '%RESPONSE_CODE%' },
  { key: 'response_flags', value: '%RESPONSE_FLAGS%' },
  { key: 'client', value: '%DOWNSTREAM_REMOTE_ADDRESS%' },
  { key: 'client_ip', value: '%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%' },
  { key: 'upstream_host', value: '%UPSTREAM_HOST%' },
  { key: 'service', value: '%KUMA_DESTINATION_SERVICE%' },
  { key: 'cluster', value: '%UPSTREAM_CLUSTER%' },
  { key: 'mesh', value: '%KUMA_MESH%' },
  { key: 'protocol', value: '%PROTOCOL%' },
  { key: 'method', value: '%REQ(:METHOD)%' },
  { key: 'path', value: '%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%' },
  { key: 'authority', value: '%REQ(:AUTHORITY)%' },
  { key: 'user_agent', value: '%REQ(USER-AGENT)%' },
  { key: 'resp_type', value: '%RESP(CONTENT-TYPE)%' },
  { key: 'failure', value: '%UPSTREAM_TRANSPORT_FAILURE_REASON%' },
  { key: 'summary', value: '%REQ(:METHOD)% %RESPONSE_CODE% in %DURATION% ms' },
];

/** The proxies' --access-log-dir: every test's files are in a directory under it. */
const LOG_ROOT = mkdtempSync(join(tmpdir(), 'meshext-alog-'));

function tmp(): string {
  return mkdtempSync(join(LOG_ROOT, 'case-'));
}

const proxyFor: typeof helperProxyFor = (s, o = {}) => helperProxyFor(s, { accessLogDir: LOG_ROOT, ...o });

function fileBackend(path: string, format?: MeshAccessLogBackend['file'] extends infer F ? (F extends { format?: infer X } ? X : never) : never): MeshAccessLogBackend {
  return { type: 'File', file: { path, ...(format ? { format } : {}) } };
}

function withLog(s: Partial<CompiledService> & { endpoints: CompiledService['endpoints'] }, backends: MeshAccessLogBackend[]): CompiledService {
  return svc({ ...s, accessLog: { backends, policies: ['test-log'] } });
}

/** The lines of `path` once it holds at least `n` (the writer flushes every few ms). */
async function lines(path: string, n: number): Promise<string[]> {
  let got: string[] = [];
  await until(() => {
    got = existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l !== '') : [];
    return got.length >= n;
  }, `${n} access log lines in ${path}`);
  return got;
}

function h1Get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

test('http/1.1: a JSON line per request parses and carries the documented fields', async (t) => {
  const dir = tmp();
  const path = join(dir, 'access.log');
  const up = await listen(http.createServer((req, res) => {
    req.resume();
    res.setHeader('content-type', 'text/x-test');
    res.end('hello');
  }));
  const s = withLog({ protocol: 'http', endpoints: [ipEp(up.port)], name: 'billing', mesh: 'prod' }, [fileBackend(path, { type: 'Json', json: ALL_FIELDS })]);
  const p = await proxyFor(s);
  const before = Date.now();
  t.is((await h1Get(p.port, '/pay?x=1', { 'user-agent': 'alog-test/1 "q" \\b', host: 'billing.example' })).status, 200);
  const [line] = await lines(path, 1);
  const j = JSON.parse(line ?? '') as Any;
  t.is(j.response_code, 200);
  t.is(typeof j.duration, 'number');
  t.true(j.duration >= 0 && j.duration < 2000);
  t.is(j.bytes_received, 0);
  t.is(j.bytes_sent, 5);
  t.is(j.response_flags, null, 'no flags: absent');
  t.regex(j.client, /^127\.0\.0\.1:\d+$/);
  t.is(j.client_ip, '127.0.0.1');
  t.is(j.upstream_host, `127.0.0.1:${up.port}`);
  t.is(j.service, 'billing');
  t.is(j.cluster, 'billing');
  t.is(j.mesh, 'prod');
  t.is(j.protocol, 'HTTP/1.1');
  t.is(j.method, 'GET');
  t.is(j.path, '/pay?x=1');
  t.is(j.authority, 'billing.example');
  t.is(j.user_agent, 'alog-test/1 "q" \\b', 'quotes and backslashes escaped');
  t.is(j.resp_type, 'text/x-test');
  t.is(j.failure, null);
  t.is(j.summary, `GET 200 in ${j.duration} ms`);
  const start = Date.parse(j.start_time);
  t.regex(j.start_time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.true(start >= before - 1000 && start <= Date.now(), j.start_time);
  t.is(j.start_epoch, (start / 1000).toFixed(3), 'the custom format names the same instant');
  t.is(j.start_day, j.start_time.slice(0, 10));
  t.is(p.stats.get('meshext_access_log_lines_total', { service: s.kri }), 1);
  t.is(p.stats.get('meshext_access_log_dropped_total', { service: s.kri }), 0);
  await p.close();
  await closeServer(up.srv);
});

test('http/1.1: an upstream that cannot be reached logs 503 with UF and the reason; omitEmptyValues leaves absent fields out', async (t) => {
  const dir = tmp();
  const path = join(dir, 'access.log');
  const s = withLog({ protocol: 'http', endpoints: [ipEp(await refusedPort())] }, [
    fileBackend(path, { type: 'Json', omitEmptyValues: true, json: ALL_FIELDS.filter((f) => ['response_code', 'response_flags', 'failure', 'upstream_host', 'user_agent'].includes(f.key)) }),
  ]);
  const p = await proxyFor(s);
  t.is((await h1Get(p.port, '/')).status, 503);
  const j = JSON.parse((await lines(path, 1))[0] ?? '') as Any;
  t.is(j.response_code, 503);
  t.is(j.response_flags, 'UF');
  t.regex(j.failure, /ECONNREFUSED/);
  t.false('upstream_host' in j);
  t.false('user_agent' in j);
  await p.close();
});

test('plain format: Kuma\'s default HTTP line, and a custom one with operators and %% ', async (t) => {
  const dir = tmp();
  const def = join(dir, 'default.log');
  const custom = join(dir, 'custom.log');
  const up = await listen(http.createServer((req, res) => res.end('abc')));
  const s = withLog({ protocol: 'http', endpoints: [ipEp(up.port)], name: 'web', mesh: 'default' }, [
    fileBackend(def),
    fileBackend(custom, { type: 'Plain', plain: '%REQ(:METHOD)% %REQ(:PATH):4% %RESPONSE_CODE% 100%% %REQ(X-MISSING)% %KUMA_MESH%' }),
  ]);
  const p = await proxyFor(s);
  await h1Get(p.port, '/abcdef', { 'user-agent': 'ua/1', host: 'web.local' });
  t.deepEqual(await lines(custom, 1), ['GET /abc 200 100% - default']);
  const [line] = await lines(def, 1);
  t.regex(
    line ?? '',
    new RegExp(`^\\[\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\] default "GET /abcdef HTTP/1.1" 200 - 0 3 \\d+ - "-" "ua/1" "-" "-" "web.local" "-" "web" "127.0.0.1" "127.0.0.1:${up.port}"$`),
  );
  await p.close();
  await closeServer(up.srv);
});

test('tcp: one line per connection with bytes both ways, Kuma\'s default TCP line', async (t) => {
  const dir = tmp();
  const json = join(dir, 'tcp.json');
  const plain = join(dir, 'tcp.log');
  const echo = await tcpEcho();
  const s = withLog({ protocol: 'tcp', endpoints: [ipEp(echo.port)], name: 'db', mesh: 'm1' }, [fileBackend(json, { type: 'Json', json: ALL_FIELDS }), fileBackend(plain)]);
  const p = await proxyFor(s);
  await new Promise<void>((resolve) => {
    const c = net.connect({ port: p.port, host: '127.0.0.1', allowHalfOpen: true }, () => c.end('ping!'));
    c.resume();
    c.on('close', () => resolve());
  });
  const j = JSON.parse((await lines(json, 1))[0] ?? '') as Any;
  t.is(j.bytes_received, 5);
  t.is(j.bytes_sent, 5);
  t.is(j.response_code, 0);
  t.is(j.protocol, null);
  t.is(j.method, null);
  t.is(j.upstream_host, `127.0.0.1:${echo.port}`);
  t.is(j.service, 'db');
  t.regex((await lines(plain, 1))[0] ?? '', new RegExp(`^\\[[^\\]]+\\] - m1 127\\.0\\.0\\.1\\(-\\)->127\\.0\\.0\\.1:${echo.port}\\(db\\) took \\d+ms, sent 5 bytes, received: 5 bytes$`));
  await p.close();
  await closeServer(echo.srv);
});

test('http2: one JSON line per stream, with its own method, path and status', async (t) => {
  const dir = tmp();
  const path = join(dir, 'h2.log');
  const upstream = http2.createServer();
  upstream.on('stream', (st, h) => {
    st.respond({ ':status': h[':path'] === '/missing' ? 404 : 200, 'content-type': 'text/x-h2' });
    st.end('h2body');
  });
  const up = await listen(upstream);
  const s = withLog({ protocol: 'http2', endpoints: [ipEp(up.port)] }, [fileBackend(path, { type: 'Json', json: ALL_FIELDS })]);
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  const get = (pth: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const st = session.request({ ':path': pth, 'user-agent': 'h2-client' });
      let status = 0;
      st.on('response', (h) => (status = Number(h[':status'])));
      st.resume();
      st.on('end', () => resolve(status));
      st.on('error', reject);
    });
  t.deepEqual(await Promise.all([get('/a'), get('/missing')]), [200, 404]);
  const js = (await lines(path, 2)).map((l) => JSON.parse(l) as Any).sort((a, b) => (a.path < b.path ? -1 : 1));
  t.deepEqual(
    js.map((j) => [j.path, j.response_code, j.method, j.protocol, j.user_agent, j.resp_type, j.bytes_sent, j.upstream_host]),
    [
      ['/a', 200, 'GET', 'HTTP/2', 'h2-client', 'text/x-h2', 6, `127.0.0.1:${up.port}`],
      ['/missing', 404, 'GET', 'HTTP/2', 'h2-client', 'text/x-h2', 6, `127.0.0.1:${up.port}`],
    ],
  );
  session.close();
  await p.close();
  await closeServer(up.srv);
});

test('http2: a stream admitted before a reload is logged by its own plan; the next stream by the new one', async (t) => {
  const dir = tmp();
  const [pathA, pathB] = [join(dir, 'a.log'), join(dir, 'b.log')];
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const upstream = http2.createServer();
  let seen = 0;
  upstream.on('stream', (st, h) => {
    seen++;
    const answer = (): void => {
      st.respond({ ':status': 200 });
      st.end('ok');
    };
    if (h[':path'] === '/held') void held.then(answer);
    else answer();
  });
  const up = await listen(upstream);
  const fmt = { type: 'Plain' as const, plain: 'A %REQ(:PATH)% %RESPONSE_CODE%' };
  const a = withLog({ protocol: 'http2', endpoints: [ipEp(up.port)] }, [fileBackend(pathA, fmt)]);
  const p = await proxyFor(a);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  const get = (pth: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const st = session.request({ ':path': pth });
      let status = 0;
      st.on('response', (h) => (status = Number(h[':status'])));
      st.resume();
      st.on('end', () => resolve(status));
      st.on('error', reject);
    });
  const first = get('/held');
  await until(() => seen === 1, 'the held stream upstream');
  // Plan B: the same service, another file and format.
  const b: CompiledService = { ...a, accessLog: { backends: [fileBackend(pathB, { type: 'Plain', plain: 'B %REQ(:PATH)% %RESPONSE_CODE%' })], policies: ['test-log'] } };
  await p.proxy.setSnapshot(snap([b], 2));
  release();
  t.is(await first, 200);
  t.is(await get('/after'), 200);
  t.deepEqual(await lines(pathA, 1), ['A /held 200'], 'the stream admitted under A is logged by A');
  t.deepEqual(await lines(pathB, 1), ['B /after 200']);
  session.close();
  await p.close();
  await closeServer(up.srv);
});

test('http2: streams still open when the client connection ends are logged with DC', async (t) => {
  const dir = tmp();
  const path = join(dir, 'dc.log');
  const upstream = http2.createServer();
  let seen = 0;
  upstream.on('stream', (st) => {
    seen++;
    st.on('error', () => undefined); // never answered: the client leaves first
  });
  const up = await listen(upstream);
  const s = withLog({ protocol: 'http2', endpoints: [ipEp(up.port)] }, [fileBackend(path, { type: 'Plain', plain: '%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%' })]);
  const p = await proxyFor(s);
  // Our own reference to the socket: the connection ends under the session (no GOAWAY, no RST_STREAM).
  const sock = net.connect(p.port, '127.0.0.1');
  const session = http2.connect(`http://127.0.0.1:${p.port}`, { createConnection: () => sock });
  session.on('error', () => undefined);
  for (const pth of ['/one', '/two']) session.request({ ':path': pth }).on('error', () => undefined);
  await until(() => seen === 2, 'both streams upstream');
  sock.resetAndDestroy();
  t.deepEqual((await lines(path, 2)).sort(), ['/one 0 DC', '/two 0 DC']);
  await p.close();
  await closeServer(up.srv);
});

test('grpc: a call is logged with its :path and HTTP status 200', async (t) => {
  const dir = tmp();
  const path = join(dir, 'grpc.log');
  const def = protoLoader.loadSync(join(process.cwd(), 'test/fixtures/echo.proto'), { keepCase: true });
  const Echo = (grpc.loadPackageDefinition(def) as Any).meshext.test.Echo;
  const server = new grpc.Server();
  server.addService(Echo.service, { Unary: (call: Any, cb: Any) => cb(null, { text: call.request.text }), Bidi: (call: Any) => call.end() });
  const upPort = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve(port))));
  const s = withLog({ protocol: 'grpc', endpoints: [ipEp(upPort)] }, [fileBackend(path, { type: 'Json', json: ALL_FIELDS })]);
  const p = await proxyFor(s);
  const client = new Echo(`127.0.0.1:${p.port}`, grpc.credentials.createInsecure());
  const reply = await new Promise<Any>((resolve, reject) => client.Unary({ text: 'hi' }, (e: Any, r: Any) => (e ? reject(e) : resolve(r))));
  t.is(reply.text, 'hi');
  const j = JSON.parse((await lines(path, 1))[0] ?? '') as Any;
  t.is(j.path, '/meshext.test.Echo/Unary');
  t.is(j.method, 'POST');
  t.is(j.response_code, 200);
  t.is(j.protocol, 'HTTP/2');
  t.true(j.bytes_received > 0 && j.bytes_sent > 0);
  client.close();
  server.forceShutdown();
  await p.close();
});

test('a writer that cannot keep up drops and counts lines; requests never wait for it', async (t) => {
  const addon = nativeForTests();
  const old = addon.accessLogCapacity(2048);
  t.teardown(() => addon.accessLogCapacity(old));
  const dir = tmp();
  const fifo = join(dir, 'stuck.fifo');
  execFileSync('mkfifo', [fifo]);
  // A reader that never reads: the pipe fills (64 KiB), then the sink's 2 KiB queue.
  const reader = openSync(fifo, fsc.O_RDONLY | fsc.O_NONBLOCK);
  t.teardown(() => closeSync(reader));
  const up = await listen(http.createServer((req, res) => res.end('x')));
  const s = withLog({ protocol: 'http', endpoints: [ipEp(up.port)] }, [fileBackend(fifo, { type: 'Plain', plain: `%START_TIME% %REQ(:PATH)% ${'p'.repeat(400)}` })]);
  const p = await proxyFor(s, { addon });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const started = Date.now();
  const N = 400;
  for (let i = 0; i < N; i += 20) {
    const batch = Array.from({ length: 20 }, (_, k) =>
      new Promise<number>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: p.port, path: `/r${i + k}`, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        }).on('error', reject);
      }),
    );
    t.true((await Promise.all(batch)).every((st) => st === 200));
  }
  const took = Date.now() - started;
  const dropped = p.stats.get('meshext_access_log_dropped_total', { service: s.kri }) ?? 0;
  const queued = p.stats.get('meshext_access_log_lines_total', { service: s.kri }) ?? 0;
  t.is(queued + dropped, N, 'every request produced a line, queued or dropped');
  // 400 lines of ~450 bytes is 180 KB: more than the pipe and the queue hold together.
  t.true(dropped > 0, `dropped ${dropped}`);
  t.true(took < 10_000, `${N} requests took ${took} ms`);
  agent.destroy();
  await p.close();
  await closeServer(up.srv);
});

test('a file that cannot be opened is reported naming the path, and the service keeps serving', async (t) => {
  const dir = tmp();
  const bad = join(dir, 'no-such-dir', 'access.log');
  const good = join(dir, 'ok.log');
  const up = await listen(http.createServer((req, res) => res.end('ok')));
  const s = withLog({ protocol: 'http', endpoints: [ipEp(up.port)] }, [fileBackend(bad), fileBackend(good)]);
  const p = await proxyFor(s);
  const errs = p.proxy.dataPlane.install({ source: 'local', accessLogDir: LOG_ROOT, plans: [...p.proxy.currentPlans()] });
  t.deepEqual(errs, [{ service: s.id, code: 'MESHEXT_E_ACCESS_LOG', error: `access log backend ${bad}: cannot open ${bad}: ENOENT (No such file or directory)` }]);
  t.is((await h1Get(p.port, '/')).status, 200);
  t.is((await lines(good, 1)).length, 1);
  await p.close();
  await closeServer(up.srv);
});

test('logrotate: a moved file is written until the reopen, then the path is written again', async (t) => {
  const dir = tmp();
  const path = join(dir, 'a.log');
  const up = await listen(http.createServer((req, res) => res.end('ok')));
  const s = withLog({ protocol: 'http', endpoints: [ipEp(up.port)] }, [fileBackend(path, { type: 'Plain', plain: '%REQ(:PATH)%' })]);
  const p = await proxyFor(s);
  await h1Get(p.port, '/one');
  await lines(path, 1);
  renameSync(path, `${path}.1`);
  await h1Get(p.port, '/two');
  t.deepEqual(await lines(`${path}.1`, 2), ['/one', '/two'], 'the open file keeps the lines until the reopen');
  p.proxy.reopenLogs();
  await h1Get(p.port, '/three');
  t.deepEqual(await lines(path, 1), ['/three']);
  await p.close();
  await closeServer(up.srv);
});

test('every operator meshext documents is one the engine fills', async (t) => {
  const { ENGINE_OPERATORS } = await import('../../src/resources/accesslog-format.js');
  const up = await listen(http.createServer((req, res) => res.end('ok')));
  const dir = tmp();
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const plan = p.proxy.currentPlans()[0];
  if (!plan) throw new Error('no plan');
  const tokens = ENGINE_OPERATORS.map((op) => (op === 'REQ' || op === 'RESP' ? { op, name: ':path' } : { op }));
  t.deepEqual(p.proxy.dataPlane.install({ source: 'local', accessLogDir: LOG_ROOT, plans: [{ ...plan, accessLog: { backends: [{ path: join(dir, 'all.log'), json: false, omitEmptyValues: false, plain: tokens }] } }] }), []);
  t.throws(() => p.proxy.dataPlane.install({ source: 'local', accessLogDir: LOG_ROOT, plans: [{ ...plan, accessLog: { backends: [{ path: join(dir, 'x.log'), json: false, omitEmptyValues: false, plain: [{ op: 'NOPE' }] }] } }] }), {
    message: /install\.plans\[0\]\.accessLog\.backends\[0\]\.plain\[0\]\.op NOPE is not an operator the engine fills/,
  });
  await p.close();
  await closeServer(up.srv);
});

test('/dev/stdout is the process\'s own stdout (a pipe here): whole lines, none lost at stop', async (t) => {
  const N = 300; // 300 lines of ~330 bytes: several PIPE_BUF-sized writes, interleaving would break lines
  const child = spawn(process.execPath, [join(process.cwd(), 'dist/test/fixtures/accesslog-stdout-main.js'), String(N)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  t.is(code, 0, err);
  const got = out.split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { path: string }).path);
  t.is(got.length, N);
  t.deepEqual([...got].sort(), Array.from({ length: N }, (_, i) => `/r${i}`).sort());
});

test('/dev/stdout: a line longer than PIPE_BUF is cut to PIPE_BUF bytes with a marker, so one write carries it', async (t) => {
  const N = 20;
  const child = spawn(process.execPath, [join(process.cwd(), 'dist/test/fixtures/accesslog-stdout-main.js'), String(N), '6000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  t.is(code, 0, err);
  const got = Buffer.concat(out).toString('latin1').split('\n').filter((l) => l !== '');
  t.is(got.length, N);
  for (const l of got) {
    t.is(l.length + 1, 4096, 'PIPE_BUF bytes with the newline');
    t.true(l.startsWith('{"path":"/r') && l.endsWith('xxx...[truncated]'), l.slice(-40));
  }
});

/** Sends one raw HTTP/1.1 request (`head` bytes as given) and resolves with the status. */
function rawGet(port: number, head: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1', () => c.write(head));
    let got = '';
    c.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d+)/.exec(got);
      if (m && got.includes('\r\n\r\n')) {
        c.destroy();
        resolve(Number(m[1]));
      }
    });
    c.on('error', reject);
  });
}

test('JSON lines are valid UTF-8 whatever bytes a header held; %REQ(X):N cuts on a character boundary', async (t) => {
  const dir = tmp();
  const [jsonPath, plainPath] = [join(dir, 'u.json'), join(dir, 'u.log')];
  const up = await listen(http.createServer((req, res) => res.end('ok')));
  const s = withLog({ protocol: 'http', endpoints: [ipEp(up.port)] }, [
    fileBackend(jsonPath, { type: 'Json', json: [{ key: 'ua', value: '%REQ(USER-AGENT)%' }, { key: 'cut', value: '%REQ(X-NAME):5%' }] }),
    fileBackend(plainPath, { type: 'Plain', plain: '%REQ(X-NAME):5%|%REQ(X-NAME):3%' }),
  ]);
  const p = await proxyFor(s);
  // obs-text (0x80-0xFF) in User-Agent: Latin-1 "café" and a stray continuation byte; X-Name: "ééé" in UTF-8.
  const head = Buffer.concat([
    Buffer.from('GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nUser-Agent: caf'),
    Buffer.from([0xe9, 0x20, 0x80, 0x21]),
    Buffer.from('\r\nX-Name: '),
    Buffer.from('ééé', 'utf8'),
    Buffer.from('\r\n\r\n'),
  ]);
  t.is(await rawGet(p.port, head), 200);
  await lines(jsonPath, 1);
  const raw = readFileSync(jsonPath);
  const text = new TextDecoder('utf-8', { fatal: true }).decode(raw); // throws on invalid UTF-8
  t.deepEqual(JSON.parse(text.trim()), { ua: 'caf\ufffd \ufffd!', cut: 'éé' });
  await lines(plainPath, 1);
  t.is(readFileSync(plainPath, 'utf8'), 'éé|é\n', 'a cut never splits a character (5 bytes: two é, 3 bytes: one)');
  await p.close();
  await closeServer(up.srv);
});

test('flags: a denied request is RBAC (403), a denied TCP connection is logged too, a request timeout is UT (504)', async (t) => {
  const dir = tmp();
  const path = join(dir, 'flags.log');
  const fmt = { type: 'Plain' as const, plain: '%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%' };
  const h = withLog({ protocol: 'http', endpoints: [ipEp(await refusedPort())], forbidden: true }, [fileBackend(path, fmt)]);
  const ph = await proxyFor(h);
  t.is((await h1Get(ph.port, '/denied')).status, 403);
  t.deepEqual(await lines(path, 1), ['403 RBAC /denied']);
  await ph.close();

  const tcpPath = join(dir, 'tcp.log');
  const tc = withLog({ protocol: 'tcp', endpoints: [ipEp(await refusedPort())], forbidden: true }, [fileBackend(tcpPath, fmt)]);
  const pt = await proxyFor(tc);
  await new Promise<void>((resolve) => {
    const c = net.connect(pt.port, '127.0.0.1');
    c.on('error', () => undefined);
    c.on('close', () => resolve());
  });
  t.deepEqual(await lines(tcpPath, 1), ['0 RBAC -']);
  await pt.close();

  const slowPath = join(dir, 'slow.log');
  const up = await listen(http.createServer((req, res) => setTimeout(() => res.end('late'), 1500)));
  const sl = withLog({ protocol: 'http', endpoints: [ipEp(up.port)], timeouts: { requestMs: 200, policies: ['t'] } }, [fileBackend(slowPath, fmt)]);
  const ps = await proxyFor(sl);
  t.is((await h1Get(ps.port, '/slow')).status, 504);
  t.deepEqual(await lines(slowPath, 1), ['504 UT /slow']);
  await ps.close();
  await closeServer(up.srv);
});

test('flags: a request still failing when MeshRetry\'s retries are spent is URX (HTTP/1.1 and HTTP/2)', async (t) => {
  const dir = tmp();
  const fmt = { type: 'Plain' as const, plain: '%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%' };
  const retry = { http: { numRetries: 1, retryOn: ['5xx' as const] }, policies: ['r'] };
  let h1Seen = 0;
  const up1 = await listen(http.createServer((req, res) => {
    h1Seen++;
    res.writeHead(503);
    res.end('busy');
  }));
  const p1Path = join(dir, 'h1.log');
  const p1 = await proxyFor(withLog({ protocol: 'http', endpoints: [ipEp(up1.port)], retry }, [fileBackend(p1Path, fmt)]));
  t.is((await h1Get(p1.port, '/spent')).status, 503);
  t.is(h1Seen, 2, 'the first attempt and one retry');
  t.deepEqual(await lines(p1Path, 1), ['503 URX /spent']);
  await p1.close();
  await closeServer(up1.srv);

  const upstream = http2.createServer();
  upstream.on('stream', (st) => {
    st.respond({ ':status': 503 });
    st.end('busy');
  });
  const up2 = await listen(upstream);
  const p2Path = join(dir, 'h2.log');
  const p2 = await proxyFor(withLog({ protocol: 'http2', endpoints: [ipEp(up2.port)], retry }, [fileBackend(p2Path, fmt)]));
  const session = http2.connect(`http://127.0.0.1:${p2.port}`);
  const status = await new Promise<number>((resolve, reject) => {
    const st = session.request({ ':path': '/spent2' });
    let code = 0;
    st.on('response', (h) => (code = Number(h[':status'])));
    st.resume();
    st.on('end', () => resolve(code));
    st.on('error', reject);
  });
  t.is(status, 503);
  t.deepEqual(await lines(p2Path, 1), ['503 URX /spent2']);
  session.close();
  await p2.close();
  await closeServer(up2.srv);
});

test('lines a file refuses (a FIFO whose reader went away: EPIPE) are counted per path; the requests are served', async (t) => {
  const fifo = join(tmp(), 'gone.fifo');
  execFileSync('mkfifo', [fifo]);
  // A reader at install (a FIFO without one cannot be opened), gone before the first line.
  const reader = openSync(fifo, fsc.O_RDONLY | fsc.O_NONBLOCK);
  const up = await listen(http.createServer((req, res) => res.end('ok')));
  const s = withLog({ protocol: 'http', endpoints: [ipEp(up.port)] }, [fileBackend(fifo, { type: 'Plain', plain: '%REQ(:PATH)%' })]);
  const p = await proxyFor(s);
  closeSync(reader);
  for (const x of ['/a', '/b', '/c']) t.is((await h1Get(p.port, x)).status, 200);
  await until(() => p.stats.get('meshext_access_log_write_failed_total', { path: fifo }) === 3, 'three lines lost to EPIPE');
  t.is(p.stats.get('meshext_access_log_lines_total', { service: s.kri }), 3);
  await p.close();
  await closeServer(up.srv);
});

test('a file no plan names any more is still written by the writer: a full FIFO gets every line once read', async (t) => {
  const fifo = join(tmp(), 'slow.fifo');
  execFileSync('mkfifo', [fifo]);
  const reader = openSync(fifo, fsc.O_RDONLY | fsc.O_NONBLOCK);
  t.teardown(() => closeSync(reader));
  const up = await listen(http.createServer((req, res) => res.end('ok')));
  const N = 150; // lines of ~1 KB: more than the pipe holds (64 KiB), so the rest waits in the sink
  const s = withLog({ protocol: 'http', endpoints: [ipEp(up.port)] }, [fileBackend(fifo, { type: 'Plain', plain: `%REQ(:PATH)% ${'x'.repeat(1000)}` })]);
  const p = await proxyFor(s);
  for (let i = 0; i < N; i++) t.is((await h1Get(p.port, `/r${i}`)).status, 200);
  await until(() => p.stats.get('meshext_access_log_lines_total', { service: s.kri }) === N, 'every line queued');
  // The plan goes (and with it the last reference to the sink); nobody has read the FIFO yet.
  await p.proxy.setSnapshot(snap([{ ...s, accessLog: undefined }], 2));
  let got = '';
  const buf = Buffer.alloc(65536);
  await until(() => {
    for (;;) {
      let n = 0;
      try {
        n = readSync(reader, buf, 0, buf.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EAGAIN') break;
        throw e;
      }
      if (n === 0) break;
      got += buf.toString('latin1', 0, n);
    }
    return got.split('\n').length - 1 >= N;
  }, `${N} lines from the FIFO`);
  t.deepEqual(got.split('\n').filter((l) => l !== '').map((l) => l.split(' ')[0]), Array.from({ length: N }, (_, i) => `/r${i}`));
  await p.close();
  await closeServer(up.srv);
});

test('a path outside --access-log-dir is left out at compile, naming the path and the directory; the service serves', async (t) => {
  const up = await listen(http.createServer((req, res) => res.end('ok')));
  const dir = tmp();
  const logDir = join(dir, 'logs');
  mkdirSync(logDir);
  const inside = join(logDir, 'ok.log');
  const outside = join(dir, 'core_pattern');
  writeFileSync(outside, 'core\n');
  const s = withLog({ protocol: 'http', endpoints: [ipEp(up.port)] }, [fileBackend(outside), fileBackend(inside, { type: 'Plain', plain: '%REQ(:PATH)%' })]);
  const p = await proxyFor(s, { accessLogDir: logDir });
  const plan = p.proxy.currentPlans()[0];
  t.deepEqual(plan?.accessLog?.backends.map((b) => b.path), [inside]);
  t.deepEqual(plan?.accessLogErrors, [
    `access log backend ${outside} of MeshAccessLog test-log: file.path "${outside}" is outside the access log directory ${logDir} (--access-log-dir): only files under it, /dev/stdout and /dev/stderr are written`,
  ]);
  t.is((await h1Get(p.port, '/x')).status, 200);
  t.deepEqual(await lines(inside, 1), ['/x']);
  t.is(readFileSync(outside, 'utf8'), 'core\n', 'the file outside is untouched');
  t.is(statSync(inside).mode & 0o077 & ~0o040, 0, 'created without write for the group or anything for others');
  await p.close();
  await closeServer(up.srv);
});

test('the engine opens only beneath its directory, never through a symlink, only regular files and FIFOs', async (t) => {
  const up = await listen(http.createServer((req, res) => res.end('ok')));
  const dir = tmp();
  const logDir = join(dir, 'logs');
  mkdirSync(logDir);
  const target = join(dir, 'target');
  mkdirSync(target);
  writeFileSync(join(target, 'x.log'), '');
  symlinkSync(target, join(logDir, 'linkdir'));
  symlinkSync(join(target, 'x.log'), join(logDir, 'link.log'));
  mkdirSync(join(logDir, 'adir'));
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s, { accessLogDir: logDir });
  const plan = p.proxy.currentPlans()[0];
  if (!plan) throw new Error('no plan');
  const install = (path: string): Array<{ service: string; code: string; error: string }> =>
    p.proxy.dataPlane.install({ source: 'local', accessLogDir: logDir, plans: [{ ...plan, accessLog: { backends: [{ path, json: false, omitEmptyValues: false, plain: [{ text: 'x' }] }] } }] });
  const err = (path: string): string | undefined => install(path)[0]?.error;
  t.is(err(join(target, 'x.log')), `access log backend ${join(target, 'x.log')}: ${join(target, 'x.log')} is outside the access log directory ${logDir} (--access-log-dir): only files under it, /dev/stdout and /dev/stderr are written`);
  t.is(err(`${logDir}/../target/x.log`), `access log backend ${logDir}/../target/x.log: ${logDir}/../target/x.log is outside the access log directory ${logDir} (--access-log-dir): only files under it, /dev/stdout and /dev/stderr are written`);
  t.regex(err(join(logDir, 'linkdir', 'x.log')) ?? '', /: cannot open .*linkdir\/x\.log: ELOOP .*opened beneath .* without following symlinks$/);
  t.regex(err(join(logDir, 'link.log')) ?? '', /: cannot open .*link\.log: ELOOP /);
  t.regex(err(join(logDir, 'adir')) ?? '', /: cannot open .*adir: EISDIR /);
  t.is(readFileSync(join(target, 'x.log'), 'utf8'), '');
  t.deepEqual(install(join(logDir, 'good.log')), []);
  t.deepEqual(install('/dev/stderr'), [], 'the agent\'s own descriptors stay allowed');
  await p.close();
  await closeServer(up.srv);
});

test('flags: a request the circuit breaker refuses is UO, not UF (HTTP/1.1 maxRequests, TCP maxConnections)', async (t) => {
  const dir = tmp();
  const fmt = { type: 'Plain' as const, plain: '%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%' };
  let release: (() => void) | undefined;
  const up = await listen(http.createServer((req, res) => {
    if (req.url === '/slow') release = () => res.end('late');
    else res.end('ok');
  }));
  const path1 = join(dir, 'h1.log');
  const p = await proxyFor(withLog({ protocol: 'http', endpoints: [ipEp(up.port)], circuitBreaker: { conf: { connectionLimits: { maxRequests: 1 } }, policies: ['cb'] } }, [fileBackend(path1, fmt)]));
  const slow = h1Get(p.port, '/slow');
  await until(() => release !== undefined, 'the slow request upstream');
  t.is((await h1Get(p.port, '/over')).status, 503);
  release?.();
  t.is((await slow).status, 200);
  t.deepEqual((await lines(path1, 2)).sort(), ['200 - /slow', '503 UO /over']);
  await p.close();
  await closeServer(up.srv);

  let accepted = 0;
  const held = await listen(net.createServer((c) => {
    accepted++;
    c.resume();
  }));
  const path2 = join(dir, 'tcp.log');
  const q = await proxyFor(withLog({ protocol: 'tcp', endpoints: [ipEp(held.port)], circuitBreaker: { conf: { connectionLimits: { maxConnections: 1 } }, policies: ['cb'] } }, [fileBackend(path2, { type: 'Plain', plain: '%RESPONSE_FLAGS%' })]));
  const first = net.connect(q.port, '127.0.0.1');
  first.on('error', () => undefined);
  await until(() => accepted === 1, 'the first connection upstream');
  const second = net.connect(q.port, '127.0.0.1');
  second.on('error', () => undefined);
  second.resume();
  await new Promise((r) => second.on('close', r));
  t.deepEqual(await lines(path2, 1), ['UO']);
  first.destroy();
  await q.close();
  await closeServer(held.srv);
});
