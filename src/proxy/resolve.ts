/**
 * DNS-name endpoints are resolved with their record TTL (IPv4 and IPv6) and re-resolved when it runs out, like
 * Envoy's STRICT_DNS cluster; the addresses go into the service's plan. c-ares does not read /etc/hosts, so a
 * name the resolver does not know (e.g. `localhost`) falls back to getaddrinfo with a short fixed refresh.
 *
 * What an answer means for the endpoint:
 * - addresses: the endpoint has those addresses until the next answer;
 * - NXDOMAIN or NODATA (the name exists nowhere, or has no A/AAAA record): the endpoint has no address now;
 * - a failure to get an answer (server failure, timeout, refused): the last answer stays in use for at most
 *   STALE_ANSWER_MAX_MS after it was obtained, retried every FALLBACK_TTL_S; after that the endpoint has no address.
 */
import dns from 'node:dns';
import type { NameAnswer } from '../snapshot/plan.js';

/** The subset of dns.promises.Resolver we use; injectable for tests. */
export interface DnsResolver {
  resolve4(name: string, opts: { ttl: true }): Promise<dns.RecordWithTtl[]>;
  resolve6(name: string, opts: { ttl: true }): Promise<dns.RecordWithTtl[]>;
}

/** Envoy's default dns_refresh_rate; used when the record TTL is unknown (hosts file) or zero, and for retries. */
export const FALLBACK_TTL_S = 5;
/** How long an answer stays in use while the resolver cannot be asked (server failure, timeout). */
export const STALE_ANSWER_MAX_MS = 5 * 60_000;

/** Errors that are an answer: the name does not exist, or has no address records. */
const AUTHORITATIVE = new Set(['ENOTFOUND', 'ENODATA']);

interface Entry {
  answer: NameAnswer;
  /** When to ask again (Date.now() ms). */
  expires: number;
  /** When the addresses in `answer` were obtained (for the stale bound). */
  obtained: number;
  pending?: Promise<NameAnswer>;
}

export class EndpointResolver {
  private readonly cache = new Map<string, Entry>();

  constructor(
    private readonly resolver: DnsResolver = new dns.promises.Resolver({ timeout: 2000, tries: 2 }),
    private readonly now: () => number = Date.now,
    private readonly lookup: (name: string) => Promise<Array<{ address: string; family: number }>> = (name) => dns.promises.lookup(name, { all: true, order: 'ipv4first' } as dns.LookupAllOptions),
  ) {}

  /** The current answer for `name` (also once due for a refresh); undefined when it was never asked. */
  answer(name: string): NameAnswer | undefined {
    return this.cache.get(name)?.answer;
  }

  /** When `name` should be asked again (Date.now() ms); undefined when it was never asked. */
  expiry(name: string): number | undefined {
    return this.cache.get(name)?.expires;
  }

  /** Asks for `name` when its answer is due (one query at a time per name); resolves with the answer in use. */
  resolve(name: string): Promise<NameAnswer> {
    const e = this.cache.get(name);
    if (e?.pending) return e.pending;
    if (e && e.expires > this.now()) return Promise.resolve(e.answer);
    // An answer is kept only while the name is still asked for (retain() may have dropped it meanwhile).
    const keep = (entry: Entry): void => {
      if (this.cache.get(name)?.pending === p) this.cache.set(name, entry);
    };
    const p: Promise<NameAnswer> = this.ask(name).then(
      ({ addresses, ttl }) => {
        const now = this.now();
        const answer: NameAnswer = { addresses };
        keep({ answer, expires: now + Math.max(ttl, 1) * 1000, obtained: now });
        return answer;
      },
      (err: NodeJS.ErrnoException) => {
        const now = this.now();
        const code = err.code ?? 'EAI_FAIL';
        const stale = e && 'addresses' in e.answer && !AUTHORITATIVE.has(code) && now - e.obtained < STALE_ANSWER_MAX_MS;
        const answer: NameAnswer = stale ? e.answer : { error: AUTHORITATIVE.has(code) ? `${code === 'ENODATA' ? 'no address records' : 'no such name'} (${code})` : code };
        keep({ answer, expires: now + FALLBACK_TTL_S * 1000, obtained: stale ? e.obtained : now });
        return answer;
      },
    );
    this.cache.set(name, { answer: e?.answer ?? { error: 'not resolved yet' }, expires: 0, obtained: e?.obtained ?? 0, pending: p });
    return p;
  }

  /** Forgets names no endpoint uses any more. */
  retain(names: ReadonlySet<string>): void {
    for (const n of this.cache.keys()) if (!names.has(n)) this.cache.delete(n);
  }

  private async ask(name: string): Promise<{ addresses: string[]; ttl: number }> {
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(name, { ttl: true }), this.resolver.resolve6(name, { ttl: true })]);
    const addresses: string[] = [];
    let ttl = Infinity;
    for (const r of [v4, v6]) {
      if (r.status !== 'fulfilled') continue;
      for (const rec of r.value) {
        addresses.push(rec.address);
        ttl = Math.min(ttl, rec.ttl);
      }
    }
    if (addresses.length) return { addresses, ttl: ttl === Infinity || ttl <= 0 ? FALLBACK_TTL_S : ttl };
    // Nothing from DNS: the hosts file may know it (getaddrinfo).
    let all: Array<{ address: string; family: number }>;
    try {
      all = await this.lookup(name);
    } catch (err) {
      // The DNS verdict says more than getaddrinfo's: a failure to ask wins (the name may well exist), then
      // NXDOMAIN / NODATA as DNS said it.
      const dnsCodes = [v4, v6].flatMap((r) => (r.status === 'rejected' ? [(r.reason as NodeJS.ErrnoException).code] : [])).filter((c): c is string => !!c);
      const code = dnsCodes.find((c) => !AUTHORITATIVE.has(c)) ?? dnsCodes[0] ?? (err as NodeJS.ErrnoException).code ?? 'EAI_FAIL';
      throw Object.assign(new Error(`cannot resolve ${name}: ${code}`), { code });
    }
    if (all.length === 0) throw Object.assign(new Error(`cannot resolve ${name}: no addresses`), { code: 'ENODATA' });
    return { addresses: all.map((a) => a.address), ttl: FALLBACK_TTL_S };
  }
}
