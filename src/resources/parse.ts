/**
 * Text → resources: YAML/JSON multi-document parsing, Universal/Kubernetes normalisation, Kuma's label
 * computation, then validation (schema stage; if clean, semantic rules and meta checks). One bad
 * document is rejected alone; parsing never throws on user input.
 */
import { Composer, Lexer, LineCounter, Parser, isMap, isScalar, isSeq, type CST, type Document, type YAMLError } from 'yaml';
import type {
  DataplaneSpec,
  HostnameGeneratorSpec,
  LoadError,
  LoadOptions,
  LoadResult,
  MeshExternalServiceSpec,
  PolicyTargetRef,
  Resource,
  ResourceFormat,
  ResourceKind,
  Violation,
} from './types.js';
import { displayNameOf } from './types.js';
import { isStdBase64, schemaValidate } from './schema.js';
import { validateMeshExternalService } from './validate-mes.js';
import { validateHostnameGenerator } from './validate-hg.js';
import { validateDataplane } from './validate-dataplane.js';
import { POLICY_KINDS, POLICY_KIND_NAMES, isPolicyKind, policyWarnings } from './policy-kinds.js';
import { appliesToNode } from './validate-policy.js';
import { validateLabels, validateMeta } from './validate-meta.js';
import { mergeResults } from './merge.js';
import { describeBytes, loadLimits } from './limits.js';
import { meshExternalServiceWarnings, nameWarnings, topLevelWarnings, unknownFieldWarning, unknownFields } from './warnings.js';
import { specSchemas } from './schemas.js';
import { cidrContains, effectiveVipCidr, parseCidr, type Cidr } from '../ipam/cidr.js';

/** A Kubernetes Secret whose data has no `value` key: Kuma reads nothing from other keys. */
const MISSING_VALUE_KEY = 'missing: Kuma reads a secret\'s bytes from the key "value" of data';

const KINDS: ResourceKind[] = ['MeshExternalService', 'HostnameGenerator', 'Mesh', 'Secret', 'Dataplane', ...POLICY_KIND_NAMES];
const MESH_SCOPED = new Set<ResourceKind>(['MeshExternalService', 'Secret', 'Dataplane', ...POLICY_KIND_NAMES]);
const KUMA_API = 'kuma.io/v1alpha1';
const SECRET_TYPE = 'system.kuma.io/secret';
// No part of a secret value ever goes into a message: messages reach logs, /config_dump and CI output.
const SECRET_NOT_BASE64 = 'must be valid base64 (the value is secret and not shown)';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

interface Ctx {
  file: string;
  zone: string;
  vipCidr: Cidr;
  out: LoadResult;
}

/** Resolved options with defaults in one place. */
export function resolveOptions(opts: LoadOptions = {}): { zone: string; vipCidr: Cidr } {
  return { zone: opts.zone ?? process.env.KUMA_MULTIZONE_ZONE_NAME ?? 'default', vipCidr: parseCidr(effectiveVipCidr(opts.vipCidr)) };
}

