/**
 * MeshRetry rules: Kuma's validator (pkg/plugins/policies/meshretry/api/v1alpha1/validator.go, 2.10+) with its
 * paths and messages (Kuma roots a `default`'s violations at `default.conf`), the shared targetRef rules
 * (validate-policy.ts), and what the engine does not carry out, refused by name rather than accepted and ignored:
 * rate-limited back-off, retriable response headers, RegularExpression request header matches, and host
 * selection other than omitting previous hosts (which the engine always does).
 */
import type { MeshRetryBackOff, MeshRetryConf, MeshRetrySpec, Violation } from './types.js';
import { parseGoDuration } from './duration.js';
import { checkDuration, validateToPolicy } from './validate-policy.js';

const MUST_NOT_BE_EMPTY = 'must not be empty';
const MUST_BE_DEFINED = 'must be defined';

/** Kuma's HTTP retryOn names (HTTPRetryOn); status codes are accepted besides. */
const HTTP_RETRY_ON = new Set([
  '5xx',
  'GatewayError',
  'Reset',
  'Retriable4xx',
  'ConnectFailure',
  'EnvoyRatelimited',
  'RefusedStream',
  'Http3PostConnectFailure',
  'HttpMethodConnect',
  'HttpMethodDelete',
  'HttpMethodGet',
  'HttpMethodHead',
  'HttpMethodOptions',
  'HttpMethodPatch',
  'HttpMethodPost',
  'HttpMethodPut',
  'HttpMethodTrace',
]);

/** The status codes Go's net/http has a text for (Kuma accepts a code in retryOn when http.StatusText knows it). */
const KNOWN_STATUSES = new Set([
  100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407,
  408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505, 506, 507, 508,
  510, 511,
]);

const GRPC_RETRY_ON = new Set(['Canceled', 'DeadlineExceeded', 'Internal', 'ResourceExhausted', 'Unavailable']);

/** Fields Kuma has that the engine does not carry out, and why a user should remove them. */
const NOT_IMPLEMENTED: Record<string, string> = {
  rateLimitedBackOff: 'meshext does not implement rateLimitedBackOff (back-off from reset headers) yet: remove it (accepting it would leave it without effect); backOff applies to every retry',
  retriableResponseHeaders: 'meshext does not implement retriableResponseHeaders yet: remove it (accepting it would leave it without effect); retry on status codes in retryOn instead',
  hostSelectionMaxAttempts: 'meshext does not implement hostSelectionMaxAttempts: its host selection never rejects the host it picks, so there is nothing to reattempt; remove it',
};

/** Validates a MeshRetry spec; paths start at `spec`. */
export function validateMeshRetry(spec: MeshRetrySpec): Violation[] {
  return validateToPolicy(spec, validateDefault);
}

function validateDefault(conf: MeshRetryConf, path: string, out: Violation[]): void {
  const p = `${path}.conf`;
  if (conf.tcp === undefined && conf.http === undefined && conf.grpc === undefined) {
    out.push({ field: p, message: "at least one of the 'tcp', 'http', 'grpc' must be specified" });
  }
  if (conf.tcp !== undefined) {
    if (conf.tcp.maxConnectAttempt === undefined) out.push({ field: `${p}.tcp`, message: MUST_NOT_BE_EMPTY });
    else if (conf.tcp.maxConnectAttempt === 0) out.push({ field: `${p}.tcp.maxConnectAttempt`, message: 'must be greater than 0' });
  }
  const http = conf.http;
  if (http !== undefined) {
    const hp = `${p}.http`;
    const set = [http.numRetries, http.perTryTimeout, http.backOff, http.retryOn, http.retriableRequestHeaders, http.retriableResponseHeaders, http.rateLimitedBackOff, http.hostSelection];
    if (set.every((v) => v === undefined)) out.push({ field: hp, message: MUST_NOT_BE_EMPTY });
    checkDuration(http.perTryTimeout, `${hp}.perTryTimeout`, false, out);
    if (http.backOff !== undefined) validateBackOff(http.backOff, `${hp}.backOff`, out);
    if (http.rateLimitedBackOff !== undefined) validateRateLimitedBackOff(http.rateLimitedBackOff, `${hp}.rateLimitedBackOff`, out);
    (http.retryOn ?? []).forEach((item, i) => {
      if (HTTP_RETRY_ON.has(item)) return;
      if (/^\d+$/.test(item) && KNOWN_STATUSES.has(Number(item))) return;
      out.push({ field: `${hp}.retryOn[${i}]`, message: `unknown item '${item}'` });
    });
    validateHostSelection(http.hostSelection, `${hp}.hostSelection`, out);
    (http.retriableRequestHeaders ?? []).forEach((h, i) => {
      if (h.type === 'RegularExpression') {
        out.push({ field: `${hp}.retriableRequestHeaders[${i}].type`, message: 'meshext does not implement RegularExpression header matches yet: use Exact, Prefix, Present or Absent' });
      }
    });
    for (const k of ['retriableResponseHeaders', 'hostSelectionMaxAttempts', 'rateLimitedBackOff'] as const) {
      if (http[k] !== undefined) out.push({ field: `${hp}.${k}`, message: NOT_IMPLEMENTED[k] as string });
    }
  }
  const grpc = conf.grpc;
  if (grpc !== undefined) {
    const gp = `${p}.grpc`;
    if ([grpc.numRetries, grpc.perTryTimeout, grpc.backOff, grpc.retryOn, grpc.rateLimitedBackOff].every((v) => v === undefined)) out.push({ field: gp, message: MUST_NOT_BE_EMPTY });
    checkDuration(grpc.perTryTimeout, `${gp}.perTryTimeout`, false, out);
    if (grpc.backOff !== undefined) validateBackOff(grpc.backOff, `${gp}.backOff`, out);
    if (grpc.rateLimitedBackOff !== undefined) {
      validateRateLimitedBackOff(grpc.rateLimitedBackOff, `${gp}.rateLimitedBackOff`, out);
      out.push({ field: `${gp}.rateLimitedBackOff`, message: NOT_IMPLEMENTED.rateLimitedBackOff as string });
    }
    (grpc.retryOn ?? []).forEach((item, i) => {
      if (!GRPC_RETRY_ON.has(item)) out.push({ field: `${gp}.retryOn[${i}]`, message: `unknown item '${item}'` });
    });
  }
}

