/**
 * The routes the native engine serves without asking JS first. A new connection to a plain TCP service
 * otherwise crosses threads twice before its upstream connect starts (engine accept → JS routing → engine
 * connect); with a route, the listener starts the session and the connect itself and JS hears of it once, in a
 * `routed` event, then accounts for it and owns failover as for any other connection.
 *
 * A service gets a route when the engine can do everything its first attempt needs: protocol tcp, not denied,
 * usable TLS settings that the native context accepted (or none), and endpoints that are IP addresses, unix
 * sockets or DNS names with an answer, none inside the VIP CIDR. A DNS name's target is the first address of
 * its last answer (where dialEach starts too); names are resolved in JS, before the first install and again
 * when their TTL runs out (as Envoy's STRICT_DNS clusters do), and the route is reinstalled with the new
 * answer. Its keys are `@<serviceId>` (outbound listeners) and each `<vip>:<port>` it owns (the transparent
 * listener). Route ids stay with a runtime, so endpoint health and round-robin position survive reloads and
 * new DNS answers.
 */
import type { Logger } from '../log.js';
import type { CompiledService, Snapshot } from '../snapshot/types.js';
import type { RelayRoute, RelayRouteTable } from '../redirect/native.js';
import { pendingTlsFor } from './dial.js';
import { FALLBACK_TTL_S } from './resolve.js';
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

/** setTimeout's largest delay (a larger one fires at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The route key of an outbound listener bound to `serviceId`. */
export function outboundRouteKey(serviceId: string): string {
  return `@${serviceId}`;
}

export class EngineRoutes {
  private readonly ids = new WeakMap<ServiceRuntime, number>();
  private readonly entries = new Map<number, Entry>();
  private nextId = 1;
  /** DNS names the installed routes use: their runtime (for its resolver) and the address the route dials. */
  private names = new Map<string, { rt: ServiceRuntime; address: string }>();
  /** Names being resolved for a reinstall. */
  private readonly resolving = new Set<string>();
  private refresh: NodeJS.Timeout | undefined;
  private disposed = false;

  /** `reinstall` installs the current snapshot's routes again (after new DNS answers). */
  constructor(
    private readonly fast: FastPath,
    private readonly log: Logger,
    private readonly reinstall: () => void,
  ) {}

  /** Stops refreshing DNS answers (the engine is gone). */
  dispose(): void {
    this.disposed = true;
    clearTimeout(this.refresh);
  }

  /**
   * Installs the routes of `snapshot`'s services (their runtimes in `runtimes`). When the engine refuses the
   * table, it is left with no routes at all (every connection then goes through JS) and the error is thrown.
   */
  install(snapshot: Snapshot, runtimes: ReadonlyMap<string, ServiceRuntime>, origin: OriginalDstSource, idleTimeoutMs: number): void {
    const keys = new Map<string, string[]>(snapshot.services.map((svc) => [svc.id, [outboundRouteKey(svc.id)]]));
    for (const [key, svc] of snapshot.byVipPort) keys.get(svc.id)?.push(key);
    const routes: RelayRoute[] = [];
    const installing: Array<{ id: number; svc: CompiledService; rt: ServiceRuntime }> = [];
    const names = new Map<string, { rt: ServiceRuntime; address: string }>();
    for (const svc of snapshot.services) {
      const rt = runtimes.get(svc.id);
      const route = rt ? this.routeFor(svc, rt, keys.get(svc.id) ?? [], idleTimeoutMs, names) : undefined;
      if (!rt || !route) continue;
      routes.push(route);
      installing.push({ id: route.id, svc, rt });
    }
    const table: RelayRouteTable = { ...origin, routes };
    try {
      this.uninstalled(this.fast.routes(table));
    } catch (e) {
      this.names = new Map();
      this.scheduleRefresh();
      this.uninstalled(this.fast.routes({ source: 'none', routes: [] }));
      throw e;
    }
    this.names = names;
    // Only now are the routes the engine's: remember them, and give the engine their endpoints' back-offs
    // (it picks first attempts as EndpointSet.order() does, so it must see the same ones).
    const now = Date.now();
    for (const { id, svc, rt } of installing) {
      const entry = this.entries.get(id);
      if (entry) {
        entry.svc = svc;
        continue;
      }
      this.ids.set(rt, id);
      this.entries.set(id, { svc, rt, seen: 0 });
      rt.endpoints.onHealth = (index, downForMs) => this.fast.routeHealth(id, index, downForMs);
      rt.endpoints.states.forEach((st, i) => {
        if (st.backoffUntil > now) this.fast.routeHealth(id, i, st.backoffUntil - now);
      });
      this.log.debug({ service: svc.kri, route: id, keys: keys.get(svc.id) }, 'service routed in the native engine');
    }
    this.scheduleRefresh();
  }

