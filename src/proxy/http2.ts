/**
 * HTTP/2 and gRPC proxying: h2c from the client (prior knowledge), HTTP/2 upstream (h2c, or TLS with
 * ALPN h2), one upstream session per service+endpoint reused until GOAWAY/close. Streams, trailers and
 * flow control pass through; failures before a response become 503 (http2) or grpc-status 14 (grpc).
 */
import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import type { ConnState } from './conn.js';
import { dialUpstream } from './dial.js';
import type { EndpointState } from './endpoints.js';
import { isUpstreamError } from './errors.js';
import { deniedMessage, stripHopByHop, upstreamHost } from './headers.js';
import type { ServiceRuntime } from './runtime.js';

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = http2.constants;

/** Connection-specific headers HTTP/2 forbids (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);

function forwardable(h: http2.IncomingHttpHeaders, drop: Set<string>): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || CONNECTION_SPECIFIC.has(k) || drop.has(k)) continue;
    if (k === 'te' && String(v).toLowerCase() !== 'trailers') continue;
    out[k] = v;
  }
  return out;
}

/** gRPC's grpc-message encoding: percent-encode '%' and bytes outside printable ASCII, nothing else. */
export function grpcMessage(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8')) out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

interface Session {
  session: http2.ClientHttp2Session;
  endpoint: EndpointState;
}

const sessions = new WeakMap<ServiceRuntime, Map<string, Promise<Session>>>();

function sessionMap(rt: ServiceRuntime): Map<string, Promise<Session>> {
  let m = sessions.get(rt);
  if (!m) {
    const created = new Map<string, Promise<Session>>();
    sessions.set(rt, created);
    rt.onClose(() => {
      for (const p of created.values()) p.then((s) => s.session.close(), () => {});
      created.clear();
    });
    m = created;
  }
  return m;
}

/** The live session to the next endpoint in round-robin order, dialling (with failover) when there is none. */
async function upstreamSession(rt: ServiceRuntime): Promise<Session> {
  const m = sessionMap(rt);
  const order = rt.endpoints.order();
  const first = order[0];
  const existing = first ? m.get(first.key) : undefined;
  if (existing) return existing;
  const p = (async (): Promise<Session> => {
    const d = await dialUpstream(rt, ['h2'], order);
    if (rt.tls && d.alpn !== 'h2') {
      d.socket.destroy();
      throw new Error(`upstream did not negotiate HTTP/2 (ALPN ${d.alpn || 'none'})`);
    }
    const session = http2.connect(`${rt.tls ? 'https' : 'http'}://upstream`, { createConnection: () => d.socket });
    const s: Session = { session, endpoint: d.endpoint };
    const forget = (): void => {
      for (const [k, v] of m) if (v === actual || v === p) m.delete(k);
    };
    const actual = Promise.resolve(s);
    session.on('error', (e) => rt.log.debug({ endpoint: d.endpoint.key, err: e.message }, 'upstream HTTP/2 session error'));
    session.on('goaway', forget);
    session.on('close', forget);
    if (first && d.endpoint.key !== first.key) m.delete(first.key);
    m.set(d.endpoint.key, actual);
    return s;
  })();
  if (first) m.set(first.key, p);
  p.catch(() => {
    if (first && m.get(first.key) === p) m.delete(first.key);
  });
  return p;
}

/** Short plain-text local reply to an HTTP/1.1 client, or a cut connection once the response started. */
function h1Reply(res: http.ServerResponse, status: number, body: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body + '\n') });
  res.end(body + '\n');
}

export class Http2Handler {
  private readonly server: http2.Http2Server;
  private readonly h1server: http.Server;
  private readonly h1ctx = new WeakMap<net.Socket, { rt: ServiceRuntime; state: ConnState; inflight: number; draining: boolean }>();
  private readonly ctx = new WeakMap<http2.Http2Session, { rt: ServiceRuntime; state: ConnState }>();

