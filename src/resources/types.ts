/** Resource model shared by the loaders, validators, hostname generation and the snapshot compiler. */

/** Where a document came from: file path, 0-based document index in the file, 1-based line of its start. */
export interface SourceRef {
  file: string;
  index: number;
  line?: number;
}

/** One validation problem: a Kuma-style field path (`spec.endpoints[0].port`) and message. */
export interface Violation {
  field: string;
  message: string;
}

/** A rejected document (or an unreadable file when kind/name are absent) with every violation. */
export interface LoadError {
  file: string;
  line?: number;
  kind?: string;
  name?: string;
  mesh?: string;
  violations: Violation[];
}

/**
 * Something accepted as written but worth telling the user (an ignored field, a deprecated name, a
 * hostname that looks like a mistyped IP). Never rejects anything; the resource may still be rejected
 * for its errors, and then the warning often says why.
 */
export interface LoadWarning {
  file: string;
  line?: number;
  /** 0-based document index in the file. */
  index: number;
  kind: string;
  name: string;
  mesh?: string;
  /** Kuma-style field path, as in Violation. */
  field: string;
  message: string;
}

export type ResourceFormat = 'universal' | 'kubernetes';

export interface DataSource {
  inline?: string;
  inlineString?: string;
  secret?: string;
}

export interface MeshExternalServiceSpec {
  match: { type: 'HostnameGenerator'; port: number; protocol: 'tcp' | 'grpc' | 'http' | 'http2' };
  endpoints?: Array<{ address: string; port?: number; priority?: number }>;
  tls?: {
    enabled: boolean;
    allowRenegotiation: boolean;
    version?: { min: string; max: string };
    verification?: {
      mode: string;
      serverName?: string;
      subjectAltNames?: Array<{ type: string; value: string }>;
      caCert?: DataSource;
      clientCert?: DataSource;
      clientKey?: DataSource;
    };
  };
  extension?: { type: string; config?: unknown };
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
}

export interface HostnameGeneratorSpec {
  selector: {
    meshService?: LabelSelector;
    meshExternalService?: LabelSelector;
    meshMultiZoneService?: LabelSelector;
  };
  template: string;
  extension?: { type: string; config?: unknown };
}

export interface MeshSpec {
  routing?: { defaultForbidMeshExternalServiceAccess?: boolean; zoneEgress?: boolean };
  [k: string]: unknown;
}

export interface SecretSpec {
  /** Decoded secret bytes. */
  data: Buffer;
}

export interface DataplaneOutbound {
  port: number;
  /** Defaults to 127.0.0.1 as in Kuma. */
  address: string;
  backendRef: { kind: 'MeshExternalService'; name?: string; labels?: Record<string, string>; port?: number };
}

export interface DataplaneSpec {
  networking: { address?: string; outbound: DataplaneOutbound[] };
}

/** A policy's `targetRef` (Kuma common_api TargetRef): what a policy or one of its `to[]` entries selects. */
export interface PolicyTargetRef {
  kind: string;
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  sectionName?: string;
  /** Top-level only: the proxy types the policy applies to (`Sidecar`, `Gateway`); absent or empty: all. */
  proxyTypes?: string[];
  /** Kuma's legacy MeshSubset tags and the reserved `mesh`: no kind meshext reads takes them. */
  tags?: Record<string, string>;
  mesh?: string;
}

/** MeshTimeout `default` (Kuma 2.10+ Conf): Go duration strings, as written. */
export interface MeshTimeoutConf {
  connectionTimeout?: string;
  idleTimeout?: string;
  http?: {
    requestTimeout?: string;
    streamIdleTimeout?: string;
    maxStreamDuration?: string;
    maxConnectionDuration?: string;
    requestHeadersTimeout?: string;
  };
}

/**
 * The spec of a Kuma 2.10+ policy configured per destination in `to[].default` (`Conf`). `targetRef` omitted
 * means every client of the mesh on this node, as kind Mesh. `from`/`rules` (inbound sections) are schema-known
 * so they get a clear rejection: meshext proxies outbound traffic only.
 */
export interface ToPolicySpec<Conf> {
  targetRef?: PolicyTargetRef;
  to?: Array<{ targetRef: PolicyTargetRef; default?: Conf }>;
  from?: unknown[];
  rules?: unknown[];
}

export type MeshTimeoutSpec = ToPolicySpec<MeshTimeoutConf>;

/** Kuma common_api HeaderMatch (MeshRetry retriable headers). */
export interface HeaderMatch {
  type?: string;
  name: string;
  value?: string;
}

/** MeshRetry `http` / `grpc` back-off: Go duration strings, as written. */
export interface MeshRetryBackOff {
  baseInterval?: string;
  maxInterval?: string;
}

