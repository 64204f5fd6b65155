import test from 'ava';
import fc from 'fast-check';
import { nativeForTests, type H1HeadResult } from '../../src/native/addon.js';

const n = nativeForTests();
const B = (s: string): Buffer => Buffer.from(s, 'latin1');

function req(s: string): H1HeadResult {
  return n.h1ParseHead('request', [B(s)]);
}
function resp(s: string, method = 'GET'): H1HeadResult {
  return n.h1ParseHead('response', [B(s)], method);
}
function done(r: H1HeadResult): Extract<H1HeadResult, { state: 'done' }> {
  if (r.state !== 'done') throw new Error(`expected a parsed head, got ${JSON.stringify(r)}`);
  return r;
}

test('request line, fields, keep-alive and host', (t) => {
  const r = done(req('GET /a?b=1 HTTP/1.1\r\nHost: api.example.com\r\nX-A:  v  1 \r\n\r\nBODY'));
  t.is(r.method, 'GET');
  t.is(r.target, '/a?b=1');
  t.is(r.minor, 1);
  t.is(r.host, 'api.example.com');
  t.deepEqual(r.fields, [['Host', 'api.example.com'], ['X-A', 'v  1']]);
  t.is(r.framing, 'none');
  t.true(r.keepAlive);
  t.is(r.length, 'GET /a?b=1 HTTP/1.1\r\nHost: api.example.com\r\nX-A:  v  1 \r\n\r\n'.length);
  t.false(done(req('GET / HTTP/1.1\r\nHost: h\r\nConnection: x, Close\r\n\r\n')).keepAlive);
  t.false(done(req('GET / HTTP/1.0\r\n\r\n')).keepAlive);
  t.true(done(req('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n')).keepAlive);
  // An empty line before the request line is ignored (RFC 9112 §2.2).
  t.is(done(req('\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n')).method, 'GET');
  t.true(done(req('GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n')).upgrade);
  t.false(done(req('GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n')).upgrade);
  t.true(done(req('PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n')).expectContinue);
});

test('heads split at every byte parse the same as whole', (t) => {
  const text = 'POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nA: b\r\n\r\nhello';
  const whole = done(req(text));
  for (let i = 1; i < text.length; i++) {
    const r = n.h1ParseHead('request', [B(text.slice(0, i)), B(text.slice(i))]);
    t.deepEqual(r, whole, `split at ${i}`);
  }
  t.deepEqual(n.h1ParseHead('request', [B('GET / HTTP/1.1\r\nHost: h\r\n')]), { state: 'partial' });
});

