/**
 * Schema stage of validation (Kuma 2.10+ Universal pipeline): apply structural defaults, validate with
 * ajv (allErrors) and translate every error into kube-openapi wording, e.g.
 * `spec.match.protocol: in body should be one of [tcp grpc http http2]`.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { Violation } from './types.js';
import { specSchemas } from './schemas.js';
import { POLICY_KINDS } from './policy-kinds.js';
import { INVALID_ENDPOINT_ADDRESS, endpointAddressKind } from './address.js';

/** Go's base64.StdEncoding as used by kube-openapi's `byte` format (CR/LF are ignored by the decoder). */
export function isStdBase64(s: string): boolean {
  const t = s.replace(/[\r\n]/g, '');
  return t.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(t) && !/=[^=]/.test(t);
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, strictTypes: false, allowUnionTypes: true });
ajv.addFormat('byte', { type: 'string', validate: isStdBase64 });

const validators: Record<string, ValidateFunction> = Object.fromEntries(
  [...Object.entries(specSchemas), ...Object.entries(POLICY_KINDS).map(([k, d]) => [k, d.schema] as const)].map(([kind, schema]) => [kind, ajv.compile(schema as object)]),
);

/** JSON type name as kube-openapi reports it (Go decodes every JSON number as float64 → "number"). */
function jsonTypeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return 'number';
  return typeof v;
}

/** `/endpoints/0/port` → `spec.endpoints[0].port`. */
export function pointerToField(prefix: string, pointer: string): string {
  let out = prefix;
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(seg) ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  }
  return out;
}

function valueAt(root: unknown, pointer: string): unknown {
  let cur = root;
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

function translate(prefix: string, root: unknown, e: ErrorObject): Violation {
  const field = pointerToField(prefix, e.instancePath);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return { field: `${field}.${String(p.missingProperty)}`, message: 'in body is required' };
    case 'enum':
      return { field, message: `in body should be one of [${(p.allowedValues as unknown[]).map(String).join(' ')}]` };
    case 'minimum':
      return { field, message: `in body should be greater than or equal to ${String(p.limit)}` };
    case 'maximum':
      return { field, message: `in body should be less than or equal to ${String(p.limit)}` };
    case 'minLength':
      return { field, message: `in body should be at least ${String(p.limit)} chars long` };
    case 'type': {
      const expected = Array.isArray(p.type) ? (p.type as string[]).join(',') : String(p.type);
      return { field, message: `in body must be of type ${expected}: "${jsonTypeName(valueAt(root, e.instancePath))}"` };
    }
    case 'format':
      // Kuma quotes the value here; `byte` fields are inline certificates and keys, so meshext does not.
      if (p.format === 'byte') return { field, message: 'in body must be of type byte (base64; the value is not shown: it may be a private key)' };
      return { field, message: `in body must be of type ${String(p.format)}: "${String(valueAt(root, e.instancePath))}"` };
    default:
      return { field, message: `in body ${e.message ?? 'is invalid'}` };
  }
}

/**
 * Applies defaults to `spec` in place and returns schema violations (empty when valid).
 * `prefix` is the field path of the validated object (`spec`, or `` for Universal Mesh top level).
 */
export function schemaValidate(kind: string, spec: unknown, prefix: string): Violation[] {
  const validate = validators[kind];
  if (!validate) return [];
  const out: Violation[] = [];
  if (!validate(spec)) for (const e of validate.errors ?? []) out.push(translate(prefix, spec, e));
  if (kind === 'MeshExternalService') for (const v of missingEndpointPorts(spec, prefix)) out.push(v);
  return sortByDocumentOrder(dedupe(out), prefix);
}

const TOP_ORDER = ['match', 'endpoints', 'extension', 'tls'];

// ajv reports in schema order already; this slots the extra endpoint-port errors next to their siblings.
function sortByDocumentOrder(vs: Violation[], prefix: string): Violation[] {
  const key = (f: string): [number, number] => {
    const rest = f.slice(prefix.length).replace(/^\./, '');
    const top = /^[A-Za-z]+/.exec(rest)?.[0] ?? '';
    const idx = /^[A-Za-z]+\[(\d+)\]/.exec(rest)?.[1];
    const rank = TOP_ORDER.indexOf(top);
    return [rank < 0 ? TOP_ORDER.length : rank, idx === undefined ? -1 : Number(idx)];
  };
  return vs
    .map((v, i) => ({ v, i, k: key(v.field) }))
    .sort((a, b) => a.k[0] - b.k[0] || a.k[1] - b.k[1] || a.i - b.i)
    .map((x) => x.v);
}

/**
 * The port is required except for unix-socket endpoints, which must not have one (see schemas.ts).
 * Whether a port is needed depends on what the address is, so a portless endpoint whose address is
 * none of IP, hostname or unix path (`var/run/x.sock`, `unix:x`, `unix://relative`) gets the address
 * rule: "port is required" would send the user after the wrong field.
 */
function missingEndpointPorts(spec: unknown, prefix: string): Violation[] {
  const eps = (spec as { endpoints?: unknown } | null)?.endpoints;
  if (!Array.isArray(eps)) return [];
  const out: Violation[] = [];
  eps.forEach((ep, i) => {
    if (ep === null || typeof ep !== 'object' || Array.isArray(ep)) return;
    const e = ep as Record<string, unknown>;
    if (e.port !== undefined) return;
    const kind = typeof e.address === 'string' && e.address !== '' ? endpointAddressKind(e.address) : 'missing';
    if (kind === 'unix') return;
    if (kind === undefined) out.push({ field: `${prefix}.endpoints[${i}].address`, message: INVALID_ENDPOINT_ADDRESS });
    else out.push({ field: `${prefix}.endpoints[${i}].port`, message: 'in body is required' });
  });
  return out;
}

function dedupe(vs: Violation[]): Violation[] {
  const seen = new Set<string>();
  return vs.filter((v) => {
    const k = `${v.field}\0${v.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
