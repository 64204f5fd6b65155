/**
 * Envoy/kuma-dp style admin API on loopback: readiness, stats, config dump, clusters, BPF state.
 * Reads are GET; anything that changes the agent is POST only (a GET gets 405), as Envoy does.
 * Loopback alone does not keep browsers out: a web page can send requests to 127.0.0.1, and with DNS
 * rebinding read the answers. So every request must name a loopback host (or the bind address) in
 * `Host`, must not come from another origin (`Origin`, `Sec-Fetch-Site`), and a POST must not carry a
 * body type an HTML form or a CORS "simple request" can send.
 */
import { chmodSync, mkdirSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import { listenShared } from '../net/shared.js';
import type { Registry } from '../stats/registry.js';
import type { Logger } from '../log.js';
import { exposureOf, isLoopback } from '../exposure.js';
import { FilterError, MAX_FILTER_LENGTH, StatsFilter } from './filter.js';

export type Readiness = 'READY' | 'NOT_READY' | 'TERMINATING';

/** What the admin API reads from and asks of the running agent. */
export interface AdminSource {
  readiness(): Readiness;
  stats: Registry;
  configDump(): unknown;
  clusters(): unknown;
  bpf(): unknown;
  serverInfo(): unknown;
  reload(reason: string): Promise<{ ok: boolean; generation: number; rejected: number }>;
  setLogLevel(level: string): void;
}

type Handler = (req: http.IncomingMessage, url: URL, res: http.ServerResponse) => void | Promise<void>;

function send(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  send(res, status, JSON.stringify(value, null, 2) + '\n', 'application/json');
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'];

export class AdminServer {
  private readonly servers: http.Server[] = [];
  private readonly unlinkOnClose: Array<() => void> = [];
  /** The TCP bind address: accepted in Host besides loopback names, for an admin bound elsewhere. */
  private bindAddress = '127.0.0.1';
  private readonly get: Record<string, Handler>;
  private readonly post: Record<string, Handler>;

  constructor(
    private readonly source: AdminSource,
    private readonly log: Logger,
  ) {
    this.get = {
      '/': (_q, _u, res) => send(res, 200, Object.keys({ ...this.get, ...this.post }).sort().join('\n') + '\n'),
      '/ready': (_q, _u, res) => {
        const state = this.source.readiness();
        send(res, state === 'READY' ? 200 : 503, state + '\n');
      },
      // Liveness: the event loop answers; never tied to upstream health.
      '/healthz': (_q, _u, res) => send(res, 200, 'OK\n'),
      '/stats': (_q, url, res) => {
        const format = url.searchParams.get('format');
        if (format === 'prometheus') return send(res, 200, this.source.stats.prometheus(), 'text/plain; version=0.0.4');
        if (format === 'json') return sendJson(res, 200, { stats: this.source.stats.json() });
        const filter = url.searchParams.get('filter');
        let text = this.source.stats.text();
        if (filter) {
          try {
            const f = StatsFilter.compile(filter);
            text = text.split('\n').filter((l) => l && f.test(l)).join('\n') + '\n';
          } catch (err) {
            if (!(err instanceof FilterError)) throw err;
            const shown = filter.length > MAX_FILTER_LENGTH ? `${filter.slice(0, 40)}...` : filter;
            return send(res, 400, `invalid filter "${shown}": ${err.message}\n(a regular expression matched in linear time: no backreferences or lookaround, at most ${MAX_FILTER_LENGTH} characters)\n`);
          }
        }
        send(res, 200, text);
      },
      '/stats/prometheus': (_q, _u, res) => send(res, 200, this.source.stats.prometheus(), 'text/plain; version=0.0.4'),
      '/metrics': (_q, _u, res) => send(res, 200, this.source.stats.prometheus(), 'text/plain; version=0.0.4'),
      '/config_dump': (_q, _u, res) => sendJson(res, 200, this.source.configDump()),
      '/clusters': (_q, url, res) => {
        const data = this.source.clusters();
        if (url.searchParams.get('format') === 'json') return sendJson(res, 200, data);
        send(res, 200, renderClusters(data));
      },
      '/bpf': (_q, _u, res) => sendJson(res, 200, this.source.bpf()),
      '/server_info': (_q, _u, res) => sendJson(res, 200, this.source.serverInfo()),
    };
    this.post = {
      '/reload': async (_q, _u, res) => sendJson(res, 200, await this.source.reload('POST /reload')),
      '/logging': (_q, url, res) => {
        const level = url.searchParams.get('level');
        if (!level || !LOG_LEVELS.includes(level)) return send(res, 400, `level must be one of ${LOG_LEVELS.join(', ')}\n`);
        this.source.setLogLevel(level);
        send(res, 200, `level: ${level}\n`);
      },
    };
  }

  /**
   * Starts listening; rejects with a clear error when the address is taken. A fixed port is shared with a
   * successor agent during a restart (src/net/shared.ts), so each agent also answers on its own unix socket
   * (listenUnix): that is where a probe asks *this* agent whether it is ready.
   */
  async listen(address: string, port: number): Promise<AddressInfo> {
    const server = this.newServer();
    const fail = (err: NodeJS.ErrnoException): Error =>
      Object.assign(new Error(`admin API cannot listen on ${address}:${port}: ${err.code ?? err.message}`), { code: 'MESHEXT_E_ADMIN_LISTEN', cause: err });
    if (port === 0) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err: NodeJS.ErrnoException) => reject(fail(err)));
        server.listen(port, address, () => resolve());
      });
    } else {
      await listenShared(server, address, port).catch((err: NodeJS.ErrnoException) => {
        throw fail(err);
      });
    }
    this.servers.push(server);
    this.bindAddress = address;
    const exposure = exposureOf(address);
    if (exposure) this.log.warn({ listen: `${address}:${port}`, exposure }, `EXPOSED: the admin API on ${address} serves config dumps and reloads for ${exposure}`);
    return server.address() as AddressInfo;
  }

  /**
   * Also answers on a unix socket at `path` (replacing a stale one; its directory is made). Removed on close
   * unless a successor has replaced it by then.
   */
  async listenUnix(path: string): Promise<void> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    rmSync(path, { force: true });
    const server = this.newServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(Object.assign(new Error(`admin API cannot listen on unix socket ${path}: ${err.code ?? err.message}`), { code: 'MESHEXT_E_ADMIN_LISTEN', cause: err })),
      );
      server.listen(path, () => resolve());
    });
    chmodSync(path, 0o600);
    const ino = statSync(path).ino;
    this.servers.push(server);
    this.unlinkOnClose.push(() => {
      try {
        if (statSync(path).ino === ino) rmSync(path, { force: true });
      } catch {
        /* already gone */
      }
    });
  }

  private newServer(): http.Server {
    const server = http.createServer((req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 5_000;
    return server;
  }

  /** Why a request must be refused (status and body), or undefined when it may be served. */
  private refusal(req: http.IncomingMessage): { status: number; body: string } | undefined {
    const host = req.headers.host;
    // A request without Host (HTTP/1.0 tools) cannot be a rebinding attack: browsers always send one;
    // nor can one over the admin unix socket (no remote address), which no browser can reach.
    if (host !== undefined && req.socket.remoteAddress !== undefined && !this.hostAllowed(host)) {
      return { status: 403, body: `Host "${printableHeader(host)}" is not a loopback name: the admin API answers only requests to 127.0.0.1, [::1] or localhost (DNS rebinding protection)\n` };
    }
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${host ?? ''}`) {
      return { status: 403, body: `cross-origin request from "${printableHeader(origin)}" refused: the admin API is not for web pages\n` };
    }
    const site = req.headers['sec-fetch-site'];
    if (site === 'cross-site' || site === 'same-site') {
      return { status: 403, body: `cross-site request (Sec-Fetch-Site: ${site}) refused: the admin API is not for web pages\n` };
    }
    return undefined;
  }

  private hostAllowed(hostHeader: string): boolean {
    const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d{1,5}))?$/.exec(hostHeader.trim());
    if (!m) return false;
    const host = (m[1] ?? m[2] ?? '').toLowerCase().replace(/\.$/, '');
    if (host === 'localhost') return true;
    if (net.isIP(host) === 0) return false;
    return isLoopback(host) || host === this.bindAddress.toLowerCase();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/$/, '') : url.pathname;
    const refused = this.refusal(req);
    if (refused) {
      this.log.warn({ path, host: req.headers.host, origin: req.headers.origin, status: refused.status }, 'admin request refused');
      return send(res, refused.status, refused.body);
    }
    try {
      if (req.method === 'GET' || req.method === 'HEAD') {
        const h = this.get[path];
        if (h) return await h(req, url, res);
        if (this.post[path]) return send(res, 405, `${path} changes the agent: use POST\n`);
      } else if (req.method === 'POST') {
        const h = this.post[path];
        const type = formContentType(req.headers['content-type']);
        if (h && type) {
          return send(res, 415, `a POST with Content-Type ${type} is refused (an HTML form or a cross-site script can send it); send no body, e.g. curl -X POST\n`);
        }
        if (h) return await h(req, url, res);
        if (this.get[path]) return send(res, 405, `${path} is read-only: use GET\n`);
      } else {
        return send(res, 405, `method ${req.method} not allowed\n`);
      }
      send(res, 404, `no such admin path ${path}; GET / lists them\n`);
    } catch (err) {
      this.log.error({ err, path }, 'admin handler failed');
      if (!res.headersSent) send(res, 500, `internal error: ${(err as Error).message}\n`);
      else res.destroy();
    }
  }

  async close(): Promise<void> {
    const servers = this.servers.splice(0);
    await Promise.all(
      servers.map((s) => {
        s.closeAllConnections();
        return new Promise<void>((resolve) => s.close(() => resolve()));
      }),
    );
    for (const f of this.unlinkOnClose.splice(0)) f();
  }
}

// What an HTML form, or a fetch() that needs no CORS preflight, can send.
const SIMPLE_BODY_TYPES = ['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain'];

/** The media type when it is one a form or a simple cross-site request can send. */
function formContentType(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const type = (header.split(';')[0] ?? '').trim().toLowerCase();
  return SIMPLE_BODY_TYPES.includes(type) ? type : undefined;
}

/** A header value safe to echo in a short message. */
function printableHeader(v: string): string {
  const clean = v.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 100 ? `${clean.slice(0, 100)}...` : clean;
}

/** Envoy-like `/clusters` text: `<service>::<endpoint>::<field>::<value>`. */
function renderClusters(data: unknown): string {
  if (!Array.isArray(data)) return JSON.stringify(data) + '\n';
  const lines: string[] = [];
  for (const c of data as Array<{ kri?: string; service?: string; endpoints?: Array<Record<string, unknown>> }>) {
    const name = c.kri ?? c.service ?? '?';
    for (const e of c.endpoints ?? []) {
      const addr = String(e.address ?? '?');
      for (const [k, v] of Object.entries(e)) if (k !== 'address') lines.push(`${name}::${addr}::${k}::${String(v)}`);
    }
  }
  return lines.join('\n') + '\n';
}
