/**
 * Semantic rules for MeshExternalService (Kuma's Go validator, v2 line, plus the 2.8 unix-socket rules),
 * run only when the schema stage passed. Order and wording follow Kuma: name → spec.match →
 * spec.endpoints (per index: port, then address) → spec.tls → spec.extension.type.
 * meshext additions (documented in docs/resources.md): data sources must set exactly one source, and an
 * endpoint inside the VIP CIDR is rejected because the proxy would dial its own VIP (a loop).
 */
import type { DataSource, MeshExternalServiceSpec, Violation } from './types.js';
import { INVALID_ENDPOINT_ADDRESS, endpointAddressKind, isDnsName } from './address.js';
import { type Cidr, cidrContains } from '../ipam/cidr.js';

const PROTOCOLS = ['tcp', 'grpc', 'http', 'http2'];
const TLS_VERSIONS = ['TLSAuto', 'TLS10', 'TLS11', 'TLS12', 'TLS13'];
const MODES = ['SkipSAN', 'SkipCA', 'SkipAll', 'Secured'];
const SAN_TYPES = ['Prefix', 'Exact'];
const quoteList = (xs: string[]): string => `[${xs.map((x) => `"${x}"`).join(', ')}]`;

const validPort = (p: number | undefined): boolean => p !== undefined && p !== 0 && p <= 65535;

/** Violations of the Go-validator stage; `displayName` is what Kuma 2.11+ measures for the length rule. */
export function validateMeshExternalService(spec: MeshExternalServiceSpec, displayName: string, vipCidr: Cidr): Violation[] {
  const out: Violation[] = [];
  const add = (field: string, message: string): void => void out.push({ field, message });

  if (displayName.length > 63) add('name', 'must not be longer than 63 characters');

  const m = spec.match;
  if (m.type !== undefined && m.type !== 'HostnameGenerator') {
    add('spec.match.type', `unrecognized type '${String(m.type)}' - only 'HostnameGenerator' is supported`);
  }
  if (!validPort(m.port)) add('spec.match.port', 'port must be a valid (1-65535)');
  if (!PROTOCOLS.includes(m.protocol)) add('spec.match.protocol', `"protocol" must be one of ${quoteList(PROTOCOLS)}`);

  if (spec.extension === undefined) {
    (spec.endpoints ?? []).forEach((ep, i) => {
      const path = `spec.endpoints[${i}]`;
      const kind = endpointAddressKind(ep.address);
      if (kind === 'unix') {
        if (ep.port !== undefined) add(`${path}.port`, 'must not be defined when endpoint is a unix path');
      } else if (kind === 'ip') {
        if (ep.port === undefined) add(`${path}.port`, 'must be defined when endpoint is an IP');
        else if (!validPort(ep.port)) add(`${path}.port`, 'port must be a valid (1-65535)');
        if (cidrContains(vipCidr, ep.address)) {
          add(`${path}.address`, `address ${ep.address} is inside the VIP CIDR ${vipCidr.text}; meshext would proxy to itself (loop)`);
        }
      } else if (kind === 'hostname') {
        if (ep.port === undefined) add(`${path}.port`, 'must be defined when endpoint is a hostname');
        else if (!validPort(ep.port)) add(`${path}.port`, 'port must be a valid (1-65535)');
      } else {
        add(`${path}.address`, INVALID_ENDPOINT_ADDRESS);
      }
    });
    if (spec.tls) validateTls(spec.tls, add);
  }

  if (spec.extension !== undefined && spec.extension.type === '') add('spec.extension.type', 'must not be empty');
  return out;
}

function validateTls(tls: NonNullable<MeshExternalServiceSpec['tls']>, add: (f: string, m: string) => void): void {
  const v = tls.version;
  if (v) {
    if (!TLS_VERSIONS.includes(v.min)) add('spec.tls.version.min', `"min" must be one of ${quoteList(TLS_VERSIONS)}`);
    if (!TLS_VERSIONS.includes(v.max)) add('spec.tls.version.max', `"max" must be one of ${quoteList(TLS_VERSIONS)}`);
    const lo = TLS_VERSIONS.indexOf(v.min);
    const hi = TLS_VERSIONS.indexOf(v.max);
    if (lo > 0 && hi > 0 && lo > hi) add('spec.tls.version.min', 'min version must be lower than max');
  }
  const ver = tls.verification;
  if (!ver) return;
  const base = 'spec.tls.verification';
  if (ver.serverName !== undefined && ver.serverName !== '' && !isDnsName(ver.serverName)) add(`${base}.serverName`, 'must be a valid DNS name');
  if (ver.mode !== undefined && ver.mode !== '' && !MODES.includes(ver.mode)) add(`${base}.mode`, `"mode" must be one of ${quoteList(MODES)}`);
  (ver.subjectAltNames ?? []).forEach((san, i) => {
    if (!SAN_TYPES.includes(san.type)) add(`${base}.subjectAltNames[${i}].type`, `"type" must be one of ${quoteList(SAN_TYPES)}`);
  });
  if (ver.clientCert !== undefined && ver.clientKey === undefined) add(`${base}.clientKey`, 'must be defined when clientCert is defined');
  if (ver.clientKey !== undefined && ver.clientCert === undefined) add(`${base}.clientCert`, 'must be defined when clientKey is defined');
  for (const key of ['caCert', 'clientCert', 'clientKey'] as const) {
    const ds = ver[key];
    if (ds) validateDataSource(ds, `${base}.${key}`, add);
  }
}

/**
 * Kuma silently picks `secret` > `inline` > `inlineString` when several are set; meshext rejects that
 * so a stale key can never win unnoticed. An empty object stays "unset", as in Kuma.
 */
function validateDataSource(ds: DataSource, field: string, add: (f: string, m: string) => void): void {
  const set = (['inline', 'inlineString', 'secret'] as const).filter((k) => ds[k] !== undefined);
  if (set.length > 1) {
    add(field, `exactly one of 'inline', 'inlineString' or 'secret' must be set, found ${set.map((k) => `'${k}'`).join(', ')}`);
  }
  if (ds.secret !== undefined && ds.secret === '') add(`${field}.secret`, 'must not be empty');
}

/** Names of Secrets a MES needs at compile time (only when TLS is enabled and no extension takes over). */
export function referencedSecrets(spec: MeshExternalServiceSpec): Array<{ key: 'caCert' | 'clientCert' | 'clientKey'; name: string }> {
  const ver = spec.tls?.enabled && spec.extension === undefined ? spec.tls.verification : undefined;
  if (!ver) return [];
  const out: Array<{ key: 'caCert' | 'clientCert' | 'clientKey'; name: string }> = [];
  for (const key of ['caCert', 'clientCert', 'clientKey'] as const) {
    const name = ver[key]?.secret;
    if (name) out.push({ key, name });
  }
  return out;
}
