/**
 * An in-process Kubernetes API server that speaks the list/watch wire protocol, for the Kubernetes
 * source's tests (no real API server can run here): HTTPS with a bearer token, lists carrying a
 * resourceVersion, chunked watch streams of ADDED/MODIFIED/DELETED/BOOKMARK events replayed from a
 * history, `410 Gone` (in-stream ERROR Status, as a real server sends it) once the history is compacted,
 * a connection dropped mid-event, watches closed after their `timeoutSeconds` or gone silent (a dead
 * connection), 403 Forbidden, and going away and coming back on the same port.
 */
import https from 'node:https';
import type http from 'node:http';
import type net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import type { TestPki } from './certs.js';

export interface Collection {
  path: string;
  apiVersion: string;
  kind: string;
  /** Built-in kinds' list items carry no apiVersion/kind; custom resources' do. */
  core: boolean;
}

type Obj = { metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; [k: string]: unknown }; [k: string]: unknown };
interface Event {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
}
interface Watcher {
  col: Collection;
  res: http.ServerResponse;
  selector: [string, string] | undefined;
  /** A dead connection: nothing is written to it and it is never closed. */
  silent: boolean;
}

export const KUMA = 'kuma.io/v1alpha1';

/** The collections meshext reads, for the system namespace `ns`. */
export function kumaCollections(ns = 'kuma-system'): Record<'meshes' | 'mes' | 'hg' | 'mt' | 'mr' | 'mtp' | 'mal' | 'mcb' | 'mhc' | 'secrets' | 'pods', Collection> {
  return {
    meshes: { path: '/apis/kuma.io/v1alpha1/meshes', apiVersion: KUMA, kind: 'Mesh', core: false },
    mes: { path: `/apis/kuma.io/v1alpha1/namespaces/${ns}/meshexternalservices`, apiVersion: KUMA, kind: 'MeshExternalService', core: false },
    hg: { path: `/apis/kuma.io/v1alpha1/namespaces/${ns}/hostnamegenerators`, apiVersion: KUMA, kind: 'HostnameGenerator', core: false },
    mt: { path: `/apis/kuma.io/v1alpha1/namespaces/${ns}/meshtimeouts`, apiVersion: KUMA, kind: 'MeshTimeout', core: false },
    mr: { path: `/apis/kuma.io/v1alpha1/namespaces/${ns}/meshretries`, apiVersion: KUMA, kind: 'MeshRetry', core: false },
    mtp: { path: `/apis/kuma.io/v1alpha1/namespaces/${ns}/meshtrafficpermissions`, apiVersion: KUMA, kind: 'MeshTrafficPermission', core: false },
    mal: { path: `/apis/kuma.io/v1alpha1/namespaces/${ns}/meshaccesslogs`, apiVersion: KUMA, kind: 'MeshAccessLog', core: false },
    mcb: { path: `/apis/kuma.io/v1alpha1/namespaces/${ns}/meshcircuitbreakers`, apiVersion: KUMA, kind: 'MeshCircuitBreaker', core: false },
    mhc: { path: `/apis/kuma.io/v1alpha1/namespaces/${ns}/meshhealthchecks`, apiVersion: KUMA, kind: 'MeshHealthCheck', core: false },
    secrets: { path: `/api/v1/namespaces/${ns}/secrets`, apiVersion: 'v1', kind: 'Secret', core: true },
    // Every namespace's pods; the agent asks for those of its node (fieldSelector spec.nodeName).
    pods: { path: '/api/v1/pods', apiVersion: 'v1', kind: 'Pod', core: true },
  };
}

export class FakeKubeApi {
  readonly token = 'meshext-test-token';
  private rv = 1000;
  private uid = 0;
  private readonly objects = new Map<string, Map<string, Obj>>();
  private readonly history = new Map<string, Event[]>();
  /** Watches from a resourceVersion below this get 410 Gone. */
  private readonly compactedBelow = new Map<string, number>();
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<net.Socket>();
  private server: https.Server | undefined;
  /** Collections whose list and watch answer 403. */
  readonly forbidden = new Set<string>();
  /** Every request: `LIST path` or `WATCH path rv`. */
  readonly requests: string[] = [];
  /** The query of every watch request. */
  readonly watchQueries: URLSearchParams[] = [];
  port = 0;

