/**
 * Per-service metrics. The engine counts (connections, bytes, requests, denials) in its threads; each read of
 * the registry copies those counts into the series here (exact, no lag). What only the control plane knows
 * (why TLS failed, classified from the engine's reports) is counted here directly.
 */
import type { HistogramSeries, Registry, Series } from '../stats/registry.js';
import { SERVICE_COUNTERS, type ServiceCounter } from '../engine/engine.js';
import type { EngineHistogram } from '../native/addon.js';
import type { TlsFailReason } from './tls.js';

/** Metric name, help and labels of each engine counter (code_class for requests). */
const SERIES: Record<ServiceCounter, { name: string; help: string; gauge?: true; labels?: Record<string, string> }> = {
  downstreamCxTotal: { name: 'meshext_downstream_cx_total', help: 'Client connections accepted' },
  downstreamCxActive: { name: 'meshext_downstream_cx_active', help: 'Open client connections', gauge: true },
  upstreamCxTotal: { name: 'meshext_upstream_cx_total', help: 'Upstream connections attempted' },
  upstreamCxActive: { name: 'meshext_upstream_cx_active', help: 'Open upstream connections', gauge: true },
  connectFail: { name: 'meshext_upstream_cx_connect_fail_total', help: 'Upstream connect failures' },
  connectTimeout: { name: 'meshext_upstream_cx_connect_timeout_total', help: 'Upstream connect timeouts' },
  upstreamRxBytes: { name: 'meshext_upstream_cx_rx_bytes_total', help: 'Bytes received from upstreams' },
  upstreamTxBytes: { name: 'meshext_upstream_cx_tx_bytes_total', help: 'Bytes sent to upstreams' },
  tlsHandshake: { name: 'meshext_upstream_tls_handshake_total', help: 'Completed upstream TLS handshakes' },
  tlsResumed: { name: 'meshext_upstream_tls_session_reused_total', help: 'Upstream TLS handshakes that resumed a cached session' },
  rq1xx: { name: 'meshext_upstream_rq_total', help: 'Upstream requests by response class', labels: { code_class: '1xx' } },
  rq2xx: { name: 'meshext_upstream_rq_total', help: 'Upstream requests by response class', labels: { code_class: '2xx' } },
  rq3xx: { name: 'meshext_upstream_rq_total', help: 'Upstream requests by response class', labels: { code_class: '3xx' } },
  rq4xx: { name: 'meshext_upstream_rq_total', help: 'Upstream requests by response class', labels: { code_class: '4xx' } },
  rq5xx: { name: 'meshext_upstream_rq_total', help: 'Upstream requests by response class', labels: { code_class: '5xx' } },
  rqRetry: { name: 'meshext_upstream_rq_retry_total', help: 'Requests sent again: by the MeshRetry policy, or replayed after the upstream closed or refused them unprocessed' },
  rqRetrySuccess: { name: 'meshext_upstream_rq_retry_success_total', help: 'Requests retried by the MeshRetry policy whose last attempt got a response it does not retry' },
  rqRetryLimitExceeded: { name: 'meshext_upstream_rq_retry_limit_exceeded_total', help: 'Requests that failed in a way the MeshRetry policy retries after its numRetries were spent' },
  rqRetryBufferOverflow: { name: 'meshext_retry_or_shadow_abandoned_total', help: 'Requests that could not be retried: their body outgrew the 64 KiB retry buffer' },
  rqPerTryTimeout: { name: 'meshext_upstream_rq_per_try_timeout_total', help: 'Request attempts ended by the MeshRetry perTryTimeout' },
  accessDenied: { name: 'meshext_access_denied_total', help: 'Requests or connections denied by mesh routing settings' },
  headerTimeout: { name: 'meshext_downstream_rq_header_timeout_total', help: 'HTTP/1.x requests whose head did not arrive in time (408)' },
  upstreamCxMaxDuration: { name: 'meshext_upstream_cx_max_duration_reached_total', help: 'Upstream connections retired by the MeshTimeout http.maxConnectionDuration' },
  downstreamRqIdleTimeout: { name: 'meshext_downstream_rq_idle_timeout_total', help: 'HTTP exchanges ended by the MeshTimeout http.streamIdleTimeout (408)' },
  upstreamRqMaxDuration: { name: 'meshext_upstream_rq_max_duration_reached_total', help: 'Upstream requests ended by the MeshTimeout http.maxStreamDuration' },
  accessLogLines: { name: 'meshext_access_log_lines_total', help: 'Access log lines queued for writing (MeshAccessLog; one per backend)' },
  accessLogDropped: { name: 'meshext_access_log_dropped_total', help: 'Access log lines dropped because the writer lagged behind (the data path never waits for it)' },
  upstreamRqTimeout: { name: 'meshext_upstream_rq_timeout_total', help: 'Requests whose response did not complete within the MeshTimeout http.requestTimeout (504)' },
  upstreamCxOverflow: { name: 'meshext_upstream_cx_overflow_total', help: 'Connections or requests refused by the MeshCircuitBreaker connectionLimits.maxConnections' },
  upstreamRqPendingOverflow: {
    name: 'meshext_upstream_rq_pending_overflow_total',
    help: 'Connections or requests refused by the MeshCircuitBreaker connectionLimits.maxPendingRequests or maxRequests',
  },
};