/** Parses one file's text (YAML or JSON, `---` separated) into resources and per-document errors. */
export function parseResourceText(text: string, file: string, opts: LoadOptions = {}): LoadResult {
  const { zone, vipCidr } = resolveOptions(opts);
  const limits = loadLimits(opts);
  const ctx: Ctx = { file, zone, vipCidr, out: { resources: [], errors: [], warnings: [] } };
  // Over a limit the whole file is rejected (what it held before keeps serving: see keepLastGood).
  const rejectFile = (message: string, line?: number): LoadResult => ({
    resources: [],
    errors: [{ file, ...(line !== undefined ? { line } : {}), violations: [{ field: '', message }] }],
    warnings: [],
  });
  if (text.length > limits.maxFileBytes || Buffer.byteLength(text, 'utf8') > limits.maxFileBytes) {
    return rejectFile(`file is ${Buffer.byteLength(text, 'utf8')} bytes, over the limit of ${describeBytes(limits.maxFileBytes)} per file; split it into several files`);
  }
  // The yaml package's parser recurses once per open collection when it closes them and its composer once
  // per nesting level, so the depth is checked on the parser's stack after every lexeme, before either can
  // go deep; documents are composed and converted one at a time, so memory holds one document's tree.
  const lc = new LineCounter();
  const lexer = new Lexer();
  const parser = new Parser(lc.addNewLine);
  // yaml's own uniqueKeys check compares each key with every earlier one (minutes for a 1 MiB mapping);
  // duplicateKey below does the same job with a Set.
  const composer = new Composer({ uniqueKeys: false, logLevel: 'error' });
  lc.addNewLine(0);
  let documents = 0;
  let tokens = 0;
  const tooMany = (): string => `more than ${limits.maxDocuments} YAML documents (resources) in one file, over the limit per file; split it into several files`;
  const tooDeep = (line: number): string => `nesting deeper than ${limits.maxDepth} levels (mappings and sequences inside each other) at line ${line}, over the limit`;
  const onDocument = (doc: Document.Parsed, index: number): LoadResult | undefined => {
    // The first content line, not the `---` marker, is where users look for a document.
    const line = lc.linePos(doc.contents?.range[0] ?? doc.range[0]).line;
    const yamlErr = doc.errors[0];
    if (yamlErr) {
      const at = lc.linePos(yamlErr.pos[0]).line;
      ctx.out.errors.push({ file, line: at, violations: [{ field: '', message: `invalid YAML: ${yamlMessage(yamlErr)}` }] });
      return undefined;
    }
    const dup = duplicateKey(doc);
    if (dup !== undefined) {
      ctx.out.errors.push({ file, line: lc.linePos(dup).line, violations: [{ field: '', message: 'invalid YAML: Map keys must be unique' }] });
      return undefined;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: limits.maxAliasCount });
    } catch (e) {
      if (/Excessive alias count/.test((e as Error).message)) {
        return rejectFile(`YAML aliases in the document at line ${line} expand to more than maxAliasCount ${limits.maxAliasCount} (the limit per document)`, line);
      }
      ctx.out.errors.push({ file, line, violations: [{ field: '', message: `invalid YAML: ${e instanceof ReferenceError ? 'an alias refers to an anchor that is not defined before it' : 'cannot convert the document'}` }] });
      return undefined;
    }
    if (value === null || value === undefined) return undefined; // empty document (e.g. trailing `---`)
    // Aliases can nest a tree inside itself, past what the parser saw.
    if (depthExceeds(value, limits.maxDepth)) return rejectFile(tooDeep(line), line);
    // `kubectl get -o yaml` lists and top-level JSON arrays hold several resources in one document.
    if (isObj(value) && value.kind === 'List' && Array.isArray(value.items)) value = value.items;
    if (Array.isArray(value)) {
      documents += value.length - 1;
      if (documents > limits.maxDocuments) return rejectFile(tooMany());
      for (const item of value) handleDocument(ctx, item, index, line);
    } else {
      handleDocument(ctx, value, index, line);
    }
    return undefined;
  };
  let index = 0;
  const compose = (cst: Iterable<CST.Token>): LoadResult | undefined => {
    for (const token of cst) {
      if (token.type === 'document') {
        tokens = 0;
        if (++documents > limits.maxDocuments) return rejectFile(tooMany());
      }
      for (const doc of composer.next(token)) {
        const rejected = onDocument(doc, index++);
        if (rejected) return rejected;
      }
    }
    return undefined;
  };
  try {
    for (const lexeme of lexer.lex(text, false)) {
      if (!TRIVIA.has(lexeme[0] ?? ' ') && ++tokens > limits.maxDocumentTokens) {
        const at = lc.linePos(parser.offset).line;
        return rejectFile(`more than ${limits.maxDocumentTokens} YAML tokens (scalars, indicators, brackets) in the document reaching line ${at}, over the limit per document; split it into several documents`, at);
      }
      const rejected = compose(parser.next(lexeme));
      if (rejected) return rejected;
      // The stack holds the document, each open collection, and the node being read.
      if (parser.stack.length - 2 > limits.maxDepth) return rejectFile(tooDeep(lc.linePos(parser.offset).line), lc.linePos(parser.offset).line);
    }
    const rejected = compose(parser.end());
    if (rejected) return rejected;
    for (const doc of composer.end(false, text.length)) {
      const r = onDocument(doc, index++);
      if (r) return r;
    }
  } catch (e) {
    // The limits above keep the yaml package within bounds; this is the last line of defence, and names no content.
    return rejectFile(`cannot parse: ${(e as Error).name}`);
  }
  return mergeResults([ctx.out]);
}

