/**
 * The owned-name table: hostnames → VIPs, compiled once per reload into ready-to-send answer bytes so the
 * query path does a single Map lookup and a copy. A table is immutable; reloads build a new one.
 */
import { isIPv4, isIPv6 } from 'node:net';
import dnsPacket from 'dns-packet';
import type { Snapshot } from '../snapshot/types.js';
import { DnsError } from './errors.js';

/** Addresses for one hostname, already in final form (the resolver adds `::ffff:` mapping for v4 itself). */
export interface DnsRecordSet {
  v4: string[];
  v6: string[];
}

export type IpFamilyMode = 'dualstack' | 'ipv4';

/** One owned name with its A and AAAA answer sections pre-encoded (owner name is a pointer to the question). */
export interface CompiledName {
  a: Buffer;
  aCount: number;
  aaaa: Buffer;
  aaaaCount: number;
}

export type RecordTable = ReadonlyMap<string, CompiledName>;

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** Lowercases a hostname and drops one trailing dot; throws when it is not a valid DNS name. */
export function normalizeHostname(host: string): string {
  const h = (host.endsWith('.') ? host.slice(0, -1) : host).toLowerCase();
  if (h.length === 0 || h.length > 253 || !h.split('.').every((l) => LABEL.test(l))) {
    throw new DnsError('MESHEXT_E_DNS_RECORD', `DNS record name ${JSON.stringify(host)} is not a valid hostname (labels of 1-63 letters, digits, '-' or '_', 253 characters at most)`);
  }
  return h;
}

/** `242.0.0.1` → `::ffff:f200:1`, the IPv4-mapped form Kuma serves for AAAA in dual-stack mode. */
export function mappedV6(v4: string): string {
  const o = v4.split('.').map(Number);
  const hi = (((o[0] ?? 0) << 8) | (o[1] ?? 0)).toString(16);
  const lo = (((o[2] ?? 0) << 8) | (o[3] ?? 0)).toString(16);
  return `::ffff:${hi}:${lo}`;
}

/** Encodes RRs with dns-packet and rewrites each owner name (root, 1 byte) into a pointer to offset 12. */
function encodeAnswers(type: 'A' | 'AAAA', addrs: string[], ttl: number): Buffer {
  const parts: Buffer[] = [];
  for (const data of addrs) {
    const pkt = dnsPacket.encode({ type: 'response', answers: [{ type, name: '.', ttl, class: 'IN', data }] });
    parts.push(Buffer.from([0xc0, 0x0c]), pkt.subarray(13));
  }
  return Buffer.concat(parts);
}

/** Builds the immutable owned-name table; every bad entry is reported with its name and value. */
export function compileRecords(records: ReadonlyMap<string, DnsRecordSet>, opts: { ttl: number; mode: IpFamilyMode }): RecordTable {
  const out = new Map<string, CompiledName>();
  for (const [host, set] of records) {
    const name = normalizeHostname(host);
    for (const v of set.v4) {
      if (!isIPv4(v)) throw new DnsError('MESHEXT_E_DNS_RECORD', `DNS record ${host}: v4 address ${JSON.stringify(v)} is not an IPv4 address`);
    }
    for (const v of set.v6) {
      if (!isIPv6(v)) throw new DnsError('MESHEXT_E_DNS_RECORD', `DNS record ${host}: v6 address ${JSON.stringify(v)} is not an IPv6 address`);
    }
    const prev = out.get(name);
    if (prev) throw new DnsError('MESHEXT_E_DNS_RECORD', `DNS record ${host} is given twice (names are case-insensitive)`);
    const v4 = [...new Set(set.v4)];
    const v6 = [...new Set([...set.v6, ...(opts.mode === 'dualstack' ? v4.map(mappedV6) : [])])];
    out.set(name, {
      a: encodeAnswers('A', v4, opts.ttl),
      aCount: v4.length,
      aaaa: encodeAnswers('AAAA', v6, opts.ttl),
      aaaaCount: v6.length,
    });
  }
  return out;
}

/** Owned names of a snapshot: every generated hostname of a service with a VIP maps to that VIP. */
export function recordsFromSnapshot(s: Snapshot): Map<string, DnsRecordSet> {
  const out = new Map<string, DnsRecordSet>();
  for (const [host, svc] of s.byHostname) {
    if (!svc.vip) continue;
    const name = host.toLowerCase().replace(/\.$/, '');
    const set = out.get(name) ?? { v4: [], v6: [] };
    if (isIPv4(svc.vip)) set.v4.push(svc.vip);
    else if (isIPv6(svc.vip)) set.v6.push(svc.vip);
    else continue;
    out.set(name, set);
  }
  return out;
}