  constructor() {
    this.server = http2.createServer();
    this.server.on('stream', (stream, headers) => {
      // session.socket is a guarding Proxy object, so key by session instead.
      const c = stream.session ? this.ctx.get(stream.session) : undefined;
      if (!c) {
        stream.on('error', () => {});
        stream.close(NGHTTP2_INTERNAL_ERROR);
        return;
      }
      this.onStream(stream, headers, c.rt, c.state);
    });
    this.server.on('sessionError', () => {});
    // HTTP/1.1 clients of an http2 service (Envoy codec AUTO); the upstream side stays HTTP/2.
    this.h1server = http.createServer({ requestTimeout: 0, keepAliveTimeout: 60_000, headersTimeout: 60_000 }, (req, res) => this.onH1Request(req, res));
    this.h1server.on('clientError', (_e, sock: net.Socket) => {
      if (sock.writable) sock.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else sock.destroy();
    });
  }

  /** Takes over an HTTP/1.1 client connection for a service of protocol http2. */
  serveH1(sock: net.Socket, rt: ServiceRuntime, state: ConnState): void {
    const c = { rt, state, inflight: 0, draining: false };
    this.h1ctx.set(sock, c);
    state.drain = () => {
      c.draining = true;
      if (c.inflight === 0) sock.destroy();
    };
    this.h1server.emit('connection', sock);
    sock.resume();
  }

  private onH1Request(req: http.IncomingMessage, res: http.ServerResponse): void {
    const c = this.h1ctx.get(req.socket);
    if (!c) {
      h1Reply(res, 500, 'connection state lost');
      return;
    }
    const { rt, state } = c;
    c.inflight++;
    res.on('close', () => {
      c.inflight--;
      if (c.draining && c.inflight === 0) req.socket.destroySoon();
    });
    const svc = state.service;
    if (svc?.forbidden) {
      rt.metrics.accessDenied.inc();
      rt.log.warn({ mesh: svc.mesh, method: req.method, path: req.url }, 'access denied');
      h1Reply(res, 403, deniedMessage(svc.mesh));
      return;
    }
    const unavailable = (reason: string): void => {
      rt.metrics.request(503);
      rt.log.warn({ method: req.method, path: req.url, err: reason }, 'upstream unavailable');
      h1Reply(res, 503, `upstream unavailable: ${reason}`);
    };
    upstreamSession(rt).then(
      ({ session, endpoint }) => {
        if (res.destroyed) return;
        const raw = stripHopByHop(req.rawHeaders);
        const out: http2.OutgoingHttpHeaders = {};
        for (let i = 0; i < raw.length; i += 2) {
          const k = (raw[i] as string).toLowerCase();
          if (CONNECTION_SPECIFIC.has(k)) continue;
          const prev = out[k];
          out[k] = prev === undefined ? (raw[i + 1] as string) : `${String(prev)}, ${raw[i + 1] as string}`;
        }
        out[':method'] = req.method ?? 'GET';
        out[':path'] = req.url ?? '/';
        out[':scheme'] = rt.tls ? 'https' : 'http';
        const authority = upstreamHost(endpoint, req.headers.host);
        if (authority) out[':authority'] = authority;
        let up: http2.ClientHttp2Stream;
        try {
          up = session.request(out);
        } catch (e) {
          unavailable((e as Error).message);
          return;
        }
        up.on('error', () => {});
        up.on('response', (h) => {
          const status = Number(h[':status'] ?? 502);
          rt.metrics.request(status);
          const rh: http.OutgoingHttpHeaders = {};
          for (const [k, v] of Object.entries(h)) if (!k.startsWith(':') && v !== undefined) rh[k] = v as string | string[];
          if (c.draining) rh.connection = 'close';
          res.writeHead(status, rh);
          up.pipe(res, { end: false });
        });
        up.on('trailers', (t) => {
          const tr: http.OutgoingHttpHeaders = {};
          for (const [k, v] of Object.entries(t)) if (v !== undefined) tr[k] = v as string | string[];
          res.addTrailers(tr);
        });
        up.on('end', () => {
          if (res.headersSent) res.end();
        });
        up.on('close', () => {
          if (res.writableEnded) return;
          if (!res.headersSent) unavailable(`upstream reset the stream (code ${up.rstCode ?? 0})`);
          else res.destroy();
        });
        res.on('close', () => {
          if (!up.closed) up.close(NGHTTP2_CANCEL);
        });
        req.pipe(up);
      },
      (e: unknown) => unavailable(isUpstreamError(e) ? e.reason : (e as Error).message),
    );
  }