const TRIVIA = new Set([' ', '\t', '\n', '\r', '#']);

/** Offset of a key that repeats an earlier key of its mapping (compared as yaml's uniqueKeys does), or undefined. */
function duplicateKey(doc: Document.Parsed): number | undefined {
  const stack: unknown[] = [doc.contents];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isMap(node)) {
      const keys = new Set<unknown>();
      for (const pair of node.items) {
        if (isScalar(pair.key)) {
          if (keys.has(pair.key.value)) return pair.key.range?.[0] ?? 0;
          keys.add(pair.key.value);
        } else if (pair.key !== null) {
          stack.push(pair.key);
        }
        stack.push(pair.value);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) stack.push(item);
    }
  }
  return undefined;
}

/** True when `value` nests deeper than `max` containers; iterative, and stops at the first path too deep. */
function depthExceeds(value: unknown, max: number): boolean {
  const stack: Array<{ v: unknown; d: number }> = [{ v: value, d: 0 }];
  while (stack.length > 0) {
    const { v, d } = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d + 1 > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v as Obj)) if (child !== null && typeof child === 'object') stack.push({ v: child, d: d + 1 });
  }
  return false;
}

// yaml error codes whose messages are fixed text; the others can quote the source (an escape sequence, a
// tag, a stray token), and a document may be a Secret, so they get a fixed description instead.
const SAFE_YAML_CODES = new Set([
  'ALIAS_PROPS',
  'BAD_ALIAS',
  'BAD_INDENT',
  'BLOCK_AS_IMPLICIT_KEY',
  'BLOCK_IN_FLOW',
  'DUPLICATE_KEY',
  'KEY_OVER_1024_CHARS',
  'MISSING_CHAR',
  'MULTILINE_IMPLICIT_KEY',
  'MULTIPLE_ANCHORS',
  'MULTIPLE_DOCS',
  'MULTIPLE_TAGS',
  'TAB_AS_INDENT',
]);
const YAML_CODE_TEXT: Record<string, string> = {
  BAD_DQ_ESCAPE: 'invalid escape sequence in a double-quoted string',
  BAD_SCALAR_START: 'a plain value cannot start with this character; quote the value',
  BAD_PROP_ORDER: 'anchors and tags must come after the indicator',
  TAG_RESOLVE_FAILED: 'unresolved or invalid tag',
  BAD_COLLECTION_TYPE: 'the tag does not fit the collection',
  BAD_DIRECTIVE: 'invalid directive',
  UNEXPECTED_TOKEN: 'unexpected text (check indentation, quoting and brackets)',
  RESOURCE_EXHAUSTION: 'the document is too large to compose',
};