/** MeshRetry `default` (Kuma 2.10+ Conf), as written. */
export interface MeshRetryConf {
  tcp?: { maxConnectAttempt?: number };
  http?: {
    numRetries?: number;
    perTryTimeout?: string;
    backOff?: MeshRetryBackOff;
    rateLimitedBackOff?: { resetHeaders?: Array<{ name: string; format: string }>; maxInterval?: string };
    retryOn?: string[];
    retriableResponseHeaders?: HeaderMatch[];
    retriableRequestHeaders?: HeaderMatch[];
    hostSelection?: Array<{ predicate: string; tags?: Record<string, string>; updateFrequency?: number }>;
    hostSelectionMaxAttempts?: number;
  };
  grpc?: {
    numRetries?: number;
    perTryTimeout?: string;
    backOff?: MeshRetryBackOff;
    rateLimitedBackOff?: { resetHeaders?: Array<{ name: string; format: string }>; maxInterval?: string };
    retryOn?: string[];
  };
}

export type MeshRetrySpec = ToPolicySpec<MeshRetryConf>;

/** A MeshTrafficPermission client matcher (Kuma 2.12+ common_api Match). `sni` is schema-known to be refused by name. */
export interface PermissionMatch {
  spiffeID?: { type: 'Exact' | 'Prefix'; value: string };
  sni?: unknown;
}

/** MeshTrafficPermission `rules[].default` (Kuma 2.12+ RuleConf). */
export interface PermissionRuleConf {
  deny?: PermissionMatch[];
  allow?: PermissionMatch[];
  allowWithShadowDeny?: PermissionMatch[];
}

/**
 * Kuma 2.12+ MeshTrafficPermission, read as the permission to connect to MeshExternalServices: `targetRef` selects
 * the services (kind Mesh: all of the mesh's), `rules[].default` lists the clients by SPIFFE ID. `from` (the
 * pre-2.12 form, by tags) is schema-known to be refused by name.
 */
export interface MeshTrafficPermissionSpec {
  targetRef?: PolicyTargetRef;
  rules?: Array<{ default: PermissionRuleConf }>;
  from?: unknown[];
}

/** A MeshAccessLog format (Kuma 2.10+): a plain line, or JSON fields, each a string with command operators. */
export interface MeshAccessLogFormat {
  type: 'Plain' | 'Json';
  plain?: string;
  json?: Array<{ key: string; value: string }>;
  omitEmptyValues?: boolean;
}

/** A MeshAccessLog backend; meshext writes `File` ones (`/dev/stdout` is the agent's stdout). */
export interface MeshAccessLogBackend {
  type: 'File' | 'Tcp' | 'OpenTelemetry';
  file?: { path: string; format?: MeshAccessLogFormat };
  tcp?: { address: string; format?: MeshAccessLogFormat };
  openTelemetry?: Record<string, unknown>;
}

/** MeshAccessLog `default` (Kuma 2.10+ Conf). */
export interface MeshAccessLogConf {
  backends?: MeshAccessLogBackend[];
}

export type MeshAccessLogSpec = ToPolicySpec<MeshAccessLogConf>;

/** MeshCircuitBreaker `default` (Kuma 2.10+ Conf), as written. */
export interface MeshCircuitBreakerConf {
  connectionLimits?: {
    maxConnections?: number;
    maxConnectionPools?: number;
    maxPendingRequests?: number;
    maxRetries?: number;
    maxRequests?: number;
  };
  outlierDetection?: {
    disabled?: boolean;
    interval?: string;
    baseEjectionTime?: string;
    maxEjectionPercent?: number;
    splitExternalAndLocalErrors?: boolean;
    healthyPanicThreshold?: number | string;
    detectors?: {
      totalFailures?: { consecutive?: number };
      gatewayFailures?: { consecutive?: number };
      localOriginFailures?: { consecutive?: number };
      successRate?: { minimumHosts?: number; requestVolume?: number; standardDeviationFactor?: number | string };
      failurePercentage?: { minimumHosts?: number; requestVolume?: number; threshold?: number };
    };
  };
}

export type MeshCircuitBreakerSpec = ToPolicySpec<MeshCircuitBreakerConf>;

