/** Reads upstream nameservers from resolv.conf the way glibc does (only `nameserver` lines matter here). */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { DnsError } from './errors.js';

export interface UpstreamAddress {
  address: string;
  port: number;
}

export const DEFAULT_RESOLV_CONF = '/etc/resolv.conf';

/**
 * Parses one `nameserver` value. glibc accepts only a bare address (port 53); we also take `ip:port` and
 * `[v6]:port` because containers and test setups write them, and a non-default port is otherwise impossible.
 */
function parseNameserver(value: string): UpstreamAddress | undefined {
  if (isIP(value)) return { address: value, port: 53 };
  // IPv6 link-local with a zone: isIP rejects the `%zone` suffix, dgram accepts it.
  const zone = /^([0-9a-fA-F:.]+)%[\w.-]+$/.exec(value);
  if (zone && isIP(zone[1] ?? '') === 6) return { address: value, port: 53 };
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([\d.]+):(\d+)$/.exec(value);
  if (m) {
    const address = m[1] ?? '';
    const port = Number(m[2]);
    if (isIP(address) && port >= 1 && port <= 65535) return { address, port };
  }
  return undefined;
}

/**
 * Returns the `nameserver` entries of a resolv.conf, in file order. Malformed lines are skipped like glibc
 * does (a stray line must not take name resolution down); a file without any usable nameserver is an
 * error naming the file, because forwarding would otherwise silently fail every query.
 */
export function readResolvConf(path: string = DEFAULT_RESOLV_CONF): UpstreamAddress[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new DnsError('MESHEXT_E_DNS_RESOLV_CONF', `cannot read resolv.conf ${path}: ${code}`, err);
  }
  const out: UpstreamAddress[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, value] = line.split(/\s+/);
    if (key !== 'nameserver' || value === undefined) continue;
    const ns = parseNameserver(value);
    if (ns && !out.some((o) => o.address === ns.address && o.port === ns.port)) out.push(ns);
  }
  if (out.length === 0) {
    throw new DnsError('MESHEXT_E_DNS_RESOLV_CONF', `resolv.conf ${path} has no usable "nameserver" line; give upstreams explicitly`);
  }
  return out;
}
