/**
 * Everything the proxy keeps per service between connections: metrics, endpoint health, the built TLS
 * context (or the configuration error that makes the service fail closed), and hooks for protocol pools.
 * A runtime is rebuilt only when the service's data-path inputs change, so health and pools survive
 * unrelated reloads.
 */
import { createHash } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import type { Logger } from '../log.js';
import type { CompiledService } from '../snapshot/types.js';
import { EndpointSet } from './endpoints.js';
import { UpstreamError } from './errors.js';
import type { ServiceMetrics } from './metrics.js';
import type { EndpointResolver } from './resolve.js';
import { buildUpstreamTls, tlsFingerprint, type UpstreamTls } from './tls.js';

export interface RuntimeDeps {
  log: Logger;
  metrics: ServiceMetrics;
  resolver: EndpointResolver;
  connectTimeoutMs: number;
  systemCaPath: string | null;
  vipCidr: string;
}

/** Hash of the fields that shape how upstream connections are made. */
export function dataPathFingerprint(svc: CompiledService, systemCaPath: string | null, vipCidr: string): string {
  return createHash('sha256')
    .update(JSON.stringify({ p: svc.protocol, e: svc.endpoints, cidr: vipCidr }))
    .update(tlsFingerprint(svc, systemCaPath))
    .digest('hex');
}

export class ServiceRuntime {
  readonly endpoints: EndpointSet;
  readonly tls?: UpstreamTls;
  /** Set when TLS settings cannot be used; every connection to this service fails with it. */
  readonly configError?: UpstreamError;
  readonly log: Logger;
  private readonly closers = new Set<() => void>();
  private readonly vipRange: [ipaddr.IPv4 | ipaddr.IPv6, number] | null;
  /** inVipCidr answers by address (bounded; a runtime is rebuilt when the VIP CIDR changes). */
  private readonly vipChecked = new Map<string, boolean>();
  closed = false;

  constructor(
    readonly service: CompiledService,
    readonly deps: RuntimeDeps,
    readonly fingerprint: string,
  ) {
    this.log = deps.log.child({ service: service.kri });
    this.endpoints = new EndpointSet(service.endpoints);
    this.vipRange = safeCidr(deps.vipCidr);
    if (service.tls) {
      try {
        this.tls = buildUpstreamTls(service, deps.systemCaPath);
      } catch (e) {
        this.configError = e instanceof UpstreamError ? e : new UpstreamError('MESHEXT_E_TLS_CONFIG', `service ${service.id}: ${(e as Error).message}`);
        this.log.error({ code: this.configError.code, err: this.configError.message }, 'service TLS configuration unusable; its connections fail closed');
      }
    }
  }

  get metrics(): ServiceMetrics {
    return this.deps.metrics;
  }

  /** True when `address` lies inside the VIP CIDR (dialling it would loop back into the proxy). */
  inVipCidr(address: string): boolean {
    // Asked on every connect attempt for the same few endpoint addresses: parse each once.
    let hit = this.vipChecked.get(address);
    if (hit === undefined) {
      if (this.vipChecked.size >= 1024) this.vipChecked.clear();
      hit = this.checkVipCidr(address);
      this.vipChecked.set(address, hit);
    }
    return hit;
  }

  private checkVipCidr(address: string): boolean {
    if (!this.vipRange || !ipaddr.isValid(address)) return false;
    let a = ipaddr.parse(address);
    if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address();
    return a.kind() === this.vipRange[0].kind() && a.match(this.vipRange);
  }

  /** Registers cleanup (e.g. idle pool shutdown) run when the runtime is replaced or removed. */
  onClose(fn: () => void): void {
    this.closers.add(fn);
  }

  /** Releases idle resources; connections in flight finish on their own. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fn of this.closers) fn();
    this.closers.clear();
  }
}

function safeCidr(cidr: string): [ipaddr.IPv4 | ipaddr.IPv6, number] | null {
  try {
    return ipaddr.parseCIDR(cidr);
  } catch {
    return null;
  }
}
