/**
 * DNS-name endpoints are resolved with their record TTL (IPv4 first, then IPv6) and cached until it
 * expires, like Envoy's STRICT_DNS cluster. c-ares does not read /etc/hosts, so a name the resolver does
 * not know (e.g. `localhost`) falls back to getaddrinfo with a short fixed refresh interval.
 */
import dns from 'node:dns';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** The subset of dns.promises.Resolver we use; injectable for tests. */
export interface DnsResolver {
  resolve4(name: string, opts: { ttl: true }): Promise<dns.RecordWithTtl[]>;
  resolve6(name: string, opts: { ttl: true }): Promise<dns.RecordWithTtl[]>;
}

/** Envoy's default dns_refresh_rate; used when the record TTL is unknown (hosts file) or zero. */
export const FALLBACK_TTL_S = 5;

interface Entry {
  addresses: ResolvedAddress[];
  expires: number;
  pending?: Promise<ResolvedAddress[]>;
}

export class EndpointResolver {
  private readonly cache = new Map<string, Entry>();

  constructor(
    private readonly resolver: DnsResolver = new dns.promises.Resolver({ timeout: 2000, tries: 2 }),
    private readonly now: () => number = Date.now,
  ) {}

  /** Addresses for `name`, from cache while the TTL lasts; a refresh failure keeps serving the stale answer. */
  async resolve(name: string): Promise<ResolvedAddress[]> {
    const e = this.cache.get(name);
    if (e && e.expires > this.now()) return e.addresses;
    if (e?.pending) return e.pending;
    const p = this.lookup(name).then(
      ({ addresses, ttl }) => {
        this.cache.set(name, { addresses, expires: this.now() + Math.max(ttl, 1) * 1000 });
        return addresses;
      },
      (err: unknown) => {
        if (e && e.addresses.length) {
          // Serve stale rather than fail a reachable service on a resolver blip; retry soon.
          this.cache.set(name, { addresses: e.addresses, expires: this.now() + FALLBACK_TTL_S * 1000 });
          return e.addresses;
        }
        this.cache.delete(name);
        throw err;
      },
    );
    this.cache.set(name, { addresses: e?.addresses ?? [], expires: 0, pending: p });
    return p;
  }

  /** The last answer for `name`, also once its TTL has passed (resolve() refreshes it); undefined when there is none yet. */
  known(name: string): ResolvedAddress[] | undefined {
    const a = this.cache.get(name)?.addresses;
    return a && a.length > 0 ? a : undefined;
  }

  /** Expiry time (ms epoch) of the cached answer, for inspection. */
  expiry(name: string): number | undefined {
    return this.cache.get(name)?.expires;
  }

  private async lookup(name: string): Promise<{ addresses: ResolvedAddress[]; ttl: number }> {
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(name, { ttl: true }), this.resolver.resolve6(name, { ttl: true })]);
    const addresses: ResolvedAddress[] = [];
    let ttl = Infinity;
    if (v4.status === 'fulfilled') for (const r of v4.value) {
      addresses.push({ address: r.address, family: 4 });
      ttl = Math.min(ttl, r.ttl);
    }
    if (v6.status === 'fulfilled') for (const r of v6.value) {
      addresses.push({ address: r.address, family: 6 });
      ttl = Math.min(ttl, r.ttl);
    }
    if (addresses.length) return { addresses, ttl: ttl === Infinity || ttl <= 0 ? FALLBACK_TTL_S : ttl };
    const all = await dns.promises.lookup(name, { all: true, order: 'ipv4first' } as dns.LookupAllOptions).catch((err: NodeJS.ErrnoException) => {
      const first = v4.status === 'rejected' ? (v4.reason as NodeJS.ErrnoException) : err;
      throw Object.assign(new Error(`cannot resolve ${name}: ${first.code ?? first.message}`), { code: first.code ?? err.code });
    });
    if (all.length === 0) throw Object.assign(new Error(`cannot resolve ${name}: no addresses`), { code: 'ENODATA' });
    return { addresses: all.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 })), ttl: FALLBACK_TTL_S };
  }
}
