/** Header rules shared by the HTTP handlers: hop-by-hop removal and the upstream Host (DESIGN decision 7). */
import type { EndpointState } from './endpoints.js';

/** RFC 9110 §7.6.1 connection-specific headers, plus the legacy ones proxies also drop. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings']);

/** Removes hop-by-hop headers (and those named in Connection) from a flat raw header list. */
export function stripHopByHop(raw: string[]): string[] {
  const extra = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === 'connection') for (const t of (raw[i + 1] as string).split(',')) extra.add(t.trim().toLowerCase());
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = (raw[i] as string).toLowerCase();
    if (HOP_BY_HOP.has(k) || extra.has(k)) continue;
    out.push(raw[i] as string, raw[i + 1] as string);
  }
  return out;
}

/** Upstream Host: the endpoint's hostname for DNS endpoints (Envoy auto_host_rewrite); otherwise the client's. */
export function upstreamHost(ep: EndpointState, clientHost: string | undefined): string | undefined {
  return ep.endpoint.kind === 'dns' ? ep.endpoint.address : clientHost;
}

/** The text of a denial, naming the mesh setting responsible. */
export function deniedMessage(mesh: string): string {
  return `MeshExternalService access denied by Mesh "${mesh}" setting routing.defaultForbidMeshExternalServiceAccess`;
}
