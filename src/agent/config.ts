/**
 * Agent configuration: every default in one place, then environment (`MESHEXT_*`), then flags.
 * The effective config is logged once at start through `redactedConfig`.
 */
import net from 'node:net';
import { hostname } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { CONNECT_TIMEOUT_MS, HTTP_HEADER_TIMEOUT_MS } from '../snapshot/plan.js';
import { DNS_TTL_SECONDS } from '../dns/ttl.js';
import { DEFAULT_ACCESS_LOG_DIR } from '../snapshot/accesslog.js';
import { isLoopback } from '../exposure.js';

export type Toggle = 'auto' | 'on' | 'off';

/** Where an agent answers admin requests for itself alone (its TCP admin port is shared during a restart). */
export const DEFAULT_ADMIN_SOCKET = '/run/meshext/admin.sock';

export interface HostPort {
  address: string;
  port: number;
}

export type SourceKind = 'files' | 'kubernetes';

export interface AgentConfig {
  /** Directories (or files) holding resources; watched for changes. */
  configPaths: string[];
  /** Where resources come from besides `configPaths`: only files, or also the Kubernetes API. */
  source: SourceKind;
  /** kubeconfig for `source: kubernetes`; undefined = the in-cluster service account. */
  kubeconfig: string | undefined;
  /** Namespace holding Kuma's MeshExternalServices, HostnameGenerators and Secrets. */
  systemNamespace: string;
  /** cgroup2 directory the BPF programs attach to; undefined = the cgroup2 mount root. */
  cgroup: string | undefined;
  /** Transparent redirect with eBPF: auto = on when the kernel allows it, else a warning. */
  redirect: Toggle;
  /** Embedded DNS resolver (and its BPF capture when redirect is on). */
  dns: Toggle;
  proxy: HostPort;
  dnsListen: HostPort;
  /** Upstream nameservers; empty = from resolv.conf. */
  dnsUpstreams: HostPort[];
  resolvConf: string;
  ipFamilyMode: 'dualstack' | 'ipv4';
  admin: HostPort;
  stateDir: string;
  /** MeshAccessLog files are written only under it (and /dev/stdout, /dev/stderr): the agent writes as root. */
  accessLogDir: string;
  vipCidr: string;
  zone: string;
  pinRoot: string;
  logFormat: 'json' | 'text';
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent';
  drainTimeMs: number;
  connectTimeoutMs: number;
  /** Quiet period after a file event before reloading (ConfigMap swaps come as bursts). */
  reloadDebounceMs: number;
  /** Full rescan interval as a safety net for missed watch events; 0 disables. */
  rescanIntervalMs: number;
  skipDefaultGenerators: boolean;
  /** I/O threads of the engine (the data plane). */
  dataThreads: number;
  /** A socket holder's unix socket (`meshext hold-sockets`) to take listening sockets from; '' for none. */
  socketHolder: string;
  /** This agent's own admin socket (a probe's way to ask it, not its successor, whether it is ready); '' for none. */
  adminSocket: string;
  /** Client connections the engine serves at once ('auto': from the descriptor limit; 0: no cap). */
  maxConnections: number | 'auto';
  /** How long an HTTP/1.x client may take to send a request head from its first byte. */
  httpHeaderTimeoutMs: number;
  /** TTL of the resolver's answers; a released VIP is quarantined for twice this before reuse. */
  dnsTtlSeconds: number;
  /** This node's name: in host units' SPIFFE IDs, and which pods are read (Kubernetes). */
  nodeName: string;
  /** Mesh whose trust domain host units' SPIFFE IDs use (`spiffe://<mesh>.<zone>.mesh.local/host/...`). */
  identityMesh: string;
  /** YAML/JSON file of `{cgroup: <glob>, spiffeID}` entries that override the identity rules; '' for none. */
  identityMap: string;
}

