/**
 * HTTP/2 and gRPC services on the native engine: the client connection's streams are relayed by an
 * Http2Session (nghttp2 on an engine thread); this module keeps the policy. It answers the session's
 * `need-upstream` with dialUpstream (failover, health, VIP-CIDR guard, connect metrics) or with the failure
 * reason, accounts each upstream connection when the engine closes it, and moves the sessions' response
 * counts into the registry whenever metrics are read.
 */
import net from 'node:net';
import type { ConnState } from './conn.js';
import { dialUpstream } from './dial.js';
import { isUpstreamError } from './errors.js';
import type { FastPath, RelayedHttp2 } from './fastpath.js';
import { upstreamHost } from './headers.js';
import type { ServiceMetrics } from './metrics.js';
import type { ServiceRuntime } from './runtime.js';
import type { RelayEvent } from '../redirect/native.js';

interface CounterSet {
  handle: number;
  /** Values of the previous read: [unused, 1xx..5xx, retries]. */
  last: number[];
  metrics: ServiceMetrics;
  sessions: number;
  retired: boolean;
}

export class NativeHttp2 {
  private readonly sets = new Map<ServiceRuntime, CounterSet>();
  /** Upstream connections in the engine, by token: each one's end-of-life accounting (see Dialled.adopt). */
  private readonly upstreams = new Map<number, (rx: number, tx: number) => void>();
  private nextToken = 1;

  constructor(readonly fast: FastPath) {
    // A connection can outlive the client connection that asked for it (parked for the next client of
    // the service), so its close is matched by token, not by session.
    fast.onKind('upstream-closed', (ev) => {
      const e = ev as unknown as { up: number; rx: number; tx: number };
      this.upstreams.get(e.up)?.(e.rx, e.tx);
      this.upstreams.delete(e.up);
    });
  }

  /** Whether a client connection of this service can be served natively (plain h2c upstream, access allowed). */
  static eligible(rt: ServiceRuntime): boolean {
    return !rt.tls && !rt.configError && !rt.service.forbidden && (rt.service.protocol === 'http2' || rt.service.protocol === 'grpc');
  }

  /** Hands the client connection to the engine; false (socket untouched) when the engine will not take it. */
  serve(sock: net.Socket, rt: ServiceRuntime, state: ConnState): boolean {
    const set = this.counterSet(rt);
    let relayed: RelayedHttp2 | null = null;
    const onEvent = (ev: RelayEvent): void => {
      if (ev.kind === 'need-upstream' && relayed) this.dial(relayed, rt);
    };
    relayed = this.fast.handOverHttp2(sock, rt.service.protocol === 'grpc', set.handle, onEvent, (ev) => {
      if (ev.reason !== 'done' && ev.reason !== 'closed') rt.log.debug({ reason: ev.reason, err: ev.error }, 'HTTP/2 client connection ended');
      set.sessions--;
      this.release(rt, set);
      state.ended?.();
    });
    if (!relayed) return false;
    set.sessions++;
    state.relayed = relayed;
    const r = relayed;
    state.drain = () => r.drain();
    return true;
  }

  private dial(relayed: RelayedHttp2, rt: ServiceRuntime): void {
    dialUpstream(rt, ['h2']).then(
      (d) => {
        const finish = d.adopt();
        const token = this.nextToken++;
        this.upstreams.set(token, finish);
        const ok = d.socket instanceof net.Socket && relayed.attach(token, d.socket, upstreamHost(d.endpoint, undefined) ?? '');
        if (!ok) {
          // The client connection ended while we dialled (or the engine stopped): nobody needs this one.
          this.upstreams.delete(token);
          d.socket.destroy();
          finish(0, 0);
        }
      },
      (e: unknown) => {
        const reason = isUpstreamError(e) ? e.reason : (e as Error).message;
        rt.log.warn({ err: reason }, 'upstream unavailable');
        relayed.unavailable(reason);
      },
    );
  }

  /** Adds what the engine counted since the last read to the registry (run on every metrics read). */
  collect(): void {
    for (const [rt, set] of this.sets) {
      this.collectOne(set);
      this.release(rt, set);
    }
  }

  private collectOne(set: CounterSet): void {
    const now = this.fast.readH2Counters(set.handle);
    for (let cls = 1; cls <= 5; cls++) {
      const d = (now[cls] ?? 0) - (set.last[cls] ?? 0);
      if (d > 0) set.metrics.request(cls * 100, d);
    }
    const retries = (now[6] ?? 0) - (set.last[6] ?? 0);
    if (retries > 0) set.metrics.upstreamRqRetry.inc(retries);
    set.last = now;
  }

  private counterSet(rt: ServiceRuntime): CounterSet {
    let set = this.sets.get(rt);
    if (!set) {
      const created: CounterSet = { handle: this.fast.newH2Counters(), last: [0, 0, 0, 0, 0, 0, 0], metrics: rt.metrics, sessions: 0, retired: false };
      set = created;
      this.sets.set(rt, created);
      rt.onClose(() => {
        created.retired = true;
        this.release(rt, created);
      });
    }
    return set;
  }

  /** Frees a replaced service's counters once its last session is gone (after a final read). */
  private release(rt: ServiceRuntime, set: CounterSet): void {
    if (!set.retired || set.sessions > 0 || this.sets.get(rt) !== set) return;
    this.collectOne(set);
    this.fast.freeH2Counters(set.handle);
    this.sets.delete(rt);
  }
}