/** MeshHealthCheck `default` (Kuma 2.10+ Conf), as written. */
export interface MeshHealthCheckConf {
  interval?: string;
  unhealthyInterval?: string;
  timeout?: string;
  unhealthyThreshold?: number;
  healthyThreshold?: number;
  initialJitter?: string;
  intervalJitter?: string;
  intervalJitterPercent?: number;
  failTrafficOnPanic?: boolean;
  eventLogPath?: string;
  alwaysLogHealthCheckFailures?: boolean;
  noTrafficInterval?: string;
  reuseConnection?: boolean;
  healthyPanicThreshold?: number | string;
  tcp?: { disabled?: boolean; send?: string; receive?: string[] };
  http?: {
    disabled?: boolean;
    path?: string;
    requestHeadersToAdd?: { set?: Array<{ name: string; value: string }>; add?: Array<{ name: string; value: string }> };
    expectedStatuses?: number[];
  };
  grpc?: { disabled?: boolean; serviceName?: string; authority?: string };
}

export type MeshHealthCheckSpec = ToPolicySpec<MeshHealthCheckConf>;

interface ResourceBase<K extends string, S> {
  kind: K;
  /** Core name: the Universal name or the Kubernetes object name (namespace kept apart). */
  name: string;
  /** Mesh of a mesh-scoped kind; a Mesh's own name; empty for HostnameGenerator (global). */
  mesh: string;
  /** Kubernetes namespace; empty on Universal. */
  namespace: string;
  /** Labels after Kuma's label computation (§1.4). */
  labels: Record<string, string>;
  spec: S;
  source: SourceRef;
  format: ResourceFormat;
}

export type MeshExternalServiceResource = ResourceBase<'MeshExternalService', MeshExternalServiceSpec> & {
  /** The VIP Kuma assigned (`status.vip.ip`), inside the VIP CIDR; preferred over the node's own IPAM. */
  statusVip?: string;
};
export type HostnameGeneratorResource = ResourceBase<'HostnameGenerator', HostnameGeneratorSpec>;
export type MeshResource = ResourceBase<'Mesh', MeshSpec>;
export type SecretResource = ResourceBase<'Secret', SecretSpec>;
export type DataplaneResource = ResourceBase<'Dataplane', DataplaneSpec>;
export type MeshTimeoutResource = ResourceBase<'MeshTimeout', MeshTimeoutSpec>;
export type MeshRetryResource = ResourceBase<'MeshRetry', MeshRetrySpec>;
export type MeshTrafficPermissionResource = ResourceBase<'MeshTrafficPermission', MeshTrafficPermissionSpec>;
export type MeshAccessLogResource = ResourceBase<'MeshAccessLog', MeshAccessLogSpec>;
export type MeshCircuitBreakerResource = ResourceBase<'MeshCircuitBreaker', MeshCircuitBreakerSpec>;
export type MeshHealthCheckResource = ResourceBase<'MeshHealthCheck', MeshHealthCheckSpec>;

export type Resource =
  | MeshExternalServiceResource
  | HostnameGeneratorResource
  | MeshResource
  | SecretResource
  | DataplaneResource
  | MeshTimeoutResource
  | MeshRetryResource
  | MeshTrafficPermissionResource
  | MeshAccessLogResource
  | MeshCircuitBreakerResource
  | MeshHealthCheckResource;

export type ResourceKind = Resource['kind'];

/** The outcome of loading: accepted resources, rejected documents (errors) and warnings, apart. */
export interface LoadResult {
  resources: Resource[];
  errors: LoadError[];
  warnings: LoadWarning[];
  /** Directory entries passed over because they are not files one can read (FIFOs, devices, symlink loops). */
  skipped?: SkippedPath[];
}

/** A path inside a config directory that was not read, and why. */
export interface SkippedPath {
  file: string;
  reason: string;
}

export interface LoadOptions {
  /** Local zone name for `kuma.io/zone` (default `default`). */
  zone?: string;
  /** VIP CIDR; endpoints inside it are rejected (loop guard). Default from env or 242.0.0.0/8. */
  vipCidr?: string;
  /** Per-file input limits; each missing one takes its default (`DEFAULT_LOAD_LIMITS`). */
  limits?: Partial<LoadLimits>;
}

/** Bounds on one config file: over any of them the whole file is rejected, naming the limit. */
export interface LoadLimits {
  /** Bytes per file (and on stdin). */
  maxFileBytes: number;
  /** YAML documents per file; items of a `kind: List` or a top-level array count as documents. */
  maxDocuments: number;
  /**
   * Scalars, indicators and brackets in one document: what the yaml package holds in memory while it
   * composes a document (a few hundred bytes each), so this bounds the memory a document takes.
   */
  maxDocumentTokens: number;
  /** Mappings and sequences inside each other, YAML aliases included. */
  maxDepth: number;
  /** The `yaml` package's `maxAliasCount`: alias expansions per document, weighted by the anchor's size. */
  maxAliasCount: number;
}

/** Display name as Kuma v2 computes it: the user label if present, else the name. */
export function displayNameOf(r: { name: string; labels: Record<string, string> }): string {
  return r.labels['kuma.io/display-name'] ?? r.name;
}