export const DEFAULTS: Readonly<AgentConfig> = Object.freeze({
  configPaths: [],
  source: 'files',
  kubeconfig: undefined,
  // Kuma's default system namespace.
  systemNamespace: 'kuma-system',
  cgroup: undefined,
  redirect: 'auto',
  dns: 'on',
  proxy: { address: '127.0.0.1', port: 15001 },
  dnsListen: { address: '127.0.0.1', port: 15053 },
  dnsUpstreams: [],
  resolvConf: '/etc/resolv.conf',
  ipFamilyMode: 'dualstack',
  admin: { address: '127.0.0.1', port: 9901 },
  stateDir: '/var/lib/meshext',
  accessLogDir: DEFAULT_ACCESS_LOG_DIR,
  // Kuma's default MeshExternalService CIDR.
  vipCidr: '242.0.0.0/8',
  zone: 'default',
  pinRoot: '/sys/fs/bpf/meshext',
  logFormat: 'json',
  logLevel: 'info',
  drainTimeMs: 30_000,
  connectTimeoutMs: CONNECT_TIMEOUT_MS,
  reloadDebounceMs: 200,
  rescanIntervalMs: 30_000,
  skipDefaultGenerators: false,
  dataThreads: 1,
  adminSocket: DEFAULT_ADMIN_SOCKET,
  socketHolder: '',
  maxConnections: 'auto',
  httpHeaderTimeoutMs: HTTP_HEADER_TIMEOUT_MS,
  dnsTtlSeconds: DNS_TTL_SECONDS,
  nodeName: hostname(),
  identityMesh: 'default',
  identityMap: '',
} satisfies AgentConfig);

/** A configuration value that cannot be used, naming where it came from. */
export class ConfigError extends Error {
  readonly code = 'MESHEXT_E_CONFIG';
  constructor(
    readonly source: string,
    readonly value: string,
    detail: string,
  ) {
    super(`${source}: invalid value "${value}": ${detail}`);
  }
}

/** Parses `host:port`, `[v6]:port` or `:port` (host defaults to 127.0.0.1). */
export function parseHostPort(text: string, source: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text.trim());
  if (!m) throw new ConfigError(source, text, 'expected HOST:PORT, e.g. 127.0.0.1:9901');
  const address = m[1] ?? (m[2] === '' || m[2] === undefined ? '127.0.0.1' : m[2]);
  return { address, port: parsePort(m[3] ?? '', source, text) };
}

function parsePort(text: string, source: string, whole = text): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 0 || port > 65535) throw new ConfigError(source, whole, 'port must be 0-65535');
  return port;
}

/** Parses `30s`, `500ms`, `2m` or a bare number of seconds. */
export function parseDuration(text: string, source: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new ConfigError(source, text, 'expected a duration such as 500ms, 30s or 2m');
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000;
  return Math.round(n * factor);
}

/** A connect timeout the engine can arm: 0 would fail every connect at once. */
function parseConnectTimeout(text: string, source: string): number {
  return parseTimeout(text, source, 'a connect timeout');
}

function parseTimeout(text: string, source: string, what: string): number {
  const ms = parseDuration(text, source);
  if (ms < 1 || ms > 86_400_000) throw new ConfigError(source, text, `expected ${what} from 1ms to 24h`);
  return ms;
}

/** `auto` (from the descriptor limit), or a whole number (0: no cap). */
function parseMaxConnections(text: string, source: string): number | 'auto' {
  const v = text.trim().toLowerCase();
  if (v === 'auto') return 'auto';
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 0xffffffff) throw new ConfigError(source, text, 'expected auto or a whole number of connections (0: no cap)');
  return n;
}

function parseToggle(text: string, source: string): Toggle {
  const v = text.trim().toLowerCase();
  if (v === 'auto') return 'auto';
  if (['on', 'true', '1', 'yes'].includes(v)) return 'on';
  if (['off', 'false', '0', 'no'].includes(v)) return 'off';
  throw new ConfigError(source, text, 'expected auto, on or off');
}

function oneOf<T extends string>(text: string, allowed: readonly T[], source: string): T {
  if ((allowed as readonly string[]).includes(text)) return text as T;
  throw new ConfigError(source, text, `expected one of ${allowed.join(', ')}`);
}

/** Raw option values as strings, keyed by option name (from env or flags). */
export type RawOptions = Partial<Record<OptionName, string | string[]>>;

export const OPTION_NAMES = [
  'config',
  'source',
  'kubeconfig',
  'systemNamespace',
  'cgroup',
  'redirect',
  'dns',
  'proxyAddress',
  'proxyPort',
  'dnsAddress',
  'dnsPort',
  'dnsUpstream',
  'resolvConf',
  'ipFamilyMode',
  'admin',
  'stateDir',
  'accessLogDir',
  'vipCidr',
  'zone',
  'pinRoot',
  'logFormat',
  'logLevel',
  'drainTime',
  'connectTimeout',
  'skipDefaultGenerators',
  'dataThreads',
  'adminSocket',
  'socketHolder',
  'maxConnections',
  'httpHeaderTimeout',
  'nodeName',
  'identityMesh',
  'identityMap',
] as const;
export type OptionName = (typeof OPTION_NAMES)[number];

