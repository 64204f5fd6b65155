/**
 * HTTP/1.1 proxying: one shared parser-only http.Server for client connections, keep-alive upstream pools
 * per service+endpoint (one http.Agent each, fed with sockets our dialer opened so failover and TLS
 * apply), streaming bodies both ways, no x-forwarded-* (the proxy is transparent).
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

interface H1Conn {
  rt: ServiceRuntime;
  state: ConnState;
  inflight: number;
  draining: boolean;
  /** The client speaks HTTP/2 (h2c prior knowledge); requests arrive through the http2 compat API. */
  h2: boolean;
}

/** Connection state is keyed by socket for HTTP/1.1 and by session for HTTP/2 (whose req.socket is a proxy object). */
function connKey(req: http.IncomingMessage): object {
  return (req as unknown as { stream?: http2.ServerHttp2Stream }).stream?.session ?? req.socket;
}

/** HTTP/1.1 raw headers as an HTTP/2 header object: lower-case names, repeated names merged. */
function toH2Headers(raw: string[]): http2.OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = (raw[i] as string).toLowerCase();
    const v = raw[i + 1] as string;
    const prev = out[k];
    if (prev === undefined) out[k] = v;
    else if (Array.isArray(prev)) prev.push(v);
    else out[k] = k === 'set-cookie' ? [prev, v] : `${prev}, ${v}`;
  }
  return out;
}

/** An agent bound to one endpoint; new sockets always come pre-dialled in the request options. */
class EndpointAgent extends http.Agent {
  constructor() {
    super({ keepAlive: true, keepAliveMsecs: 30_000, maxSockets: Infinity, maxFreeSockets: 64, scheduling: 'lifo', timeout: 60_000 });
  }
  override getName(): string {
    return 'upstream';
  }
  hasFree(): boolean {
    const free = (this.freeSockets as Record<string, net.Socket[] | undefined>)['upstream'];
    return !!free && free.some((s) => !s.destroyed && !s.readableEnded);
  }
  // Our dialled sockets allow half-open, so an idle socket whose upstream sent FIN would otherwise stay
  // pooled until a request trips over it; evict it as soon as the FIN arrives.
  override keepSocketAlive(socket: net.Socket): boolean {
    if (socket.destroyed || socket.readableEnded) return false;
    socket.once('end', evictOnEnd);
    // @types/node says void; Node returns whether the socket may be pooled.
    return super.keepSocketAlive(socket) as unknown as boolean;
  }
  override reuseSocket(socket: net.Socket, req: http.ClientRequest): void {
    socket.removeListener('end', evictOnEnd);
    super.reuseSocket(socket, req);
  }
  /**
   * A request that brings a freshly dialled socket must use it, even if a pooled socket was freed while
   * we dialled: Node's Agent would prefer the free one and leave ours open and unused (a leak that grew
   * to hundreds of idle upstream connections under load). Created through the Agent, the socket joins
   * the pool after this request like any other.
   */
  addRequest(req: http.ClientRequest, options: http.RequestOptions & { meshextSocket?: net.Socket }): void {
    if (!options.meshextSocket) {
      (http.Agent.prototype as unknown as { addRequest(r: http.ClientRequest, o: unknown): void }).addRequest.call(this, req, options);
      return;
    }
    // createSocket is Agent's own (undocumented) path for "new socket for this request": it registers
    // the socket's pool listeners; onSocket hands it to the request as addRequest would.
    const self = this as unknown as { createSocket(r: http.ClientRequest, o: unknown, cb: (err: Error | null, s?: net.Socket) => void): void };
    self.createSocket(req, options, (err, s) => (req as unknown as { onSocket(s?: net.Socket, err?: Error | null): void }).onSocket(s, err));
  }
  // createConnection is typed loosely in @types/node; the dialled socket rides in the options.
  override createConnection = ((options: { meshextSocket?: net.Socket }, cb: (err: Error | null, s?: net.Socket) => void): net.Socket | undefined => {
    if (options.meshextSocket) return options.meshextSocket;
    cb(new Error('no pre-dialled upstream socket'));
    return undefined;
  }) as unknown as http.Agent['createConnection'];
}

