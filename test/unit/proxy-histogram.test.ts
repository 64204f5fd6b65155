// Latency histograms: meshext_upstream_rq_time (HTTP/1.1 and HTTP/2 clients) and meshext_upstream_cx_connect_ms,
// measured by the engine against loopback upstreams whose delay the test sets, exposed as Prometheus histograms.
import test from 'ava';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { closeServer, ipEp, listen, proxyFor, svc } from '../helpers/proxy.js';
import { Registry } from '../../src/stats/registry.js';

const DELAY_MS = 300;

/** Whole response to `GET path` on a fresh HTTP/1.1 connection through the proxy. */
function h1Get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
  });
}

function h2Get(session: http2.ClientHttp2Session, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const st = session.request({ ':path': path });
    let status = 0;
    st.on('response', (h) => (status = Number(h[':status'])));
    st.resume();
    st.on('end', () => resolve(status));
    st.on('error', reject);
  });
}

/** The bucket counts of one histogram series in the Prometheus exposition, by `le`. */
function buckets(text: string, name: string, service: string): Map<string, number> {
  const out = new Map<string, number>();
  const re = new RegExp(`^${name}_bucket\\{service="${service.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}",le="([^"]+)"\\} (\\d+)$`, 'gm');
  for (const m of text.matchAll(re)) out.set(m[1] ?? '', Number(m[2]));
  return out;
}

test('registry: a histogram is exposed with cumulative buckets, +Inf, _sum and _count', (t) => {
  const reg = new Registry();
  reg.histogram('x_time', 'help', { service: 's' }).set([1, 10], [2, 3, 1], 42.5);
  t.is(
    reg.prometheus(),
    ['# HELP x_time help', '# TYPE x_time histogram', 'x_time_bucket{service="s",le="1"} 2', 'x_time_bucket{service="s",le="10"} 5', 'x_time_bucket{service="s",le="+Inf"} 6', 'x_time_sum{service="s"} 42.5', 'x_time_count{service="s"} 6', ''].join('\n'),
  );
  t.is(reg.get('x_time', { service: 's' }), 6);
  t.throws(() => reg.histogram('x_time', 'help', { service: 's' }).set([1, 10], [1, 2], 0), { message: /2 bounds but 2 bucket counts/ });
});

test('http/1.1: a 300 ms response lands in le=500 and not le=250, a fast one in le=250; connect time is counted', async (t) => {
  const upstream = http.createServer((req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('slow'), DELAY_MS);
    else res.end('fast');
  });
  const up = await listen(upstream);
  const s = svc({ protocol: 'http', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  t.is(await h1Get(p.port, '/fast'), 200);
  t.is(await h1Get(p.port, '/slow'), 200);
  const text = p.stats.prometheus();
  const rq = buckets(text, 'meshext_upstream_rq_time', s.kri);
  t.is(rq.get('250'), 1, text);
  t.is(rq.get('500'), 2);
  t.is(rq.get('+Inf'), 2);
  // Cumulative: never decreasing along the bounds.
  const values = [...rq.values()];
  t.deepEqual(values, [...values].sort((a, b) => a - b));
  const sum = Number(new RegExp(`^meshext_upstream_rq_time_sum\\{service="[^"]+"\\} (\\S+)$`, 'm').exec(text)?.[1]);
  t.true(sum >= DELAY_MS && sum < DELAY_MS + 200, `sum ${sum}`);
  t.true(text.includes(`meshext_upstream_rq_time_count{service="${s.kri}"} 2`));
  t.true(text.includes('# TYPE meshext_upstream_cx_connect_ms histogram'));
  const cx = buckets(text, 'meshext_upstream_cx_connect_ms', s.kri);
  t.true((cx.get('+Inf') ?? 0) >= 1, 'at least one upstream connection counted');
  t.is(cx.get('+Inf'), p.stats.get('meshext_upstream_cx_total', { service: s.kri }), 'every successful connect is observed once');
  t.is(cx.get('100'), cx.get('+Inf'), 'loopback connects take less than 100 ms');
  await p.close();
  await closeServer(up.srv);
});

test('http2: a 300 ms stream lands in le=500 and not le=250', async (t) => {
  const upstream = http2.createServer();
  upstream.on('stream', (st, h) => {
    const answer = (): void => {
      st.respond({ ':status': 200 });
      st.end('ok');
    };
    if (h[':path'] === '/slow') setTimeout(answer, DELAY_MS);
    else answer();
  });
  const up = await listen(upstream);
  const s = svc({ protocol: 'http2', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  t.is(await h2Get(session, '/fast'), 200);
  t.is(await h2Get(session, '/slow'), 200);
  const rq = buckets(p.stats.prometheus(), 'meshext_upstream_rq_time', s.kri);
  t.deepEqual([rq.get('250'), rq.get('500'), rq.get('+Inf')], [1, 2, 2]);
  session.close();
  await p.close();
  await closeServer(up.srv);
});

test('tcp: no request time, connect time counted', async (t) => {
  const echo = net.createServer((c) => c.pipe(c));
  const up = await listen(echo);
  const s = svc({ protocol: 'tcp', endpoints: [ipEp(up.port)] });
  const p = await proxyFor(s);
  await new Promise<void>((resolve) => {
    const c = net.connect(p.port, '127.0.0.1', () => c.end('x'));
    c.resume();
    c.on('close', () => resolve());
  });
  const text = p.stats.prometheus();
  t.is(buckets(text, 'meshext_upstream_rq_time', s.kri).get('+Inf'), 0);
  t.is(buckets(text, 'meshext_upstream_cx_connect_ms', s.kri).get('+Inf'), 1);
  await p.close();
  await closeServer(up.srv);
});
