/**
 * Byte layout of the structs in bpf/meshext_maps.h. Addresses and ports are network order; flags,
 * ids and times are host order (little-endian on every platform we build for; checked at import).
 */
import { endianness } from 'node:os';
import ipaddr from 'ipaddr.js';
import type { AccessVerdict } from '../snapshot/meshtrafficpermission.js';

if (endianness() !== 'LE') throw Object.assign(new Error('meshext BPF codec supports little-endian hosts only'), { code: 'MESHEXT_E_BPF_ENDIAN' });

export const LAYOUT_VERSION = 2;

export const LAYOUT = {
  mx_addr: { size: 16, fields: {} },
  mx_config: {
    size: 72,
    fields: { vip_net: 0, vip_mask: 4, proxy_addr: 8, proxy_port: 24, dns_port: 26, flags: 28, dns_addr: 32, heartbeat_max_age_ms: 48, heartbeat_ns: 56, agent_netns_cookie: 64 },
  },
  mx_orig: { size: 48, fields: { addr: 0, port: 16, proto: 18, flags: 19, pid: 20, cgroup_id: 24, cookie: 32, created_ns: 40 } },
  mx_peer_key: { size: 20, fields: { addr: 0, port: 16, proxy_port: 18 } },
  mx_svc_key: { size: 8, fields: { vip: 0, port: 4 } },
  mx_svc_access: { size: 8, fields: { svc: 0, unlisted: 4, no_identity: 5 } },
  mx_verdict_key: { size: 8, fields: { svc: 0, ident: 4 } },
  mx_denial_key: { size: 16, fields: { cgroup_id: 0, svc: 8 } },
  mx_denial: { size: 24, fields: { count: 0, last_ns: 8, ident: 16, verdict: 20 } },
} as const;

export const FLAGS = {
  MX_F_REDIRECT_TCP: 1,
  MX_F_REDIRECT_DNS: 2,
  MX_F_EXEMPT_CGROUPS: 4,
  MX_F_DNS_HEARTBEAT: 8,
  MX_F_ACCESS: 16,
  MX_ORIG_TCP_VIP: 1,
  MX_ORIG_DNS: 2,
  MX_V_ALLOW: 1,
  MX_V_DENY_RULE: 2,
  MX_V_DENY_DEFAULT: 3,
  MX_V_DENY_NO_IDENTITY: 4,
  MX_V_SHADOW_DENY: 5,
  MX_ACNT_MAX: 5,
  MX_ACCESS_SVC_MAX: 4096,
} as const;

export type { AccessVerdict };
export const VERDICT_CODES: Record<AccessVerdict, number> = {
  allow: FLAGS.MX_V_ALLOW,
  denyRule: FLAGS.MX_V_DENY_RULE,
  denyDefault: FLAGS.MX_V_DENY_DEFAULT,
  denyNoIdentity: FLAGS.MX_V_DENY_NO_IDENTITY,
  shadowDeny: FLAGS.MX_V_SHADOW_DENY,
};
/** Verdict code → name (0 and unknown codes: undefined). */
export function verdictName(code: number): AccessVerdict | undefined {
  return (Object.keys(VERDICT_CODES) as AccessVerdict[]).find((k) => VERDICT_CODES[k] === code);
}

/** enum mx_access_cnt order: per-service slots of mx_access_cnt. */
export const ACCESS_COUNTER_NAMES = ['allowed', 'denied_rule', 'denied_default', 'denied_no_identity', 'shadow_denied'] as const;
export type AccessCounterName = (typeof ACCESS_COUNTER_NAMES)[number];

/** enum mx_counter order; names become `meshext_bpf_<name>_total`. */
export const COUNTER_NAMES = [
  'tcp_redirect',
  'dns_redirect',
  'dns_passthrough',
  'recv_rewrite',
  'peername_rewrite',
  'peer_stored',
  'peer_store_failed',
  'exempt_skip',
  'cookie_store_failed',
  'peer_dropped',
] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];

