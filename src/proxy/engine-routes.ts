/**
 * The routes the native engine serves without asking JS first. A new connection to a plain TCP service
 * otherwise crosses threads twice before its upstream connect starts (engine accept → JS routing → engine
 * connect); with a route, the listener starts the session and the connect itself and JS hears of it once, in a
 * `routed` event, then accounts for it and owns failover as for any other connection.
 *
 * A service gets a route when the engine can do everything its first attempt needs: protocol tcp, not denied,
 * usable TLS settings that the native context accepted (or none), and only IP or unix-socket endpoints outside
 * the VIP CIDR (DNS names are resolved in JS). Its keys are `@<serviceId>` (outbound listeners) and each
 * `<vip>:<port>` it owns (the transparent listener). Route ids stay with a runtime, so endpoint health and
 * round-robin position survive reloads that keep the runtime.
 */
import type { Logger } from '../log.js';
import type { CompiledService, Snapshot } from '../snapshot/types.js';
import type { RelayRoute, RelayRouteTable } from '../redirect/native.js';
import { pendingTlsFor } from './dial.js';
import type { FastPath } from './fastpath.js';
import type { ServiceRuntime } from './runtime.js';
import { nativeTlsFor } from './tls-native.js';

/** Where the transparent listener takes original destinations from. */
export type OriginalDstSource = { source: 'none' } | { source: 'local' } | { source: 'map'; mapFd: number };

/** What a `routed` event's route stands for. */
export interface RoutedService {
  /** The service as of the snapshot that installed the route (a runtime outlives flag-only changes). */
  svc: CompiledService;
  rt: ServiceRuntime;
}

interface Entry extends RoutedService {
  /** `routed` events seen for this route. */
  seen: number;
  /** Set once the route is uninstalled: how many connections it routed in all. */
  total?: number;
}

/** The route key of an outbound listener bound to `serviceId`. */
export function outboundRouteKey(serviceId: string): string {
  return `@${serviceId}`;
}

export class EngineRoutes {
  private readonly ids = new WeakMap<ServiceRuntime, number>();
  private readonly entries = new Map<number, Entry>();
  private nextId = 1;

  constructor(
    private readonly fast: FastPath,
    private readonly log: Logger,
  ) {}

  /** Installs the routes of `snapshot`'s services (their runtimes in `runtimes`). */
  install(snapshot: Snapshot, runtimes: ReadonlyMap<string, ServiceRuntime>, origin: OriginalDstSource, idleTimeoutMs: number): void {
    const keys = new Map<string, string[]>(snapshot.services.map((svc) => [svc.id, [outboundRouteKey(svc.id)]]));
    for (const [key, svc] of snapshot.byVipPort) keys.get(svc.id)?.push(key);
    const routes: RelayRoute[] = [];
    const fresh: Array<[number, ServiceRuntime]> = [];
    for (const svc of snapshot.services) {
      const rt = runtimes.get(svc.id);
      if (!rt) continue;
      const known = this.ids.has(rt);
      const route = this.routeFor(svc, rt, keys.get(svc.id) ?? [], idleTimeoutMs);
      if (!route) continue;
      routes.push(route);
      if (!known) fresh.push([route.id, rt]);
    }
    const table: RelayRouteTable = origin.source === 'map' ? { source: 'map', mapFd: origin.mapFd, routes } : { source: origin.source, routes };
    for (const gone of this.fast.routes(table)) {
      const e = this.entries.get(gone.id);
      if (!e) continue;
      e.total = gone.routed;
      // Installed again later, the runtime gets a new id: the engine starts that route's count from 0.
      if (this.ids.get(e.rt) === gone.id) {
        this.ids.delete(e.rt);
        e.rt.endpoints.onHealth = undefined;
      }
      if (e.seen >= gone.routed) this.entries.delete(gone.id);
    }
    // The engine picks first attempts as EndpointSet.order() does, so it must see the same back-offs.
    const now = Date.now();
    for (const [id, rt] of fresh) {
      rt.endpoints.onHealth = (index, downForMs) => this.fast.routeHealth(id, index, downForMs);
      rt.endpoints.states.forEach((st, i) => {
        if (st.backoffUntil > now) this.fast.routeHealth(id, i, st.backoffUntil - now);
      });
    }
  }

  /** The service of a route named by a `routed` event (counted: an uninstalled route is forgotten after its last one). */
  take(id: number): RoutedService | undefined {
    const e = this.entries.get(id);
    if (!e) return undefined;
    e.seen++;
    if (e.total !== undefined && e.seen >= e.total) this.entries.delete(id);
    return e;
  }

  private routeFor(svc: CompiledService, rt: ServiceRuntime, keys: string[], idleTimeoutMs: number): RelayRoute | undefined {
    if (svc.protocol !== 'tcp' || svc.forbidden || rt.configError || rt.closed || rt.endpoints.states.length === 0) return undefined;
    const targets: RelayRoute['targets'] = [];
    for (const st of rt.endpoints.states) {
      const ep = st.endpoint;
      if (ep.kind === 'unix') targets.push({ address: ep.path, port: 0 });
      else if (ep.kind === 'ip' && !rt.inVipCidr(ep.address)) targets.push({ address: ep.address, port: ep.port });
      else return undefined;
    }
    const context = rt.tls ? nativeTlsFor(rt) : undefined;
    if (rt.tls && !context) return undefined;
    let id = this.ids.get(rt);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(rt, id);
      this.entries.set(id, { svc, rt, seen: 0 });
      this.log.debug({ service: svc.kri, route: id, keys }, 'service routed in the native engine');
    }
    const entry = this.entries.get(id);
    if (entry) entry.svc = svc;
    return {
      id,
      keys,
      targets: context ? targets.map((t) => withTls(rt, t)) : targets,
      ...(context ? { tls: { context, handshakeTimeoutMs: rt.deps.connectTimeoutMs } } : {}),
      connectTimeoutMs: rt.deps.connectTimeoutMs,
      idleTimeoutMs,
    };
  }
}

/** A target with the TLS session key and expected name dial.ts would use for it. */
function withTls(rt: ServiceRuntime, t: RelayRoute['targets'][number]): RelayRoute['targets'][number] {
  const p = pendingTlsFor(rt, t.port ? { host: t.address, port: t.port } : { path: t.address });
  return { ...t, sessionKey: p.sessionKey, ...(p.dialledIp !== undefined ? { dialledIp: p.dialledIp } : {}) };
}
