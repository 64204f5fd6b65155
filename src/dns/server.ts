/**
 * The embedded DNS resolver: answers owned names (service hostnames → VIPs) authoritatively and forwards
 * everything else to the node's nameservers, over UDP and TCP on every listen address.
 *
 * Deliberate deviations from kuma-dp's DNS proxy (research/kuma-mes.md §5):
 * - Owned names match case-insensitively (RFC 4343) and the answer echoes the question's spelling.
 * - Other query types for owned names (TXT, MX, SRV, HTTPS, ANY...) get NOERROR/NODATA instead of being
 *   forwarded: forwarding would leak internal names to the upstream, and an upstream NXDOMAIN would be
 *   cached by the client for the whole name, breaking the A/AAAA lookups that follow.
 * - All upstreams are tried in order with failover; a truncated UDP reply is retried over TCP.
 * - Responses (QR=1) arriving as queries are dropped, not answered, to avoid reflection loops.
 * - UDP responses never exceed min(client EDNS size, 1232) (DNS Flag Day 2020, no IP fragmentation);
 *   bigger answers, local or forwarded, go out as header + question with TC so the client uses TCP.
 *
 * TCP clients are bounded as RFC 7766 §6.2 asks, so no local client can hold the resolver's TCP side:
 * a per-client (source IP) limit, a read timeout for each query however slowly its bytes trickle in, an
 * idle timeout, and at either limit the connection idle the longest is evicted before a newcomer is refused.
 */
import net, { isIP } from 'node:net';
import type { Logger } from 'pino';
import { silentLogger } from '../log.js';
import { exposureOf } from '../exposure.js';
import { Registry } from '../stats/registry.js';
import { DnsError } from './errors.js';
import { listenShared } from '../net/shared.js';
import { DNS_TTL_SECONDS } from './ttl.js';
import { FrameReader, frame } from './framing.js';
import { Forwarder } from './forwarder.js';
import { TcpConnTable } from './tcp-conns.js';
import { DnsMetrics } from './metrics.js';
import { compileRecords, type DnsRecordSet, type IpFamilyMode } from './records.js';
import { readResolvConf, type UpstreamAddress } from './resolv-conf.js';
import { replyRcode, RCODE_NXDOMAIN, RCODE_SERVFAIL } from './wire.js';
import { Engine, dnsFitReply, dnsServfail, type EngineListener } from '../engine/engine.js';
import type { EngineEvent } from '../native/addon.js';

export interface DnsServerOptions {
  /** Where to serve (UDP and TCP on each). Default 127.0.0.1:15053. Port 0 picks one port for both. */
  listen?: Array<{ address: string; port: number }>;
  /** Upstream nameservers in failover order; default: `nameserver` lines of `resolvConfPath`. */
  upstreams?: Array<{ address: string; port: number }>;
  resolvConfPath?: string;
  /** `dualstack` (default) answers AAAA for IPv4 VIPs with the `::ffff:` mapped address; `ipv4` answers NODATA. */
  ipFamilyMode?: 'dualstack' | 'ipv4';
  /** TTL of owned-name answers in seconds; default DNS_TTL_SECONDS (30, Kuma's value). */
  ttl?: number;
  /** Per-try upstream timeout; default 2000 ms. */
  upstreamTimeoutMs?: number;
  /**
   * Longest a forwarded query waits for upstreams, over every try (failover, TC→TCP retry); then SERVFAIL.
   * Default 4000 ms: two tries of 2 s, and the answer reaches a stub before its own 5 s timeout (glibc, musl).
   */
  queryTimeoutMs?: number;
  /** Forwarded queries allowed in flight; beyond that queries get SERVFAIL at once and are counted. Default 1024. */
  maxInFlight?: number;
  /** Idle TCP connections (no query outstanding, none begun) are closed after this; default 10000 ms (RFC 7766 §6.2.3). */
  tcpIdleTimeoutMs?: number;
  /**
   * A TCP query (its 2-byte length and the whole message) must arrive within this from its first byte, and a
   * new connection's first query within this from accept; else the connection is closed. Default 2000 ms
   * (miekg/dns, under CoreDNS, gives the first read 2 s). Trickled bytes do not extend it.
   */
  tcpReadTimeoutMs?: number;
  /** Concurrent TCP client connections per listen address; at the limit the longest-idle one is evicted. Default 256. */
  tcpMaxConnections?: number;
  /** Concurrent TCP connections per client IP per listen address; at the limit that client's longest-idle one is evicted. Default 16. */
  tcpMaxConnectionsPerClient?: number;
  stats?: Registry;
  log?: Logger;
  /**
   * The engine that serves UDP and answers owned names (off the JS thread, so a stalled JS thread never stops
   * them); the agent passes its data-plane engine. Default: one of its own, stopped with the server.
   */
  engine?: Engine;
}

