/**
 * Warnings: what is accepted as written but probably not what the user meant. A warning never
 * rejects a resource. Wording follows where Kuma (or the Kubernetes API server in front of it) has one:
 * - unknown fields: the API server's field validation (`Warning: unknown field "spec.foo"`); meshext
 *   ignores such fields, as Kuma's Universal decoder does silently;
 * - MeshExternalService names that are not RFC 1035 labels: Kuma 2.10's deprecation warning;
 * - a hostname made of digits and dots that is not a valid IPv4 address (`999.1.1.1`): Kuma accepts
 *   it as a hostname without a word; meshext says so because it is almost always a typo of an IP.
 */
import type { ResourceFormat, ResourceKind, Violation } from './types.js';
import { dns1035LabelErrors, isDnsName, isIpAddress } from './address.js';
import { POLICY_KIND_NAMES } from './policy-kinds.js';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The parts of a JSON Schema the unknown-field walk reads. */
interface SchemaNode {
  properties?: Readonly<Record<string, SchemaNode>>;
  items?: SchemaNode;
  additionalProperties?: boolean | SchemaNode;
}

const joinField = (prefix: string, key: string): string => (prefix === '' ? key : `${prefix}.${key}`);

/**
 * Paths of fields the schema does not know. An object schema with `properties` is closed unless it
 * sets `additionalProperties` (true: open, a schema: every value is checked against it).
 */
export function unknownFields(schema: object, value: unknown, prefix: string): string[] {
  const out: string[] = [];
  const walk = (s: SchemaNode, v: unknown, at: string): void => {
    if (Array.isArray(v)) {
      if (s.items) v.forEach((item, i) => walk(s.items as SchemaNode, item, `${at}[${i}]`));
      return;
    }
    if (!isObj(v)) return;
    for (const [k, child] of Object.entries(v)) {
      const known = s.properties?.[k];
      if (known) walk(known, child, joinField(at, k));
      else if (typeof s.additionalProperties === 'object') walk(s.additionalProperties, child, joinField(at, k));
      else if (s.properties && s.additionalProperties === undefined) out.push(joinField(at, k));
    }
  };
  walk(schema as SchemaNode, value, prefix);
  return out;
}

/** Kubernetes' strict-decoding warning text for an unknown field. */
export function unknownFieldWarning(field: string): Violation {
  return { field, message: `unknown field "${field}"` };
}

// Read-only fields `kumactl get -o yaml` prints, and the stray `apiVersion` of the kuma-website seed.
const UNIVERSAL_COMMON = ['type', 'name', 'labels', 'creationTime', 'modificationTime', 'apiVersion'];
const KUBE_COMMON = ['apiVersion', 'kind', 'metadata'];

/** Top-level keys each form of each kind may carry; absent: the kind keeps its fields at top level. */
const TOP_LEVEL: Record<ResourceFormat, Partial<Record<ResourceKind, string[]>>> = {
  universal: {
    MeshExternalService: [...UNIVERSAL_COMMON, 'mesh', 'spec', 'status'],
    HostnameGenerator: [...UNIVERSAL_COMMON, 'spec'],
    Secret: [...UNIVERSAL_COMMON, 'mesh', 'data'],
    ...Object.fromEntries(POLICY_KIND_NAMES.map((k) => [k, [...UNIVERSAL_COMMON, 'mesh', 'spec']])),
  },
  kubernetes: {
    MeshExternalService: [...KUBE_COMMON, 'spec', 'status'],
    HostnameGenerator: [...KUBE_COMMON, 'spec', 'status'],
    Mesh: [...KUBE_COMMON, 'spec'],
    Dataplane: [...KUBE_COMMON, 'spec'],
    ...Object.fromEntries(POLICY_KIND_NAMES.map((k) => [k, [...KUBE_COMMON, 'spec']])),
    Secret: [...KUBE_COMMON, 'type', 'data', 'stringData', 'immutable'],
  },
};

/** Warnings for the document's own keys (the spec is walked separately against its schema). */
export function topLevelWarnings(kind: ResourceKind, format: ResourceFormat, doc: Obj): Violation[] {
  const out: Violation[] = [];
  if (kind === 'HostnameGenerator' && format === 'universal' && doc.mesh !== undefined) {
    out.push({ field: 'mesh', message: 'field "mesh" is ignored: HostnameGenerators are global; select services of one mesh with matchLabels kuma.io/mesh' });
  }
  const known = TOP_LEVEL[format][kind];
  if (!known) return out;
  for (const k of Object.keys(doc)) {
    if (known.includes(k) || (k === 'mesh' && kind === 'HostnameGenerator')) continue;
    out.push(unknownFieldWarning(k));
  }
  return out;
}

/** Kuma 2.10's deprecation warning for a MeshExternalService whose display name is not an RFC 1035 label. */
export function nameWarnings(kind: ResourceKind, displayName: string): Violation[] {
  if (kind !== 'MeshExternalService') return [];
  const errs = dns1035LabelErrors(displayName);
  if (errs.length === 0) return [];
  return [
    {
      field: 'name',
      message: `Invalid ${kind} resource name: '${displayName}'. It does not conform to the DNS format (RFC 1035). This is deprecated. Errors: ${errs.join('; ')}`,
    },
  ];
}

const DIGITS_AND_DOTS = /^[0-9]+(\.[0-9]+)+\.?$/;

/** True for a text that reads like an IPv4 literal but is not one, so it would be looked up in DNS. */
export function isInvalidIpv4Literal(s: string): boolean {
  return DIGITS_AND_DOTS.test(s) && !isIpAddress(s) && isDnsName(s);
}

/** Warning for a hostname field whose value is an invalid IPv4 literal. */
function ipv4LiteralWarning(field: string, value: string): Violation {
  return {
    field,
    message: `"${value}" looks like an IPv4 address but is not a valid one (four numbers 0-255, no leading zeros); it is used as a hostname and resolved by DNS`,
  };
}

/** MeshExternalService warnings that need a schema-valid spec: hostnames that are invalid IPv4 literals. */
export function meshExternalServiceWarnings(spec: {
  endpoints?: Array<{ address: string }>;
  tls?: { verification?: { serverName?: string } };
  extension?: unknown;
}): Violation[] {
  if (spec.extension !== undefined) return []; // the extension owns endpoints and tls (Kuma)
  const out: Violation[] = [];
  (spec.endpoints ?? []).forEach((ep, i) => {
    if (isInvalidIpv4Literal(ep.address)) out.push(ipv4LiteralWarning(`spec.endpoints[${i}].address`, ep.address));
  });
  const sni = spec.tls?.verification?.serverName;
  if (sni !== undefined && isInvalidIpv4Literal(sni)) out.push(ipv4LiteralWarning('spec.tls.verification.serverName', sni));
  return out;
}
