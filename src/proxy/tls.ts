/**
 * TLS origination per DESIGN decision 6: versions apply in every mode, SNI = serverName, else the first
 * DNS-name endpoint, else none; SAN matchers widen the accepted names (OR-ed over DNS, IP and URI SANs);
 * the verification mode decides which of chain and names are checked. We always hand OpenSSL
 * `rejectUnauthorized: false` and decide ourselves after the handshake, so that every mode follows the
 * same code path and failures get a precise reason.
 */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { constants as cryptoConstants } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import ipaddr from 'ipaddr.js';
import type { CompiledService, CompiledTls, SubjectAltNameMatcher, TlsVersion } from '../snapshot/types.js';
import { UpstreamError, type TlsFailReason } from './errors.js';
import { TlsSessionCache } from './tls-sessions.js';

const VERSION: Record<Exclude<TlsVersion, 'TLSAuto'>, tls.SecureVersion> = {
  TLS10: 'TLSv1',
  TLS11: 'TLSv1.1',
  TLS12: 'TLSv1.2',
  TLS13: 'TLSv1.3',
};

/** A ready-to-use client TLS configuration for one service (built once per snapshot change). */
export interface UpstreamTls {
  context: tls.SecureContext;
  /** SNI to send, if any (never an IP literal). */
  servername?: string;
  verifyChain: boolean;
  verifyNames: boolean;
  subjectAltNames: SubjectAltNameMatcher[];
  /** Sessions for resumption; belongs to this context, so a TLS config change starts empty. */
  sessions: TlsSessionCache;
  /** The options `context` was built from (the native context is built from the same). */
  options: tls.SecureContextOptions;
}

const caFileCache = new Map<string, Buffer>();

function readCaFile(path: string): Buffer {
  let b = caFileCache.get(path);
  if (!b) {
    b = readFileSync(path);
    caFileCache.set(path, b);
  }
  return b;
}

/** A hash over everything that shapes the TLS context; secrets go in only as digest input. */
export function tlsFingerprint(svc: CompiledService, systemCaPath: string | null): string {
  const t = svc.tls;
  if (!t) return 'none';
  const h = createHash('sha256');
  h.update(JSON.stringify({ min: t.minVersion, max: t.maxVersion, reneg: t.allowRenegotiation, mode: t.mode, sn: t.serverName ?? null, sans: t.subjectAltNames, sni: sniFor(svc) ?? null, sys: systemCaPath }));
  for (const b of [t.ca, t.cert, t.key]) {
    h.update(b ? '1' : '0');
    if (b) h.update(b);
  }
  return h.digest('hex');
}

/** SNI: `serverName`, else the first endpoint that is a DNS name, else none. */
export function sniFor(svc: CompiledService): string | undefined {
  const t = svc.tls;
  if (t?.serverName) return t.serverName;
  for (const e of svc.endpoints) if (e.kind === 'dns') return e.address;
  return undefined;
}

/** Which of chain and names the service's verification mode checks (DESIGN decision 6). */
export function verificationOf(t: CompiledTls): { verifyChain: boolean; verifyNames: boolean } {
  return { verifyChain: t.mode === 'Secured' || t.mode === 'SkipSAN', verifyNames: t.mode === 'Secured' || t.mode === 'SkipCA' };
}

