/** The resolver's counters and gauges in the shared registry; series are cached for the hot path. */
import { createRequire } from 'node:module';
import type { Registry, Series } from '../stats/registry.js';

export type QueryOutcome = 'answered' | 'forwarded' | 'nxdomain' | 'servfail' | 'formerr' | 'dropped';

// dns-packet keeps its type-name table in a submodule that its typings do not declare.
const packetTypes = createRequire(import.meta.url)('dns-packet/types.js') as { toString(n: number): string };

/** Types browsers and stub resolvers ask for today that dns-packet 5.6 has no name for. */
const MODERN_TYPES: Readonly<Record<number, string>> = { 64: 'SVCB', 65: 'HTTPS' };

const QUERIES = 'meshext_dns_queries_total';
const UPSTREAM_FAIL = 'meshext_dns_upstream_failures_total';

/** Bounded qtype label: A, AAAA, other types dns-packet knows by name, else OTHER. */
export function qtypeLabel(qtype: number | undefined): string {
  if (qtype === undefined) return 'OTHER';
  if (qtype === 1) return 'A';
  if (qtype === 28) return 'AAAA';
  const extra = MODERN_TYPES[qtype];
  if (extra) return extra;
  const name = packetTypes.toString(qtype);
  return name.startsWith('UNKNOWN') ? 'OTHER' : name;
}

export class DnsMetrics {
  private readonly queries = new Map<string, Series>();
  private readonly upstreamFails = new Map<string, Series>();
  readonly records: Series;
  readonly inFlight: Series;
  readonly queryTimeout: Series;
  readonly tcpActive: Series;
  readonly tcpRejected: Series;
  readonly tcpClientRejected: Series;
  readonly tcpEvicted: Series;
  readonly tcpReadTimeout: Series;
  readonly tcpIdleTimeout: Series;

  constructor(private readonly registry: Registry) {
    this.records = registry.gauge('meshext_dns_records', 'Owned hostnames the resolver answers');
    this.inFlight = registry.gauge('meshext_dns_queries_in_flight', 'Queries waiting for an upstream nameserver');
    this.queryTimeout = registry.counter('meshext_dns_query_timeout_total', 'Forwarded queries answered SERVFAIL because the query timeout ran out before an upstream answered');
    this.tcpActive = registry.gauge('meshext_dns_tcp_cx_active', 'Open TCP client connections');
    this.tcpRejected = registry.counter('meshext_dns_tcp_cx_overflow_total', 'TCP connections closed at accept: max connections reached and none idle to evict');
    this.tcpClientRejected = registry.counter('meshext_dns_tcp_cx_client_overflow_total', 'TCP connections closed at accept: the per-client limit reached and none of that client idle to evict');
    this.tcpEvicted = registry.counter('meshext_dns_tcp_cx_evicted_total', 'Idle TCP connections closed to make room for a new one (global or per-client limit)');
    this.tcpReadTimeout = registry.counter('meshext_dns_tcp_cx_read_timeout_total', 'TCP connections closed because a query did not arrive whole within the read timeout');
    this.tcpIdleTimeout = registry.counter('meshext_dns_tcp_cx_idle_timeout_total', 'TCP connections closed after the idle timeout with no query outstanding');
  }

  /** Counts one query by type and outcome. */
  query(qtype: number | undefined, outcome: QueryOutcome): void {
    const label = qtypeLabel(qtype);
    const key = `${label}|${outcome}`;
    let s = this.queries.get(key);
    if (!s) {
      s = this.registry.counter(QUERIES, 'DNS queries by query type and outcome', { qtype: label, outcome });
      this.queries.set(key, s);
    }
    s.inc();
  }

  /** Counts one failed try against an upstream (labelled by its configured address). */
  upstreamFailure(upstream: string): void {
    let s = this.upstreamFails.get(upstream);
    if (!s) {
      s = this.registry.counter(UPSTREAM_FAIL, 'Upstream nameserver tries that failed (timeout, error, SERVFAIL/REFUSED)', { upstream });
      this.upstreamFails.set(upstream, s);
    }
    s.inc();
  }
}