/** Dotted-quad IPv4 or IPv6 only (ipaddr.js alone would also take classful forms like "10.1"). */
export function isStrictIp(address: string): boolean {
  return address.includes(':') ? ipaddr.IPv6.isValid(address) : ipaddr.IPv4.isValidFourPartDecimal(address);
}

/** Encodes an IPv4/IPv6 address (or `::ffff:` mapped IPv4) as the 16-byte mx_addr. */
export function encodeAddr(address: string, out: Buffer = Buffer.alloc(16), offset = 0): Buffer {
  if (!isStrictIp(address)) throw Object.assign(new Error(`invalid IP address "${address}"`), { code: 'MESHEXT_E_BPF_ARG' });
  const a = ipaddr.parse(address);
  const v6 = a.kind() === 'ipv4' ? (a as ipaddr.IPv4).toIPv4MappedAddress() : (a as ipaddr.IPv6);
  Buffer.from(v6.toByteArray()).copy(out, offset);
  return out;
}

/** Decodes mx_addr; v4-mapped addresses come back in dotted IPv4 form. */
export function decodeAddr(buf: Buffer, offset = 0): string {
  const v6 = ipaddr.fromByteArray([...buf.subarray(offset, offset + 16)]) as ipaddr.IPv6;
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address().toString() : v6.toString();
}

export interface ConfigFields {
  vipNet: string; // IPv4 network address
  vipPrefix: number;
  proxyAddress: string;
  proxyPort: number;
  dnsAddress: string;
  dnsPort: number;
  flags: number;
  heartbeatMaxAgeMs: number;
  heartbeatNs: bigint;
  agentNetnsCookie: bigint;
}

/** Encodes mx_config. */
export function encodeConfig(c: ConfigFields): Buffer {
  const f = LAYOUT.mx_config.fields;
  const b = Buffer.alloc(LAYOUT.mx_config.size);
  Buffer.from(ipaddr.IPv4.parse(c.vipNet).toByteArray()).copy(b, f.vip_net);
  const mask = c.vipPrefix === 0 ? 0 : (0xffffffff << (32 - c.vipPrefix)) >>> 0;
  b.writeUInt32BE(mask, f.vip_mask);
  encodeAddr(c.proxyAddress, b, f.proxy_addr);
  b.writeUInt16BE(c.proxyPort, f.proxy_port);
  b.writeUInt16BE(c.dnsPort, f.dns_port);
  b.writeUInt32LE(c.flags >>> 0, f.flags);
  encodeAddr(c.dnsAddress, b, f.dns_addr);
  b.writeUInt32LE(c.heartbeatMaxAgeMs >>> 0, f.heartbeat_max_age_ms);
  b.writeBigUInt64LE(c.heartbeatNs, f.heartbeat_ns);
  b.writeBigUInt64LE(c.agentNetnsCookie, f.agent_netns_cookie);
  return b;
}

/** Decodes mx_config (for `bpf list`). */
export function decodeConfig(b: Buffer): ConfigFields {
  const f = LAYOUT.mx_config.fields;
  const mask = b.readUInt32BE(f.vip_mask);
  let prefix = 0;
  for (let m = mask; m & 0x80000000; m = (m << 1) >>> 0) prefix++;
  return {
    vipNet: ipaddr.fromByteArray([...b.subarray(f.vip_net, f.vip_net + 4)]).toString(),
    vipPrefix: prefix,
    proxyAddress: decodeAddr(b, f.proxy_addr),
    proxyPort: b.readUInt16BE(f.proxy_port),
    dnsAddress: decodeAddr(b, f.dns_addr),
    dnsPort: b.readUInt16BE(f.dns_port),
    flags: b.readUInt32LE(f.flags),
    heartbeatMaxAgeMs: b.readUInt32LE(f.heartbeat_max_age_ms),
    heartbeatNs: b.readBigUInt64LE(f.heartbeat_ns),
    agentNetnsCookie: b.readBigUInt64LE(f.agent_netns_cookie),
  };
}

