/**
 * Endpoint health: the one place that decides whether an endpoint takes traffic, and why not. The engine counts
 * outcomes per endpoint and reports only what is notable (a failed connect or TLS handshake, a 5xx response, the
 * first success after failures, an active health check's result); this module turns them into one state per
 * endpoint and tells the engine how long the endpoint stays out of its balancer (engineHealth). Causes, in the
 * order they win:
 *
 * - `unhealthy`: MeshHealthCheck active checks failed `unhealthyThreshold` times in a row; it stays out until
 *   `healthyThreshold` checks in a row pass.
 * - `ejected`: MeshCircuitBreaker outlier detection (Envoy's consecutive detectors): consecutive 5xx
 *   (`totalFailures`), consecutive 502/503/504 (`gatewayFailures`), consecutive local-origin failures (refused or
 *   timed-out connects, TLS failures, connections or streams lost before the response, request timeouts; `localOriginFailures`, only with `splitExternalAndLocalErrors`; otherwise
 *   local-origin failures count as 503s in the other two, as Envoy does). Out for `baseEjectionTime` × the number
 *   of times it was ejected (at most MAX_EJECTION_MS); never more than `maxEjectionPercent` of the endpoints at
 *   once, but always at least one. It comes back when that time is over, by the engine's clock.
 *   The statistical detectors (success rate, failure percentage) judge each endpoint's responses over an
 *   interval (`sweep`, run by the proxy on the engine's per-endpoint counts).
 * - `backed_off`: without outlier detection, meshext's own passive back-off: FAIL_THRESHOLD failed connects in a
 *   row back an endpoint off for an exponentially growing time (capped); its first successful connect, or a
 *   passing active check, brings it back.
 *
 * The engine's balancer (Plan::Order) sends traffic to the best priority that has an endpoint in; endpoints out
 * are tried only when every endpoint is out (panic routing), the one due back first first.
 */
import type { PlanOutlierDetection } from '../native/addon.js';
import type { OutlierDetector } from './metrics.js';

export const FAIL_THRESHOLD = 3;
export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_MAX_MS = 30_000;
/** Envoy's default max_ejection_time: an ejection never lasts longer. */
export const MAX_EJECTION_MS = 300_000;
/** What "out until a check passes" is in the engine (its timer range; every failed check while out pushes it again). */
export const OUT_UNTIL_TOLD_MS = 0x7fffffff;

export type EndpointStatus = 'healthy' | 'backed_off' | 'ejected' | 'unhealthy';

/** One endpoint's health record. */
export interface EndpointHealth {
  readonly label: string;
  /** Failed connects / TLS handshakes in a row (local-origin failures). */
  consecutiveFailures: number;
  /** 5xx in a row (with local-origin failures unless split). */
  consecutive5xx: number;
  /** 502/503/504 in a row (with local-origin failures unless split). */
  consecutiveGateway: number;
  /** Date.now() ms until which it is backed off (0: not). */
  backoffUntil: number;
  /** Date.now() ms until which it is ejected (0: not), by which detector, and how often so far. */
  ejectedUntil: number;
  ejectedBy?: OutlierDetector;
  timesEjected: number;
  /** Active health checks: failing (out of the balancer), and the current run of results. */
  unhealthy: boolean;
  checkFailures: number;
  checkSuccesses: number;
  /** The last active check's failure, while checks fail. */
  checkError?: string;
  /** The last active check: when (Date.now() ms) and whether it passed. */
  lastCheck?: { at: number; ok: boolean };
  lastError?: string;
}

/** What the health checks of a service need from it. */
export interface HealthChecking {
  unhealthyThreshold: number;
  healthyThreshold: number;
}

/** The endpoints of one service, by label. */
export class HealthSet {
  private readonly byLabel = new Map<string, EndpointHealth>();

  constructor(
    labels: readonly string[],
    private readonly now: () => number = Date.now,
    /** Outlier detection (replaces the passive back-off), from the plan. */
    readonly outlier?: PlanOutlierDetection,
    /** Active health check thresholds, from the plan. */
    readonly checks?: HealthChecking,
  ) {
    for (const label of labels) {
      this.byLabel.set(label, { label, consecutiveFailures: 0, consecutive5xx: 0, consecutiveGateway: 0, backoffUntil: 0, ejectedUntil: 0, timesEjected: 0, unhealthy: false, checkFailures: 0, checkSuccesses: 0 });
    }
  }

  get(label: string): EndpointHealth | undefined {
    return this.byLabel.get(label);
  }

  all(): EndpointHealth[] {
    return [...this.byLabel.values()];
  }

  /** Takes over what an earlier set knew of the same labels (a reload keeps health), within this set's rules. */
  adopt(old: HealthSet | undefined): void {
    for (const h of old?.all() ?? []) {
      const n = this.byLabel.get(h.label);
      if (!n) continue;
      Object.assign(n, h);
      // A policy removed by the reload takes its state with it.
      if (!this.checks) {
        n.unhealthy = false;
        n.checkFailures = n.checkSuccesses = 0;
        delete n.checkError;
        delete n.lastCheck;
      }
      if (!this.outlier) {
        n.ejectedUntil = 0;
        delete n.ejectedBy;
        n.consecutive5xx = n.consecutiveGateway = 0;
      } else {
        n.backoffUntil = 0;
      }
    }
  }