function evictOnEnd(this: net.Socket): void {
  this.destroy();
}

/** Methods RFC 9110 §9.2.2 calls idempotent: safe to send again when the first try surely never ran. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** Errors that mean a reused keep-alive socket was already closed by the upstream. */
const STALE_CODES = new Set(['ECONNRESET', 'EPIPE']);

const pools = new WeakMap<ServiceRuntime, Map<string, EndpointAgent>>();

function agentFor(rt: ServiceRuntime, st: EndpointState): EndpointAgent {
  let m = pools.get(rt);
  if (!m) {
    const created = new Map<string, EndpointAgent>();
    pools.set(rt, created);
    rt.onClose(() => {
      for (const a of created.values()) a.destroy();
    });
    m = created;
  }
  let a = m.get(st.key);
  if (!a) {
    a = new EndpointAgent();
    m.set(st.key, a);
  }
  return a;
}

/** Sends a short local reply unless the response has started (then the client connection is cut). */
function localReply(res: http.ServerResponse, status: number, body: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body + '\n') });
  res.end(body + '\n');
}

export class Http1Handler {
  private readonly server: http.Server;
  private readonly h2server: http2.Http2Server;
  private readonly conns = new WeakMap<object, H1Conn>();

  constructor() {
    // Timeouts: no per-request limit (Kuma route timeout 0s), idle keep-alive closes after 60 s.
    this.server = http.createServer({ requestTimeout: 0, keepAliveTimeout: 60_000, headersTimeout: 60_000 }, (req, res) => this.onRequest(req, res));
    // HTTP/2 clients of an http service go through the compat API, so one forwarding path serves both.
    this.h2server = http2.createServer((req, res) => this.onRequest(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse));
    this.h2server.on('sessionError', () => {});
    this.server.on('clientError', (_e, sock: net.Socket) => {
      if (sock.writable) sock.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else sock.destroy();
    });
  }

  /** Takes over a client connection for a service of protocol http. */
  serve(sock: net.Socket, rt: ServiceRuntime, state: ConnState): void {
    const c: H1Conn = { rt, state, inflight: 0, draining: false, h2: false };
    this.conns.set(sock, c);
    state.drain = () => {
      c.draining = true;
      if (c.inflight === 0) sock.destroy();
    };
    this.server.emit('connection', sock);
    sock.resume();
  }

  /** Takes over an HTTP/2 prior-knowledge client connection for a service of protocol http. */
  serveH2(sock: net.Socket, rt: ServiceRuntime, state: ConnState): void {
    const c: H1Conn = { rt, state, inflight: 0, draining: false, h2: true };
    this.h2server.once('session', (session) => {
      this.conns.set(session, c);
      session.on('error', () => {});
      state.drain = () => {
        c.draining = true;
        session.close();
      };
    });
    this.h2server.emit('connection', sock);
    sock.resume();
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const c = this.conns.get(connKey(req));
    if (!c) {
      localReply(res, 500, 'connection state lost');
      return;
    }
    const { rt } = c;
    c.inflight++;
    res.on('close', () => {
      c.inflight--;
      if (!c.h2 && c.draining && c.inflight === 0) req.socket.destroySoon();
    });
    const svc = c.state.service;
    if (svc?.forbidden) {
      rt.metrics.accessDenied.inc();
      rt.log.warn({ client: `${req.socket.remoteAddress}:${req.socket.remotePort}`, mesh: svc.mesh, method: req.method, path: req.url }, 'access denied');
      localReply(res, 403, deniedMessage(svc.mesh));
      return;
    }
    this.forward(req, res, rt, c).catch((e: unknown) => {
      const reason = isUpstreamError(e) ? e.reason : (e as Error).message;
      rt.metrics.request(503);
      rt.log.warn({ method: req.method, path: req.url, err: reason }, 'upstream unavailable');
      localReply(res, 503, `upstream unavailable: ${reason}`);
    });
  }

