/**
 * The compiled, immutable view of the configuration that the DNS resolver, the proxy and the BPF
 * maps all read. A reload builds a new Snapshot and swaps it atomically; connections in flight keep
 * the object they started with. Built by `src/snapshot/compile.ts` from validated resources.
 */
import type { LoadWarning, MeshCircuitBreakerConf, MeshHealthCheckConf } from '../resources/types.js';
import type { EffectiveTimeouts } from './meshtimeout.js';
import type { EffectiveRetry } from './meshretry.js';
import type { EffectivePermissions } from './meshtrafficpermission.js';
import type { EffectiveAccessLog } from './accesslog.js';

export type Protocol = 'tcp' | 'http' | 'http2' | 'grpc';
export type TlsVersion = 'TLSAuto' | 'TLS10' | 'TLS11' | 'TLS12' | 'TLS13';
export type VerificationMode = 'Secured' | 'SkipSAN' | 'SkipCA' | 'SkipAll';

/** A status condition, Kuma-shaped (e.g. `Generated/False/Collision`). */
export interface Condition {
  type: string;
  status: 'True' | 'False';
  reason: string;
  message: string;
}

/**
 * Where a service's traffic goes. `unix` endpoints carry the absolute socket path (scheme removed). `priority`
 * (lower first, default 0): an endpoint takes traffic only when every endpoint of a better priority is down.
 */
export type CompiledEndpoint = (
  | { kind: 'ip'; address: string; port: number; family: 4 | 6 }
  | { kind: 'dns'; address: string; port: number }
  | { kind: 'unix'; path: string }
) & { priority?: number };

export interface SubjectAltNameMatcher {
  type: 'Exact' | 'Prefix';
  value: string;
}

/** TLS origination settings with data sources already resolved to bytes (secrets looked up). */
export interface CompiledTls {
  minVersion: TlsVersion;
  maxVersion: TlsVersion;
  allowRenegotiation: boolean;
  mode: VerificationMode;
  /** `spec.tls.verification.serverName` as written (may be undefined). */
  serverName?: string;
  subjectAltNames: SubjectAltNameMatcher[];
  /** PEM bytes of the CA bundle from caCert; undefined means "use the system bundle". */
  ca?: Buffer;
  /** PEM client certificate and key (both or neither). */
  cert?: Buffer;
  key?: Buffer;
}

export interface CompiledService {
  /** Stable identity `mesh/name` (name is the resource's core name). */
  id: string;
  name: string;
  mesh: string;
  /** Kuma resource identifier used as the metric label: kri_extsvc_<mesh>_<zone>_<namespace>_<name>_ */
  kri: string;
  displayName: string;
  namespace: string;
  labels: Record<string, string>;
  /** VIP as text (IPv4 dotted quad, or IPv6 when the CIDR is IPv6). */
  vip: string;
  port: number;
  protocol: Protocol;
  /** Hostnames this service owns (lowercase, no trailing dot), in generator order. */
  hostnames: string[];
  endpoints: CompiledEndpoint[];
  /** Present only when `spec.tls.enabled` is true. */
  tls?: CompiledTls;
  /** Mesh `routing.defaultForbidMeshExternalServiceAccess` denies access. */
  forbidden: boolean;
  /**
   * The MeshTrafficPermissions that select it; absent when none does. When present, access is decided per client at
   * connect() (the kernel's verdict maps) and the engine no longer refuses on `forbidden`: that is the mesh default
   * inside the permissions.
   */
  permissions?: EffectivePermissions;
  /** `spec.extension.type` of a service served by an extension instead of endpoints (meshext has none). */
  extension?: string;
  /** Conditions of the service itself (Kuma `status.conditions`), e.g. an unsupported extension. */
  conditions?: Condition[];
  /** Status conditions per hostname generator (Kuma `status.hostnameGenerators`). */
  generatorStatus: Array<{ generator: string; conditions: Condition[] }>;
  /** The merged MeshTimeouts that select it; absent when none does (the agent's defaults apply). */
  timeouts?: EffectiveTimeouts;
  /** The merged MeshRetries that select it; absent when none does (nothing is retried). */
  retry?: EffectiveRetry;
  /** The merged MeshAccessLogs that select it; absent when none does. */
  accessLog?: EffectiveAccessLog;
  /**
   * The Universal Dataplanes with outbounds to it, one entry per Dataplane: the listener key those outbounds route
   * by, and the policy fields in effect there when Dataplane-targeted policies make them differ from the
   * service's own (the fields above, which the VIP path uses). Absent: no Dataplane has an outbound to it.
   */
  dataplanes?: DataplaneBinding[];
  /** The merged MeshCircuitBreaker `default` that applies to it and the policies merged; absent when none selects it. */
  circuitBreaker?: { conf: MeshCircuitBreakerConf; policies: string[] };
  /** The merged MeshHealthCheck `default` that applies to it and the policies merged; absent when none selects it. */
  healthCheck?: { conf: MeshHealthCheckConf; policies: string[] };
  /** Where it was declared, for messages. */
  source: { file: string; index: number };
}

