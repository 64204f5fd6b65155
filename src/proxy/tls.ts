/**
 * Names for TLS failures the engine reports: a bounded reason for the metric label and the log, and the
 * words a person reads. The engine reports the facts (OpenSSL's error, Node's X509 code names, or the code
 * and words of one of its own checks); what they mean is decided here, and only here.
 */
import type { NativeTlsFailure } from '../native/addon.js';

/** Why a TLS handshake or verification failed; a bounded label set for metrics. */
export type TlsFailReason = 'unknown_ca' | 'name_mismatch' | 'expired' | 'not_yet_valid' | 'version' | 'no_client_cert' | 'handshake';

export const REASON_TEXT: Record<TlsFailReason, string> = {
  unknown_ca: 'certificate signed by unknown authority',
  name_mismatch: 'certificate name mismatch',
  expired: 'certificate expired',
  not_yet_valid: 'certificate not yet valid',
  version: 'TLS version negotiation failed',
  no_client_cert: 'server requires a client certificate',
  handshake: 'TLS handshake failed',
};

/** Maps an X509 verify code (Node's names) or an OpenSSL error code and text onto a bounded reason. */
export function classifyTlsError(code: string, message = ''): TlsFailReason {
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return 'expired';
    case 'CERT_NOT_YET_VALID':
      return 'not_yet_valid';
    case 'HOSTNAME_MISMATCH':
      return 'name_mismatch';
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'CERT_UNTRUSTED':
    case 'CERT_SIGNATURE_FAILURE':
    case 'INVALID_CA':
      return 'unknown_ca';
  }
  const s = `${code} ${message}`;
  if (/CERTIFICATE_REQUIRED|PEER_DID_NOT_RETURN_A_CERTIFICATE|certificate required/i.test(s)) return 'no_client_cert';
  if (/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|WRONG_VERSION_NUMBER|NO_PROTOCOLS_AVAILABLE|VERSION_TOO_LOW|VERSION_TOO_HIGH|TLSV1_ALERT_PROTOCOL/i.test(s)) return 'version';
  return 'handshake';
}

/** A failure as the log and the metric name it: a reason and a sentence. */
export function describeTlsFailure(f: NativeTlsFailure): { reason: TlsFailReason; text: string } {
  switch (f.stage) {
    case 'chain': {
      const reason = classifyTlsError(f.code);
      return { reason, text: `${REASON_TEXT[reason]} (${f.code})` };
    }
    case 'policy':
      // The engine's own checks (name, validity on resumption, ALPN): its words are complete.
      return { reason: classifyTlsError(f.code), text: f.message };
    case 'timeout':
      return { reason: 'handshake', text: f.message };
    case 'closed':
      return { reason: 'handshake', text: 'upstream closed the connection during the TLS handshake' };
    case 'alert': {
      const reason = classifyTlsError(f.code, f.message);
      return { reason, text: `${REASON_TEXT[reason]} (${f.code || f.message})` };
    }
  }
}
