/**
 * Address classification with the same answers as Kuma's validator (asaskevich/govalidator):
 * IP = Go net.ParseIP succeeds; DNS name = not an IP and matches govalidator's rxDNSName.
 */
import { isIP } from 'node:net';

// govalidator's DNS name expression: labels may contain `_`, may end with `-`, all-digit labels allowed.
const DNS_NAME = /^([a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})*[._]?$/;

/** True when Go's net.ParseIP would accept the text (no zone, no brackets, no port). */
export function isIpAddress(s: string): boolean {
  return !s.includes('%') && isIP(s) !== 0;
}

/** govalidator.IsDNSName. */
export function isDnsName(s: string): boolean {
  if (s === '' || s.replace(/\./g, '').length > 255) return false;
  return !isIpAddress(s) && DNS_NAME.test(s);
}

export const UNIX_SCHEME = 'unix://';

/** `unix:///abs/path` → `/abs/path`; undefined when the text is not a unix endpoint (Kuma 2.8 rule). */
export function unixPath(address: string): string | undefined {
  if (!address.startsWith(UNIX_SCHEME)) return undefined;
  const path = address.slice(UNIX_SCHEME.length);
  // govalidator.IsUnixFilePath accepts any absolute path; a NUL byte can never name a socket.
  if (!path.startsWith('/') || path.includes('\0')) return undefined;
  return path;
}

/** Kuma 2.8's message for an endpoint address that is neither an IP, a DNS name nor a unix path. */
export const INVALID_ENDPOINT_ADDRESS = 'address has to be a valid IP or hostname or a unix path';

/** What an endpoint address is, in the order Kuma 2.8's validator checks; undefined when it is none. */
export function endpointAddressKind(address: string): 'unix' | 'ip' | 'hostname' | undefined {
  if (unixPath(address) !== undefined) return 'unix';
  if (isIpAddress(address)) return 'ip';
  if (isDnsName(address)) return 'hostname';
  return undefined;
}

const RFC1123_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const RFC1123_SUBDOMAIN = new RegExp(`^${RFC1123_LABEL}(\\.${RFC1123_LABEL})*$`);
const RFC1035_LABEL = '[a-z]([-a-z0-9]*[a-z0-9])?';

/** Kubernetes' validation.RegexError: `msg (e.g. 'a',  or 'b', regex used for validation is 're')`. */
function regexError(msg: string, re: string, ...examples: string[]): string {
  if (examples.length === 0) return `${msg} (regex used for validation is '${re}')`;
  return `${msg} (e.g. ${examples.map((e) => `'${e}', `).join(' or ')}regex used for validation is '${re}')`;
}

/** Kubernetes IsDNS1123Subdomain errors (empty list when valid), with Kubernetes' wording. */
export function dns1123SubdomainErrors(s: string): string[] {
  const errs: string[] = [];
  if (s.length > 253) errs.push('must be no more than 253 characters');
  if (!RFC1123_SUBDOMAIN.test(s)) {
    errs.push(
      regexError(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        `${RFC1123_LABEL}(\\.${RFC1123_LABEL})*`,
        'example.com',
      ),
    );
  }
  return errs;
}

/** Kubernetes IsDNS1035Label errors (empty list when valid), with Kubernetes' wording. */
export function dns1035LabelErrors(s: string): string[] {
  const errs: string[] = [];
  if (s.length > 63) errs.push('must be no more than 63 characters');
  if (!new RegExp(`^${RFC1035_LABEL}$`).test(s)) {
    errs.push(
      regexError(
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
        RFC1035_LABEL,
        'my-name',
        'abc-123',
      ),
    );
  }
  return errs;
}

/** True for a name usable as a generated hostname: RFC 1123 subdomain, lowercase, ≤253, labels ≤63. */
export function isLowercaseDnsName(s: string): boolean {
  return dns1123SubdomainErrors(s).length === 0 && s.split('.').every((l) => l.length <= 63);
}