export type Transport = 'udp' | 'tcp';

const DEFAULT_LISTEN = [{ address: '127.0.0.1', port: 15053 }];
/** Queries are small; anything bigger on TCP is hostile or broken and closes the connection. */
const MAX_TCP_QUERY = 4096;
/** Per-connection pipelining depth before we stop reading from that client (back-pressure). */
const MAX_PENDING_PER_CONN = 64;
const BIND_RETRIES = 20;
/**
 * The engine answers SERVFAIL itself to a forwarded UDP query this side has not answered within the query
 * timeout plus this: our own SERVFAIL comes at the timeout, so the engine's only comes when this thread stalls.
 */
const STALL_GRACE_MS = 1000;

/** CLOCK_MONOTONIC in ms, the engine's clock (its events' `at`). */
function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

function checkInt(name: string, v: number | undefined, min: number, max: number): void {
  if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) {
    throw new DnsError('MESHEXT_E_DNS_OPTION', `DNS option ${name}=${String(v)} must be an integer from ${min} to ${max}`);
  }
}

function checkAddrs(name: string, list: Array<{ address: string; port: number }> | undefined, minPort: number): void {
  for (const [i, a] of (list ?? []).entries()) {
    if (isIP(a.address.replace(/%.*$/, '')) === 0) {
      throw new DnsError('MESHEXT_E_DNS_OPTION', `DNS option ${name}[${i}].address=${JSON.stringify(a.address)} is not an IP address`);
    }
    checkInt(`${name}[${i}].port`, a.port, minPort, 65535);
  }
}

function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'EADDRINUSE') return 'address already in use (EADDRINUSE)';
  if (e.code === 'EADDRNOTAVAIL') return 'address not available on this host (EADDRNOTAVAIL)';
  if (e.code === 'EACCES') return 'permission denied (EACCES; ports below 1024 need CAP_NET_BIND_SERVICE)';
  return e.code ? `${e.message}` : String(err);
}

interface Bound {
  udp: EngineListener;
  tcp: net.Server;
  address: string;
  port: number;
}

export class DnsServer {
  private readonly opts: Required<Pick<DnsServerOptions, 'ttl' | 'upstreamTimeoutMs' | 'queryTimeoutMs' | 'maxInFlight' | 'tcpIdleTimeoutMs' | 'tcpReadTimeoutMs' | 'tcpMaxConnections' | 'tcpMaxConnectionsPerClient'>> & { mode: IpFamilyMode };
  private readonly log: Logger;
  private readonly metrics: DnsMetrics;
  private readonly overflow;
  /** The engine serving UDP and holding the owned-name table; set by start(). */
  private engine: Engine | undefined;
  private ownEngine = false;
  /** The records last set (kept for an engine that starts later). */
  private pendingRecords: ReadonlyMap<string, DnsRecordSet> = new Map();
  private bound: Bound[] = [];
  private readonly conns = new Set<net.Socket>();
  private forwarder: Forwarder | undefined;
  private inFlight = 0;
  private state: 'new' | 'starting' | 'running' | 'stopped' = 'new';