/** A YAML error's message without any text from the source (values may be secret). */
export function yamlMessage(err: YAMLError): string {
  if (SAFE_YAML_CODES.has(err.code)) return firstLine(err.message).replace(/ at line \d+, column \d+:?$/, '');
  return `${YAML_CODE_TEXT[err.code] ?? 'syntax error'} (${err.code})`;
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

function handleDocument(ctx: Ctx, doc: unknown, index: number, line: number): void {
  const res = buildResource(ctx, doc, index, line);
  if ('violations' in res) ctx.out.errors.push(res);
  else ctx.out.resources.push(res);
}

interface Header {
  kind: ResourceKind;
  name: string;
  mesh: string;
  namespace: string;
  labels: Record<string, string>;
  format: ResourceFormat;
  /** The object holding the spec, and its field path prefix for messages. */
  spec: unknown;
  specPrefix: string;
}

function buildResource(ctx: Ctx, doc: unknown, index: number, line: number): Resource | LoadError {
  const fail = (violations: Violation[], h?: Partial<Header>): LoadError => ({
    file: ctx.file,
    line,
    ...(h?.kind ? { kind: h.kind } : {}),
    ...(h?.name !== undefined ? { name: h.name } : {}),
    ...(h?.mesh !== undefined && h.kind && MESH_SCOPED.has(h.kind) ? { mesh: h.mesh } : {}),
    violations,
  });
  if (!isObj(doc)) return fail([{ field: '', message: `a resource must be a mapping (object), got ${typeName(doc)}` }]);
  const header = readHeader(ctx, doc);
  if ('violations' in header) return fail(header.violations, header.partial);
  const h = header;
  const src = { file: ctx.file, index, line };
  const warn = (vs: Violation[]): void => {
    for (const v of vs) {
      ctx.out.warnings.push({ file: ctx.file, line, index, kind: h.kind, name: h.name, ...(MESH_SCOPED.has(h.kind) ? { mesh: h.mesh } : {}), ...v });
    }
  };
  warn(topLevelWarnings(h.kind, h.format, doc));
  const specSchema = specSchemas[h.kind];
  if (specSchema && isObj(h.spec)) warn(unknownFields(specSchema, h.spec, h.specPrefix.replace(/\.$/, '')).map(unknownFieldWarning));
  warn(nameWarnings(h.kind, displayNameOf(h)));

  const labelViolations = validateLabels(h.labels, ctx.zone);
  let spec: unknown = h.spec;
  if (h.kind === 'Secret') {
    const data = spec;
    if (h.format === 'kubernetes' && data === undefined) return fail([{ field: 'data.value', message: MISSING_VALUE_KEY }], h);
    if (typeof data !== 'string' || data === '') return fail([{ field: h.format === 'universal' ? 'data' : 'data.value', message: 'cannot be empty' }], h);
    if (!isStdBase64(data)) return fail([{ field: h.format === 'universal' ? 'data' : 'data.value', message: SECRET_NOT_BASE64 }], h);
    const v = [...validateMeta(h.name, h.mesh, true), ...labelViolations];
    if (v.length) return fail(v, h);
    return { ...common(h, src), kind: 'Secret', spec: { data: Buffer.from(data.replace(/[\r\n]/g, ''), 'base64') } };
  }

  if (spec === undefined || spec === null) spec = {};
  const schemaErrors = schemaValidate(h.kind, spec, h.specPrefix.replace(/\.$/, ''));
  if (schemaErrors.length) return fail(schemaErrors, h);

  let semantic: Violation[] = [];
  if (h.kind === 'MeshExternalService') {
    semantic = validateMeshExternalService(spec as MeshExternalServiceSpec, displayNameOf(h), ctx.vipCidr);
    warn(meshExternalServiceWarnings(spec as MeshExternalServiceSpec));
  } else if (h.kind === 'HostnameGenerator') {
    semantic = validateHostnameGenerator(spec as HostnameGeneratorSpec);
  } else if (h.kind === 'Dataplane') {
    semantic = validateDataplane(spec as DataplaneSpec, h.specPrefix);
  } else if (isPolicyKind(h.kind)) {
    // A policy for other proxy types (a gateway's) is kept but never applied here: it is only said so, not
    // judged by what meshext would refuse if it applied (Kuma's gateway defaults use fields sidecars lack).
    semantic = appliesToNode((spec as { targetRef?: PolicyTargetRef }).targetRef) ? POLICY_KINDS[h.kind].validate(spec) : [];
    if (semantic.length === 0) warn(policyWarnings(h.kind, spec));
  }
  const all = [...semantic, ...validateMeta(h.name, h.mesh, MESH_SCOPED.has(h.kind)), ...labelViolations];
  if (all.length) return fail(all, h);

  switch (h.kind) {
    case 'MeshExternalService': {
      const statusVip = kumaVip(ctx, doc, warn);
      return { ...common(h, src), kind: 'MeshExternalService', spec: spec as MeshExternalServiceSpec, ...(statusVip ? { statusVip } : {}) };
    }
    case 'HostnameGenerator':
      return { ...common(h, src), kind: 'HostnameGenerator', spec: spec as HostnameGeneratorSpec };
    case 'Mesh':
      return { ...common(h, src), kind: 'Mesh', spec: spec as Obj };
    case 'Dataplane': {
      const net = (spec as { networking?: { address?: string; outbound?: Array<Obj> } }).networking ?? {};
      const outbound = (net.outbound ?? []).map((o) => ({ ...o, address: (o.address as string | undefined) ?? '127.0.0.1' }));
      return {
        ...common(h, src),
        kind: 'Dataplane',
        spec: { networking: { ...(net.address !== undefined ? { address: net.address } : {}), outbound: outbound as DataplaneSpec['networking']['outbound'] } },
      };
    }
    default:
      // A policy kind: its spec passed its schema and rules (POLICY_KINDS), and is kept as written.
      return { ...common(h, src), kind: h.kind, spec } as Resource;
  }
}

function common(h: Header, source: { file: string; index: number; line: number }) {
  return { name: h.name, mesh: h.mesh, namespace: h.namespace, labels: h.labels, source, format: h.format };
}

/** Identifies the form and kind and computes labels (§1.4); reports header problems. */
function readHeader(ctx: Ctx, doc: Obj): Header | { violations: Violation[]; partial: Partial<Header> } {
  const isKube = typeof doc.apiVersion === 'string' && typeof doc.kind === 'string';
  const format: ResourceFormat = isKube ? 'kubernetes' : 'universal';
  const rawKind = isKube ? doc.kind : doc.type;
  const kindField = isKube ? 'kind' : 'type';
  if (typeof rawKind !== 'string' || rawKind === '') {
    return {
      violations: [{ field: kindField, message: 'cannot identify the resource: expected "type" (Universal) or "apiVersion" and "kind" (Kubernetes)' }],
      partial: {},
    };
  }
  if (!KINDS.includes(rawKind as ResourceKind)) {
    return { violations: [{ field: kindField, message: `unknown kind "${rawKind}": meshext reads ${KINDS.join(', ')}` }], partial: {} };
  }
  const kind = rawKind as ResourceKind;
  const v: Violation[] = [];
  let name: unknown;
  let meshRaw: unknown;
  let namespace = '';
  let labelsRaw: unknown;
  let spec: unknown;
  let specPrefix: string;
  if (isKube) {
    const apiVersion = doc.apiVersion as string;
    const want = kind === 'Secret' ? 'v1' : KUMA_API;
    if (apiVersion !== want) v.push({ field: 'apiVersion', message: `must be ${want} for kind ${kind}, got "${apiVersion}"` });
    const meta = isObj(doc.metadata) ? doc.metadata : {};
    if (doc.metadata !== undefined && !isObj(doc.metadata)) v.push({ field: 'metadata', message: `must be an object, got ${typeName(doc.metadata)}` });
    name = meta.name;
    if (meta.namespace !== undefined) {
      if (typeof meta.namespace === 'string') namespace = meta.namespace;
      else v.push({ field: 'metadata.namespace', message: `must be a string, got ${typeName(meta.namespace)}` });
    }
    labelsRaw = meta.labels;
    meshRaw = isObj(meta.labels) ? (meta.labels['kuma.io/mesh'] ?? 'default') : 'default';
    if (kind === 'Mesh') meshRaw = name;
    if (kind === 'HostnameGenerator') meshRaw = ''; // global: no mesh
    if (kind === 'Secret') {
      if (doc.type !== SECRET_TYPE) v.push({ field: 'type', message: `must be ${SECRET_TYPE} for a Kuma secret, got "${printable(doc.type)}"` });
      spec = isObj(doc.data) ? doc.data.value : undefined;
    } else {
      spec = doc.spec;
    }
    specPrefix = 'spec.';
  } else {
    name = doc.name;
    meshRaw = kind === 'Mesh' ? doc.name : kind === 'HostnameGenerator' ? '' : (doc.mesh ?? 'default');
    labelsRaw = doc.labels;
    if (kind === 'Mesh') {
      // Universal Mesh keeps its fields at the top level (`routing`, `mtls`, ...).
      const { type: _t, name: _n, labels: _l, ...rest } = doc;
      spec = rest;
      specPrefix = '';
    } else if (kind === 'Secret') {
      spec = doc.data;
      specPrefix = '';
    } else if (kind === 'Dataplane') {
      spec = { networking: doc.networking };
      specPrefix = '';
    } else {
      spec = doc.spec;
      specPrefix = 'spec.';
    }
  }
  if (name === undefined || name === null) name = '';
  if (typeof name !== 'string') {
    v.push({ field: isKube ? 'metadata.name' : 'name', message: `must be a string, got ${typeName(name)}` });
    name = printable(name);
  }
  if (typeof meshRaw !== 'string') {
    v.push({ field: 'mesh', message: `must be a string, got ${typeName(meshRaw)}` });
    meshRaw = printable(meshRaw);
  }
  const labels: Record<string, string> = {};
  if (labelsRaw !== undefined && labelsRaw !== null) {
    if (!isObj(labelsRaw)) v.push({ field: 'labels', message: `must be a map of strings, got ${typeName(labelsRaw)}` });
    else {
      for (const [k, val] of Object.entries(labelsRaw)) {
        if (typeof val === 'string') labels[k] = val;
        else v.push({ field: `labels["${k}"]`, message: `must be a string, got ${typeName(val)}` });
      }
    }
  }
  const mesh = meshRaw as string;
  const partial = { kind, name: name as string, mesh };
  if (v.length) return { violations: v, partial };
  computeLabels(labels, { kind, mesh, namespace, format, zone: ctx.zone });
  return { kind, name: name as string, mesh, namespace, labels, format, spec, specPrefix };
}

/** Kuma's ComputeLabels for a zone CP (v2 line: a user `kuma.io/display-name` is kept). */
function computeLabels(labels: Record<string, string>, r: { kind: ResourceKind; mesh: string; namespace: string; format: ResourceFormat; zone: string }): void {
  if (MESH_SCOPED.has(r.kind)) labels['kuma.io/mesh'] ??= r.mesh;
  labels['kuma.io/origin'] ??= 'zone';
  if (labels['kuma.io/origin'] !== 'global') {
    labels['kuma.io/zone'] ??= r.zone;
    labels['kuma.io/env'] ??= r.format;
  }
  if (r.format === 'kubernetes' && r.namespace !== '') labels['k8s.kuma.io/namespace'] ??= r.namespace;
}

/** Text for a value of unknown shape; objects (even ones with a `toString` key) never throw here. */
function printable(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v) ?? '';
  return String(v);
}

/**
 * The VIP Kuma's control plane wrote to `status.vip.ip`, when it lies in the VIP CIDR: the node then
 * answers with the address sidecars get from Kuma. Anything else is ignored with a warning.
 */
function kumaVip(ctx: Ctx, doc: Obj, warn: (vs: Violation[]) => void): string | undefined {
  const status = doc.status;
  if (!isObj(status) || !isObj(status.vip) || status.vip.ip === undefined || status.vip.ip === '') return undefined;
  const ip = status.vip.ip;
  if (typeof ip === 'string' && cidrContains(ctx.vipCidr, ip)) return ip;
  warn([{ field: 'status.vip.ip', message: `"${printable(ip)}" is not an address in the VIP CIDR ${ctx.vipCidr.text}: the node assigns its own VIP` }]);
  return undefined;
}
