/** Public face of VIP allocation. */
export { Ipam, IpamError, defaultStateDir, STATE_FILE } from './ipam.js';
export { parseCidr, cidrContains, effectiveVipCidr, CidrError, DEFAULT_VIP_CIDR, type Cidr } from './cidr.js';
