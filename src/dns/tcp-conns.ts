/**
 * Admission for TCP client connections of one listener (RFC 7766 §6.2.2): a global cap and a per-client
 * (source IP) cap, each preferring to evict the connection idle the longest (no query outstanding) over
 * refusing the newcomer, so connections that hold a slot without asking anything cannot starve clients
 * that do ask. A connection that is waiting for answers is never evicted.
 */

/** What to do with a new connection: admit it (after closing `evict`, if given), or refuse it. */
export type Admission<C> = { admit: true; evict?: C } | { admit: false; limit: 'global' | 'client' };

interface ClientEntry<C> {
  count: number;
  /** This client's idle connections, longest idle first (a Set keeps insertion order). */
  idle: Set<C>;
}

export class TcpConnTable<C> {
  private readonly clientOf = new Map<C, string>();
  private readonly clients = new Map<string, ClientEntry<C>>();
  /** Every idle connection, longest idle first. */
  private readonly idle = new Set<C>();

  constructor(
    private readonly maxConnections: number,
    private readonly maxPerClient: number,
  ) {}

  /** Open connections. */
  get size(): number {
    return this.clientOf.size;
  }

  /**
   * Decides on a new connection from `client`. An evicted connection is already forgotten here; the caller
   * closes it. The per-client limit is checked first: a client at its limit only ever displaces its own.
   */
  admit(client: string): Admission<C> {
    const entry = this.clients.get(client);
    if (entry && entry.count >= this.maxPerClient) {
      const victim = first(entry.idle);
      if (victim === undefined) return { admit: false, limit: 'client' };
      this.remove(victim);
      return { admit: true, evict: victim };
    }
    if (this.size >= this.maxConnections) {
      const victim = first(this.idle);
      if (victim === undefined) return { admit: false, limit: 'global' };
      this.remove(victim);
      return { admit: true, evict: victim };
    }
    return { admit: true };
  }

  /** Registers an admitted connection; it starts idle (it has asked nothing yet). */
  add(conn: C, client: string): void {
    this.clientOf.set(conn, client);
    let entry = this.clients.get(client);
    if (!entry) {
      entry = { count: 0, idle: new Set() };
      this.clients.set(client, entry);
    }
    entry.count++;
    this.markIdle(conn);
  }

  /** The connection has a query outstanding: not evictable. */
  markBusy(conn: C): void {
    this.idle.delete(conn);
    this.clients.get(this.clientOf.get(conn) ?? '')?.idle.delete(conn);
  }

  /** The connection owes nothing any more; it becomes the most recently idle. */
  markIdle(conn: C): void {
    const client = this.clientOf.get(conn);
    if (client === undefined) return;
    const entry = this.clients.get(client)!;
    this.idle.delete(conn);
    entry.idle.delete(conn);
    this.idle.add(conn);
    entry.idle.add(conn);
  }

  /** Forgets a connection (closed or evicted); idempotent. */
  remove(conn: C): void {
    const client = this.clientOf.get(conn);
    if (client === undefined) return;
    this.clientOf.delete(conn);
    this.idle.delete(conn);
    const entry = this.clients.get(client)!;
    entry.idle.delete(conn);
    if (--entry.count === 0) this.clients.delete(client);
  }
}

function first<C>(set: Set<C>): C | undefined {
  for (const v of set) return v;
  return undefined;
}