test('malformed requests are rejected with the right status', (t) => {
  const cases: Array<[string, number, RegExp]> = [
    ['GET / HTTP/1.1\r\nHost: h\r\n X-Folded: y\r\n\r\n', 400, /obsolete line folding/],
    ['GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n', 400, /bare CR/],
    ['GET / HTTP/1.1\nHost: h\r\n\r\n', 400, /bare LF/],
    ['GET / HTTP/1.1\r\nHost: h\r\nBad Name: y\r\n\r\n', 400, /field name/],
    ['GET / HTTP/1.1\r\nHost: h\r\nX-A : y\r\n\r\n', 400, /field name/],
    ['GET / HTTP/1.1\r\nHost: h\r\n: y\r\n\r\n', 400, /empty header field name/],
    ['GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n', 400, /field value/],
    ['G(T / HTTP/1.1\r\nHost: h\r\n\r\n', 400, /method/],
    ['GET /a b HTTP/1.1\r\nHost: h\r\n\r\n', 400, /HTTP version|request line/],
    ['GET  / HTTP/1.1\r\nHost: h\r\n\r\n', 400, /request line/],
    ['GET / HTTP/2.0\r\nHost: h\r\n\r\n', 505, /version not supported/],
    ['GET / HTTPS/1.1\r\nHost: h\r\n\r\n', 400, /version/],
    ['GET / HTTP/1.1\r\n\r\n', 400, /missing Host/],
    ['GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400, /more than one Host/],
    ['GET / HTTP/1.1\r\nHost: a b\r\n\r\n', 400, /invalid Host/],
  ];
  for (const [text, status, reason] of cases) {
    const r = req(text);
    t.is(r.state, 'error', JSON.stringify(text));
    if (r.state === 'error') {
      t.is(r.status, status, JSON.stringify(text));
      t.regex(r.reason, reason, JSON.stringify(text));
    }
  }
});

test('request smuggling vectors: CL+TE, conflicting CL, TE not ending in chunked, TE in HTTP/1.0', (t) => {
  const bad = [
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4, 5\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +4\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: \r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ,\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x4\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "chunked"\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n',
    'POST / HTTP/1.1\r\nHost: h\r\n Transfer-Encoding: chunked\r\n\r\n',
    'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n',
  ];
  for (const text of bad) {
    const r = req(text);
    t.is(r.state, 'error', JSON.stringify(text));
    if (r.state === 'error') t.is(r.status, 400, JSON.stringify(text));
  }
  // Repeated identical Content-Length values are one length (RFC 9112 §6.3 item 5).
  const same = done(req('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\ncontent-length: 7, 7\r\n\r\n'));
  t.is(same.framing, 'length');
  t.is(same.contentLength, 7);
  const te = done(req('POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: CHUNKED\r\n\r\n'));
  t.is(te.framing, 'chunked');
  t.is(done(req('POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n')).framing, 'none');
});

test('limits: 64 KiB head, 100 fields', (t) => {
  const many = 'GET / HTTP/1.1\r\nHost: h\r\n' + Array.from({ length: 99 }, (_, i) => `X-${i}: v\r\n`).join('') + '\r\n';
  t.is(req(many).state, 'done');
  const tooMany = 'GET / HTTP/1.1\r\nHost: h\r\n' + Array.from({ length: 100 }, (_, i) => `X-${i}: v\r\n`).join('') + '\r\n';
  t.like(req(tooMany), { state: 'error', status: 431 });
  const big = 'GET / HTTP/1.1\r\nHost: h\r\nX-Big: ' + 'a'.repeat(70_000);
  // Rejected before the head ends: the proxy never buffers more than the limit.
  t.like(n.h1ParseHead('request', [B(big)]), { state: 'error', status: 431 });
  t.like(resp('HTTP/1.1 200 OK\r\nX-Big: ' + 'a'.repeat(70_000)), { state: 'error', status: 502 });
});

test('response framing: HEAD, 1xx, 204, 304, CONNECT, 101, chunked, close-delimited', (t) => {
  const lenResp = 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n';
  t.like(done(resp(lenResp)), { framing: 'length', contentLength: 10, status: 200, reason: 'OK', keepAlive: true });
  t.is(done(resp(lenResp, 'HEAD')).framing, 'none');
  t.is(done(resp('HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n')).framing, 'none');
  t.is(done(resp('HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n')).framing, 'none');
  t.is(done(resp('HTTP/1.1 100 Continue\r\n\r\n')).framing, 'none');
  t.like(done(resp('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')), { framing: 'tunnel', upgrade: true });
  t.is(done(resp('HTTP/1.1 200 Connection established\r\n\r\n', 'CONNECT')).framing, 'tunnel');
  t.is(done(resp('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n')).framing, 'chunked');
  t.like(done(resp('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n')), { framing: 'close', keepAlive: false });
  t.like(done(resp('HTTP/1.1 200 OK\r\n\r\n')), { framing: 'close', keepAlive: false });
  t.like(done(resp('HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n')), { keepAlive: false });
  t.like(done(resp('HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n')), { keepAlive: true });
  t.like(done(resp('HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n')), { status: 200, reason: '' });
  for (const bad of [
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
    'HTTP/1.1 2x0 OK\r\n\r\n',
    'HTTP/1.1 099 Odd\r\n\r\n',
    'HTTP/2 200 OK\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX: a\x01\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n',
  ]) {
    t.like(resp(bad), { state: 'error', status: 502 }, JSON.stringify(bad));
  }
});

test('chunked tracker finds the exact end of the body and leaves the next message alone', (t) => {
  const body = '5\r\nhello\r\n1a;ext=1;q="x y"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: yes\r\n\r\n';
  const next = 'GET /next HTTP/1.1\r\n';
  const r = n.h1BodyScan('chunked', 0, [B(body + next)]);
  t.deepEqual(r, { consumed: [body.length], done: true });
  const plain = '0\r\n\r\n';
  t.deepEqual(n.h1BodyScan('chunked', 0, [B(plain + 'X')]), { consumed: [plain.length], done: true });
  t.deepEqual(n.h1BodyScan('length', 5, [B('abc'), B('defg')]), { consumed: [3, 2], done: true });
  t.deepEqual(n.h1BodyScan('none', 0, [B('abc')]), { consumed: [0], done: true });
  t.deepEqual(n.h1BodyScan('close', 0, [B('abc')]), { consumed: [3], done: false });
});

test('chunked tracker: any split of a valid body consumes it exactly (property)', (t) => {
  const chunkArb = fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { maxLength: 6 });
  fc.assert(
    fc.property(chunkArb, fc.array(fc.nat(400), { maxLength: 8 }), fc.boolean(), (chunks, cuts, trailer) => {
      const parts: Buffer[] = [];
      for (const c of chunks) parts.push(B(c.length.toString(16) + '\r\n'), Buffer.from(c), B('\r\n'));
      parts.push(B('0\r\n' + (trailer ? 'T: 1\r\n' : '') + '\r\n'));
      const whole = Buffer.concat(parts);
      const stream = Buffer.concat([whole, B('NEXT')]);
      const points = [...new Set(cuts.map((x) => x % (stream.length + 1)))].sort((a, b) => a - b);
      const pieces: Buffer[] = [];
      let at = 0;
      for (const p of points) {
        pieces.push(stream.subarray(at, p));
        at = p;
      }
      pieces.push(stream.subarray(at));
      const r = n.h1BodyScan('chunked', 0, pieces);
      return r.done && r.error === undefined && r.consumed.reduce((a, b) => a + b, 0) === whole.length;
    }),
  );
  t.pass();
});