/** Envoy's outlier detectors, as the `detector` label of ejections. */
export type OutlierDetector = 'consecutive_5xx' | 'consecutive_gateway_failure' | 'consecutive_local_origin_failure' | 'success_rate' | 'failure_percentage';

export class ServiceMetrics {
  private readonly series = new Map<ServiceCounter, Series>();
  private readonly tlsFail = new Map<TlsFailReason, Series>();
  private readonly rqTime: HistogramSeries;
  private readonly connectTime: HistogramSeries;
  private readonly ejections = new Map<OutlierDetector, Series>();
  private health: { attempts: Series; success: Series; failure: Series; healthy: Series; ejected: Series } | undefined;

  constructor(
    private readonly reg: Registry,
    readonly kri: string,
  ) {
    // Request classes appear once they have a count; everything else is there from the start.
    for (const c of SERVICE_COUNTERS) if (!/^rq[1-5]xx$/.test(c)) this.seriesOf(c);
    // Envoy's names (cluster.<name>.upstream_rq_time, upstream_cx_connect_ms), in milliseconds as Envoy's are.
    this.rqTime = reg.histogram('meshext_upstream_rq_time', 'Request time in ms: request head received to upstream response complete (HTTP)', { service: kri });
    this.connectTime = reg.histogram('meshext_upstream_cx_connect_ms', 'Upstream connect time in ms, TLS handshake included', { service: kri });
  }

  private seriesOf(c: ServiceCounter): Series {
    let s = this.series.get(c);
    if (!s) {
      const d = SERIES[c];
      const labels = { service: this.kri, ...d.labels };
      s = d.gauge ? this.reg.gauge(d.name, d.help, labels) : this.reg.counter(d.name, d.help, labels);
      this.series.set(c, s);
    }
    return s;
  }

  /** Copies the engine's counts (SERVICE_COUNTERS order). */
  apply(counts: readonly number[]): void {
    SERVICE_COUNTERS.forEach((c, i) => {
      const v = counts[i] ?? 0;
      if (v !== 0 || this.series.has(c)) this.seriesOf(c).set(v);
    });
  }

  /** Copies the engine's latency histograms (`boundsMs`: the engine's finite bucket bounds). */
  applyHistograms(boundsMs: readonly number[], rqTime: EngineHistogram, connectTime: EngineHistogram): void {
    this.rqTime.set(boundsMs, rqTime.counts, rqTime.sumMs);
    this.connectTime.set(boundsMs, connectTime.counts, connectTime.sumMs);
  }

  /** Counts one outlier ejection by the detector that made it. */
  ejection(detector: OutlierDetector): void {
    let s = this.ejections.get(detector);
    if (!s) {
      s = this.reg.counter('meshext_upstream_outlier_ejections_total', 'Endpoints ejected by MeshCircuitBreaker outlier detection', { service: this.kri, detector });
      this.ejections.set(detector, s);
    }
    s.inc();
  }

  /** The health series of a service with active checks or outlier detection (made on first use). */
  private healthSeries(): NonNullable<ServiceMetrics['health']> {
    if (!this.health) {
      const l = { service: this.kri };
      this.health = {
        attempts: this.reg.counter('meshext_upstream_health_check_attempts_total', 'Active health checks run (MeshHealthCheck)', l),
        success: this.reg.counter('meshext_upstream_health_check_success_total', 'Active health checks passed', l),
        failure: this.reg.counter('meshext_upstream_health_check_failure_total', 'Active health checks failed (timeouts, refused connects and unexpected answers)', l),
        healthy: this.reg.gauge('meshext_upstream_health_check_healthy_endpoints', 'Endpoints in the balancer: not failing active health checks, not ejected, not backed off', l),
        ejected: this.reg.gauge('meshext_upstream_outlier_ejections_active', 'Endpoints ejected by outlier detection now', l),
      };
    }
    return this.health;
  }

  /** Counts one active health check's result. */
  healthCheck(ok: boolean): void {
    const h = this.healthSeries();
    h.attempts.inc();
    (ok ? h.success : h.failure).inc();
  }

  /** Sets the endpoint gauges (read when metrics are). */
  endpoints(healthy: number, ejected: number): void {
    const h = this.healthSeries();
    h.healthy.set(healthy);
    h.ejected.set(ejected);
  }

  /** Counts one TLS verification or handshake failure. */
  tlsVerifyFail(reason: TlsFailReason): void {
    let s = this.tlsFail.get(reason);
    if (!s) {
      s = this.reg.counter('meshext_upstream_tls_verify_fail_total', 'Upstream TLS verification or handshake failures', { service: this.kri, reason });
      this.tlsFail.set(reason, s);
    }
    s.inc();
  }
}
