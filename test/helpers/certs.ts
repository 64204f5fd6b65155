/** Test PKI generated with the openssl CLI into a temp dir: one CA plus the server/client certs the TLS tests need. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface KeyPair {
  key: Buffer;
  cert: Buffer;
}

export interface TestPki {
  dir: string;
  ca: Buffer;
  otherCa: Buffer;
  /** SANs DNS:localhost, IP:127.0.0.1, signed by `ca`. */
  good: KeyPair;
  /** Same SANs, signed by `otherCa`. */
  unknownCa: KeyPair;
  /** SAN DNS:wrong.example only. */
  wrongName: KeyPair;
  /** Only a URI SAN spiffe://example.local/ns/local/sa/web. */
  uriOnly: KeyPair;
  /** Good names, expired. */
  expired: KeyPair;
  /** Client certificate (clientAuth) signed by `ca`. */
  client: KeyPair;
  cleanup(): void;
}

function ossl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function newCa(dir: string, name: string): void {
  ossl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/CN=${name}`, '-days', '2']);
}

function leaf(dir: string, name: string, ca: string, ext: string, days = 2): KeyPair {
  writeFileSync(join(dir, `${name}.ext`), ext + '\n');
  ossl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
  ossl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', String(days), '-extfile', `${name}.ext`]);
  return { key: readFileSync(join(dir, `${name}.key`)), cert: readFileSync(join(dir, `${name}.crt`)) };
}

/** Issues one more EC leaf from the PKI's `ca` with the given openssl extension text (e.g. SANs). */
export function issueLeaf(pki: TestPki, name: string, ext: string, subj = `/CN=${name}`): KeyPair {
  writeFileSync(join(pki.dir, `${name}.ext`), ext + '\n');
  ossl(pki.dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subj]);
  ossl(pki.dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`]);
  return { key: readFileSync(join(pki.dir, `${name}.key`)), cert: readFileSync(join(pki.dir, `${name}.crt`)) };
}

/** Generates the whole PKI (a dozen openssl calls, well under a second). */
export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'meshext-pki-'));
  newCa(dir, 'ca');
  newCa(dir, 'otherca');
  const names = 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth';
  return {
    dir,
    ca: readFileSync(join(dir, 'ca.crt')),
    otherCa: readFileSync(join(dir, 'otherca.crt')),
    good: leaf(dir, 'good', 'ca', names),
    unknownCa: leaf(dir, 'unknownca', 'otherca', names),
    wrongName: leaf(dir, 'wrongname', 'ca', 'subjectAltName=DNS:wrong.example\nextendedKeyUsage=serverAuth'),
    uriOnly: leaf(dir, 'urionly', 'ca', 'subjectAltName=URI:spiffe://example.local/ns/local/sa/web\nextendedKeyUsage=serverAuth'),
    expired: leaf(dir, 'expired', 'ca', names, -1),
    client: leaf(dir, 'client', 'ca', 'subjectAltName=URI:spiffe://example.local/ns/default/sa/client\nextendedKeyUsage=clientAuth'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
