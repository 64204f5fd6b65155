/**
 * Forwards queries for names we do not own to the upstream nameservers, in order, one try each, over the
 * client's transport, all within one deadline per query: each try waits at most the per-try timeout and
 * never past the deadline, so a query waits for upstreams no longer than its query timeout whatever the
 * path (failover, TC→TCP retry, a connect that never completes). Replies are accepted only when they come from the socket we sent on (connected
 * UDP socket / our own TCP connection), carry the fresh random id we chose, and repeat our question;
 * anything else is ignored, so an off-path attacker has to guess port, id and question (RFC 5452).
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { UpstreamAddress } from './resolv-conf.js';
import { createUpstreamUdpSocket, connectUpstreamTcp } from './upstream-socket.js';
import { FrameReader, frame } from './framing.js';
import { replyMatches, replyRcode, replyTruncated, RCODE_REFUSED, RCODE_SERVFAIL } from './wire.js';
import type { DnsMetrics } from './metrics.js';

type TryResult = { reply: Buffer } | { fail: string };

const MAX_TCP_REPLY = 65535;

/** Random 16-bit ids from a refilled pool: one crypto call per 1024 queries. */
class IdSource {
  private pool = randomBytes(2048);
  private off = 0;
  next(): number {
    if (this.off >= this.pool.length) {
      this.pool = randomBytes(2048);
      this.off = 0;
    }
    const v = this.pool.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
}

export class Forwarder {
  private readonly ids = new IdSource();
  private readonly aborts = new Set<() => void>();
  private closed = false;
  private readonly lastWarn = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly upstreams: readonly UpstreamAddress[],
    private readonly timeoutMs: number,
    private readonly metrics: DnsMetrics,
    private readonly log: Logger,
  ) {}

  /**
   * Resolves with the upstream reply (client id restored), or undefined when every upstream failed or
   * `queryTimeoutMs` (from now) ran out first. A SERVFAIL/REFUSED reply moves on to the next upstream but is
   * relayed if nothing better comes.
   */
  async forward(query: Buffer, questionEnd: number, transport: 'udp' | 'tcp', queryTimeoutMs: number): Promise<Buffer | undefined> {
    const clientId = query.readUInt16BE(0);
    const deadline = performance.now() + queryTimeoutMs;
    // Each try gets the per-try timeout, cut to what is left of the query's budget.
    const budget = (): number => Math.min(this.timeoutMs, Math.floor(deadline - performance.now()));
    let fallback: Buffer | undefined;
    for (const up of this.upstreams) {
      if (this.closed) break;
      let ms = budget();
      if (ms < 1) break;
      let res = transport === 'udp' ? await this.tryUdp(up, query, questionEnd, ms) : await this.tryTcp(up, query, questionEnd, ms);
      if ('reply' in res && transport === 'udp' && replyTruncated(res.reply) && (ms = budget()) >= 1) {
        // The answer does not fit upstream's UDP limit: ask the same server over TCP; if that fails,
        // the truncated reply is still a valid answer (it tells the client to use TCP itself).
        const viaTcp = await this.tryTcp(up, query, questionEnd, ms);
        if ('reply' in viaTcp) res = viaTcp;
        else this.failed(up, `TCP retry after truncation: ${viaTcp.fail}`);
      }
      if ('fail' in res) {
        this.failed(up, res.fail);
        continue;
      }
      const rcode = replyRcode(res.reply);
      res.reply.writeUInt16BE(clientId, 0);
      if (rcode === RCODE_SERVFAIL || rcode === RCODE_REFUSED) {
        this.failed(up, rcode === RCODE_SERVFAIL ? 'SERVFAIL' : 'REFUSED');
        fallback = res.reply;
        continue;
      }
      return res.reply;
    }
    if (!fallback && !this.closed && budget() < 1) this.metrics.queryTimeout.inc();
    return fallback;
  }

  /** Aborts every upstream try in flight; their forwards resolve as failures. */
  close(): void {
    this.closed = true;
    for (const abort of [...this.aborts]) abort();
  }

