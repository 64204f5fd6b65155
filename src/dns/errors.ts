/** Errors raised by the DNS resolver, with stable codes callers may branch on. */

export type DnsErrorCode =
  | 'MESHEXT_E_DNS_LISTEN'
  | 'MESHEXT_E_DNS_RESOLV_CONF'
  | 'MESHEXT_E_DNS_RECORD'
  | 'MESHEXT_E_DNS_OPTION'
  | 'MESHEXT_E_DNS_LOOP'
  | 'MESHEXT_E_DNS_STATE';

/** An error with a `MESHEXT_E_DNS_*` code and, when it wraps a system error, its errno code. */
export class DnsError extends Error {
  readonly code: DnsErrorCode;
  readonly syscallCode?: string;

  constructor(code: DnsErrorCode, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'DnsError';
    this.code = code;
    const sc = (cause as NodeJS.ErrnoException | undefined)?.code;
    if (typeof sc === 'string') this.syscallCode = sc;
  }
}
