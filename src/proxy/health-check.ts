/**
 * Active health checks (MeshHealthCheck): when each endpoint of each service is checked. The engine runs a check
 * (engineProbe: with the service's current plan, so over the endpoint's own addresses and TLS settings) and
 * reports its result; src/proxy/endpoints.ts decides health from the results. Each endpoint is checked every
 * `interval` (`unhealthyInterval` while it is failing), plus Envoy's jitters, the first check after a random
 * part of `initialJitter`; a check whose result never comes is a failure.
 */
import type { EngineProbe, PlanHealthCheck } from '../native/addon.js';
import type { ServicePlan } from '../snapshot/plan.js';

/** How long past its timeout a check may stay unanswered before it counts as failed (the engine lost it). */
const RESULT_GRACE_MS = 2000;

interface Scheduled {
  service: string;
  label: string;
  check: PlanHealthCheck;
  /** Host / :authority of HTTP and gRPC checks: the check's own, else the endpoint's name, SNI or address. */
  authority: string;
  /** The check's settings as text: a reload that changes them restarts the schedule. */
  sig: string;
  timer: NodeJS.Timeout | undefined;
  /** The token of the check under way (0: none). */
  token: number;
}

/** What the checker needs from the proxy. */
export interface HealthCheckHost {
  /** Starts one check; false when the engine cannot (stopping). */
  probe(p: EngineProbe): boolean;
  /** A check's result. */
  result(service: string, label: string, ok: boolean, reason: string): void;
  /** Whether the endpoint currently fails its checks (it is then checked at the unhealthy interval). */
  unhealthy(service: string, label: string): boolean;
}

export class HealthChecker {
  private readonly byKey = new Map<string, Scheduled>();
  private readonly byToken = new Map<number, Scheduled>();
  private nextToken = 0;

  constructor(
    private readonly host: HealthCheckHost,
    private readonly random: () => number = Math.random,
  ) {}

  /** Checks the endpoints of the plans that have a health check; stops checking the rest. */
  update(plans: readonly ServicePlan[]): void {
    const keep = new Set<string>();
    for (const p of plans) {
      if (!p.healthCheck) continue;
      for (const ep of p.endpoints) {
        const sig = JSON.stringify([p.healthCheck, ep.host, p.tls?.servername]);
        const key = `${p.service}\n${ep.label}`;
        keep.add(key);
        const s = this.byKey.get(key);
        if (s && s.sig === sig) continue;
        if (s) this.stop(s);
        const authority = p.healthCheck.check.authority || ep.host || p.tls?.servername || (ep.label.startsWith('unix:') ? 'localhost' : ep.label);
        const n: Scheduled = { service: p.service, label: ep.label, check: p.healthCheck, authority, sig, timer: undefined, token: 0 };
        this.byKey.set(key, n);
        this.arm(n, Math.floor(this.random() * p.healthCheck.initialJitterMs));
      }
    }
    for (const [key, s] of this.byKey) {
      if (keep.has(key)) continue;
      this.stop(s);
      this.byKey.delete(key);
    }
  }

  /** A `probe-result` event; false when no check of ours has that token (a retired schedule's). */
  onResult(token: number, ok: boolean, reason: string): boolean {
    const s = this.byToken.get(token);
    if (!s) return false;
    this.finish(s, ok, reason);
    return true;
  }

  /** Stops every schedule. */
  close(): void {
    for (const s of this.byKey.values()) this.stop(s);
    this.byKey.clear();
  }

  /** Services and endpoints checked now (tests, /config_dump). */
  checked(): Array<{ service: string; endpoint: string }> {
    return [...this.byKey.values()].map((s) => ({ service: s.service, endpoint: s.label }));
  }

  private finish(s: Scheduled, ok: boolean, reason: string): void {
    this.byToken.delete(s.token);
    s.token = 0;
    clearTimeout(s.timer);
    this.host.result(s.service, s.label, ok, reason);
    if (this.byKey.get(`${s.service}\n${s.label}`) === s) this.arm(s, this.delay(s));
  }

  /** Envoy's: the interval (unhealthy interval while failing) plus a random part of each jitter. */
  private delay(s: Scheduled): number {
    const c = s.check;
    const base = this.host.unhealthy(s.service, s.label) ? c.unhealthyIntervalMs : c.intervalMs;
    return base + Math.floor(this.random() * c.intervalJitterMs) + Math.floor((this.random() * base * c.intervalJitterPercent) / 100);
  }

  private arm(s: Scheduled, afterMs: number): void {
    clearTimeout(s.timer);
    s.timer = setTimeout(() => this.run(s), afterMs);
    s.timer.unref();
  }

  private run(s: Scheduled): void {
    const token = (this.nextToken = (this.nextToken % 0xffffffff) + 1);
    s.token = token;
    this.byToken.set(token, s);
    const { check: c } = s;
    const started = this.host.probe({
      service: s.service,
      endpoint: s.label,
      token,
      timeoutMs: c.timeoutMs,
      kind: c.check.kind,
      http2: c.check.http2,
      path: c.check.path,
      authority: s.authority,
      headers: c.check.headers,
      expectedStatuses: c.check.expectedStatuses,
      grpcService: c.check.grpcService,
      ...(c.check.send !== undefined ? { send: Buffer.from(c.check.send, 'base64') } : {}),
      receive: (c.check.receive ?? []).map((b) => Buffer.from(b, 'base64')),
    });
    if (!started) {
      this.byToken.delete(token);
      s.token = 0;
      return;
    }
    s.timer = setTimeout(() => {
      if (s.token === token) this.finish(s, false, `no result within ${c.timeoutMs + RESULT_GRACE_MS} ms`);
    }, c.timeoutMs + RESULT_GRACE_MS);
    s.timer.unref();
  }

  private stop(s: Scheduled): void {
    clearTimeout(s.timer);
    if (s.token) this.byToken.delete(s.token);
    s.token = 0;
  }
}
