/** Builders for proxy tests: CompiledService/Snapshot objects and small loopback servers. */
import net from 'node:net';
import tls from 'node:tls';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Registry } from '../../src/stats/registry.js';
import { silentLogger } from '../../src/log.js';
import { Proxy, type ProxyOptions } from '../../src/proxy/index.js';
import type { CompiledEndpoint, CompiledService, CompiledTls, Snapshot } from '../../src/snapshot/types.js';
import { vipPortKey } from '../../src/snapshot/types.js';

let seq = 0;

/** A service with sensible defaults; `name` also makes the id and kri. */
export function svc(p: Partial<CompiledService> & { endpoints: CompiledEndpoint[] }): CompiledService {
  const name = p.name ?? `svc${++seq}`;
  const mesh = p.mesh ?? 'default';
  return {
    id: `${mesh}/${name}`,
    name,
    mesh,
    kri: `kri_extsvc_${mesh}___${name}_`,
    displayName: name,
    namespace: '',
    labels: {},
    vip: `242.0.0.${seq}`,
    port: 80,
    protocol: 'tcp',
    hostnames: [`${name}.extsvc.mesh.local`],
    forbidden: false,
    generatorStatus: [],
    source: { file: 'test.yaml', index: 0 },
    ...p,
  };
}

/** TLS block with defaults (Secured, TLSAuto). */
export function tlsCfg(p: Partial<CompiledTls> = {}): CompiledTls {
  return { minVersion: 'TLSAuto', maxVersion: 'TLSAuto', allowRenegotiation: false, mode: 'Secured', subjectAltNames: [], ...p };
}

/** A snapshot over the given services. */
export function snap(services: CompiledService[], generation = 1): Snapshot {
  return {
    generation,
    services,
    byVipPort: new Map(services.map((s) => [vipPortKey(s.vip, s.port), s])),
    byHostname: new Map(services.flatMap((s) => s.hostnames.map((h) => [h, s] as [string, CompiledService]))),
    outbounds: [],
    rejected: [],
    warnings: [],
    vipCidr: '242.0.0.0/8',
  };
}

/** A proxy (its own engine) with a fresh registry and a silent logger. */
export function newProxy(o: Partial<ProxyOptions> = {}): { proxy: Proxy; stats: Registry } {
  const stats = new Registry();
  const proxy = new Proxy({ stats, log: silentLogger(), connectTimeoutMs: 2000, systemCaPath: null, ...o });
  return { proxy, stats };
}

/** A proxy (newProxy with `o`) serving `s` alone, with an outbound listener for it on 127.0.0.1 at `port`. */
export async function proxyFor(s: CompiledService, o: Partial<ProxyOptions> = {}): Promise<{ proxy: Proxy; stats: Registry; port: number; close: () => Promise<void> }> {
  const { proxy, stats } = newProxy(o);
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  return { proxy, stats, port: l.port, close: () => proxy.close() };
}

/** A resolver for DNS-name endpoints: every name is 127.0.0.1 (TTL 1 s) until `remove()`, then NXDOMAIN. */
export function removableName(): { resolver: NonNullable<ProxyOptions['resolver']>; remove: () => void } {
  let exists = true;
  const nx = (): Error => Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' });
  const resolver = {
    resolve4: async () => {
      if (!exists) throw nx();
      return [{ address: '127.0.0.1', ttl: 1 }];
    },
    resolve6: async () => {
      throw nx();
    },
  };
  return { resolver, remove: () => (exists = false) };
}

/** IP endpoint helper. */
export function ipEp(port: number, address = '127.0.0.1'): CompiledEndpoint {
  return { kind: 'ip', address, port, family: address.includes(':') ? 6 : 4 };
}

/**
 * Waits until the engine has no connection open, then until the proxy has handled every report the engine made
 * (it holds some back for a few ms; see Proxy.settled).
 */
export async function settle(proxy: Proxy, what = 'connections closed'): Promise<void> {
  await until(() => proxy.activeConnections() === 0, what);
  await proxy.settled();
}

/** Starts a server on 127.0.0.1:0 and returns it with its port. */
export async function listen<T extends net.Server>(srv: T, host = '127.0.0.1'): Promise<{ srv: T; port: number }> {
  srv.listen(0, host);
  await once(srv, 'listening');
  return { srv, port: (srv.address() as net.AddressInfo).port };
}

