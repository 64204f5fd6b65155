/**
 * Client-side TLS session cache for upstream connections, one per built UpstreamTls (so per service TLS
 * context: a snapshot that changes the service's TLS settings builds a new context and with it an empty
 * cache). Entries are keyed by endpoint address:port and SNI. TLS 1.3 tickets are handed out once
 * (RFC 8446 appendix C.4: reusing a ticket links connections), TLS 1.2 sessions may be reused until
 * replaced. Only sessions from connections that passed verification are stored (the caller's job).
 *
 * Each session is stored with the peer certificate verified on the handshake that produced it: Node (20)
 * exposes no peer certificate on a resumed connection (serialized sessions carry no chain), yet the name
 * checks must run on every connection, so they run against the certificate the session belongs to.
 */
import type { PeerCertificate } from 'node:tls';

/**
 * Tickets kept per endpoint. Servers send two per full handshake and (OpenSSL's default, nginx included) one
 * per resumed one, so each connection returns at least the ticket it used; but every connection being
 * set up holds none, so with more concurrent new connections than cached tickets the rest fall back to full
 * handshakes (4 gave 40 % full handshakes at 16 concurrent connections, 32 gave none after the first burst).
 */
export const TICKETS_PER_KEY = 32;
/** Endpoints remembered per service; the oldest key is evicted first. */
export const KEYS_PER_CACHE = 64;

/** A cached session and the peer certificate it was established with. */
export interface CachedSession {
  session: Buffer;
  peer: PeerCertificate;
}

interface Entry extends CachedSession {
  /** TLS 1.3 tickets are single-use; TLS 1.2 sessions are not. */
  singleUse: boolean;
}

export class TlsSessionCache {
  private readonly byKey = new Map<string, Entry[]>();

  constructor(
    private readonly perKey = TICKETS_PER_KEY,
    private readonly maxKeys = KEYS_PER_CACHE,
  ) {}

  /** The cache key for one upstream address and SNI. */
  static key(host: string, port: number, servername: string | undefined): string {
    return `${host}|${port}|${servername ?? ''}`;
  }

  /** Returns a session to offer to `key`, removing it when single-use; undefined when none is cached. */
  take(key: string): CachedSession | undefined {
    const list = this.byKey.get(key);
    if (!list || list.length === 0) return undefined;
    // Newest first: the latest ticket has the longest remaining lifetime.
    const e = list[list.length - 1] as Entry;
    if (e.singleUse) {
      list.pop();
      if (list.length === 0) this.byKey.delete(key);
    }
    return { session: e.session, peer: e.peer };
  }

  /** Stores a session obtained from a verified connection to `key`. */
  put(key: string, session: Buffer, protocol: string | null, peer: PeerCertificate): void {
    const singleUse = protocol === 'TLSv1.3';
    let list = this.byKey.get(key);
    if (!list) {
      if (this.byKey.size >= this.maxKeys) {
        const oldest = this.byKey.keys().next().value as string;
        this.byKey.delete(oldest);
      }
      list = [];
      this.byKey.set(key, list);
    }
    // A reusable (TLS 1.2) session replaces everything: there is no point in keeping several.
    if (!singleUse) list.length = 0;
    list.push({ session, peer, singleUse });
    if (list.length > this.perKey) list.splice(0, list.length - this.perKey);
  }

  /** Forgets everything cached for `key` (e.g. after a verification failure on that endpoint). */
  drop(key: string): void {
    this.byKey.delete(key);
  }

  /** Forgets everything. */
  clear(): void {
    this.byKey.clear();
  }

  /** Number of sessions held for `key` (for tests and debugging). */
  size(key: string): number {
    return this.byKey.get(key)?.length ?? 0;
  }
}
