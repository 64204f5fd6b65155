/** Errors the proxy core raises while reaching an upstream; `code` is stable for callers to branch on. */

/** Why a TLS handshake or verification failed; a bounded label set for metrics. */
export type TlsFailReason =
  | 'unknown_ca'
  | 'name_mismatch'
  | 'expired'
  | 'not_yet_valid'
  | 'version'
  | 'no_client_cert'
  | 'handshake';

export type UpstreamErrorCode =
  | 'MESHEXT_E_NO_ENDPOINTS'
  | 'MESHEXT_E_CONNECT_FAIL'
  | 'MESHEXT_E_CONNECT_TIMEOUT'
  | 'MESHEXT_E_ENDPOINT_IN_VIP_CIDR'
  | 'MESHEXT_E_DNS_RESOLVE'
  | 'MESHEXT_E_TLS_VERIFY'
  | 'MESHEXT_E_TLS_NO_CA'
  | 'MESHEXT_E_TLS_CONFIG'
  | 'MESHEXT_E_UPSTREAM_RESET';

/** A failure to reach or talk to an upstream; `reason` is short text safe to show a client. */
export class UpstreamError extends Error {
  constructor(
    readonly code: UpstreamErrorCode,
    readonly reason: string,
    readonly tlsReason?: TlsFailReason,
  ) {
    super(reason);
    this.name = 'UpstreamError';
  }
}

/** Whether an error came from our upstream path (as opposed to a bug). */
export function isUpstreamError(e: unknown): e is UpstreamError {
  return e instanceof UpstreamError;
}