  /** Takes over a client connection for a service of protocol http2 or grpc. */
  serve(sock: net.Socket, rt: ServiceRuntime, state: ConnState): void {
    this.server.once('session', (session) => {
      this.ctx.set(session, { rt, state });
      session.on('error', () => {});
      state.drain = () => session.close();
    });
    this.server.emit('connection', sock);
    sock.resume();
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, rt: ServiceRuntime, state: ConnState): void {
    stream.on('error', () => {});
    const svc = state.service;
    const grpc = svc?.protocol === 'grpc';
    const fail = (status: number, grpcStatus: number, message: string): void => {
      if (stream.destroyed || stream.closed) return;
      if (stream.headersSent) {
        stream.close(NGHTTP2_INTERNAL_ERROR);
        return;
      }
      if (grpc) stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(grpcStatus), 'grpc-message': grpcMessage(message) }, { endStream: true });
      else {
        stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8' });
        stream.end(message + '\n');
      }
    };
    if (svc?.forbidden) {
      rt.metrics.accessDenied.inc();
      rt.log.warn({ mesh: svc.mesh, path: headers[':path'] }, 'access denied');
      fail(403, 7, deniedMessage(svc.mesh));
      return;
    }
    upstreamSession(rt).then(
      ({ session, endpoint }) => {
        if (stream.destroyed) return;
        const out = forwardable(headers, new Set());
        const authority = upstreamHost(endpoint, headers[':authority'] ?? headers.host);
        if (authority) out[':authority'] = authority;
        out[':scheme'] = rt.tls ? 'https' : 'http';
        let up: http2.ClientHttp2Stream;
        try {
          up = session.request(out, { endStream: stream.readableEnded && stream.readableLength === 0 });
        } catch (e) {
          rt.metrics.request(503);
          fail(503, 14, `upstream unavailable: ${(e as Error).message}`);
          return;
        }
        let trailers: http2.OutgoingHttpHeaders | undefined;
        up.on('response', (h, flags) => {
          const status = Number(h[':status'] ?? 502);
          rt.metrics.request(status);
          const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
          if (stream.destroyed) return;
          const rh = forwardable(h, new Set());
          if (endStream) stream.respond(rh, { endStream: true });
          else stream.respond(rh, { waitForTrailers: true });
        });
        up.on('trailers', (t) => {
          trailers = forwardable(t, new Set());
        });
        // We must commit to trailers before knowing if the upstream sends any; an empty trailer
        // HEADERS frame is a valid way to end the stream when it sends none.
        stream.on('wantTrailers', () => stream.sendTrailers(trailers ?? {}));
        up.on('error', () => {});
        up.on('close', () => {
          if (up.rstCode && up.rstCode !== http2.constants.NGHTTP2_NO_ERROR) {
            if (!stream.headersSent) {
              rt.metrics.request(503);
              fail(503, 14, `upstream reset the stream (code ${up.rstCode})`);
            } else stream.close(up.rstCode);
          }
        });
        stream.on('close', () => {
          if (!up.closed) up.close(NGHTTP2_CANCEL);
        });
        stream.pipe(up);
        up.pipe(stream);
      },
      (e: unknown) => {
        const reason = isUpstreamError(e) ? e.reason : (e as Error).message;
        rt.metrics.request(503);
        rt.log.warn({ path: headers[':path'], err: reason }, 'upstream unavailable');
        fail(503, 14, `upstream unavailable: ${reason}`);
      },
    );
  }
}