  private withFreshId(query: Buffer): Buffer {
    const q = Buffer.from(query);
    q.writeUInt16BE(this.ids.next(), 0);
    return q;
  }

  private failed(up: UpstreamAddress, reason: string): void {
    const key = `${up.address}:${up.port}`;
    this.metrics.upstreamFailure(key);
    // Rate-limited: a dead upstream under load would otherwise log once per query.
    const now = Date.now();
    const w = this.lastWarn.get(key);
    if (!w || now - w.at > 10_000) {
      this.log.warn({ upstream: key, reason, suppressed: w?.suppressed ?? 0 }, 'upstream nameserver failed');
      this.lastWarn.set(key, { at: now, suppressed: 0 });
    } else {
      w.suppressed++;
    }
  }

  private tryUdp(up: UpstreamAddress, query: Buffer, questionEnd: number, timeoutMs: number): Promise<TryResult> {
    const sent = this.withFreshId(query);
    return new Promise((resolve) => {
      // A fresh connected socket per try: the kernel picks a random source port, filters replies from
      // other sources, and reports ICMP port-unreachable as ECONNREFUSED so a dead upstream fails fast.
      // A shared pool would need its own port randomisation and demultiplexing for no gain at our rates.
      let sock: ReturnType<typeof createUpstreamUdpSocket>;
      let done = false;
      const finish = (r: TryResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.aborts.delete(abort);
        try {
          sock.close();
        } catch {
          // already closed
        }
        resolve(r);
      };
      const abort = (): void => finish({ fail: 'aborted' });
      const timer = setTimeout(() => finish({ fail: `timeout after ${timeoutMs} ms` }), timeoutMs);
      this.aborts.add(abort);
      try {
        sock = createUpstreamUdpSocket(up.address);
      } catch (err) {
        clearTimeout(timer);
        this.aborts.delete(abort);
        resolve({ fail: (err as Error).message });
        return;
      }
      sock.on('error', (err: NodeJS.ErrnoException) => finish({ fail: err.code ?? err.message }));
      sock.on('message', (msg) => {
        if (replyMatches(msg, sent, questionEnd)) finish({ reply: msg });
      });
      // A failed connect (no route: ENETUNREACH; broadcast: EACCES) is handed to this callback, not to
      // 'error'; sending on the unconnected socket would then throw outside any handler and end the agent.
      sock.connect(up.port, up.address, (err?: Error) => {
        if (done) return;
        if (err) {
          finish({ fail: (err as NodeJS.ErrnoException).code ?? err.message });
          return;
        }
        sock.send(sent, (e) => {
          if (e) finish({ fail: (e as NodeJS.ErrnoException).code ?? e.message });
        });
      });
    });
  }

  private tryTcp(up: UpstreamAddress, query: Buffer, questionEnd: number, timeoutMs: number): Promise<TryResult> {
    const sent = this.withFreshId(query);
    return new Promise((resolve) => {
      const reader = new FrameReader(MAX_TCP_REPLY);
      const sock = connectUpstreamTcp(up.address, up.port);
      let done = false;
      const finish = (r: TryResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.aborts.delete(abort);
        sock.destroy();
        resolve(r);
      };
      const abort = (): void => finish({ fail: 'aborted' });
      const timer = setTimeout(() => finish({ fail: `timeout after ${timeoutMs} ms (tcp)` }), timeoutMs);
      this.aborts.add(abort);
      sock.on('error', (err: NodeJS.ErrnoException) => finish({ fail: `${err.code ?? err.message} (tcp)` }));
      sock.on('close', () => finish({ fail: 'connection closed before a reply (tcp)' }));
      sock.on('data', (chunk: Buffer) => {
        const frames = reader.push(chunk);
        if (frames === 'oversize') return finish({ fail: 'oversize frame (tcp)' });
        for (const f of frames) {
          if (replyMatches(f, sent, questionEnd)) return finish({ reply: Buffer.from(f) });
        }
      });
      sock.write(frame(sent));
    });
  }
}
