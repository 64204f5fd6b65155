/**
 * Validated resources → immutable Snapshot: resolves Secrets, generates hostnames, allocates VIPs,
 * classifies endpoints, applies the Mesh access flag and binds Dataplane outbounds.
 *
 * - A Mesh resource is optional: a MES in a mesh without a Mesh resource is served with Kuma's defaults
 *   (access allowed), as `default` is implied on a standalone CP.
 * - compile never releases VIPs: a service that is temporarily invalid keeps its address; callers release
 *   services that were deleted.
 * - An endpoint hostname that meshext itself serves would loop through the proxy; that MES is rejected.
 */
import { isIP } from 'node:net';
import type { Ipam } from '../ipam/ipam.js';
import type { DataplaneResource, LoadResult, MeshExternalServiceResource, MeshResource } from '../resources/types.js';
import { effectivePermissions } from './meshtrafficpermission.js';
import { effectiveCircuitBreaker } from './meshcircuitbreaker.js';
import { effectiveHealthCheck } from './meshhealthcheck.js';
import { displayNameOf } from '../resources/types.js';
import { unixPath } from '../resources/address.js';
import { defaultGenerators } from '../hostnames/defaults.js';
import { generateHostnames, serviceId } from '../hostnames/generate.js';
import type { CompiledEndpoint, CompiledOutbound, CompiledService, CompiledTls, DataplaneBinding, RejectedResource, ServicePolicies, Snapshot, TlsVersion, VerificationMode } from './types.js';
import { outboundKey, SERVICE_POLICY_FIELDS, vipPortKey } from './types.js';
import { targetsDataplanes } from './policy.js';
import { effectiveTimeouts } from './meshtimeout.js';
import { effectiveRetry } from './meshretry.js';
import { effectiveAccessLog } from './accesslog.js';
import { byKind, dataplaneViolations, missingSecrets, rejectedFromLoadError, resolveBackendRef, resolveDataSource, secretIndex } from './references.js';

let lastGeneration = 0;

export interface CompileInput {
  load: LoadResult;
  ipam: Ipam;
  zone?: string;
  skipDefaultGenerators?: boolean;
  generation?: number;
}

