/** Test helpers for the DNS resolver: a dns-packet client, a real UDP+TCP upstream server, and dig. */
import dgram from 'node:dgram';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import dnsPacket, { type Answer, type Packet, type DecodedPacket } from 'dns-packet';

const execFileP = promisify(execFile);

export type Transport = 'udp' | 'tcp';

/** Sends raw bytes over UDP and resolves with the first reply, or undefined after `timeoutMs`. */
export function udpExchange(port: number, msg: Buffer, timeoutMs = 2000, address = '127.0.0.1'): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => done(undefined), timeoutMs);
    const done = (b: Buffer | undefined): void => {
      clearTimeout(timer);
      s.close();
      resolve(b);
    };
    s.on('message', (m) => done(m));
    s.on('error', () => done(undefined));
    s.send(msg, port, address);
  });
}

/** Sends one length-prefixed message over a new TCP connection and resolves with the reply frame. */
export function tcpExchange(port: number, msg: Buffer, timeoutMs = 2000, address = '127.0.0.1'): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ host: address, port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => done(undefined), timeoutMs);
    const done = (b: Buffer | undefined): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(b);
    };
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)));
    });
    s.on('error', () => done(undefined));
    s.on('close', () => done(undefined));
    s.write(framed(msg));
  });
}

let nextId = 1;

/** Builds a query packet; `edns` adds an OPT with that UDP size. */
export function makeQuery(name: string, type: string, opts: { id?: number; edns?: number; cls?: string } = {}): Buffer {
  const p: Packet = {
    type: 'query',
    id: opts.id ?? (nextId++ & 0xffff),
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as 'A', class: (opts.cls ?? 'IN') as 'IN' }],
  };
  if (opts.edns !== undefined) p.additionals = [{ name: '.', type: 'OPT', udpPayloadSize: opts.edns, flags: 0, options: [] } as unknown as Answer];
  return dnsPacket.encode(p);
}

/** A decoded record with the fields tests look at (dns-packet's union type hides them behind OPT). */
export interface Rec {
  name: string;
  type: string;
  ttl?: number;
  data?: unknown;
  udpPayloadSize?: number;
}

export type Reply = Omit<DecodedPacket, 'answers' | 'additionals'> & { answers: Rec[]; additionals: Rec[]; raw: Buffer };

/** Decodes a reply for assertions. */
export function decodeReply(raw: Buffer): Reply {
  const p = dnsPacket.decode(raw);
  return Object.assign(p, { answers: (p.answers ?? []) as Rec[], additionals: (p.additionals ?? []) as Rec[], raw });
}

/** Queries the resolver and decodes the reply. */
export async function ask(port: number, name: string, type: string, opts: { transport?: Transport; edns?: number; id?: number; address?: string } = {}): Promise<Reply> {
  const msg = makeQuery(name, type, opts);
  const raw = opts.transport === 'tcp' ? await tcpExchange(port, msg, 2000, opts.address) : await udpExchange(port, msg, 2000, opts.address);
  if (!raw) throw new Error(`no reply for ${name} ${type}`);
  return decodeReply(raw);
}

export function rcodeOf(p: Reply | DecodedPacket): string {
  return (p as { rcode?: string }).rcode ?? 'NOERROR';
}

export interface DigResult {
  status: string;
  flags: string[];
  answers: string[];
  raw: string;
}

/** Runs `dig @127.0.0.1 -p PORT ...` and extracts status, header flags and answer data. */
export async function dig(port: number, args: string[]): Promise<DigResult> {
  const { stdout } = await execFileP('dig', ['@127.0.0.1', '-p', String(port), '+tries=1', '+time=3', ...args], { timeout: 15_000 });
  const status = /status: (\w+)/.exec(stdout)?.[1] ?? '';
  const flags = (/;; flags: ([^;]*);/.exec(stdout)?.[1] ?? '').trim().split(/\s+/);
  const answers: string[] = [];
  const section = /;; ANSWER SECTION:\n([\s\S]*?)\n\n/.exec(stdout)?.[1] ?? '';
  for (const line of section.split('\n')) if (line.trim()) answers.push(line.trim().split(/\s+/).slice(4).join(' '));
  return { status, flags, answers, raw: stdout };
}

export interface SeenQuery {
  transport: Transport;
  id: number;
  name: string;
  type: string;
}

/** What a test upstream does with a query: reply packets (sent in order), or nothing. */
export type UpstreamHandler = (q: DecodedPacket, transport: Transport) => Array<Packet | Buffer>;

/** dns-packet throws on odd-but-forwardable queries (fuzzing produces them); a test upstream ignores those. */
function safeDecode(m: Buffer): DecodedPacket | undefined {
  try {
    return dnsPacket.decode(m);
  } catch {
    return undefined;
  }
}

/** A real DNS server on UDP and TCP (same port) for forwarding tests, scripted by a handler. */
export class TestUpstream {
  readonly seen: SeenQuery[] = [];
  private udp!: dgram.Socket;
  private tcp!: net.Server;
  port = 0;

  constructor(
    readonly address: string,
    public handler: UpstreamHandler,
  ) {}

