/**
 * Native TLS origination inputs and outcomes. The policy stays in tls.ts: this module hands the native
 * context exactly what tls.ts resolved for Node (protocol bounds as Node's context computed them, ciphers,
 * CA bundle, client identity, SNI, SAN matchers, verification mode) and turns a native failure into the
 * same UpstreamError (code, reason, message) the Node path raises.
 */
import tls from 'node:tls';
import type { CompiledService, CompiledTls } from '../snapshot/types.js';
import { native, type NativeAddon, type NativeTlsContext, type NativeTlsContextOptions, type NativeTlsFailure } from '../redirect/native.js';
import type { ServiceRuntime } from './runtime.js';
import { UpstreamError, type TlsFailReason } from './errors.js';
import { chainError, normIp, sniFor, tlsErrorFrom, verificationOf, type UpstreamTls } from './tls.js';

const PROTO: Record<string, number> = { 'TLSv1': 0x0301, 'TLSv1.1': 0x0302, 'TLSv1.2': 0x0303, 'TLSv1.3': 0x0304 };

/** Node's internal SecureContext exposes the protocol bounds it settled on (after its cipher rules). */
interface NodeContextInternals {
  getMinProto?: () => number;
  getMaxProto?: () => number;
}

/** Resolves the native context inputs from the service and the Node context/options tls.ts built for it. */
export function nativeTlsOptions(svc: CompiledService, opts: tls.SecureContextOptions, nodeContext: tls.SecureContext): NativeTlsContextOptions {
  const t = svc.tls as CompiledTls;
  const internals = (nodeContext as unknown as { context?: NodeContextInternals }).context;
  const min = internals?.getMinProto?.() ?? PROTO[opts.minVersion ?? tls.DEFAULT_MIN_VERSION] ?? 0x0303;
  const max = internals?.getMaxProto?.() ?? PROTO[opts.maxVersion ?? tls.DEFAULT_MAX_VERSION] ?? 0x0304;
  // Node splits one cipher string into TLS 1.3 suites (TLS_*) and the TLS <= 1.2 list.
  const parts = (opts.ciphers ?? tls.DEFAULT_CIPHERS).split(':').filter((c) => c.length > 0);
  const ca = opts.ca as Buffer | undefined;
  return {
    minVersion: min,
    maxVersion: max,
    cipherList: parts.filter((c) => !c.startsWith('TLS_')).join(':'),
    cipherSuites: parts.filter((c) => c.startsWith('TLS_')).join(':'),
    ...verificationOf(t),
    allowRenegotiation: t.allowRenegotiation,
    ...(ca ? { ca } : {}),
    ...(t.cert && t.key ? { cert: t.cert, key: t.key } : {}),
    ...(sniFor(svc) !== undefined ? { servername: sniFor(svc) } : {}),
    subjectAltNames: t.subjectAltNames.map((m) => ({ exact: m.type === 'Exact', value: m.value, ipValue: normIp(m.value) })),
  };
}

/** Builds the native context next to the Node one tls.ts built for the service (same inputs, same errors). */
export function buildNativeUpstreamTls(addon: NativeAddon, svc: CompiledService, up: UpstreamTls): NativeTlsContext {
  return createNativeTlsContext(addon, svc, nativeTlsOptions(svc, up.options, up.context));
}

// One native context per runtime: a runtime is rebuilt when the service's TLS settings change, so its
// context and session cache go with it (as UpstreamTls.sessions do on the Node path).
const contexts = new WeakMap<ServiceRuntime, NativeTlsContext | null>();

/**
 * The service's native TLS context, built on first use; undefined when the service has no usable TLS or
 * the native build refused settings Node accepted (logged once; the service keeps the Node TLS path).
 */
export function nativeTlsFor(rt: ServiceRuntime, addon: NativeAddon = native()): NativeTlsContext | undefined {
  let c = contexts.get(rt);
  if (c === undefined) {
    c = null;
    if (rt.tls && typeof addon.tlsContextCreate === 'function') {
      try {
        c = buildNativeUpstreamTls(addon, rt.service, rt.tls);
      } catch (e) {
        rt.log.warn({ err: (e as Error).message }, 'native TLS context unavailable; this service originates TLS in Node');
      }
    }
    contexts.set(rt, c);
  }
  return c ?? undefined;
}

/** Creates the native context or throws the configuration error naming the service (never key material). */
export function createNativeTlsContext(addon: NativeAddon, svc: CompiledService, o: NativeTlsContextOptions): NativeTlsContext {
  try {
    return addon.tlsContextCreate(o);
  } catch (e) {
    throw new UpstreamError('MESHEXT_E_TLS_CONFIG', `service ${svc.id}: TLS settings rejected: ${(e as Error).message.split('\n')[0]}`);
  }
}

/** The UpstreamError the Node path raises for the same failure. */
export function nativeTlsError(f: NativeTlsFailure): UpstreamError {
  switch (f.stage) {
    case 'chain':
      return chainError(f.code);
    case 'policy':
      return new UpstreamError('MESHEXT_E_TLS_VERIFY', f.message, (f.reason ?? 'handshake') as TlsFailReason);
    case 'timeout':
      return new UpstreamError('MESHEXT_E_CONNECT_TIMEOUT', f.message, 'handshake');
    case 'closed':
      return new UpstreamError('MESHEXT_E_TLS_VERIFY', 'upstream closed the connection during the TLS handshake', 'handshake');
    case 'alert':
      return tlsErrorFrom(Object.assign(new Error(f.message), { code: f.code }));
  }
}