/** `proxyPort` → `MESHEXT_PROXY_PORT`. */
export function envName(option: OptionName): string {
  return 'MESHEXT_' + option.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
}

/** Reads every `MESHEXT_*` option from the environment (lists are comma-separated). */
export function optionsFromEnv(env: NodeJS.ProcessEnv): RawOptions {
  const out: RawOptions = {};
  for (const name of OPTION_NAMES) {
    const v = env[envName(name)];
    if (v !== undefined && v !== '') out[name] = name === 'config' || name === 'dnsUpstream' ? v.split(',').filter(Boolean) : v;
  }
  // Kuma's variable for the same setting, honoured so Kuma users' environments carry over.
  if (out.vipCidr === undefined && env.KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR) out.vipCidr = env.KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR;
  if (out.systemNamespace === undefined && env.KUMA_STORE_KUBERNETES_SYSTEM_NAMESPACE) out.systemNamespace = env.KUMA_STORE_KUBERNETES_SYSTEM_NAMESPACE;
  return out;
}

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[v.length - 1] : v;
}

function list(v: string | string[] | undefined): string[] | undefined {
  return v === undefined ? undefined : Array.isArray(v) ? v : [v];
}

/** Builds the effective config: defaults ← env ← flags. Throws ConfigError naming the bad option. */
export function resolveConfig(layers: Array<{ name: string; options: RawOptions }>): AgentConfig {
  const cfg: AgentConfig = structuredClone({ ...DEFAULTS }) as AgentConfig;
  for (const { name: layer, options } of layers) {
    const src = (o: OptionName): string => (layer === 'env' ? envName(o) : `--${o.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`);
    const s = (o: OptionName): string | undefined => single(options[o]);
    const paths = list(options.config);
    if (paths) cfg.configPaths = paths;
    if (s('source') !== undefined) cfg.source = oneOf(s('source')!, ['files', 'kubernetes'] as const, src('source'));
    if (s('kubeconfig') !== undefined) cfg.kubeconfig = s('kubeconfig')!;
    if (s('systemNamespace') !== undefined) cfg.systemNamespace = namespaceName(s('systemNamespace')!, src('systemNamespace'));
    if (s('cgroup') !== undefined) cfg.cgroup = s('cgroup');
    if (s('redirect') !== undefined) cfg.redirect = parseToggle(s('redirect')!, src('redirect'));
    if (s('dns') !== undefined) cfg.dns = parseToggle(s('dns')!, src('dns'));
    if (s('proxyAddress') !== undefined) cfg.proxy.address = ipAddress(s('proxyAddress')!, src('proxyAddress'));
    if (s('proxyPort') !== undefined) cfg.proxy.port = parsePort(s('proxyPort')!, src('proxyPort'));
    if (s('dnsAddress') !== undefined) cfg.dnsListen.address = ipAddress(s('dnsAddress')!, src('dnsAddress'));
    if (s('dnsPort') !== undefined) cfg.dnsListen.port = parsePort(s('dnsPort')!, src('dnsPort'));
    const ups = list(options.dnsUpstream);
    if (ups) cfg.dnsUpstreams = ups.map((u) => (u.includes(':') && !net.isIPv6(u) ? parseHostPort(u, src('dnsUpstream')) : { address: ipAddress(u, src('dnsUpstream')), port: 53 }));
    if (s('resolvConf') !== undefined) cfg.resolvConf = s('resolvConf')!;
    if (s('ipFamilyMode') !== undefined) cfg.ipFamilyMode = oneOf(s('ipFamilyMode')!, ['dualstack', 'ipv4'] as const, src('ipFamilyMode'));
    if (s('admin') !== undefined) cfg.admin = parseHostPort(s('admin')!, src('admin'));
    if (s('stateDir') !== undefined) cfg.stateDir = s('stateDir')!;
    if (s('accessLogDir') !== undefined) cfg.accessLogDir = absoluteDir(s('accessLogDir')!, src('accessLogDir'));
    if (s('vipCidr') !== undefined) cfg.vipCidr = s('vipCidr')!;
    if (s('zone') !== undefined) cfg.zone = s('zone')!;
    if (s('pinRoot') !== undefined) cfg.pinRoot = s('pinRoot')!;
    if (s('logFormat') !== undefined) cfg.logFormat = oneOf(s('logFormat')!, ['json', 'text'] as const, src('logFormat'));
    if (s('logLevel') !== undefined) cfg.logLevel = oneOf(s('logLevel')!, ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const, src('logLevel'));
    if (s('drainTime') !== undefined) cfg.drainTimeMs = parseDuration(s('drainTime')!, src('drainTime'));
    if (s('connectTimeout') !== undefined) cfg.connectTimeoutMs = parseConnectTimeout(s('connectTimeout')!, src('connectTimeout'));
    if (s('skipDefaultGenerators') !== undefined) cfg.skipDefaultGenerators = parseToggle(s('skipDefaultGenerators')!, src('skipDefaultGenerators')) === 'on';
    if (s('dataThreads') !== undefined) cfg.dataThreads = parseThreads(s('dataThreads')!, src('dataThreads'));
    if (s('socketHolder') !== undefined) cfg.socketHolder = s('socketHolder')!.trim();
    if (s('adminSocket') !== undefined) cfg.adminSocket = ['', 'off', 'none'].includes(s('adminSocket')!.trim()) ? '' : s('adminSocket')!;
    if (s('maxConnections') !== undefined) cfg.maxConnections = parseMaxConnections(s('maxConnections')!, src('maxConnections'));
    if (s('nodeName') !== undefined) cfg.nodeName = nonEmpty(s('nodeName')!, src('nodeName'), 'a node name');
    if (s('identityMesh') !== undefined) cfg.identityMesh = nonEmpty(s('identityMesh')!, src('identityMesh'), 'a mesh name');
    if (s('identityMap') !== undefined) cfg.identityMap = s('identityMap')!.trim();
    if (s('httpHeaderTimeout') !== undefined) cfg.httpHeaderTimeoutMs = parseTimeout(s('httpHeaderTimeout')!, src('httpHeaderTimeout'), 'an HTTP header timeout');
  }
  if (cfg.configPaths.length === 0 && cfg.source === 'files') {
    throw new ConfigError('--config', '', 'at least one resource directory is required (--config DIR or MESHEXT_CONFIG), or --source kubernetes');
  }
  if (cfg.kubeconfig !== undefined && cfg.source !== 'kubernetes') throw new ConfigError('--kubeconfig', cfg.kubeconfig, 'only used with --source kubernetes');
  if (!isLoopback(cfg.admin.address)) {
    // The admin API exposes config dumps and mutating calls: never off the node's loopback.
    throw new ConfigError('--admin', `${cfg.admin.address}:${cfg.admin.port}`, 'the admin API listens on loopback only (127.0.0.0/8 or ::1)');
  }
  return cfg;
}

