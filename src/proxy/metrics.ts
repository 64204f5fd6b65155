/** Per-service counters and gauges, created once per service and kept on the hot path. */
import type { Registry, Series } from '../stats/registry.js';
import type { TlsFailReason } from './errors.js';

export class ServiceMetrics {
  readonly upstreamCxTotal: Series;
  readonly upstreamCxActive: Series;
  readonly upstreamRxBytes: Series;
  readonly upstreamTxBytes: Series;
  readonly upstreamConnectFail: Series;
  readonly upstreamConnectTimeout: Series;
  readonly tlsHandshake: Series;
  readonly tlsSessionReused: Series;
  readonly downstreamCxTotal: Series;
  readonly downstreamCxActive: Series;
  readonly accessDenied: Series;
  readonly upstreamRqRetry: Series;
  private readonly rq = new Map<string, Series>();
  private readonly tlsFail = new Map<TlsFailReason, Series>();

  constructor(
    private readonly reg: Registry,
    readonly kri: string,
  ) {
    const l = { service: kri };
    this.upstreamCxTotal = reg.counter('meshext_upstream_cx_total', 'Upstream connections attempted', l);
    this.upstreamCxActive = reg.gauge('meshext_upstream_cx_active', 'Open upstream connections', l);
    this.upstreamRxBytes = reg.counter('meshext_upstream_cx_rx_bytes_total', 'Bytes received from upstreams', l);
    this.upstreamTxBytes = reg.counter('meshext_upstream_cx_tx_bytes_total', 'Bytes sent to upstreams', l);
    this.upstreamConnectFail = reg.counter('meshext_upstream_cx_connect_fail_total', 'Upstream connect failures', l);
    this.upstreamConnectTimeout = reg.counter('meshext_upstream_cx_connect_timeout_total', 'Upstream connect timeouts', l);
    this.tlsHandshake = reg.counter('meshext_upstream_tls_handshake_total', 'Completed upstream TLS handshakes', l);
    this.tlsSessionReused = reg.counter('meshext_upstream_tls_session_reused_total', 'Upstream TLS handshakes that resumed a cached session', l);
    this.downstreamCxTotal = reg.counter('meshext_downstream_cx_total', 'Client connections accepted', l);
    this.downstreamCxActive = reg.gauge('meshext_downstream_cx_active', 'Open client connections', l);
    this.upstreamRqRetry = reg.counter('meshext_upstream_rq_retry_total', 'Requests replayed on a new connection after a reused one was found closed', l);
    this.accessDenied = reg.counter('meshext_access_denied_total', 'Requests or connections denied by mesh routing settings', l);
  }

  /** Counts `n` (default 1) upstream responses by status class (`2xx`...), or `reset` when none arrived. */
  request(status: number | 'reset', n = 1): void {
    this.requests(status === 'reset' ? 'reset' : `${Math.floor(status / 100)}xx`, n);
  }

  /** Counts `n` upstream responses of one class (`2xx`..., `reset`), e.g. counted by the native engine. */
  requests(cls: string, n: number): void {
    let s = this.rq.get(cls);
    if (!s) {
      s = this.reg.counter('meshext_upstream_rq_total', 'Upstream requests by response class', { service: this.kri, code_class: cls });
      this.rq.set(cls, s);
    }
    s.inc(n);
  }

  /** Counts one TLS verification/handshake failure. */
  tlsVerifyFail(reason: TlsFailReason): void {
    let s = this.tlsFail.get(reason);
    if (!s) {
      s = this.reg.counter('meshext_upstream_tls_verify_fail_total', 'Upstream TLS verification or handshake failures', { service: this.kri, reason });
      this.tlsFail.set(reason, s);
    }
    s.inc();
  }
}
