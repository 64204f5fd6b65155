/**
 * Cross-resource checks that need the whole set (Kuma does them when building proxy config):
 * Secrets referenced by a MES with TLS enabled must exist in its mesh, and Dataplane outbounds must
 * resolve to a MeshExternalService. Shared by the compiler and `meshext validate`.
 */
import type {
  DataSource,
  DataplaneResource,
  LoadError,
  LoadResult,
  MeshExternalServiceResource,
  Resource,
  SecretResource,
} from '../resources/types.js';
import { referencedSecrets } from '../resources/validate-mes.js';
import { selectorMatches } from '../hostnames/generate.js';
import type { RejectedResource } from './types.js';

export const byKind = <K extends Resource['kind']>(rs: Resource[], kind: K): Array<Extract<Resource, { kind: K }>> =>
  rs.filter((r): r is Extract<Resource, { kind: K }> => r.kind === kind);

export function secretIndex(load: LoadResult): Map<string, SecretResource> {
  return new Map(byKind(load.resources, 'Secret').map((s) => [`${s.mesh}/${s.name}`, s]));
}

/** Kuma's message for a missing Secret, or undefined when every reference resolves. */
export function missingSecrets(mes: MeshExternalServiceResource, secrets: Map<string, SecretResource>): RejectedResource | undefined {
  const violations = referencedSecrets(mes.spec)
    .filter((ref) => !secrets.has(`${mes.mesh}/${ref.name}`))
    .map((ref) => ({
      field: `spec.tls.verification.${ref.key}.secret`,
      message: `could not load ${ref.key}: could not load data: Resource not found: type="Secret" name="${ref.name}" mesh="${mes.mesh}"`,
    }));
  return violations.length ? { file: mes.source.file, ...(mes.source.line !== undefined ? { line: mes.source.line } : {}), kind: mes.kind, name: mes.name, mesh: mes.mesh, violations } : undefined;
}

/** Bytes of a data source (secret > inline > inlineString once validation guaranteed exactly one). */
export function resolveDataSource(ds: DataSource | undefined, mesh: string, secrets: Map<string, SecretResource>): Buffer | undefined {
  if (!ds) return undefined;
  if (ds.secret !== undefined) return secrets.get(`${mesh}/${ds.secret}`)?.spec.data;
  if (ds.inline !== undefined) return Buffer.from(ds.inline.replace(/[\r\n]/g, ''), 'base64');
  if (ds.inlineString !== undefined) return Buffer.from(ds.inlineString, 'utf8');
  return undefined; // `{}` means unset, as in Kuma
}

/** Resolves a backendRef to a service: by name in the mesh, else the oldest service matching labels. */
export function resolveBackendRef(
  dp: DataplaneResource,
  ref: { name?: string; labels?: Record<string, string> },
  services: MeshExternalServiceResource[],
): MeshExternalServiceResource | string {
  const inMesh = services.filter((s) => s.mesh === dp.mesh);
  if (ref.name !== undefined) {
    return inMesh.find((s) => s.name === ref.name) ?? `no MeshExternalService "${ref.name}" in mesh "${dp.mesh}"`;
  }
  const hit = inMesh.find((s) => selectorMatches({ matchLabels: ref.labels ?? {} }, s.labels));
  return hit ?? `no MeshExternalService in mesh "${dp.mesh}" matches labels ${JSON.stringify(ref.labels ?? {})}`;
}

/** Every cross-resource rejection for a load, without allocating anything. */
/** A load error in the shape of a rejected resource (what `validate`, the snapshot and /config_dump list). */
export function rejectedFromLoadError(e: LoadError): RejectedResource {
  return {
    file: e.file,
    ...(e.line !== undefined ? { line: e.line } : {}),
    kind: e.kind ?? '',
    name: e.name ?? '',
    ...(e.mesh !== undefined ? { mesh: e.mesh } : {}),
    violations: e.violations,
  };
}

export function checkReferences(load: LoadResult): RejectedResource[] {
  const secrets = secretIndex(load);
  const out: RejectedResource[] = [];
  const services: MeshExternalServiceResource[] = [];
  for (const mes of byKind(load.resources, 'MeshExternalService')) {
    const miss = missingSecrets(mes, secrets);
    if (miss) out.push(miss);
    else services.push(mes);
  }
  for (const dp of byKind(load.resources, 'Dataplane')) {
    const violations = dataplaneViolations(dp, services);
    if (violations.length) out.push({ file: dp.source.file, kind: dp.kind, name: dp.name, mesh: dp.mesh, violations });
  }
  return out;
}

/** Unresolvable outbounds of one Dataplane. */
export function dataplaneViolations(dp: DataplaneResource, services: MeshExternalServiceResource[]): Array<{ field: string; message: string }> {
  const prefix = dp.format === 'kubernetes' ? 'spec.' : '';
  const out: Array<{ field: string; message: string }> = [];
  dp.spec.networking.outbound.forEach((o, i) => {
    const r = resolveBackendRef(dp, o.backendRef, services);
    if (typeof r === 'string') out.push({ field: `${prefix}networking.outbound[${i}].backendRef`, message: r });
  });
  return out;
}