/** The CA bundle to trust when the chain is verified: tls.caCert, else the system bundle; fails closed without one. */
export function resolveCa(svc: CompiledService, systemCaPath: string | null): Buffer {
  const t = svc.tls as CompiledTls;
  if (t.ca) return t.ca;
  if (systemCaPath) {
    try {
      return readCaFile(systemCaPath);
    } catch (e) {
      throw new UpstreamError('MESHEXT_E_TLS_NO_CA', `service ${svc.id}: tls.verification.mode ${t.mode} needs a CA but the system CA bundle ${systemCaPath} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  throw new UpstreamError('MESHEXT_E_TLS_NO_CA', `service ${svc.id}: tls.verification.mode ${t.mode} needs a CA: set tls.verification.caCert or install a system CA bundle (or set KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH)`);
}

/** TLS 1.3 suites, most preferred first (BoringSSL's order, as Envoy offers them). */
export const TLS13_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';
/** Node's default TLS <= 1.2 cipher list. */
const TLS12_DEFAULT = tls.DEFAULT_CIPHERS.split(':').filter((c) => c.length > 0 && !c.startsWith('TLS_')).join(':');

/** Node's SecureContext options for the service (versions, ciphers, renegotiation, CA, client identity). */
export function secureContextOptions(svc: CompiledService, systemCaPath: string | null): tls.SecureContextOptions {
  const t = svc.tls as CompiledTls;
  const opts: tls.SecureContextOptions = {};
  if (t.minVersion !== 'TLSAuto') opts.minVersion = VERSION[t.minVersion];
  if (t.maxVersion !== 'TLSAuto') opts.maxVersion = VERSION[t.maxVersion];
  // TLS 1.3 suites in Envoy's (BoringSSL's) order, AES-128-GCM first: OpenSSL's default puts AES-256-GCM
  // first, whose SHA-384 key schedule costs every handshake more for no security a 128-bit suite lacks here.
  // OpenSSL 3 refuses TLS 1.0/1.1 at the default security level; a user asking for them means it.
  opts.ciphers = `${TLS13_SUITES}:${t.minVersion === 'TLS10' || t.minVersion === 'TLS11' ? 'DEFAULT:@SECLEVEL=0' : TLS12_DEFAULT}`;
  // Envoy (BoringSSL) never renegotiates unless allowed; OpenSSL clients accept server-initiated
  // renegotiation by default, so turn it off explicitly.
  if (!t.allowRenegotiation) opts.secureOptions = cryptoConstants.SSL_OP_NO_RENEGOTIATION;
  if (verificationOf(t).verifyChain) opts.ca = resolveCa(svc, systemCaPath);
  // The client identity is ours, not a verification setting, so it is presented in every mode.
  if (t.cert && t.key) {
    opts.cert = t.cert;
    opts.key = t.key;
  }
  return opts;
}

/** Node's secure context for the options, or a configuration error naming the service. */
export function createContext(svc: CompiledService, opts: tls.SecureContextOptions): tls.SecureContext {
  try {
    return tls.createSecureContext(opts);
  } catch (e) {
    // OpenSSL messages name the failing step, never the key material.
    throw new UpstreamError('MESHEXT_E_TLS_CONFIG', `service ${svc.id}: TLS settings rejected: ${(e as Error).message.split('\n')[0]}`);
  }
}

/** Builds the service's TLS configuration or throws a configuration error naming the service. */
export function buildUpstreamTls(svc: CompiledService, systemCaPath: string | null): UpstreamTls {
  const t = svc.tls as CompiledTls;
  const options = secureContextOptions(svc, systemCaPath);
  const context = createContext(svc, options);
  return { context, servername: sniFor(svc), ...verificationOf(t), subjectAltNames: t.subjectAltNames, sessions: new TlsSessionCache(), options };
}

/** Parses Node's `subjectaltname` text ("DNS:a, IP Address:1.2.3.4, URI:spiffe://x") into typed entries. */
export function parseSubjectAltNames(text: string | undefined): Array<{ type: 'DNS' | 'IP' | 'URI'; value: string }> {
  const out: Array<{ type: 'DNS' | 'IP' | 'URI'; value: string }> = [];
  if (!text) return out;
  const re = /(DNS|IP Address|URI|[A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    if (m[0] === '') break;
    let value = m[2] ?? '';
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        continue;
      }
    }
    const kind = m[1];
    if (kind === 'DNS') out.push({ type: 'DNS', value });
    else if (kind === 'IP Address') out.push({ type: 'IP', value });
    else if (kind === 'URI') out.push({ type: 'URI', value });
  }
  return out;
}

/** An IP address as ipaddr.js normalises it (SAN comparison form); anything else unchanged. */
export function normIp(v: string): string {
  return ipaddr.isValid(v) ? ipaddr.parse(v).toNormalizedString() : v;
}

/** True when any user matcher (Exact/Prefix) matches any DNS, IP or URI SAN of the certificate. */
export function matchesUserSans(cert: tls.PeerCertificate, matchers: SubjectAltNameMatcher[]): boolean {
  if (matchers.length === 0) return false;
  const sans = parseSubjectAltNames(cert.subjectaltname);
  for (const m of matchers) {
    for (const s of sans) {
      const value = s.type === 'IP' ? normIp(s.value) : s.value;
      const want = s.type === 'IP' && m.type === 'Exact' ? normIp(m.value) : m.value;
      if (m.type === 'Exact' ? value === want : value.startsWith(want)) return true;
    }
  }
  return false;
}

/** Maps an OpenSSL verify code or handshake error onto a bounded reason. */
export function classifyTlsError(codeOrErr: string | Error): TlsFailReason {
  const code = typeof codeOrErr === 'string' ? codeOrErr : ((codeOrErr as NodeJS.ErrnoException).code ?? '');
  const msg = typeof codeOrErr === 'string' ? '' : codeOrErr.message;
  switch (code) {
    case 'CERT_HAS_EXPIRED':
      return 'expired';
    case 'CERT_NOT_YET_VALID':
      return 'not_yet_valid';
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
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
  const s = `${code} ${msg}`;
  if (/CERTIFICATE_REQUIRED|PEER_DID_NOT_RETURN_A_CERTIFICATE|certificate required/i.test(s)) return 'no_client_cert';
  if (/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|WRONG_VERSION_NUMBER|NO_PROTOCOLS_AVAILABLE|VERSION_TOO_LOW|VERSION_TOO_HIGH|TLSV1_ALERT_PROTOCOL/i.test(s)) return 'version';
  if (/ALERT_HANDSHAKE_FAILURE/.test(s)) return 'handshake';
  return 'handshake';
}

export const REASON_TEXT: Record<TlsFailReason, string> = {
  unknown_ca: 'certificate signed by unknown authority',
  name_mismatch: 'certificate name mismatch',
  expired: 'certificate expired',
  not_yet_valid: 'certificate not yet valid',
  version: 'TLS version negotiation failed',
  no_client_cert: 'server requires a client certificate',
  handshake: 'TLS handshake failed',
};

/** Turns a post-handshake socket error into an UpstreamError (e.g. a TLS 1.3 server rejecting our cert late). */
export function tlsErrorFrom(err: Error): UpstreamError {
  const reason = classifyTlsError(err);
  return new UpstreamError('MESHEXT_E_TLS_VERIFY', `${REASON_TEXT[reason]} (${(err as NodeJS.ErrnoException).code ?? err.message})`, reason);
}

/** The error for a certificate chain that failed verification with OpenSSL/Node code `code`. */
export function chainError(code: string): UpstreamError {
  const reason = classifyTlsError(code);
  return new UpstreamError('MESHEXT_E_TLS_VERIFY', `${REASON_TEXT[reason]} (${code})`, reason);
}

/** True when a socket error is a TLS alert/handshake error rather than a plain reset. */
export function isTlsError(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return code.startsWith('ERR_SSL_') || /SSL routines|alert/i.test(err.message);
}

/** True when the certificate's validity window does not include now. */
function outsideValidity(cert: tls.PeerCertificate, now: number): 'expired' | 'not_yet_valid' | undefined {
  const from = Date.parse(cert.valid_from);
  const to = Date.parse(cert.valid_to);
  if (Number.isFinite(to) && now > to) return 'expired';
  if (Number.isFinite(from) && now < from) return 'not_yet_valid';
  return undefined;
}

/**
 * Runs the TLS handshake over a connected socket and applies the service's verification policy.
 * `dialledIp` is the address actually connected to; it is the expected name when there is no SNI.
 * With `sessionKey` (endpoint address:port and SNI, see TlsSessionCache.key) a cached session is offered
 * and sessions from this connection are cached once it has passed verification.
 */
export function secureUpstream(raw: net.Socket, t: UpstreamTls, dialledIp: string | undefined, alpn: string[] | undefined, timeoutMs: number, sessionKey?: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const offered = sessionKey === undefined ? undefined : t.sessions.take(sessionKey);
    const s = tls.connect({
      socket: raw,
      secureContext: t.context,
      servername: t.servername,
      ALPNProtocols: alpn,
      session: offered?.session,
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    const timer = setTimeout(() => fail(new UpstreamError('MESHEXT_E_CONNECT_TIMEOUT', `TLS handshake timed out after ${timeoutMs} ms`, 'handshake')), timeoutMs);
    let done = false;
    // The verified peer certificate; set once the connection has passed every check.
    let peer: tls.PeerCertificate | undefined;
    // TLS 1.2 reports its session during the handshake, before we have verified anything: hold it back.
    let pending: Buffer | undefined;
    if (sessionKey !== undefined) {
      s.on('session', (sess: Buffer) => {
        if (peer) t.sessions.put(sessionKey, sess, s.getProtocol(), peer);
        else pending = sess;
      });
    }
    const fail = (e: UpstreamError): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // Whatever we hold for this endpoint may be what led here (or was issued by a server we now reject).
      if (sessionKey !== undefined) t.sessions.drop(sessionKey);
      s.destroy();
      raw.destroy();
      reject(e);
    };
    s.once('error', (e) => fail(tlsErrorFrom(e)));
    // Guarded so that the normal close of a long-established connection does not build (and capture a
    // stack for) an error nobody will see.
    raw.once('close', () => {
      if (!done) fail(new UpstreamError('MESHEXT_E_TLS_VERIFY', 'upstream closed the connection during the TLS handshake', 'handshake'));
    });
    s.once('secureConnect', () => {
      if (done) return;
      // On resumption OpenSSL reports the verify result stored with the session (computed against this
      // same context, since the cache belongs to it) but Node shows no peer certificate: the server proved
      // it holds the session we offered, so its identity is the certificate verified when that session was
      // made, and the checks below run against it. Time has moved on, so the validity window is re-checked.
      const resumed = s.isSessionReused();
      const live = s.getPeerCertificate();
      const cert = live && Object.keys(live).length > 0 ? live : resumed ? offered?.peer : undefined;
      if ((t.verifyChain || t.verifyNames) && !cert) {
        fail(new UpstreamError('MESHEXT_E_TLS_VERIFY', `${REASON_TEXT.handshake}: no peer certificate to verify${resumed ? ' on a resumed session' : ''}`, 'handshake'));
        return;
      }
      if (t.verifyChain && !s.authorized && s.authorizationError) {
        fail(chainError(String(s.authorizationError)));
        return;
      }
      if (resumed && t.verifyChain && cert) {
        const bad = outsideValidity(cert, Date.now());
        if (bad) {
          fail(new UpstreamError('MESHEXT_E_TLS_VERIFY', `${REASON_TEXT[bad]} (resumed session)`, bad));
          return;
        }
      }
      if (t.verifyNames && cert) {
        const expected = t.servername ?? dialledIp;
        const stdOk = expected !== undefined && tls.checkServerIdentity(expected, cert) === undefined;
        if (!stdOk && !matchesUserSans(cert, t.subjectAltNames)) {
          const sans = parseSubjectAltNames(cert.subjectaltname).map((x) => `${x.type}:${x.value}`).join(',');
          fail(new UpstreamError('MESHEXT_E_TLS_VERIFY', `${REASON_TEXT.name_mismatch}: expected ${expected ?? '(no server name)'}${t.subjectAltNames.length ? ' or a configured subjectAltName' : ''}, certificate has ${sans || 'no SANs'}${resumed ? ' (resumed session)' : ''}`, 'name_mismatch'));
          return;
        }
      }
      done = true;
      clearTimeout(timer);
      s.removeAllListeners('error');
      // SkipAll with a server that sends no certificate at all leaves nothing to remember: no caching.
      if (sessionKey !== undefined && cert) {
        peer = cert;
        const proto = s.getProtocol();
        if (pending) t.sessions.put(sessionKey, pending, proto, peer);
        else if (proto !== 'TLSv1.3' && !resumed) {
          const sess = s.getSession();
          if (sess) t.sessions.put(sessionKey, sess, proto, peer);
        }
      }
      resolve(s);
    });
  });
}