/** Builds a Snapshot; never throws for bad resources (they land in `rejected`). */
export async function compileSnapshot(input: CompileInput): Promise<Snapshot> {
  const { load, ipam } = input;
  const zone = input.zone ?? process.env.KUMA_MULTIZONE_ZONE_NAME ?? 'default';
  const rejected: RejectedResource[] = load.errors.map(rejectedFromLoadError);
  const secrets = secretIndex(load);
  const meshes = new Map<string, MeshResource>(byKind(load.resources, 'Mesh').map((m) => [m.name, m]));

  let candidates: MeshExternalServiceResource[] = [];
  for (const mes of byKind(load.resources, 'MeshExternalService')) {
    const miss = missingSecrets(mes, secrets);
    if (miss) rejected.push(miss);
    else candidates.push(mes);
  }

  // Kuma's own assignment first, so the node answers with the address sidecars get from Kuma.
  await ipam.adopt(new Map(candidates.filter((m) => m.statusVip !== undefined).map((m) => [serviceId(m), m.statusVip as string])));
  const vips = await ipam.assign(candidates.map(serviceId));
  candidates = candidates.filter((mes) => {
    const r = vips.get(serviceId(mes));
    if (r && 'vip' in r) return true;
    rejected.push({
      file: mes.source.file,
      kind: mes.kind,
      name: mes.name,
      mesh: mes.mesh,
      violations: [{ field: 'status.vip', message: `could not allocate vip for MeshExternalService ${mes.name}: ${r && 'error' in r ? r.error : 'unknown error'}` }],
    });
    return false;
  });

  const userGenerators = byKind(load.resources, 'HostnameGenerator');
  const defaults = input.skipDefaultGenerators ? [] : defaultGenerators(zone).filter((d) => !userGenerators.some((g) => g.name === d.name));
  const names = generateHostnames({ services: candidates, generators: [...defaults, ...userGenerators], zone });
  const owned = new Map<string, MeshExternalServiceResource>();
  for (const mes of candidates) for (const h of names.get(serviceId(mes))?.hostnames ?? []) owned.set(h, mes);

  const permissionPolicies = byKind(load.resources, 'MeshTrafficPermission');
  const policiesOf = servicePolicies(load);
  // MeshCircuitBreaker and MeshHealthCheck cannot target a Dataplane (validate-policy.ts): service-wide only.
  const circuitBreakers = byKind(load.resources, 'MeshCircuitBreaker');
  const healthChecks = byKind(load.resources, 'MeshHealthCheck');
  const services: CompiledService[] = [];
  for (const mes of candidates) {
    const loop = (mes.spec.extension ? [] : (mes.spec.endpoints ?? []))
      .map((ep, i) => ({ ep, i, owner: owned.get(ep.address.toLowerCase().replace(/\.$/, '')) }))
      .filter((x) => x.owner !== undefined);
    if (loop.length) {
      rejected.push({
        file: mes.source.file,
        kind: mes.kind,
        name: mes.name,
        mesh: mes.mesh,
        violations: loop.map((x) => ({
          field: `spec.endpoints[${x.i}].address`,
          message: `hostname ${x.ep.address} is served by meshext itself (MeshExternalService ${x.owner?.mesh}/${x.owner?.name}); the proxy would loop`,
        })),
      });
      continue;
    }
    const vip = (vips.get(serviceId(mes)) as { vip: string }).vip;
    const gen = names.get(serviceId(mes)) ?? { hostnames: [], generatorStatus: [] };
    const tls = mes.spec.tls?.enabled && !mes.spec.extension ? compileTls(mes, secrets) : undefined;
    const mesh = meshes.get(mes.mesh);
    const routing = mesh?.spec.routing;
    const zoneLabel = mes.labels['kuma.io/zone'] ?? '';
    const forbidden = routing?.defaultForbidMeshExternalServiceAccess === true;
    const permissions = effectivePermissions(mes, permissionPolicies, forbidden);
    services.push({
      id: serviceId(mes),
      name: mes.name,
      mesh: mes.mesh,
      kri: `kri_extsvc_${mes.mesh}_${zoneLabel}_${mes.namespace}_${mes.name}_`,
      displayName: displayNameOf(mes),
      namespace: mes.namespace,
      labels: mes.labels,
      vip,
      port: mes.spec.match.port,
      protocol: mes.spec.match.protocol,
      hostnames: gen.hostnames,
      endpoints: mes.spec.extension ? [] : compileEndpoints(mes),
      ...(tls ? { tls } : {}),
      forbidden,
      ...(permissions ? { permissions } : {}),
      ...(mes.spec.extension
        ? {
            extension: mes.spec.extension.type,
            // Kuma hands extensions to a plugin; meshext has none, so the service resolves but refuses connections.
            conditions: [{ type: 'Ready', status: 'False' as const, reason: 'ExtensionNotSupported', message: `extension type ${mes.spec.extension.type} is not supported by meshext: connections are refused` }],
          }
        : {}),
      generatorStatus: gen.generatorStatus,
      ...policiesOf(mes),
      ...present('circuitBreaker', effectiveCircuitBreaker(mes, circuitBreakers)),
      ...present('healthCheck', effectiveHealthCheck(mes, healthChecks)),
      source: { file: mes.source.file, index: mes.source.index },
    });
  }

  const outbounds = compileOutbounds(load, services, candidates, rejected, policiesOf);
  const byVipPort = new Map(services.map((s) => [vipPortKey(s.vip, s.port), s]));
  const byHostname = new Map<string, CompiledService>();
  for (const s of services) for (const h of s.hostnames) byHostname.set(h, s);

  lastGeneration = input.generation ?? lastGeneration + 1;
  return { generation: lastGeneration, services, byVipPort, byHostname, outbounds, rejected, warnings: load.warnings, vipCidr: ipam.cidr };
}