/**
 * The fields of a CompiledService that `to[]` policies decide (each kind's effective<Kind> in snapshot/<kind>.ts):
 * what a Dataplane's outbounds may have of their own. A kind that configures the service's traffic adds its field
 * here and in compile.ts `policiesOf`.
 */
export const SERVICE_POLICY_FIELDS = ['timeouts', 'retry', 'accessLog'] as const satisfies ReadonlyArray<keyof CompiledService>;
export type ServicePolicies = Pick<CompiledService, (typeof SERVICE_POLICY_FIELDS)[number]>;

/** One Dataplane's outbounds to one service. */
export interface DataplaneBinding {
  /** The Dataplane: its name, `name.namespace` on Kubernetes (its mesh is the service's). */
  dataplane: string;
  /** The plan key its outbound listeners route by (outboundKey): stable while the Dataplane and service are. */
  key: string;
  /**
   * The policy fields in effect on its outbounds when they differ from the service's own: the service then has a
   * second plan, for this key. Absent: the service's own plan serves the key.
   */
  policies?: ServicePolicies;
}

/** The plan key of a Dataplane's outbound listeners to a service: the service id and the Dataplane. */
export function outboundKey(serviceId: string, dataplane: string): string {
  return `@${serviceId}/${dataplane}`;
}

/** A resource that was rejected, with every violation. */
export interface RejectedResource {
  file: string;
  /** 1-based line of the document start, when known. */
  line?: number;
  kind: string;
  name: string;
  mesh?: string;
  violations: Array<{ field: string; message: string }>;
}

/** Non-transparent Universal outbound: a local listener bound to one service. */
export interface CompiledOutbound {
  address: string;
  port: number;
  /** CompiledService.id it routes to. */
  serviceId: string;
  /** The Dataplane it belongs to (DataplaneBinding.dataplane). */
  dataplane: string;
  /** The plan key its connections route by (outboundKey). */
  key: string;
  source: { file: string; index: number };
}

export interface Snapshot {
  /** Increases with every successful compile in this process. */
  generation: number;
  services: CompiledService[];
  /** `${vip}:${port}` → service (VIPs are unique, so this is the routing key). */
  byVipPort: ReadonlyMap<string, CompiledService>;
  /** Lowercase hostname → service; the DNS resolver answers from this. */
  byHostname: ReadonlyMap<string, CompiledService>;
  outbounds: CompiledOutbound[];
  rejected: RejectedResource[];
  /** Validation warnings of the load this snapshot was built from (none of them rejected anything). */
  warnings: LoadWarning[];
  /** The VIP CIDR this snapshot was allocated from, e.g. 242.0.0.0/8. */
  vipCidr: string;
}

/** Routing key helper shared by every consumer. */
export function vipPortKey(vip: string, port: number): string {
  return `${vip}:${port}`;
}