/** A Kubernetes namespace name: an RFC 1123 label. */
function namespaceName(text: string, source: string): string {
  if (text.length > 63 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(text)) {
    throw new ConfigError(source, text, 'expected a Kubernetes namespace name (lowercase letters, digits and -, at most 63)');
  }
  return text;
}

/** An absolute directory path, normalised (`/var/log/meshext/` → `/var/log/meshext`). */
function absoluteDir(text: string, source: string): string {
  const v = text.trim();
  if (!v.startsWith('/')) throw new ConfigError(source, text, 'expected an absolute directory path');
  return resolvePath(v);
}

function nonEmpty(text: string, source: string, what: string): string {
  const v = text.trim();
  if (v === '' || /\s/.test(v)) throw new ConfigError(source, text, `expected ${what} without spaces`);
  return v;
}

/** The engine takes 1..64 I/O threads (more than the node's cores only adds context switches). */
function parseThreads(text: string, source: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < 1 || n > 64) throw new ConfigError(source, text, 'expected a whole number of threads from 1 to 64');
  return n;
}

function ipAddress(text: string, source: string): string {
  if (net.isIP(text) === 0) throw new ConfigError(source, text, 'expected an IPv4 or IPv6 address');
  return text;
}


/** The config as logged and dumped: nothing secret lives here today, but keep the one place to strip it. */
export function redactedConfig(cfg: AgentConfig): Record<string, unknown> {
  return { ...cfg };
}
