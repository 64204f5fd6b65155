/**
 * MeshAccessLog rules: Kuma's validator (pkg/plugins/policies/meshaccesslog/api/v1alpha1/validator.go, 2.10+) with
 * its paths and messages, plus what meshext does not do, said as such: it writes File backends (`/dev/stdout`
 * and `/dev/stderr` are the agent's own), not Tcp or OpenTelemetry ones, and every command operator of a format
 * must be one the engine fills (an unknown one is named). A file path must be normalised with no `..`; that it lies
 * in the agent's access log directory is checked when plans are compiled (the directory is an agent flag).
 */
import type { MeshAccessLogBackend, MeshAccessLogConf, MeshAccessLogFormat, MeshAccessLogSpec, Violation } from './types.js';
import { validateToPolicy } from './validate-policy.js';
import { parseFormat } from './accesslog-format.js';

const MUST_BE_DEFINED = 'must be defined';
const MUST_NOT_BE_EMPTY = 'must not be empty';

/** govalidator.IsFilePath for Unix, as Kuma calls it: an absolute path. */
const UNIX_PATH = /^(\/[^/\x00]*)+\/?$/;

/**
 * The agent writes as root: a path is checked lexically here (normalised, no `.` or `..` component) so that the
 * directory check at plan compile (snapshot/accesslog.ts, against --access-log-dir) cannot be walked out of, and
 * the engine opens it beneath that directory without following symlinks (native/src/engine/access_log.cc).
 */
function pathProblem(path: string): string | undefined {
  const parts = path.split('/').slice(1);
  if (parts.some((c) => c === '..')) return `must not contain a ".." component, got "${path}"`;
  if (parts.some((c) => c === '.') || parts.slice(0, -1).some((c) => c === '') || path.endsWith('/')) {
    return `must be a normalised path to a file (no "." component, repeated or trailing "/"), got "${path}"`;
  }
  return undefined;
}

/** Validates a MeshAccessLog spec; paths start at `spec`. */
export function validateMeshAccessLog(spec: MeshAccessLogSpec): Violation[] {
  return validateToPolicy(spec, validateDefault);
}

function validateDefault(conf: MeshAccessLogConf, path: string, out: Violation[]): void {
  if (conf.backends === undefined) {
    out.push({ field: `${path}.backends`, message: MUST_BE_DEFINED });
    return;
  }
  conf.backends.forEach((b, i) => validateBackend(b, `${path}.backends[${i}]`, out));
}

function validateBackend(b: MeshAccessLogBackend, path: string, out: Violation[]): void {
  switch (b.type) {
    case 'File': {
      if (b.file === undefined) {
        out.push({ field: `${path}.file`, message: MUST_BE_DEFINED });
        return;
      }
      if (b.file.format !== undefined) validateFormat(b.file.format, `${path}.file.format`, out);
      const problem = UNIX_PATH.test(b.file.path) ? pathProblem(b.file.path) : 'file backend requires a valid path';
      if (problem !== undefined) out.push({ field: `${path}.file.path`, message: problem });
      return;
    }
    case 'Tcp':
      out.push({
        field: `${path}.type`,
        message: 'Tcp backends are not supported by meshext: use a File backend (a collector can tail the file, or read the agent\'s stdout with path /dev/stdout)',
      });
      return;
    case 'OpenTelemetry':
      out.push({ field: `${path}.type`, message: 'OpenTelemetry backends are not supported by meshext: use a File backend (an OpenTelemetry collector can tail the file)' });
      return;
  }
}

function validateFormat(f: MeshAccessLogFormat, path: string, out: Violation[]): void {
  if (f.type === 'Plain') {
    const field = `${path}.plain`;
    if (f.plain === undefined) out.push({ field, message: MUST_BE_DEFINED });
    else if (f.plain === '') out.push({ field, message: MUST_NOT_BE_EMPTY });
    else checkOperators(f.plain, field, out);
    return;
  }
  const field = `${path}.json`;
  if (f.json === undefined) {
    out.push({ field, message: MUST_BE_DEFINED });
    return;
  }
  if (f.json.length === 0) out.push({ field, message: MUST_NOT_BE_EMPTY });
  f.json.forEach((kv, i) => {
    const p = `${field}[${i}]`;
    if (kv.key === '') out.push({ field: `${p}.key`, message: 'key cannot be empty' });
    if (kv.value === '') out.push({ field: `${p}.value`, message: 'value cannot be empty' });
    // Kuma builds {"key": "value"} by hand and asks whether it is JSON: a quote or backslash in either breaks it.
    if (!isJsonObjectText(kv.key, kv.value)) out.push({ field: p, message: 'is not a valid JSON object' });
    else if (kv.value !== '') checkOperators(kv.value, `${p}.value`, out);
  });
}

function isJsonObjectText(key: string, value: string): boolean {
  try {
    JSON.parse(`{"${key}": "${value}"}`);
    return true;
  } catch {
    return false;
  }
}

function checkOperators(format: string, field: string, out: Violation[]): void {
  const parsed = parseFormat(format);
  if ('error' in parsed) out.push({ field, message: parsed.error });
}