  /** Why the endpoint is out of the balancer now, or healthy. */
  status(h: EndpointHealth): EndpointStatus {
    if (h.unhealthy) return 'unhealthy';
    const now = this.now();
    if (h.ejectedUntil > now) return 'ejected';
    if (h.backoffUntil > now) return 'backed_off';
    return 'healthy';
  }

  /** Whether the endpoint takes traffic. */
  healthy(h: EndpointHealth): boolean {
    return this.status(h) === 'healthy';
  }

  /** Words for /clusters: why it is out, or undefined when it is in. */
  reason(h: EndpointHealth): string | undefined {
    switch (this.status(h)) {
      case 'unhealthy':
        return `failed ${h.checkFailures} active health check(s) in a row${h.checkError ? `: ${h.checkError}` : ''}`;
      case 'ejected':
        return `ejected by outlier detection (${h.ejectedBy}) for ${Math.ceil((h.ejectedUntil - this.now()) / 1000)} s more, ejection ${h.timesEjected}`;
      case 'backed_off':
        return `backed off after ${h.consecutiveFailures} failed connects${h.lastError ? `: ${h.lastError}` : ''}`;
      default:
        return undefined;
    }
  }

  /** How long the engine keeps the endpoint out from now (0: in). */
  downForMs(h: EndpointHealth): number {
    if (h.unhealthy) return OUT_UNTIL_TOLD_MS;
    const now = this.now();
    return Math.max(0, h.ejectedUntil - now, h.backoffUntil - now);
  }

  /**
   * A local-origin failure (connect refused or timed out, TLS handshake failed). Returns the time to tell the
   * engine when the endpoint's state changed, else undefined; `ejected` names the detector of a new ejection.
   */
  failure(label: string, why: string): Change | undefined {
    const h = this.byLabel.get(label);
    if (!h) return undefined;
    h.consecutiveFailures++;
    h.lastError = why;
    const o = this.outlier;
    if (o) {
      if (o.splitExternalAndLocalErrors) return o.consecutiveLocalOrigin > 0 && h.consecutiveFailures >= o.consecutiveLocalOrigin ? this.eject(h, 'consecutive_local_origin_failure') : undefined;
      // Unsplit, Envoy counts a local-origin failure as a 503.
      return this.externalFailure(h, 503);
    }
    if (h.consecutiveFailures < FAIL_THRESHOLD) return undefined;
    const exp = Math.min(h.consecutiveFailures - FAIL_THRESHOLD, 10);
    const ms = Math.min(BACKOFF_BASE_MS * 2 ** exp, BACKOFF_MAX_MS);
    h.backoffUntil = this.now() + ms;
    return { downForMs: this.downForMs(h) };
  }

  /**
   * A local-origin failure on an established connection (reset before the response, request timed out): only
   * outlier detection counts these (the passive back-off is about connects).
   */
  lostConnection(label: string, why: string): Change | undefined {
    return this.outlier ? this.failure(label, why) : undefined;
  }

  /** A 5xx response from the endpoint. */
  status5xx(label: string, status: number): Change | undefined {
    const h = this.byLabel.get(label);
    if (!h || !this.outlier) return undefined;
    h.lastError = `HTTP ${status}`;
    return this.externalFailure(h, status);
  }

  /**
   * A success after failures: `connect` (a connect or handshake worked) or `response` (a non-5xx response).
   * Returns the time to tell the engine when the endpoint comes back by it.
   */
  success(label: string, source: 'connect' | 'response'): Change | undefined {
    const h = this.byLabel.get(label);
    if (!h) return undefined;
    const split = this.outlier?.splitExternalAndLocalErrors ?? false;
    if (source === 'connect' || !split) h.consecutiveFailures = 0;
    if (source === 'response' || !split) h.consecutive5xx = h.consecutiveGateway = 0;
    delete h.lastError;
    if (source === 'connect' && h.backoffUntil !== 0) {
      h.backoffUntil = 0;
      return { downForMs: this.downForMs(h) };
    }
    return undefined;
  }