  constructor(private readonly options: DnsServerOptions = {}) {
    checkInt('ttl', options.ttl, 0, 2 ** 31 - 1);
    checkInt('upstreamTimeoutMs', options.upstreamTimeoutMs, 1, 600_000);
    checkInt('queryTimeoutMs', options.queryTimeoutMs, 1, 600_000);
    checkInt('maxInFlight', options.maxInFlight, 1, 1_000_000);
    checkInt('tcpIdleTimeoutMs', options.tcpIdleTimeoutMs, 1, 3_600_000);
    checkInt('tcpReadTimeoutMs', options.tcpReadTimeoutMs, 1, 3_600_000);
    checkInt('tcpMaxConnections', options.tcpMaxConnections, 1, 1_000_000);
    checkInt('tcpMaxConnectionsPerClient', options.tcpMaxConnectionsPerClient, 1, 1_000_000);
    checkAddrs('listen', options.listen, 0);
    checkAddrs('upstreams', options.upstreams, 1);
    if (options.listen && options.listen.length === 0) throw new DnsError('MESHEXT_E_DNS_OPTION', 'DNS option listen is empty; give at least one address');
    const mode = options.ipFamilyMode ?? 'dualstack';
    if (mode !== 'dualstack' && mode !== 'ipv4') {
      throw new DnsError('MESHEXT_E_DNS_OPTION', `DNS option ipFamilyMode=${JSON.stringify(mode)} must be "dualstack" or "ipv4"`);
    }
    this.opts = {
      ttl: options.ttl ?? DNS_TTL_SECONDS,
      upstreamTimeoutMs: options.upstreamTimeoutMs ?? 2000,
      queryTimeoutMs: options.queryTimeoutMs ?? 4000,
      maxInFlight: options.maxInFlight ?? 1024,
      tcpIdleTimeoutMs: options.tcpIdleTimeoutMs ?? 10_000,
      tcpReadTimeoutMs: options.tcpReadTimeoutMs ?? 2000,
      tcpMaxConnections: options.tcpMaxConnections ?? 256,
      tcpMaxConnectionsPerClient: options.tcpMaxConnectionsPerClient ?? 16,
      mode,
    };
    this.log = (options.log ?? silentLogger()).child({ component: 'dns' });
    const stats = options.stats ?? new Registry();
    this.metrics = new DnsMetrics(stats);
    this.overflow = stats.counter('meshext_dns_overflow_total', 'Forwarded queries refused with SERVFAIL because maxInFlight was reached');
    // Queries the engine settled itself are counted there; each read of the registry copies them.
    stats.onCollect(() => {
      if (this.engine?.running) this.metrics.settled(this.engine.dnsCounts());
    });
  }

  /** Binds UDP and TCP on every listen address; rejects with MESHEXT_E_DNS_LISTEN naming the address. */
  async start(): Promise<void> {
    if (this.state !== 'new') throw new DnsError('MESHEXT_E_DNS_STATE', `DNS server cannot start: it is ${this.state}`);
    this.state = 'starting';
    try {
      this.engine = this.options.engine ?? Engine.start(1);
      this.ownEngine = this.options.engine === undefined;
      this.engine.on('dns-query', (ev) => this.onEngineQuery(ev));
      this.setRecords(this.pendingRecords);
      const upstreams: UpstreamAddress[] = this.options.upstreams ? this.options.upstreams.map((u) => ({ ...u })) : readResolvConf(this.options.resolvConfPath);
      for (const l of this.options.listen ?? DEFAULT_LISTEN) this.bound.push(await this.bind(l.address, l.port));
      for (const u of upstreams) {
        const self = this.bound.find((b) => b.port === u.port && (b.address === u.address || b.address === '0.0.0.0' || b.address === '::'));
        if (self) {
          throw new DnsError('MESHEXT_E_DNS_LOOP', `DNS upstream ${u.address}:${u.port} is this resolver's own listen address ${self.address}:${self.port}; forwarding would loop`);
        }
      }
      this.forwarder = new Forwarder(upstreams, this.opts.upstreamTimeoutMs, this.metrics, this.log);
      this.state = 'running';
      this.log.info({ listen: this.addresses(), upstreams: upstreams.map((u) => `${u.address}:${u.port}`), ttl: this.opts.ttl, ipFamilyMode: this.opts.mode, queryTimeoutMs: this.opts.queryTimeoutMs, maxInFlight: this.opts.maxInFlight, tcp: { idleTimeoutMs: this.opts.tcpIdleTimeoutMs, readTimeoutMs: this.opts.tcpReadTimeoutMs, maxConnections: this.opts.tcpMaxConnections, maxConnectionsPerClient: this.opts.tcpMaxConnectionsPerClient } }, 'DNS resolver listening');
      for (const b of this.bound) {
        const exposure = exposureOf(b.address);
        if (exposure) {
          this.log.warn({ listen: `${b.address}:${b.port}`, exposure }, `EXPOSED: the DNS resolver on ${b.address}:${b.port} answers, and forwards queries recursively for, ${exposure}; an open resolver unless a firewall limits who reaches it`);
        }
      }
    } catch (err) {
      await this.closeSockets();
      this.state = 'stopped';
      throw err;
    }
  }