  /**
   * Binds UDP on a free port, then TCP on the same number; a TCP port already taken there (another test's
   * listener or connection) starts over on a new port, since nothing reserves the TCP twin of a UDP port.
   */
  async start(): Promise<this> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.bindBoth();
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw e;
        await new Promise<void>((r) => this.udp.close(() => r()));
      }
    }
  }

  private async bindBoth(): Promise<this> {
    this.udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => this.udp.bind(0, this.address, () => r()));
    this.port = this.udp.address().port;
    this.udp.on('message', (m, rinfo) => {
      const q = safeDecode(m);
      if (!q) return;
      this.seen.push({ transport: 'udp', id: q.id ?? 0, name: q.questions?.[0]?.name ?? '', type: q.questions?.[0]?.type ?? '' });
      for (const r of this.handler(q, 'udp')) this.udp.send(Buffer.isBuffer(r) ? r : dnsPacket.encode(r), rinfo.port, rinfo.address);
    });
    this.tcp = net.createServer((s) => {
      let buf = Buffer.alloc(0);
      s.on('error', () => s.destroy());
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + m.length);
          const q = safeDecode(m);
          if (!q) continue;
          this.seen.push({ transport: 'tcp', id: q.id ?? 0, name: q.questions?.[0]?.name ?? '', type: q.questions?.[0]?.type ?? '' });
          for (const r of this.handler(q, 'tcp')) {
            s.write(framed(Buffer.isBuffer(r) ? r : dnsPacket.encode(r)));
          }
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.tcp.once('error', reject);
      this.tcp.listen(this.port, this.address, () => {
        this.tcp.off('error', reject);
        resolve();
      });
    });
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => this.udp.close(() => r()));
    await new Promise<void>((r) => this.tcp.close(() => r()));
  }
}

/** A normal authoritative-looking reply to `q` with the given A addresses (NXDOMAIN when none). */
export function answerA(q: DecodedPacket, addrs: string[], extra: Partial<Packet> = {}): Packet {
  const question = q.questions?.[0] ?? { name: '', type: 'A' as const };
  return {
    type: 'response',
    id: q.id ?? 0,
    flags: dnsPacket.RECURSION_AVAILABLE | (addrs.length ? 0 : 3),
    questions: [question],
    answers: addrs.map((data) => ({ name: question.name, type: 'A' as const, class: 'IN' as const, ttl: 60, data })),
    ...extra,
  };
}

/**
 * A UDP socket that receives queries and never answers (a black-holed upstream). With `tcp`, a TCP listener
 * on the same port accepts connections, reads the queries and never answers either.
 */
export async function blackHole(address: string, opts: { tcp?: boolean } = {}): Promise<{ port: number; close(): Promise<void> }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await blackHoleOnce(address, opts);
    } catch (e) {
      // The TCP twin of a free UDP port may be taken (see TestUpstream.start): try another port.
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw e;
    }
  }
}

async function blackHoleOnce(address: string, opts: { tcp?: boolean }): Promise<{ port: number; close(): Promise<void> }> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, address, () => r()));
  const port = s.address().port;
  const held = new Set<net.Socket>();
  const tcp = opts.tcp
    ? net.createServer((c) => {
        held.add(c);
        c.on('error', () => c.destroy());
        c.on('close', () => held.delete(c));
        c.resume();
      })
    : undefined;
  if (tcp) {
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, address, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      await new Promise<void>((r) => s.close(() => r()));
      throw e;
    }
  }
  return {
    port,
    close: async () => {
      for (const c of held) c.destroy();
      await new Promise<void>((r) => s.close(() => r()));
      if (tcp) await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
}

/** Polls `fn` until it returns true (no timing assertion: the test's own timeout bounds it). */
export async function until(fn: () => boolean, stepMs = 10): Promise<void> {
  while (!fn()) await new Promise((r) => setTimeout(r, stepMs));
}

/** Opens a TCP connection to the resolver (from `localAddress`, e.g. 127.0.0.2, when given). */
export async function openTcp(port: number, opts: { address?: string; localAddress?: string } = {}): Promise<net.Socket> {
  const s = net.connect({ host: opts.address ?? '127.0.0.1', port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
  s.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('close', () => reject(new Error(`connection to port ${port} closed before it was established`)));
  });
  return s;
}

/** Resolves when the socket has closed (at once if it already has). */
export function closed(s: net.Socket): Promise<void> {
  return new Promise((r) => (s.closed ? r() : s.once('close', () => r())));
}

/** Resolves with the next reply frame on an open connection, or undefined if the connection closes first. */
export function nextReply(s: net.Socket): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)));
    };
    const onClose = (): void => done(undefined);
    const done = (b: Buffer | undefined): void => {
      s.off('data', onData);
      s.off('close', onClose);
      resolve(b);
    };
    s.on('data', onData);
    s.on('close', onClose);
    if (s.closed) done(undefined);
  });
}

/** Frames a message with its 2-byte length (RFC 1035 §4.2.2). */
export function framed(msg: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

/** Sends one framed query on an open connection and resolves with the next reply frame, or undefined if the connection closes first. */
export function tcpQuery(s: net.Socket, msg: Buffer): Promise<Buffer | undefined> {
  const reply = nextReply(s);
  if (!s.closed) s.write(framed(msg));
  return reply;
}