  /**
   * Re-resolves the routes' DNS names when the first of their answers expires; reinstalls when an answer now
   * starts with another address, else just waits for the next expiry.
   */
  private scheduleRefresh(): void {
    clearTimeout(this.refresh);
    this.refresh = undefined;
    let at = Infinity;
    for (const [name, { rt }] of this.names) at = Math.min(at, rt.deps.resolver.expiry(name) ?? 0);
    if (at === Infinity || this.disposed) return;
    // A refresh at most once a second (TTL 0 answers) and never beyond setTimeout's range (huge TTLs).
    const delay = Math.min(MAX_TIMER_MS, Math.max(1000, at - Date.now()));
    this.refresh = setTimeout(() => {
      const now = Date.now();
      const due = [...this.names].filter(([name, { rt }]) => (rt.deps.resolver.expiry(name) ?? 0) <= now);
      void Promise.allSettled(due.map(([name, { rt }]) => rt.deps.resolver.resolve(name))).then(() => {
        if (this.disposed) return;
        if (due.some(([name, { rt, address }]) => rt.deps.resolver.known(name)?.[0]?.address !== address)) this.reinstall();
        else this.scheduleRefresh();
      });
    }, delay);
    this.refresh.unref();
  }

  /** Resolves a name no answer is known for yet, and reinstalls once it has one (or retries later). */
  private resolveThenReinstall(name: string, rt: ServiceRuntime): void {
    if (this.resolving.has(name)) return;
    this.resolving.add(name);
    rt.deps.resolver.resolve(name).then(
      () => {
        this.resolving.delete(name);
        if (!this.disposed) this.reinstall();
      },
      () => {
        // No answer yet: its connections resolve in JS meanwhile; try again as a refresh would.
        setTimeout(() => {
          this.resolving.delete(name);
          if (!this.disposed) this.reinstall();
        }, FALLBACK_TTL_S * 1000).unref();
      },
    );
  }

  /** Forgets routes the engine no longer has once their last `routed` event has been taken. */
  private uninstalled(gone: Array<{ id: number; routed: number }>): void {
    for (const g of gone) {
      const e = this.entries.get(g.id);
      if (!e) continue;
      e.total = g.routed;
      // Installed again later, the runtime gets a new id: the engine starts that route's count from 0.
      if (this.ids.get(e.rt) === g.id) {
        this.ids.delete(e.rt);
        e.rt.endpoints.onHealth = undefined;
      }
      if (e.seen >= g.routed) this.entries.delete(g.id);
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

  /** The route of a service the engine can serve alone, or undefined; the DNS names it dials go into `names`. */
  private routeFor(svc: CompiledService, rt: ServiceRuntime, keys: string[], idleTimeoutMs: number, names: Map<string, { rt: ServiceRuntime; address: string }>): RelayRoute | undefined {
    if (svc.protocol !== 'tcp' || svc.forbidden || rt.configError || rt.closed || rt.endpoints.states.length === 0) return undefined;
    const targets: RelayRoute['targets'] = [];
    const dialled: Array<[string, string]> = [];
    for (const st of rt.endpoints.states) {
      const ep = st.endpoint;
      let address: string;
      if (ep.kind === 'unix') {
        targets.push({ address: ep.path, port: 0 });
        continue;
      } else if (ep.kind === 'ip') {
        address = ep.address;
      } else {
        const answer = rt.deps.resolver.known(ep.address);
        if (!answer) {
          this.resolveThenReinstall(ep.address, rt);
          return undefined;
        }
        address = (answer[0] as { address: string }).address;
        dialled.push([ep.address, address]);
      }
      if (rt.inVipCidr(address)) return undefined;
      targets.push({ address, port: ep.port });
    }
    const context = rt.tls ? nativeTlsFor(rt) : undefined;
    if (rt.tls && !context) return undefined;
    for (const [name, address] of dialled) names.set(name, { rt, address });
    // A runtime keeps its id while installed; a new one (ids are never reused) is remembered once installed.
    const id = this.ids.get(rt) ?? this.nextId++;
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