test('chunked tracker rejects what another parser could read differently', (t) => {
  const bad: Array<[string, RegExp]> = [
    ['5\nhello\r\n0\r\n\r\n', /bare CR|chunk size/],
    ['5\r\nhello\n0\r\n\r\n', /CRLF/],
    ['5\r\nhelloX\r\n0\r\n\r\n', /CRLF/],
    ['-5\r\nhello\r\n0\r\n\r\n', /invalid chunk size/],
    ['0x5\r\nhello\r\n0\r\n\r\n', /invalid chunk size/],
    ['5 \r\nhello\r\n0\r\n\r\n', /invalid chunk size/],
    ['\r\n', /invalid chunk size/],
    ['1000000000000000\r\n', /too large/],
    ['0\r\n Folded: x\r\n\r\n', /folding/],
    ['0\r\nNoColon\r\n\r\n', /trailer field name/],
    ['0\r\nT: a\x00\r\n\r\n', /trailer field/],
    ['0\r\n\rX', /bare CR/],
  ];
  for (const [text, why] of bad) {
    const r = n.h1BodyScan('chunked', 0, [B(text)]);
    t.false(r.done, JSON.stringify(text));
    t.regex(r.error ?? '', why, JSON.stringify(text));
  }
  t.regex(n.h1BodyScan('chunked', 0, [B('0\r\nT: ' + 'a'.repeat(70_000) + '\r\n\r\n')]).error ?? '', /trailer section too large/);
});

