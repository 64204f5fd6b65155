/** Public face of VIP allocation. */
export { Ipam, IpamError, defaultStateDir, vipQuarantineMs, STATE_FILE, type IpamOptions } from './ipam.js';
export { parseCidr, cidrContains, effectiveVipCidr, CidrError, DEFAULT_VIP_CIDR, type Cidr } from './cidr.js';