  constructor(
    /** Serves `good` and names `ca` in the kubeconfig. */
    private readonly pki: Pick<TestPki, 'ca' | 'good'>,
    readonly collections: Collection[],
  ) {
    for (const c of collections) {
      this.objects.set(c.path, new Map());
      this.history.set(c.path, []);
    }
  }

  /** Listens on loopback (the same port again after `stop`). */
  async start(): Promise<number> {
    const server = https.createServer({ key: this.pki.good.key, cert: this.pki.good.cert }, (req, res) => this.handle(req, res));
    server.on('connection', (s: net.Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
    return this.port;
  }

  /** The API server goes away: every connection is cut and nothing listens until `start` again. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    this.watchers.clear();
    for (const sock of this.sockets) sock.destroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Writes a kubeconfig pointing at this server (CA data and bearer token) and returns its path. */
  kubeconfig(dir: string): string {
    const file = path.join(dir, 'kubeconfig');
    const ca = this.pki.ca.toString('base64');
    fs.writeFileSync(
      file,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: fake',
        `  cluster: {server: "https://127.0.0.1:${this.port}", certificate-authority-data: "${ca}"}`,
        'users:',
        '- name: meshext',
        `  user: {token: "${this.token}"}`,
        'contexts:',
        '- name: fake',
        '  context: {cluster: fake, user: meshext}',
        'current-context: fake',
        '',
      ].join('\n'),
    );
    return file;
  }

  /** Creates or replaces an object (a new resourceVersion) and tells the watchers. */
  apply(col: Collection, obj: Obj): Obj {
    const stored = structuredClone(obj);
    const key = `${stored.metadata.namespace ?? ''}/${stored.metadata.name}`;
    const map = this.objects.get(col.path)!;
    const prev = map.get(key);
    // A uid the caller gives is kept (a pod's names its cgroup), as the API server keeps an object's uid.
    stored.metadata.uid = prev?.metadata.uid ?? obj.metadata.uid ?? `uid-${++this.uid}`;
    stored.metadata.resourceVersion = String(++this.rv);
    map.set(key, stored);
    this.emit(col, { rv: this.rv, type: prev ? 'MODIFIED' : 'ADDED', object: stored });
    return stored;
  }

  /** Deletes an object and tells the watchers. */
  remove(col: Collection, name: string, namespace?: string): void {
    const map = this.objects.get(col.path)!;
    const key = `${namespace ?? ''}/${name}`;
    const prev = map.get(key);
    if (!prev) throw new Error(`no ${col.kind} ${key}`);
    map.delete(key);
    const gone = structuredClone(prev);
    gone.metadata.resourceVersion = String(++this.rv);
    this.emit(col, { rv: this.rv, type: 'DELETED', object: gone });
  }

  /**
   * Compacts the history of a collection, as etcd does: its open watches get an ERROR 410 event and are
   * closed, and a watch from any older resourceVersion gets the same, so the client must list again.
   */
  expire(col: Collection): void {
    this.compactedBelow.set(col.path, this.rv + 1);
    this.history.set(col.path, []);
    for (const w of [...this.watchers]) {
      if (w.col !== col || w.silent) continue;
      this.watchers.delete(w);
      w.res.end(line(gone(this.rv)));
    }
  }

  /** Sends a BOOKMARK carrying the current resourceVersion to the collection's watchers. */
  bookmark(col: Collection): void {
    for (const w of this.watchers) {
      if (w.col === col && !w.silent) w.res.write(line({ type: 'BOOKMARK', object: { apiVersion: col.apiVersion, kind: col.kind, metadata: { resourceVersion: String(this.rv) } } }));
    }
  }

  /** Cuts every watch connection of the collection in the middle of an event line. */
  dropWatches(col: Collection): number {
    let n = 0;
    for (const w of [...this.watchers]) {
      if (w.col !== col || w.silent) continue;
      this.watchers.delete(w);
      w.res.write('{"type":"ADDED","object":{"metadata":{"na');
      w.res.socket?.destroy();
      n++;
    }
    return n;
  }

  /**
   * The open watches of a collection go dead, as over a partitioned network: no more events, no close,
   * not even at their timeoutSeconds. Watches opened later work.
   */
  silence(col: Collection): number {
    let n = 0;
    for (const w of this.watchers) {
      if (w.col !== col) continue;
      w.silent = true;
      n++;
    }
    return n;
  }

  watching(col: Collection): number {
    return [...this.watchers].filter((w) => w.col === col && !w.silent).length;
  }

  watches(col: Collection): number {
    return this.requests.filter((r) => r.startsWith(`WATCH ${col.path} `)).length;
  }

  lists(col: Collection): number {
    return this.requests.filter((r) => r === `LIST ${col.path}`).length;
  }

  private emit(col: Collection, ev: Event): void {
    this.history.get(col.path)!.push(ev);
    for (const w of this.watchers) if (w.col === col && !w.silent && matches(w.selector, ev.object)) w.res.write(line(eventBody(col, ev)));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://fake');
    const col = this.collections.find((c) => c.path === url.pathname);
    const watch = url.searchParams.get('watch') === 'true';
    const rv = url.searchParams.get('resourceVersion') ?? '';
    if (watch) this.watchQueries.push(url.searchParams);
    this.requests.push(watch ? `WATCH ${url.pathname} ${rv}` : `${req.method} ${url.pathname}`.replace(/^GET /, 'LIST '));
    if (req.headers.authorization !== `Bearer ${this.token}`) return status(res, 401, 'Unauthorized', 'Unauthorized');
    if (!col || req.method !== 'GET') return status(res, 404, 'NotFound', `the server could not find the requested resource (${req.method} ${url.pathname})`);
    if (this.forbidden.has(col.path)) {
      const resource = col.path.split('/').pop();
      return status(res, 403, 'Forbidden', `${resource} is forbidden: User "system:serviceaccount:kube-system:meshext" cannot ${watch ? 'watch' : 'list'} resource "${resource}"`);
    }
    const selector = parseSelector(url.searchParams.get('fieldSelector'));
    if (!watch) {
      const items = [...this.objects.get(col.path)!.values()].filter((o) => matches(selector, o)).map((o) => (col.core ? o : { apiVersion: col.apiVersion, kind: col.kind, ...o }));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ apiVersion: col.apiVersion, kind: `${col.kind}List`, metadata: { resourceVersion: String(this.rv) }, items }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders(); // as the API server does: the client's watch call returns on the headers
    const from = Number(rv || '0');
    if (from < (this.compactedBelow.get(col.path) ?? 0)) {
      res.end(line(gone(from)));
      return;
    }
    for (const ev of this.history.get(col.path)!) if (ev.rv > from && matches(selector, ev.object)) res.write(line(eventBody(col, ev)));
    const w: Watcher = { col, res, selector, silent: false };
    this.watchers.add(w);
    // As the API server does: a watch asked to last timeoutSeconds is closed cleanly then.
    const seconds = Number(url.searchParams.get('timeoutSeconds') ?? '0');
    const timer =
      seconds > 0
        ? setTimeout(() => {
            if (w.silent) return;
            this.watchers.delete(w);
            res.end();
          }, seconds * 1000)
        : undefined;
    res.on('close', () => {
      clearTimeout(timer);
      this.watchers.delete(w);
    });
  }
}

function eventBody(col: Collection, ev: Event): unknown {
  return { type: ev.type, object: { apiVersion: col.apiVersion, kind: col.kind, ...ev.object } };
}

function line(v: unknown): string {
  return JSON.stringify(v) + '\n';
}

function gone(rv: number): unknown {
  return { type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${rv}`, reason: 'Expired', code: 410 } };
}

function status(res: http.ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
}

/** Only `field=value` selectors on top-level fields (enough for `type=system.kuma.io/secret`). */
function parseSelector(s: string | null): [string, string] | undefined {
  if (!s) return undefined;
  const i = s.indexOf('=');
  return [s.slice(0, i), s.slice(i + 1)];
}

function matches(sel: [string, string] | undefined, o: Obj): boolean {
  // Dotted paths (spec.nodeName) as the API server reads them.
  return !sel || sel[0].split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], o) === sel[1];
}