  /** An active health check's result; returns the time to tell the engine when the endpoint's state changed. */
  checked(label: string, ok: boolean, why: string): Change | undefined {
    const h = this.byLabel.get(label);
    if (!h || !this.checks) return undefined;
    h.lastCheck = { at: this.now(), ok };
    if (ok) {
      h.checkFailures = 0;
      h.checkSuccesses++;
      delete h.checkError;
      // A passing check proves the endpoint accepts connections: the passive back-off has no more reason.
      const wasBackedOff = h.backoffUntil !== 0;
      h.backoffUntil = 0;
      h.consecutiveFailures = 0;
      if (h.unhealthy && h.checkSuccesses >= this.checks.healthyThreshold) {
        h.unhealthy = false;
        return { downForMs: this.downForMs(h), recovered: true };
      }
      return wasBackedOff ? { downForMs: this.downForMs(h) } : undefined;
    }
    h.checkSuccesses = 0;
    h.checkFailures++;
    h.checkError = why;
    if (!h.unhealthy && h.checkFailures >= this.checks.unhealthyThreshold) {
      h.unhealthy = true;
      return { downForMs: OUT_UNTIL_TOLD_MS, failed: true };
    }
    // Still failing: the engine's "out" is renewed, so even a check failing for weeks never lapses.
    return h.unhealthy ? { downForMs: OUT_UNTIL_TOLD_MS } : undefined;
  }

  /**
   * Envoy's statistical detectors over one interval's responses per endpoint (`counts`: label → responses and
   * failed ones since the last sweep): failure percentage ejects an endpoint whose failed share is at least the
   * threshold; success rate one whose success rate is below the mean by more than `stdevFactor` standard
   * deviations. Each only among endpoints with `requestVolume` responses, and only when at least
   * `minimumHosts` have that many. Returns the ejections made.
   */
  sweep(counts: ReadonlyMap<string, { responses: number; failed: number }>): Array<{ label: string; change: Change }> {
    const o = this.outlier;
    const out: Array<{ label: string; change: Change }> = [];
    if (!o) return out;
    const eject = (label: string, by: OutlierDetector): void => {
      const h = this.byLabel.get(label);
      if (!h) return;
      const c = this.eject(h, by);
      if (c) out.push({ label, change: c });
    };
    const fp = o.failurePercentage;
    if (fp) {
      const hosts = [...counts].filter(([, c]) => c.responses >= fp.requestVolume);
      if (hosts.length >= fp.minimumHosts) {
        for (const [label, c] of hosts) if ((100 * c.failed) / c.responses >= fp.threshold) eject(label, 'failure_percentage');
      }
    }
    const sr = o.successRate;
    if (sr) {
      const hosts = [...counts].filter(([, c]) => c.responses >= sr.requestVolume).map(([label, c]) => ({ label, rate: (100 * (c.responses - c.failed)) / c.responses }));
      if (hosts.length >= sr.minimumHosts) {
        const mean = hosts.reduce((a, h) => a + h.rate, 0) / hosts.length;
        const stdev = Math.sqrt(hosts.reduce((a, h) => a + (h.rate - mean) ** 2, 0) / hosts.length);
        const floor = mean - sr.stdevFactor * stdev;
        for (const h of hosts) if (h.rate < floor) eject(h.label, 'success_rate');
      }
    }
    return out;
  }

  /** Endpoints in the balancer, and ejected ones, now. */
  counts(): { healthy: number; ejected: number } {
    let healthy = 0;
    let ejected = 0;
    for (const h of this.byLabel.values()) {
      const s = this.status(h);
      if (s === 'healthy') healthy++;
      if (h.ejectedUntil > this.now()) ejected++;
    }
    return { healthy, ejected };
  }

  private externalFailure(h: EndpointHealth, status: number): Change | undefined {
    const o = this.outlier as PlanOutlierDetection;
    h.consecutive5xx++;
    if (status === 502 || status === 503 || status === 504) h.consecutiveGateway++;
    else h.consecutiveGateway = 0;
    if (o.consecutiveTotal > 0 && h.consecutive5xx >= o.consecutiveTotal) return this.eject(h, 'consecutive_5xx');
    if (o.consecutiveGateway > 0 && h.consecutiveGateway >= o.consecutiveGateway) return this.eject(h, 'consecutive_gateway_failure');
    return undefined;
  }

  private eject(h: EndpointHealth, by: OutlierDetector): Change | undefined {
    const o = this.outlier as PlanOutlierDetection;
    const now = this.now();
    // Envoy resets the detectors whether or not the ejection is allowed.
    h.consecutive5xx = h.consecutiveGateway = h.consecutiveFailures = 0;
    if (h.ejectedUntil > now) return undefined;
    let ejected = 0;
    for (const x of this.byLabel.values()) if (x.ejectedUntil > now) ejected++;
    // maxEjectionPercent bounds how much of the service is ejected at once; one is always allowed.
    if (ejected > 0 && (ejected + 1) * 100 > o.maxEjectionPercent * this.byLabel.size) return undefined;
    h.timesEjected++;
    h.ejectedUntil = now + Math.min(o.baseEjectionMs * h.timesEjected, Math.max(MAX_EJECTION_MS, o.baseEjectionMs));
    h.ejectedBy = by;
    return { downForMs: this.downForMs(h), ejected: by };
  }
}

/** A change of an endpoint's state: what to tell the engine, and what happened (for metrics and logs). */
export interface Change {
  downForMs: number;
  ejected?: OutlierDetector;
  /** Active checks: it went unhealthy / healthy again. */
  failed?: true;
  recovered?: true;
}
