/** The embedded DNS resolver: the only module the agent imports from `src/dns/`. */
export { DnsServer, type DnsServerOptions } from './server.js';
export { DNS_TTL_SECONDS } from './ttl.js';
export { recordsFromSnapshot, type DnsRecordSet } from './records.js';
export { readResolvConf, type UpstreamAddress } from './resolv-conf.js';
export { DnsError, type DnsErrorCode } from './errors.js';
export { setUpstreamSocketHooks, type UpstreamSocketHooks } from './upstream-socket.js';