  /**
   * Closes every socket and aborts forwarded queries in flight. `finishForwarded`: first waits (at most the
   * query timeout) for the forwarded queries in flight to be answered, so a handover to a successor costs no
   * client a stub timeout.
   */
  async stop(opts: { finishForwarded?: boolean } = {}): Promise<void> {
    if (this.state === 'stopped') return;
    if (opts.finishForwarded && this.state === 'running') {
      const end = Date.now() + this.opts.queryTimeoutMs;
      while (this.inFlight > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      // A concurrent stop() may have finished meanwhile.
      if ((this.state as string) === 'stopped') return;
    }
    this.state = 'stopped';
    this.forwarder?.close();
    await this.closeSockets();
    if (this.engine?.running) this.metrics.settled(this.engine.dnsCounts()); // the last counts stay readable
    if (this.ownEngine) this.engine?.stop();
    this.log.info('DNS resolver stopped');
  }

  /** Swaps the owned-name table atomically; an invalid table throws and leaves the current one serving. */
  setRecords(records: ReadonlyMap<string, DnsRecordSet>): void {
    const next = compileRecords(records, { ttl: this.opts.ttl, mode: this.opts.mode });
    this.pendingRecords = records;
    this.engine?.dnsTable([...next].map(([name, c]) => ({ name, ...c })));
    this.metrics.records.set(next.size);
    this.log.debug({ names: next.size }, 'DNS records replaced');
  }

  /** The bound addresses (real ports when 0 was asked), one entry per transport. */
  addresses(): Array<{ address: string; port: number; transport: Transport }> {
    return this.bound.flatMap((b) => [
      { address: b.address, port: b.port, transport: 'udp' as const },
      { address: b.address, port: b.port, transport: 'tcp' as const },
    ]);
  }

  private async bind(address: string, port: number): Promise<Bound> {
    // With port 0, UDP and TCP should share one port (clients retry truncated answers over TCP on the
    // same port), so take UDP's ephemeral port for TCP and try again if TCP finds it taken.
    for (let attempt = 0; ; attempt++) {
      const udp = this.bindUdp(address, port);
      const udpPort = udp.address.port;
      try {
        const tcp = await this.bindTcp(address, udpPort, port !== 0);
        return { udp, tcp, address, port: udpPort };
      } catch (err) {
        udp.close();
        if (port !== 0 || attempt >= BIND_RETRIES || (err as DnsError).syscallCode !== 'EADDRINUSE') throw err;
      }
    }
  }

  private bindUdp(address: string, port: number): EngineListener {
    try {
      return this.engine!.dnsListen(address, port, this.opts.queryTimeoutMs + STALL_GRACE_MS, (code, fatal) => this.log.error({ address, port, err: code, fatal }, fatal ? 'DNS UDP socket failed' : 'DNS UDP socket error'));
    } catch (e) {
      const err = Object.assign(new Error((e as Error).message), { code: (e as { errnoName?: string }).errnoName });
      throw new DnsError('MESHEXT_E_DNS_LISTEN', `DNS resolver cannot listen on udp ${address}:${port}: ${errnoText(err)}`, err);
    }
  }

  /** `shared`: a fixed port, shared with a successor agent; else UDP's ephemeral port, taken exclusively. */
  private bindTcp(address: string, port: number, shared: boolean): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      const conns = new TcpConnTable<net.Socket>(this.opts.tcpMaxConnections, this.opts.tcpMaxConnectionsPerClient);
      // allowHalfOpen: a client may send its queries and shut down its side; we still owe the answers.
      // No server.maxConnections: admission (with eviction) is the connection table's.
      const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => this.onTcpConnection(conns, sock));
      const onError = (err: Error): void => {
        server.close();
        reject(new DnsError('MESHEXT_E_DNS_LISTEN', `DNS resolver cannot listen on tcp ${address}:${port}: ${errnoText(err)}`, err));
      };
      server.once('error', onError);
      const ready = (): void => {
        server.off('error', onError);
        server.on('error', (err) => this.log.warn({ err }, 'DNS TCP server error'));
        resolve(server);
      };
      if (shared) listenShared(server, address, port).then(ready, onError);
      else server.listen({ host: address, port, exclusive: true }, ready);
    });
  }

  private async closeSockets(): Promise<void> {
    const bound = this.bound;
    this.bound = [];
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    await Promise.all(
      bound.map((b) => {
        b.udp.close();
        return new Promise<void>((r) => b.tcp.close(() => r()));
      }),
    );
  }

  /** A UDP query the engine did not answer itself: forwarded here, the reply sent back through the engine. */
  private onEngineQuery(ev: EngineEvent): void {
    if (this.state !== 'running') return;
    const query = ev['query'] as Buffer;
    const token = Number(ev['token']);
    // Received while this thread was stalled for longer than the engine waits: it has had its SERVFAIL.
    if (monotonicMs() - Number(ev['at']) > this.opts.queryTimeoutMs + STALL_GRACE_MS) return;
    void this.forward(query, Number(ev['qtype']), Number(ev['questionEnd']), 'udp').then((reply) => {
      if (reply && this.state === 'running') this.engine?.dnsSend(ev.id, token, reply);
    });
  }

  private onTcpConnection(table: TcpConnTable<net.Socket>, sock: net.Socket): void {
    sock.on('error', () => sock.destroy());
    if (this.state !== 'running') {
      sock.destroy();
      return;
    }
    // One host is one client whichever socket family it arrives on.
    const client = (sock.remoteAddress ?? '').replace(/^::ffff:/i, '');
    const admission = table.admit(client);
    if (!admission.admit) {
      (admission.limit === 'client' ? this.metrics.tcpClientRejected : this.metrics.tcpRejected).inc();
      sock.destroy();
      return;
    }
    if (admission.evict) {
      this.metrics.tcpEvicted.inc();
      admission.evict.destroy();
    }
    table.add(sock, client);
    this.conns.add(sock);
    this.metrics.tcpActive.inc();

    const reader = new FrameReader(MAX_TCP_QUERY);
    let pending = 0;
    let peerEnded = false;
    let fresh = true; // nothing received yet
    // One timer says what the connection waits for: 'read' — a query has begun (or the connection is new)
    // and must be whole within tcpReadTimeoutMs of that, however its bytes trickle in; 'idle' — nothing owed
    // and nothing begun (RFC 7766 §6.2.3); none — answers are owed (each bounded by the query timeout).
    let timer: NodeJS.Timeout | undefined;
    let waiting: 'read' | 'idle' | 'none' = 'none';
    const arm = (next: 'read' | 'idle' | 'none'): void => {
      clearTimeout(timer);
      timer = undefined;
      waiting = next;
      if (next === 'none') return;
      const ms = next === 'read' ? this.opts.tcpReadTimeoutMs : this.opts.tcpIdleTimeoutMs;
      timer = setTimeout(() => {
        (next === 'read' ? this.metrics.tcpReadTimeout : this.metrics.tcpIdleTimeout).inc();
        sock.destroy();
      }, ms);
    };
    // Reading stops while too many answers are owed or the client does not take our writes (back-pressure);
    // a client that stops reading while owed nothing is idle, and the idle timeout closes it.
    const reading = (): boolean => pending < MAX_PENDING_PER_CONN && !sock.writableNeedDrain;
    const wants = (): 'read' | 'idle' | 'none' => (reading() && (fresh || reader.buffered > 0) ? 'read' : pending > 0 ? 'none' : 'idle');
    /** Re-evaluates flow and timer; `restart` starts a fresh period (a new message began, or an answer went out). */
    const settle = (restart: boolean): void => {
      if (reading()) sock.resume();
      else sock.pause();
      const next = wants();
      if (restart || next !== waiting) arm(next);
    };
    arm('read');
    sock.on('drain', () => settle(false));
    sock.on('close', () => {
      clearTimeout(timer);
      table.remove(sock);
      this.conns.delete(sock);
      this.metrics.tcpActive.dec();
    });
    sock.on('end', () => {
      peerEnded = true;
      if (pending === 0) sock.end();
    });
    const reply = (out: Buffer | undefined): void => {
      pending--;
      if (sock.destroyed) return;
      if (pending === 0) table.markIdle(sock);
      if (out && sock.writable) sock.write(frame(out));
      if (peerEnded && pending === 0) sock.end();
      // The end of a busy period starts a new idle one; a query in progress keeps its deadline.
      settle(pending === 0 && wants() === 'idle');
    };
    sock.on('data', (chunk: Buffer) => {
      fresh = false;
      const frames = reader.push(chunk);
      if (frames === 'oversize') {
        this.metrics.query(undefined, 'dropped');
        sock.destroy();
        return;
      }
      for (const f of frames) {
        if (pending++ === 0) table.markBusy(sock);
        const r = this.handle(f);
        if (r instanceof Promise) void r.then(reply);
        else reply(r);
      }
      if (!sock.destroyed) settle(frames.length > 0);
    });
  }

  /** Answers one message; never throws. Returns the response, or undefined to send nothing. */
  /** A TCP query: answered by the engine's rules (owned names, malformed queries), else forwarded. */
  private handle(msg: Buffer): Buffer | undefined | Promise<Buffer | undefined> {
    const r = this.engine?.dnsResolve(msg, 'tcp');
    if (!r) return undefined;
    if ('reply' in r) return r.reply;
    return this.forward(msg, r.qtype, r.questionEnd, 'tcp');
  }

  private forward(msg: Buffer, qtype: number, questionEnd: number, transport: Transport): Promise<Buffer | undefined> {
    const fwd = this.forwarder;
    const servfail = (): Buffer | undefined => {
      this.metrics.query(qtype, 'servfail');
      return dnsServfail(msg) ?? undefined;
    };
    if (!fwd || this.inFlight >= this.opts.maxInFlight) {
      if (fwd) this.overflow.inc();
      return Promise.resolve(servfail());
    }
    this.inFlight++;
    this.metrics.inFlight.set(this.inFlight);
    return fwd
      .forward(msg, questionEnd, transport, this.opts.queryTimeoutMs)
      .then((reply) => {
        if (!reply) return servfail();
        const rcode = replyRcode(reply);
        this.metrics.query(qtype, rcode === RCODE_NXDOMAIN ? 'nxdomain' : rcode === RCODE_SERVFAIL ? 'servfail' : 'forwarded');
        return dnsFitReply(reply, msg, transport);
      })
      .catch((err: unknown) => {
        this.log.error({ err }, 'DNS forwarding failed');
        return servfail();
      })
      .finally(() => {
        this.inFlight--;
        this.metrics.inFlight.set(this.inFlight);
      });
  }

}
