/** Locates the operating system's CA bundle the way kuma-dp does, so `Secured` works without `caCert`. */
import { existsSync } from 'node:fs';

/** Candidate bundle paths in kuma-dp's order (Debian, RHEL, openSUSE, older RHEL, ca-trust, Alpine/macOS). */
export const SYSTEM_CA_CANDIDATES: readonly string[] = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/pki/tls/cacert.pem',
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem',
  '/etc/ssl/cert.pem',
];

/** The env var kuma-dp honours to point at a specific bundle. */
export const SYSTEM_CA_ENV = 'KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH';

/** Returns the system CA bundle path: the env override if set, else the first candidate that exists, else null. */
export function detectSystemCa(env: NodeJS.ProcessEnv = process.env, exists: (p: string) => boolean = existsSync): string | null {
  const override = env[SYSTEM_CA_ENV];
  if (override) return override;
  for (const p of SYSTEM_CA_CANDIDATES) if (exists(p)) return p;
  return null;
}
