/**
 * MeshAccessLog for one MeshExternalService: the merged backends (snapshot/policy.ts order; Kuma replaces lists
 * when it merges, so the last `to[]` entry that sets `backends` decides them, and `backends: []` turns logging
 * off), and their plan form: each backend's format parsed into tokens once, here, with the operators whose
 * value is the same for every line of the service (mesh, destination) written as text. The engine renders
 * the lines (native/src/engine/access_log.cc).
 */
import { posix } from 'node:path';
import type { DataplaneResource, MeshAccessLogBackend, MeshAccessLogConf, MeshAccessLogResource, MeshExternalServiceResource } from '../resources/types.js';
import { DEFAULT_HTTP_FORMAT, DEFAULT_TCP_FORMAT, parseFormat, type ConstantOperator, type FormatToken } from '../resources/accesslog-format.js';
import type { PlanAccessLog, PlanLogToken } from '../native/addon.js';
import { mergeEntries } from './policy.js';

/** The backends in effect for one service and the policies that contributed, in merge order. */
export interface EffectiveAccessLog {
  backends: MeshAccessLogBackend[];
  policies: string[];
}

/**
 * What the plan's access log reads of a compiled service (snapshot/types.ts CompiledService has all of it;
 * named here so this module does not import the type that imports it).
 */
export interface AccessLogSubject {
  displayName: string;
  mesh: string;
  protocol: 'tcp' | 'http' | 'http2' | 'grpc';
  accessLog?: EffectiveAccessLog;
}

/** The merged MeshAccessLog of `mes` (undefined when no policy selects it). */
export function effectiveAccessLog(mes: MeshExternalServiceResource, policies: readonly MeshAccessLogResource[], dataplane?: DataplaneResource): EffectiveAccessLog | undefined {
  const { confs, policies: names } = mergeEntries<MeshAccessLogConf>(mes, policies, dataplane);
  if (names.length === 0) return undefined;
  let backends: MeshAccessLogBackend[] = [];
  for (const conf of confs) if (conf.backends !== undefined) backends = conf.backends;
  return { backends, policies: names };
}

/** The value of an operator that is the same for every line of `svc`. */
function constant(op: ConstantOperator, svc: AccessLogSubject): string {
  switch (op) {
    case 'KUMA_MESH':
      return svc.mesh;
    case 'KUMA_DESTINATION_SERVICE':
    case 'UPSTREAM_CLUSTER':
      return svc.displayName;
    case 'KUMA_TRAFFIC_DIRECTION':
      return 'OUTBOUND';
    case 'KUMA_SOURCE_SERVICE':
      // The clients of a node agent are applications, not mesh services: Envoy's mark for a value it has not.
      return '-';
  }
}

/** A validated format's plan tokens for `svc` (adjacent text merged). */
function planTokens(format: string, svc: AccessLogSubject): PlanLogToken[] {
  const parsed = parseFormat(format);
  if ('error' in parsed) throw new Error(`access log format was not validated: ${parsed.error}`);
  const out: PlanLogToken[] = [];
  const text = (t: string): void => {
    const last = out[out.length - 1];
    if (last !== undefined && 'text' in last) last.text += t;
    else out.push({ text: t });
  };
  for (const t of parsed.tokens as FormatToken[]) {
    if ('text' in t) text(t.text);
    else if ('constant' in t) text(constant(t.constant, svc));
    else out.push(t);
  }
  return out;
}

/** Where MeshAccessLog files may be written unless --access-log-dir says otherwise. */
export const DEFAULT_ACCESS_LOG_DIR = '/var/log/meshext';

/** The agent's own descriptors, always allowed. */
const STD_PATHS = new Set(['/dev/stdout', '/dev/stderr']);

/**
 * Why the agent will not write `path` (undefined: it may). The agent runs as root on every node: a policy author
 * must not be able to append to /proc/sys/kernel/core_pattern or a cgroup's cgroup.procs, so only files under
 * `dir` are written. Lexical (validation refused `..` and unnormalised paths); the engine opens beneath the
 * directory without following symlinks, so a link inside it cannot lead out either.
 */
export function accessLogPathProblem(path: string, dir: string): string | undefined {
  if (STD_PATHS.has(path)) return undefined;
  const root = posix.resolve(dir);
  const rel = posix.relative(root, posix.resolve(path));
  if (rel !== '' && rel !== '..' && !rel.startsWith('../') && !posix.isAbsolute(rel) && posix.resolve(path) === path) return undefined;
  return `file.path ${JSON.stringify(path)} is outside the access log directory ${root} (--access-log-dir): only files under it, /dev/stdout and /dev/stderr are written`;
}

/**
 * The plan's `accessLog` for `svc`; undefined when no MeshAccessLog selects it or its backends are empty. A backend
 * whose path lies outside `accessLogDir` is left out and said in `rejected` (the service keeps serving).
 */
export function planAccessLog(svc: AccessLogSubject, accessLogDir: string = DEFAULT_ACCESS_LOG_DIR, rejected: string[] = []): PlanAccessLog | undefined {
  const files = (svc.accessLog?.backends ?? []).flatMap((b) => {
    if (b.type !== 'File' || !b.file) return [];
    const problem = accessLogPathProblem(b.file.path, accessLogDir);
    if (problem === undefined) return [b.file];
    rejected.push(`access log backend ${b.file.path} of MeshAccessLog ${(svc.accessLog?.policies ?? []).join(', ')}: ${problem}`);
    return [];
  });
  if (files.length === 0) return undefined;
  return {
    backends: files.map((f) => {
      const omitEmptyValues = f.format?.omitEmptyValues === true;
      if (f.format?.type === 'Json' && f.format.json && f.format.json.length > 0) {
        // Kuma builds the line from a map: a key given twice keeps its last value, at its first place.
        const fields = new Map<string, PlanLogToken[]>();
        for (const kv of f.format.json) fields.set(kv.key, planTokens(kv.value, svc));
        return { path: f.path, json: true, omitEmptyValues, fields: [...fields].map(([key, tokens]) => ({ key, tokens })) };
      }
      const plain = f.format?.plain || (svc.protocol === 'tcp' ? DEFAULT_TCP_FORMAT : DEFAULT_HTTP_FORMAT);
      return { path: f.path, json: false, omitEmptyValues, plain: planTokens(plain, svc) };
    }),
  };
}
