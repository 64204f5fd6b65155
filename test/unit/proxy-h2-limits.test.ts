// HTTP/2 header lists are bounded: HPACK lets a small frame of indexed fields decode to megabytes, and
// nghttp2 does not enforce the SETTINGS_MAX_HEADER_LIST_SIZE we advertise, so the relay counts itself.
import test from 'ava';
import http2 from 'node:http2';
import { ipEp, newProxy, snap, svc } from '../helpers/proxy.js';

const BIG = 'v'.repeat(1000);

async function setup(t: import('ava').ExecutionContext, respondWith: http2.OutgoingHttpHeaders = {}): Promise<{ port: number; seen: () => number }> {
  let seen = 0;
  // The upstream itself would take huge header lists: only the proxy's bound can refuse them.
  const srv = http2.createServer({ maxHeaderListPairs: 100_000, maxSendHeaderBlockLength: 1 << 24, settings: { maxHeaderListSize: 1 << 24 } });
  srv.on('stream', (st) => {
    seen++;
    st.respond({ ':status': 200, ...respondWith });
    st.end('ok');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const s = svc({ protocol: 'http2', endpoints: [ipEp((srv.address() as { port: number }).port)] });
  const { proxy } = newProxy();
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  return { port: l.port, seen: () => seen };
}

function get(port: number, headers: http2.OutgoingHttpHeaders): Promise<string> {
  const c = http2.connect(`http://127.0.0.1:${port}`, { maxHeaderListPairs: 100_000, maxSendHeaderBlockLength: 1 << 24, settings: { maxHeaderListSize: 1 << 24 } });
  c.on('error', () => {});
  return new Promise((resolve) => {
    const r = c.request({ ':path': '/', ...headers });
    let status = '';
    let body = '';
    r.on('response', (h) => (status = String(h[':status'])));
    r.on('data', (d: Buffer) => (body += d.toString()));
    r.on('end', () => {
      c.close();
      resolve(`${status} ${body}`);
    });
    r.on('error', (e: NodeJS.ErrnoException) => {
      c.destroy();
      resolve(`error ${e.code ?? e.message}`);
    });
    r.end();
  });
}

test('a request whose header list exceeds 128 KiB is reset, never forwarded; the next one is served', async (t) => {
  const { port, seen } = await setup(t);
  const huge: http2.OutgoingHttpHeaders = {};
  for (let i = 0; i < 200; i++) huge[`x-h${i}`] = BIG; // ~200 KiB decoded
  t.regex(await get(port, huge), /^error /);
  t.is(seen(), 0, 'the upstream never saw it');
  const ok: http2.OutgoingHttpHeaders = {};
  for (let i = 0; i < 20; i++) ok[`x-h${i}`] = BIG; // ~20 KiB: fine
  t.is(await get(port, ok), '200 ok');
  t.is(seen(), 1);
});

test('a response whose header list exceeds 128 KiB fails that stream at the client, not the proxy', async (t) => {
  const huge: http2.OutgoingHttpHeaders = {};
  for (let i = 0; i < 200; i++) huge[`x-h${i}`] = BIG;
  const { port, seen } = await setup(t, huge);
  t.notRegex(await get(port, {}), /^200 /);
  t.is(seen(), 1);
});
