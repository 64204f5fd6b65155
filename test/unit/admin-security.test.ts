// The admin API refuses what a browser page could send it: foreign Host names (DNS rebinding),
// other origins, and form or simple-request POSTs; loopback tools (curl) keep working.
import test from 'ava';
import http from 'node:http';
import { AdminServer, type AdminSource } from '../../src/admin/server.js';
import { Registry } from '../../src/stats/registry.js';
import { silentLogger } from '../../src/log.js';

/** The admin server over a real stats registry; records the state-changing calls it receives. */
async function admin(t: { teardown(fn: () => Promise<void>): void }, address = '127.0.0.1'): Promise<{ port: number; calls: string[]; stats: Registry; server: AdminServer }> {
  const calls: string[] = [];
  const stats = new Registry();
  stats.counter('meshext_config_reloads_total', 'reloads', { result: 'success' }).inc();
  stats.gauge('meshext_services', 'services').set(7);
  const source: AdminSource = {
    readiness: () => 'READY',
    stats,
    configDump: () => ({}),
    clusters: () => [],
    bpf: () => ({ enabled: false }),
    serverInfo: () => ({}),
    reload: async (reason) => {
      calls.push(`reload:${reason}`);
      return { ok: true, generation: 1, rejected: 0 };
    },
    setLogLevel: (level) => calls.push(`level:${level}`),
  };
  const server = new AdminServer(source, silentLogger());
  const addr = await server.listen(address, 0);
  t.teardown(() => server.close());
  return { port: addr.port, calls, stats, server };
}

function request(port: number, opts: { method?: string; path: string; headers?: Record<string, string>; body?: string; address?: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: opts.address ?? '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers ?? {} }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

test('loopback Host names are served, with or without a port', async (t) => {
  const a = await admin(t);
  for (const host of [`127.0.0.1:${a.port}`, '127.0.0.1', `localhost:${a.port}`, 'localhost', 'LOCALHOST.', `[::1]:${a.port}`, '127.9.8.7']) {
    const r = await request(a.port, { path: '/ready', headers: { host } });
    t.is(r.status, 200, host);
  }
});

test('a foreign Host is refused (DNS rebinding), naming the host', async (t) => {
  const a = await admin(t);
  for (const host of ['evil.example', `evil.example:${a.port}`, '127.0.0.1.evil.example', 'localhost.evil.example', '[::2]', '10.0.0.1', '0.0.0.0', 'x:y:z']) {
    const r = await request(a.port, { path: '/config_dump', headers: { host } });
    t.is(r.status, 403, host);
    t.regex(r.body, /is not a loopback name/, host);
  }
  const post = await request(a.port, { method: 'POST', path: '/reload', headers: { host: 'evil.example' } });
  t.is(post.status, 403);
  t.deepEqual(a.calls, []);
});

test('a request from another origin is refused; same-origin and no Origin are served', async (t) => {
  const a = await admin(t);
  const foreign: Array<Record<string, string>> = [{ origin: 'http://evil.example' }, { origin: 'null' }, { origin: 'http://localhost:3000' }, { 'sec-fetch-site': 'cross-site' }];
  for (const headers of foreign) {
    const r = await request(a.port, { method: 'POST', path: '/logging?level=debug', headers });
    t.is(r.status, 403, JSON.stringify(headers));
    t.regex(r.body, /cross-(origin|site) request .* refused/);
    const g = await request(a.port, { path: '/config_dump', headers });
    t.is(g.status, 403, JSON.stringify(headers));
  }
  t.deepEqual(a.calls, []);
  const same = await request(a.port, { method: 'POST', path: '/logging?level=debug', headers: { host: `127.0.0.1:${a.port}`, origin: `http://127.0.0.1:${a.port}` } });
  t.is(same.status, 200);
  const plain = await request(a.port, { method: 'POST', path: '/reload' });
  t.is(plain.status, 200);
  t.deepEqual(a.calls, ['level:debug', 'reload:POST /reload']);
});

test('form and simple-request POST bodies are refused on state-changing endpoints', async (t) => {
  const a = await admin(t);
  for (const type of ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'text/plain;charset=UTF-8', 'Text/Plain']) {
    const r = await request(a.port, { method: 'POST', path: '/logging?level=debug', headers: { 'content-type': type }, body: 'level=debug' });
    t.is(r.status, 415, type);
    t.regex(r.body, /curl -X POST/);
  }
  t.deepEqual(a.calls, []);
  const json = await request(a.port, { method: 'POST', path: '/logging?level=info', headers: { 'content-type': 'application/json' }, body: '{}' });
  t.is(json.status, 200);
  t.deepEqual(a.calls, ['level:info']);
});

test('/stats?filter: a catastrophic pattern answers at once', async (t) => {
  const a = await admin(t);
  // Long series names, so a backtracking engine would have a long prefix to try every split of.
  for (let i = 0; i < 200; i++) a.stats.counter(`meshext_${'a'.repeat(60)}_${i}_total`, 'x').inc();
  // A backtracking engine would not answer within the test's timeout (admin-filter.test.ts shows the cost is linear).
  const r = await request(a.port, { path: `/stats?filter=${encodeURIComponent('^(\\w|_|[a-z])+$')}` });
  t.is(r.status, 200);
  t.is(r.body, '\n');
  const ok = await request(a.port, { path: `/stats?filter=${encodeURIComponent('^meshext_(services|config_.*success)')}` });
  t.is(ok.body, 'meshext_config_reloads_total{result=success}: 1\nmeshext_services: 7\n');
  const bad = await request(a.port, { path: `/stats?filter=${encodeURIComponent('(a)\\1')}` });
  t.is(bad.status, 400);
  t.regex(bad.body, /backreferences are not supported/);
  const long = await request(a.port, { path: `/stats?filter=${'x'.repeat(300)}` });
  t.is(long.status, 400);
  t.regex(long.body, /longer than 256 characters/);
});

test('the admin unix socket takes any Host (no browser reaches it) but still refuses form POSTs', async (t) => {
  const a = await admin(t);
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshext-admin-sock-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 'admin.sock');
  await a.server.listenUnix(sock);
  const over = (opts: http.RequestOptions, body?: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = http.request({ socketPath: sock, ...opts }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(body);
    });
  t.is(await over({ path: '/ready', headers: { host: 'meshext' } }), 200);
  t.is(await over({ method: 'POST', path: '/reload', headers: { 'content-type': 'text/plain' } }, 'x'), 415);
  t.deepEqual(a.calls, []);
});