function validateBackOff(b: MeshRetryBackOff, path: string, out: Violation[]): void {
  if (b.baseInterval === undefined && b.maxInterval === undefined) {
    out.push({ field: path, message: MUST_NOT_BE_EMPTY });
    return;
  }
  // Envoy rejects a zero base and a maximum below the base (the whole route would be refused there).
  const base = checkDuration(b.baseInterval, `${path}.baseInterval`, true, out);
  const max = checkDuration(b.maxInterval, `${path}.maxInterval`, true, out);
  const ms = (v: string | undefined): number => {
    const d = v === undefined ? undefined : parseGoDuration(v);
    return d && 'ms' in d ? Math.max(1, Math.ceil(d.ms)) : 25;
  };
  if (max && (base || b.baseInterval === undefined) && ms(b.maxInterval) < ms(b.baseInterval)) {
    out.push({ field: `${path}.maxInterval`, message: `must not be less than baseInterval (${b.baseInterval ?? '25ms, the default'})` });
  }
}

function validateRateLimitedBackOff(r: NonNullable<NonNullable<MeshRetryConf['http']>['rateLimitedBackOff']>, path: string, out: Violation[]): void {
  if (r.maxInterval !== undefined) checkDuration(r.maxInterval, `${path}.maxInterval`, true, out);
  if (r.resetHeaders === undefined) {
    out.push({ field: `${path}.resetHeaders`, message: MUST_BE_DEFINED });
    return;
  }
  r.resetHeaders.forEach((h, i) => {
    if (h.name === '') out.push({ field: `${path}.resetHeaders[${i}].name`, message: MUST_BE_DEFINED });
  });
}

function validateHostSelection(preds: NonNullable<MeshRetryConf['http']>['hostSelection'], path: string, out: Violation[]): void {
  let prioritySet = false;
  (preds ?? []).forEach((pred, i) => {
    const at = `${path}[${i}]`;
    switch (pred.predicate) {
      case 'OmitPreviousHosts':
        return;
      case 'OmitHostsWithTags':
        if (pred.tags === undefined) out.push({ field: `${at}.tags`, message: MUST_BE_DEFINED });
        out.push({ field: `${at}.predicate`, message: 'OmitHostsWithTags cannot apply on a node agent: MeshExternalService endpoints carry no tags; use OmitPreviousHosts' });
        return;
      case 'OmitPreviousPriorities':
        if (prioritySet) out.push({ field: `${at}.predicate`, message: 'OmitPreviousPriorities must only be specified once' });
        if ((pred.updateFrequency ?? 2) <= 0) out.push({ field: `${at}.updateFrequency`, message: 'must be defined and greater than zero' });
        prioritySet = true;
        out.push({ field: `${at}.predicate`, message: 'meshext does not implement OmitPreviousPriorities yet: remove it (accepting it would leave it without effect); retries already go to endpoints not tried before, of any priority' });
        return;
      default:
        out.push({ field: `${at}.predicate`, message: `unknown predicate type '${pred.predicate}'` });
    }
  });
}