  /**
   * Sends the request upstream. A reused keep-alive socket can lose the race with the upstream closing
   * it; when that happens before any response byte and the request can be replayed (idempotent, no body
   * byte consumed), it is sent once more on a freshly dialled connection, as Envoy does for reset-before-
   * request on pooled connections.
   */
  private async forward(req: http.IncomingMessage, res: http.ServerResponse, rt: ServiceRuntime, c: H1Conn): Promise<void> {
    if ((await this.attempt(req, res, rt, c, true)) === 'done') return;
    // readableDidRead: a body byte already went to the dead socket, so the request cannot be replayed.
    if (!IDEMPOTENT.has(req.method ?? '') || req.readableDidRead) throw new Error('upstream closed the reused connection before responding');
    rt.metrics.upstreamRqRetry.inc();
    rt.log.debug({ method: req.method, path: req.url }, 'reused upstream connection was stale; retrying on a new one');
    if ((await this.attempt(req, res, rt, c, false)) === 'stale') throw new Error('upstream closed the connection before responding');
  }

  /** One try; 'stale' when a reused socket failed before any response byte arrived. */
  private async attempt(req: http.IncomingMessage, res: http.ServerResponse, rt: ServiceRuntime, c: H1Conn, mayReuse: boolean): Promise<'done' | 'stale'> {
    const order = rt.endpoints.order();
    const first = order[0];
    let st: EndpointState;
    let socket: net.Socket | undefined;
    if (mayReuse && first && !rt.configError && agentFor(rt, first).hasFree()) st = first;
    else {
      const d = await dialUpstream(rt, ['http/1.1'], order);
      st = d.endpoint;
      socket = d.socket;
    }
    if (res.destroyed) {
      socket?.destroy();
      return 'done';
    }
    const raw = stripHopByHop(req.rawHeaders);
    const headers: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i] as string;
      // HTTP/2 pseudo-headers (:method, :authority...) have HTTP/1.1 equivalents set below.
      if (k.toLowerCase() !== 'host' && !k.startsWith(':')) headers.push(k, raw[i + 1] as string);
    }
    const host = upstreamHost(st, req.headers.host ?? (req.headers[':authority'] as string | undefined));
    if (host) headers.unshift('Host', host);
    headers.push('Connection', 'keep-alive');
    return new Promise<'done' | 'stale'>((resolve, reject) => {
      const up = http.request({ method: req.method, path: req.url, headers: headers as unknown as http.OutgoingHttpHeaders, agent: agentFor(rt, st), setHost: false, meshextSocket: socket } as http.RequestOptions);
      let responded = false;
      up.on('response', (ur) => {
        responded = true;
        rt.metrics.request(ur.statusCode ?? 502);
        const rh = stripHopByHop(ur.rawHeaders);
        // A draining proxy tells the client this is the last response on the connection.
        if (c.h2) res.writeHead(ur.statusCode ?? 502, toH2Headers(rh) as http.OutgoingHttpHeaders);
        else {
          if (c.draining) rh.push('Connection', 'close');
          res.writeHead(ur.statusCode ?? 502, ur.statusMessage, rh as unknown as http.OutgoingHttpHeaders);
        }
        ur.pipe(res, { end: false });
        ur.on('end', () => {
          if (Object.keys(ur.trailers).length) res.addTrailers(ur.trailers);
          res.end();
          resolve('done');
        });
        ur.on('error', () => res.destroy());
      });
      up.on('error', (e: NodeJS.ErrnoException) => {
        if (responded) {
          res.destroy();
          resolve('done');
        } else if (up.reusedSocket && STALE_CODES.has(e.code ?? '')) {
          req.unpipe(up);
          resolve('stale');
        } else {
          reject(new Error(`upstream connection error: ${e.code ?? e.message}`));
        }
      });
      res.on('close', () => {
        if (!res.writableEnded) up.destroy();
      });
      req.pipe(up);
    });
  }
}