/** Encodes mx_peer_key: the accepted connection's peer and our listener port. */
export function encodePeerKey(address: string, port: number, proxyPort: number): Buffer {
  const f = LAYOUT.mx_peer_key.fields;
  const b = Buffer.alloc(LAYOUT.mx_peer_key.size);
  encodeAddr(address, b, f.addr);
  b.writeUInt16BE(port, f.port);
  b.writeUInt16BE(proxyPort, f.proxy_port);
  return b;
}

export interface OrigDst { address: string; port: number; proto: number; flags: number; pid: number; cgroupId: bigint; cookie: bigint; createdNs: bigint }

/** Decodes mx_orig. */
export function decodeOrig(b: Buffer): OrigDst {
  const f = LAYOUT.mx_orig.fields;
  return {
    address: decodeAddr(b, f.addr),
    port: b.readUInt16BE(f.port),
    proto: b.readUInt8(f.proto),
    flags: b.readUInt8(f.flags),
    pid: b.readUInt32LE(f.pid),
    cgroupId: b.readBigUInt64LE(f.cgroup_id),
    cookie: b.readBigUInt64LE(f.cookie),
    createdNs: b.readBigUInt64LE(f.created_ns),
  };
}

/** Encodes mx_orig (the BPF program writes these; tests plant them). */
export function encodeOrig(o: OrigDst): Buffer {
  const f = LAYOUT.mx_orig.fields;
  const b = Buffer.alloc(LAYOUT.mx_orig.size);
  encodeAddr(o.address, b, f.addr);
  b.writeUInt16BE(o.port, f.port);
  b.writeUInt8(o.proto, f.proto);
  b.writeUInt8(o.flags, f.flags);
  b.writeUInt32LE(o.pid, f.pid);
  b.writeBigUInt64LE(o.cgroupId, f.cgroup_id);
  b.writeBigUInt64LE(o.cookie, f.cookie);
  b.writeBigUInt64LE(o.createdNs, f.created_ns);
  return b;
}

/** Key of mx_exempt_cg. */
export function encodeCgroupId(id: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(id);
  return b;
}

/** u32 value 1 (mx_nameservers / mx_exempt_cg). */
export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

/** Key of mx_svc_access: an IPv4 VIP and port. */
export function encodeSvcKey(vip: string, port: number): Buffer {
  const f = LAYOUT.mx_svc_key.fields;
  const b = Buffer.alloc(LAYOUT.mx_svc_key.size);
  Buffer.from(ipaddr.IPv4.parse(vip).toByteArray()).copy(b, f.vip);
  b.writeUInt16BE(port, f.port);
  return b;
}

/** Value of mx_svc_access. */
export function encodeSvcAccess(svc: number, unlisted: AccessVerdict, noIdentity: AccessVerdict): Buffer {
  const f = LAYOUT.mx_svc_access.fields;
  const b = Buffer.alloc(LAYOUT.mx_svc_access.size);
  b.writeUInt32LE(svc >>> 0, f.svc);
  b.writeUInt8(VERDICT_CODES[unlisted], f.unlisted);
  b.writeUInt8(VERDICT_CODES[noIdentity], f.no_identity);
  return b;
}

/** Key of mx_verdict. */
export function encodeVerdictKey(svc: number, ident: number): Buffer {
  const f = LAYOUT.mx_verdict_key.fields;
  const b = Buffer.alloc(LAYOUT.mx_verdict_key.size);
  b.writeUInt32LE(svc >>> 0, f.svc);
  b.writeUInt32LE(ident >>> 0, f.ident);
  return b;
}

export interface DenialRecord { cgroupId: bigint; svc: number; count: bigint; lastNs: bigint; ident: number; verdict: number }

/** Decodes an mx_denials key and value. */
export function decodeDenial(key: Buffer, value: Buffer): DenialRecord {
  const k = LAYOUT.mx_denial_key.fields;
  const v = LAYOUT.mx_denial.fields;
  return {
    cgroupId: key.readBigUInt64LE(k.cgroup_id),
    svc: key.readUInt32LE(k.svc),
    count: value.readBigUInt64LE(v.count),
    lastNs: value.readBigUInt64LE(v.last_ns),
    ident: value.readUInt32LE(v.ident),
    verdict: value.readUInt32LE(v.verdict),
  };
}