/** A loopback port nothing listens on (connects are refused): a listener's port, closed again. */
export async function refusedPort(): Promise<number> {
  const { srv, port } = await listen(net.createServer());
  await closeServer(srv);
  return port;
}

/** A loopback port free now, for a listener the test has something else open later (an agent's outbound). */
export const freePort = refusedPort;

/**
 * Sends GET on a kept-alive HTTP/1.1 connection and resolves when the whole response (by Content-Length) is in:
 * its status and how long it took. Rejects when the connection closes first.
 */
export function keepAliveGet(c: net.Socket, pathName: string): Promise<{ status: number; ms: number }> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = Number(/content-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? '0');
      if (buf.length < end + 4 + len) return;
      c.off('data', onData);
      c.off('close', onClose);
      resolve({ status: Number(buf.split(' ')[1]), ms: Date.now() - start });
    };
    const onClose = (): void => reject(new Error(`connection closed during ${pathName}`));
    c.on('data', onData);
    c.on('close', onClose);
    c.write(`GET ${pathName} HTTP/1.1\r\nHost: h\r\n\r\n`);
  });
}

/** An echo server counting accepted connections. */
export async function tcpEcho(): Promise<{ srv: net.Server; port: number; accepted: () => number }> {
  let n = 0;
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    n++;
    s.on('error', () => {});
    s.pipe(s);
  });
  const r = await listen(srv);
  return { ...r, accepted: () => n };
}

/** A TLS echo server. */
export async function tlsEcho(o: tls.TlsOptions): Promise<{ srv: tls.Server; port: number }> {
  const srv = tls.createServer(o, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  srv.on('tlsClientError', () => {});
  return listen(srv);
}

/** Sends `msg` through host:port, half-closes, and returns everything received until close (null on error before data). */
export function roundTrip(port: number, msg: string, host = '127.0.0.1'): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect({ host, port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('error', () => {});
    c.on('connect', () => c.end(msg));
    c.on('close', () => resolve(Buffer.concat(chunks).toString()));
  });
}

/** Waits until `pred` holds (polling), for counters updated on socket close. */
export async function until(pred: () => boolean, what: string, maxMs = 10_000): Promise<void> {
  const end = Date.now() + maxMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function closeServer(s: net.Server): Promise<void> {
  return new Promise((r) => {
    (s as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.();
    s.close(() => r());
  });
}


// Node's libuv accepts every connection, so the never-accepting listener lives in a small Python child.
// With backlog 0 the kernel queues one connection; the pre-filled ones take that slot (and more sit in
// SYN-SENT), so the kernel drops further SYNs instead of refusing them: the dialer sees a timeout.
const BLACKHOLE_PY = `
import socket, sys, time
l = socket.socket()
l.bind(('127.0.0.1', 0))
l.listen(0)
port = l.getsockname()[1]
fill = []
for _ in range(4):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(('127.0.0.1', port))
    except BlockingIOError:
        pass
    fill.append(c)
time.sleep(0.2)
probe = socket.socket()
probe.settimeout(0.5)
try:
    probe.connect(('127.0.0.1', port))
    print('ERR accepted', flush=True)
except socket.timeout:
    print(port, flush=True)
except OSError as e:
    print('ERR', e, flush=True)
sys.stdin.read()
`;

/** A loopback port whose SYNs go unanswered (full accept queue, never accepted); `close()` kills the child, freeing its sockets. */
export async function blackhole(): Promise<{ port: number; close: () => Promise<void> }> {
  const child: ChildProcess = spawn('python3', ['-c', BLACKHOLE_PY], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
  const text = line.toString().trim();
  const close = async (): Promise<void> => {
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  };
  if (!/^\d+$/.test(text)) {
    await close();
    throw new Error(`blackhole listener could not be set up: ${text}`);
  }
  return { port: Number(text), close };
}

/**
 * A proxy (60 s connect timeout) with an outbound listener for one service whose endpoint never answers a
 * connect (blackhole): its connections stay connecting. `close` stops the blackhole.
 */
export async function proxyToBlackhole(): Promise<{ proxy: Proxy; stats: Registry; s: CompiledService; port: number; close: () => Promise<void> }> {
  const hole = await blackhole();
  const s = svc({ endpoints: [ipEp(hole.port)] });
  const { proxy, stats } = newProxy({ connectTimeoutMs: 60_000 });
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  return { proxy, stats, s, port: l.port, close: hole.close };
}