test('request head rewrite: hop-by-hop and Connection-named fields go, framing fields stay, Host rule', (t) => {
  const head = B(
    'POST /p HTTP/1.1\r\nHost: api.mesh.local\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: x\r\nTransfer-Encoding: chunked\r\nX-App: kept\r\n\r\n',
  );
  t.is(n.h1Rewrite(head, '').request, 'POST /p HTTP/1.1\r\nHost: api.mesh.local\r\nTransfer-Encoding: chunked\r\nX-App: kept\r\n\r\n');
  t.is(n.h1Rewrite(head, 'backend.example.com').request, 'POST /p HTTP/1.1\r\nHost: backend.example.com\r\nTransfer-Encoding: chunked\r\nX-App: kept\r\n\r\n');
  const ws = B('GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n');
  t.is(n.h1Rewrite(ws, '').request, 'GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nConnection: upgrade\r\n\r\n');
  t.is(n.h1Rewrite(B('GET / HTTP/1.0\r\nContent-Length: 2\r\n\r\n'), '').request, 'GET / HTTP/1.0\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n');
});

test('request head rewrite: an absolute-form target goes upstream in origin form under the Host rule', (t) => {
  const abs = B('GET http://other.example:8080/a/b?x=1 HTTP/1.1\r\nHost: api.mesh.local\r\nX-App: kept\r\n\r\n');
  // A DNS endpoint's name is the Host whatever the client named.
  t.is(n.h1Rewrite(abs, 'backend.example.com').request, 'GET /a/b?x=1 HTTP/1.1\r\nHost: backend.example.com\r\nX-App: kept\r\n\r\n');
  // Otherwise the target's authority replaces the Host field (RFC 9112 §3.2.2), userinfo dropped.
  t.is(n.h1Rewrite(abs, '').request, 'GET /a/b?x=1 HTTP/1.1\r\nHost: other.example:8080\r\nX-App: kept\r\n\r\n');
  t.is(n.h1Rewrite(B('GET HTTPS://u:p@h.example?q HTTP/1.1\r\nHost: x\r\n\r\n'), '').request, 'GET /?q HTTP/1.1\r\nHost: h.example\r\n\r\n');
  t.is(n.h1Rewrite(B('GET http://h.example HTTP/1.1\r\nHost: x\r\n\r\n'), '').request, 'GET / HTTP/1.1\r\nHost: h.example\r\n\r\n');
  // Other forms are left as they are.
  t.is(n.h1Rewrite(B('OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n'), '').request, 'OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n');
  t.is(n.h1Rewrite(B('GET /ftp://x HTTP/1.1\r\nHost: h\r\n\r\n'), '').request, 'GET /ftp://x HTTP/1.1\r\nHost: h\r\n\r\n');
});

test('response head rewrite and keep-alive decisions', (t) => {
  const get = B('GET / HTTP/1.1\r\nHost: h\r\n\r\n');
  const ok = B('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nX-Up: yes\r\n\r\n');
  t.deepEqual(n.h1Rewrite(get, '', ok), { request: 'GET / HTTP/1.1\r\nHost: h\r\n\r\n', response: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Up: yes\r\n\r\n', clientKeepAlive: true, upstreamReusable: true });
  // Drain (or a client that asked for close) ends the client connection after this response.
  t.is(n.h1Rewrite(get, '', ok, true).response, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Up: yes\r\nConnection: close\r\n\r\n');
  const closeReq = B('GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n');
  t.like(n.h1Rewrite(closeReq, '', ok), { clientKeepAlive: false, upstreamReusable: true });
  const eof = B('HTTP/1.1 200 OK\r\n\r\n');
  t.like(n.h1Rewrite(get, '', eof), { response: 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n', clientKeepAlive: false, upstreamReusable: false });
  const chunked = B('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x\r\n\r\n');
  t.is(n.h1Rewrite(get, '', chunked).response, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
  const h10 = B('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
  t.like(n.h1Rewrite(h10, '', ok), { response: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Up: yes\r\nConnection: keep-alive\r\n\r\n', clientKeepAlive: true });
  const sw = B('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: a\r\n\r\n');
  const ws = B('GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  t.like(n.h1Rewrite(ws, '', sw), { response: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\nConnection: upgrade\r\n\r\n', upstreamReusable: false });
  t.is(n.h1LocalResponse(503, 'upstream unavailable: x', true), 'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\nConnection: close\r\n\r\nupstream unavailable: x\n');
});
