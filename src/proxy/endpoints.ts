/**
 * Endpoint selection for one service: round-robin over the endpoints, failover to the next on a failed
 * connect, and passive health: after FAIL_THRESHOLD consecutive failures an endpoint is skipped for an
 * exponentially growing back-off (capped) — unless every endpoint is backed off, then all are tried.
 */
import type { CompiledEndpoint } from '../snapshot/types.js';

export const FAIL_THRESHOLD = 3;
export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_MAX_MS = 30_000;

/** Mutable health record of one endpoint. */
export class EndpointState {
  consecutiveFailures = 0;
  backoffUntil = 0;
  lastError?: string;
  active = 0;
  total = 0;
  constructor(
    readonly endpoint: CompiledEndpoint,
    readonly key: string,
  ) {}

  /** Where it points, for humans: `1.2.3.4:443`, `[::1]:80`, `example.com:443`, `unix:/run/x.sock`. */
  get label(): string {
    return this.key;
  }
}

/** Stable text form of an endpoint (also its pool key). */
export function endpointKey(e: CompiledEndpoint): string {
  if (e.kind === 'unix') return `unix:${e.path}`;
  if (e.kind === 'ip' && e.family === 6) return `[${e.address}]:${e.port}`;
  return `${e.address}:${e.port}`;
}

export class EndpointSet {
  readonly states: EndpointState[];
  private next = 0;

  constructor(
    endpoints: CompiledEndpoint[],
    private readonly now: () => number = Date.now,
  ) {
    this.states = endpoints.map((e) => new EndpointState(e, endpointKey(e)));
  }

  /** Endpoints to try for one new connection, in order: healthy ones round-robin, then backed-off ones. */
  order(): EndpointState[] {
    const n = this.states.length;
    if (n === 0) return [];
    const start = this.next;
    this.next = (this.next + 1) % n;
    const t = this.now();
    const healthy: EndpointState[] = [];
    const down: EndpointState[] = [];
    for (let i = 0; i < n; i++) {
      const s = this.states[(start + i) % n] as EndpointState;
      (s.backoffUntil > t ? down : healthy).push(s);
    }
    // Backed-off endpoints stay last-resort candidates so "all down" still tries something.
    down.sort((a, b) => a.backoffUntil - b.backoffUntil);
    return healthy.concat(down);
  }

  /** Records a successful connect. */
  success(s: EndpointState): void {
    s.consecutiveFailures = 0;
    s.backoffUntil = 0;
    s.lastError = undefined;
  }

  /** Records a failed connect; starts or extends the back-off once the threshold is reached. */
  failure(s: EndpointState, why: string): void {
    s.consecutiveFailures++;
    s.lastError = why;
    if (s.consecutiveFailures >= FAIL_THRESHOLD) {
      const exp = Math.min(s.consecutiveFailures - FAIL_THRESHOLD, 10);
      s.backoffUntil = this.now() + Math.min(BACKOFF_BASE_MS * 2 ** exp, BACKOFF_MAX_MS);
    }
  }

  /** Whether the endpoint is currently skipped. */
  healthy(s: EndpointState): boolean {
    return s.backoffUntil <= this.now();
  }
}
