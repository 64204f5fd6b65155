/** CIDR arithmetic on BigInt so IPv4 and IPv6 ranges share one code path. */
import ipaddr from 'ipaddr.js';

export interface Cidr {
  /** Canonical text `network/prefix` (host bits masked, as Kuma does for a non-aligned CIDR). */
  text: string;
  family: 4 | 6;
  prefix: number;
  /** Network address as an integer. */
  network: bigint;
  /** Number of addresses in the range. */
  size: bigint;
}

/** Error with a stable `code` a caller may branch on. */
export class CidrError extends Error {
  readonly code = 'MESHEXT_E_BAD_CIDR';
}

function toBig(addr: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  let v = 0n;
  for (const b of addr.toByteArray()) v = (v << 8n) | BigInt(b);
  return v;
}

/** Parses and masks a CIDR; throws CidrError naming the value. */
export function parseCidr(text: string): Cidr {
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    parsed = ipaddr.parseCIDR(text.trim());
  } catch (e) {
    throw new CidrError(`invalid VIP CIDR "${text}": ${(e as Error).message.replace(/^ipaddr: /, '')} (expected e.g. 242.0.0.0/8)`);
  }
  let [addr, prefix] = parsed;
  const family: 4 | 6 = addr.kind() === 'ipv4' ? 4 : 6;
  const bits = family === 4 ? 32 : 128;
  const hostBits = BigInt(bits - prefix);
  const network = (toBig(addr) >> hostBits) << hostBits;
  const net = fromBig(network, family);
  return { text: `${net}/${prefix}`, family, prefix, network, size: 1n << hostBits };
}

/** Integer → address text. */
export function fromBig(v: bigint, family: 4 | 6): string {
  const n = family === 4 ? 4 : 16;
  const bytes: number[] = new Array<number>(n);
  for (let i = n - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

/** Address text → integer, or undefined when it is not an address of that family. */
export function addrToBig(text: string, family: 4 | 6): bigint | undefined {
  if (!ipaddr.isValid(text)) return undefined;
  let a = ipaddr.parse(text);
  if (family === 4 && a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address();
  if ((a.kind() === 'ipv4' ? 4 : 6) !== family) return undefined;
  return toBig(a);
}

/** True when the address text falls inside the range (IPv4-mapped IPv6 counts for an IPv4 range). */
export function cidrContains(c: Cidr, address: string): boolean {
  const v = addrToBig(address, c.family);
  return v !== undefined && v >= c.network && v < c.network + c.size;
}

export const DEFAULT_VIP_CIDR = '242.0.0.0/8';

/** The VIP CIDR in effect: explicit option, else KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR, else 242.0.0.0/8. */
export function effectiveVipCidr(explicit?: string): string {
  return explicit ?? process.env.KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR ?? DEFAULT_VIP_CIDR;
}
