/**
 * Passive endpoint health, decided here from the engine's connect reports: after FAIL_THRESHOLD consecutive
 * failures (refused, timed out, TLS handshake or verification failed) an endpoint is backed off for an
 * exponentially growing time (capped), and the engine is told; its first success clears it. The engine's
 * balancer skips backed-off endpoints while a healthy one of the best priority remains, and tries them last
 * when none does.
 */
export const FAIL_THRESHOLD = 3;
export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_MAX_MS = 30_000;

/** One endpoint's health record. */
export interface EndpointHealth {
  readonly label: string;
  consecutiveFailures: number;
  /** Date.now() ms until which it is backed off (0: healthy). */
  backoffUntil: number;
  lastError?: string;
}

/** The endpoints of one service, by label. */
export class HealthSet {
  private readonly byLabel = new Map<string, EndpointHealth>();

  constructor(
    labels: readonly string[],
    private readonly now: () => number = Date.now,
  ) {
    for (const label of labels) this.byLabel.set(label, { label, consecutiveFailures: 0, backoffUntil: 0 });
  }

  get(label: string): EndpointHealth | undefined {
    return this.byLabel.get(label);
  }

  all(): EndpointHealth[] {
    return [...this.byLabel.values()];
  }

  /** Whether the endpoint is currently skipped. */
  healthy(h: EndpointHealth): boolean {
    return h.backoffUntil <= this.now();
  }

  /** Records a failed attempt; returns the back-off to tell the engine (ms), or undefined when it does not change. */
  failure(label: string, why: string): number | undefined {
    const h = this.byLabel.get(label);
    if (!h) return undefined;
    h.consecutiveFailures++;
    h.lastError = why;
    if (h.consecutiveFailures < FAIL_THRESHOLD) return undefined;
    const exp = Math.min(h.consecutiveFailures - FAIL_THRESHOLD, 10);
    const ms = Math.min(BACKOFF_BASE_MS * 2 ** exp, BACKOFF_MAX_MS);
    h.backoffUntil = this.now() + ms;
    return ms;
  }

  /** Records a success after failures; returns true when the endpoint was backed off (the engine must hear it). */
  success(label: string): boolean {
    const h = this.byLabel.get(label);
    if (!h) return false;
    const wasDown = h.backoffUntil !== 0;
    h.consecutiveFailures = 0;
    h.backoffUntil = 0;
    delete h.lastError;
    return wasDown;
  }
}
