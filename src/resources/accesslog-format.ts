/**
 * MeshAccessLog format strings (Envoy command operators, plus Kuma's `%KUMA_*%` ones) parsed once into tokens:
 * validation reports an operator meshext cannot fill by name, and the plan (snapshot/accesslog.ts) carries the
 * tokens to the engine, which renders lines without parsing anything.
 */

/** Operators the engine fills per connection or request (native/src/engine/access_log.cc kOps, same names). */
export const ENGINE_OPERATORS = [
  'START_TIME',
  'DURATION',
  'BYTES_RECEIVED',
  'BYTES_SENT',
  'RESPONSE_CODE',
  'RESPONSE_FLAGS',
  'DOWNSTREAM_REMOTE_ADDRESS',
  'DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT',
  'UPSTREAM_HOST',
  'PROTOCOL',
  'UPSTREAM_TRANSPORT_FAILURE_REASON',
  'REQ',
  'RESP',
] as const;
export type EngineOperator = (typeof ENGINE_OPERATORS)[number];

/** Operators whose value is the same for every line of a service: the plan carries them as text. */
export const CONSTANT_OPERATORS = ['KUMA_MESH', 'KUMA_DESTINATION_SERVICE', 'KUMA_SOURCE_SERVICE', 'KUMA_TRAFFIC_DIRECTION', 'UPSTREAM_CLUSTER'] as const;
export type ConstantOperator = (typeof CONSTANT_OPERATORS)[number];

/**
 * Kuma's source-address operators name the client's address here: the clients of a node agent are the
 * applications on the node, whose address the engine sees on each connection.
 */
const ALIASES: Record<string, EngineOperator> = {
  KUMA_SOURCE_ADDRESS: 'DOWNSTREAM_REMOTE_ADDRESS',
  KUMA_SOURCE_ADDRESS_WITHOUT_PORT: 'DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT',
};

export type FormatToken =
  | { text: string }
  /** `name`: REQ/RESP's header (lower case), START_TIME's format. */
  | { op: EngineOperator; name?: string; alt?: string; max?: number }
  | { constant: ConstantOperator };

export type ParsedFormat = { tokens: FormatToken[] } | { error: string };

/** Kuma's default line for HTTP services (meshaccesslog plugin, xds/configurer.go defaultHttpAccessLogFormat). */
export const DEFAULT_HTTP_FORMAT =
  '[%START_TIME%] %KUMA_MESH% "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-B3-TRACEID?X-DATADOG-TRACEID)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%KUMA_SOURCE_SERVICE%" "%KUMA_DESTINATION_SERVICE%" "%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%" "%UPSTREAM_HOST%"';

/** Kuma's default line for TCP services (defaultNetworkAccessLogFormat). */
export const DEFAULT_TCP_FORMAT =
  '[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%(%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes';

const FILLED = [...ENGINE_OPERATORS.filter((o) => o !== 'REQ' && o !== 'RESP'), 'START_TIME(format)', 'REQ(header)', 'RESP(header)', ...Object.keys(ALIASES), ...CONSTANT_OPERATORS];

/** One operator's text between the percent signs: NAME, NAME(ARG) or NAME(ARG):MAX. */
function parseOperator(body: string): FormatToken | { error: string } {
  const m = /^([A-Z][A-Z0-9_]*)(?:\((.*)\))?(?::(\d+))?$/.exec(body);
  if (!m) return { error: `%${body}% is not a command operator (NAME, NAME(ARG) or NAME(ARG):LENGTH)` };
  const [, name = '', arg, max] = m;
  const alias = ALIASES[name];
  const known = alias ?? (ENGINE_OPERATORS as readonly string[]).find((o) => o === name);
  if ((CONSTANT_OPERATORS as readonly string[]).includes(name)) {
    if (arg !== undefined || max !== undefined) return { error: `%${body}%: ${name} takes no argument` };
    return { constant: name as ConstantOperator };
  }
  if (known === undefined) return { error: `unknown command operator %${body}%: meshext fills ${FILLED.join(', ')}` };
  const op = known as EngineOperator;
  if (op === 'REQ' || op === 'RESP') {
    if (arg === undefined || arg === '') return { error: `%${body}%: ${op} needs a header name, e.g. %${op}(USER-AGENT)%` };
    const [h, alt, more] = arg.split('?');
    if (more !== undefined || h === '' || alt === '') return { error: `%${body}%: ${op} takes HEADER or HEADER?ALTERNATIVE` };
    const t: FormatToken = { op, name: (h ?? '').toLowerCase() };
    if (alt !== undefined) t.alt = alt.toLowerCase();
    if (max !== undefined) t.max = Number(max);
    return t;
  }
  if (max !== undefined) return { error: `%${body}%: only REQ and RESP take a length` };
  if (op === 'START_TIME' && arg !== undefined) {
    // Envoy's strftime format (UTC) with %s and %f/%1f..%9f; empty means the default.
    return arg === '' ? { op } : { op, name: arg };
  }
  if (arg !== undefined) return { error: `%${body}%: ${op} takes no argument` };
  return { op };
}

/** Parses a format string; `%%` is a literal percent sign. The first bad operator is the error. */
export function parseFormat(format: string): ParsedFormat {
  const tokens: FormatToken[] = [];
  let text = '';
  let i = 0;
  while (i < format.length) {
    const c = format[i];
    if (c !== '%') {
      text += c;
      i++;
      continue;
    }
    if (format[i + 1] === '%') {
      text += '%';
      i += 2;
      continue;
    }
    // Parentheses may hold a percent sign of their own (Envoy's START_TIME(%s)): the operator ends at the first
    // percent sign outside them.
    let j = i + 1;
    let depth = 0;
    while (j < format.length && (format[j] !== '%' || depth > 0)) {
      if (format[j] === '(') depth++;
      else if (format[j] === ')') depth = Math.max(0, depth - 1);
      j++;
    }
    if (j >= format.length) return { error: `unterminated command operator at "${format.slice(i, i + 40)}": a literal percent sign is written %%` };
    const t = parseOperator(format.slice(i + 1, j));
    if ('error' in t) return t;
    if (text !== '') tokens.push({ text });
    text = '';
    tokens.push(t);
    i = j + 1;
  }
  if (text !== '') tokens.push({ text });
  return { tokens };
}
