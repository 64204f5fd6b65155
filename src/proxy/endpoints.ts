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
  /** Hears each change of an endpoint's back-off (index in `states`, ms left; 0 = healthy again), e.g. to tell the engine's routes. */
  onHealth: ((index: number, downForMs: number) => void) | undefined;

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
    return this.orderAt(start);
  }

  /**
   * The order of a connection whose first attempt already went to `first` (the engine picked it as order()
   * would have): `first`, then the others as order() lists them from there.
   */
  orderFrom(first: EndpointState): EndpointState[] {
    const i = this.states.indexOf(first);
    if (i < 0) return this.order();
    const rest = this.orderAt(i).filter((s) => s !== first);
    return [first, ...rest];
  }

  private orderAt(start: number): EndpointState[] {
    const n = this.states.length;
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
    const wasDown = s.backoffUntil !== 0;
    s.consecutiveFailures = 0;
    s.backoffUntil = 0;
    s.lastError = undefined;
    if (wasDown) this.onHealth?.(this.states.indexOf(s), 0);
  }

  /** Records a failed connect; starts or extends the back-off once the threshold is reached. */
  failure(s: EndpointState, why: string): void {
    s.consecutiveFailures++;
    s.lastError = why;
    if (s.consecutiveFailures >= FAIL_THRESHOLD) {
      const exp = Math.min(s.consecutiveFailures - FAIL_THRESHOLD, 10);
      const ms = Math.min(BACKOFF_BASE_MS * 2 ** exp, BACKOFF_MAX_MS);
      s.backoffUntil = this.now() + ms;
      this.onHealth?.(this.states.indexOf(s), ms);
    }
  }

  /** Whether the endpoint is currently skipped. */
  healthy(s: EndpointState): boolean {
    return s.backoffUntil <= this.now();
  }
}