/**
 * The policy fields of a service (`dataplane` undefined: for every client of the node, the VIP path) or of one
 * Dataplane's outbounds to it, each kind merged as Kuma merges it (snapshot/policy.ts); a field is absent when no
 * policy of its kind selects the service.
 */
type PoliciesOf = (mes: MeshExternalServiceResource, dataplane?: DataplaneResource) => ServicePolicies;

function servicePolicies(load: LoadResult): PoliciesOf & { dataplaneTargeted: boolean } {
  const meshTimeouts = byKind(load.resources, 'MeshTimeout');
  const meshRetries = byKind(load.resources, 'MeshRetry');
  const meshAccessLogs = byKind(load.resources, 'MeshAccessLog');
  const f = (mes: MeshExternalServiceResource, dp?: DataplaneResource): ServicePolicies => {
    const timeouts = effectiveTimeouts(mes, meshTimeouts, dp);
    const retry = effectiveRetry(mes, meshRetries, dp);
    const accessLog = effectiveAccessLog(mes, meshAccessLogs, dp);
    return {
      ...(timeouts.policies.length > 0 ? { timeouts } : {}),
      ...(retry.policies.length > 0 ? { retry } : {}),
      ...(accessLog ? { accessLog } : {}),
    };
  };
  return Object.assign(f, { dataplaneTargeted: targetsDataplanes([...meshTimeouts, ...meshRetries, ...meshAccessLogs]) });
}

/** The policy fields of a compiled service. */
function ownPolicies(svc: CompiledService): ServicePolicies {
  const out: ServicePolicies = {};
  for (const k of SERVICE_POLICY_FIELDS) if (svc[k] !== undefined) Object.assign(out, { [k]: svc[k] });
  return out;
}

/** `{[key]: value}` when there is a value, else nothing (optional fields stay absent, not undefined). */
function present<K extends string, V>(key: K, value: V | undefined): { [k in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [k in K]?: V };
}

/** The name a Dataplane goes by in plan keys and /config_dump: Kuma's `name.namespace` on Kubernetes. */
function dataplaneName(dp: DataplaneResource): string {
  return dp.namespace ? `${dp.name}.${dp.namespace}` : dp.name;
}

function compileEndpoints(mes: MeshExternalServiceResource): CompiledEndpoint[] {
  return (mes.spec.endpoints ?? []).map((ep): CompiledEndpoint => {
    const prio = ep.priority !== undefined ? { priority: ep.priority } : {};
    const path = unixPath(ep.address);
    if (path !== undefined) return { kind: 'unix', path, ...prio };
    const fam = isIP(ep.address);
    if (fam === 4 || fam === 6) return { kind: 'ip', address: ep.address, port: ep.port as number, family: fam, ...prio };
    // Names are matched case-insensitively and a trailing dot means the same host.
    return { kind: 'dns', address: ep.address.replace(/\.$/, ''), port: ep.port as number, ...prio };
  });
}

function compileTls(mes: MeshExternalServiceResource, secrets: ReturnType<typeof secretIndex>): CompiledTls {
  const t = mes.spec.tls as NonNullable<MeshExternalServiceSpecTls>;
  const v = t.verification;
  const ca = resolveDataSource(v?.caCert, mes.mesh, secrets);
  const cert = resolveDataSource(v?.clientCert, mes.mesh, secrets);
  const key = resolveDataSource(v?.clientKey, mes.mesh, secrets);
  return {
    minVersion: (t.version?.min ?? 'TLSAuto') as TlsVersion,
    maxVersion: (t.version?.max ?? 'TLSAuto') as TlsVersion,
    allowRenegotiation: t.allowRenegotiation ?? false,
    // Kuma's Go validator treats an explicit empty mode as Secured.
    mode: ((v?.mode || 'Secured') as VerificationMode),
    ...(v?.serverName ? { serverName: v.serverName } : {}),
    subjectAltNames: (v?.subjectAltNames ?? []).map((s) => ({ type: s.type as 'Exact' | 'Prefix', value: s.value })),
    ...(ca ? { ca } : {}),
    ...(cert && key ? { cert, key } : {}),
  };
}
type MeshExternalServiceSpecTls = MeshExternalServiceResource['spec']['tls'];

/**
 * Binds each Dataplane's outbounds to their services: a listener key per Dataplane and service (stable, so a policy
 * change never reopens a listener), and the Dataplane's own policy fields when Dataplane-targeted policies make
 * them differ from the service's (the service then gets a second plan for that key: plan.ts).
 */
function compileOutbounds(
  load: LoadResult,
  services: CompiledService[],
  candidates: MeshExternalServiceResource[],
  rejected: RejectedResource[],
  policiesOf: ReturnType<typeof servicePolicies>,
): CompiledOutbound[] {
  const out: CompiledOutbound[] = [];
  const bindings = new Map<CompiledService, Map<string, DataplaneBinding>>();
  const taken = new Map<string, string>();
  const served = candidates.filter((c) => services.some((s) => s.id === serviceId(c)));
  for (const dp of byKind(load.resources, 'Dataplane')) {
    const violations = dataplaneViolations(dp, served);
    const prefix = dp.format === 'kubernetes' ? 'spec.' : '';
    dp.spec.networking.outbound.forEach((o, i) => {
      const target = resolveBackendRef(dp, o.backendRef, served);
      if (typeof target === 'string') return;
      const svc = services.find((s) => s.id === serviceId(target));
      if (svc?.permissions) {
        violations.push({
          field: `${prefix}networking.outbound[${i}].backendRef`,
          message: `MeshExternalService ${svc.mesh}/${svc.name} is under MeshTrafficPermission ${svc.permissions.policies.join(', ')}: access is decided at connect() to its VIP from the client's cgroup identity, which a connection to an outbound listener does not carry; clients reach it by its hostname or VIP`,
        });
        return;
      }
      const key = `${o.address}:${o.port}`;
      const prev = taken.get(key);
      if (prev) {
        violations.push({ field: `${prefix}networking.outbound[${i}].port`, message: `${key} is already used by ${prev}` });
        return;
      }
      taken.set(key, `Dataplane ${dp.mesh}/${dp.name} outbound[${i}]`);
      const name = dataplaneName(dp);
      const binding = bind(svc as CompiledService, target, dp, name);
      out.push({ address: o.address, port: o.port, serviceId: serviceId(target), dataplane: name, key: binding.key, source: { file: dp.source.file, index: dp.source.index } });
    });
    if (violations.length) rejected.push({ file: dp.source.file, kind: dp.kind, name: dp.name, mesh: dp.mesh, violations });
  }
  for (const [svc, byDp] of bindings) svc.dataplanes = [...byDp.values()];
  return out;

  function bind(svc: CompiledService, mes: MeshExternalServiceResource, dp: DataplaneResource, name: string): DataplaneBinding {
    let byDp = bindings.get(svc);
    if (!byDp) bindings.set(svc, (byDp = new Map()));
    let b = byDp.get(name);
    if (b) return b;
    b = { dataplane: name, key: outboundKey(svc.id, name) };
    if (policiesOf.dataplaneTargeted) {
      const own = policiesOf(mes, dp);
      // Only outbounds whose values or deciding policies differ cost a plan of their own (the policies count, so
      // /config_dump names what decides each outbound).
      if (JSON.stringify(own) !== JSON.stringify(ownPolicies(svc))) b.policies = own;
    }
    byDp.set(name, b);
    return b;
  }
}
