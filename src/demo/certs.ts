/** Test and demo PKI made with the openssl CLI: a CA, a server certificate and a client certificate. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface DemoPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Creates (or reuses, when complete) a CA plus server (localhost, 127.0.0.1) and client certificates in `dir`. */
export function ensurePki(dir: string, serverNames: string[] = ['localhost']): DemoPki {
  fs.mkdirSync(dir, { recursive: true });
  const p = (f: string): string => path.join(dir, f);
  const pki: DemoPki = {
    dir,
    caCert: p('ca.crt'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    clientCert: p('client.crt'),
    clientKey: p('client.key'),
  };
  if (Object.values(pki).every((f) => fs.existsSync(f))) return pki;
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '30', '-subj', '/CN=meshext demo CA', '-keyout', 'ca.key', '-out', 'ca.crt'], dir);
  const san = ['IP:127.0.0.1', ...serverNames.map((n) => `DNS:${n}`)].join(',');
  fs.writeFileSync(p('server.ext'), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${serverNames[0] ?? 'localhost'}`, '-keyout', 'server.key', '-out', 'server.csr'], dir);
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '30', '-extfile', 'server.ext', '-out', 'server.crt'], dir);
  fs.writeFileSync(p('client.ext'), 'extendedKeyUsage=clientAuth\n');
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=meshext-demo-client', '-keyout', 'client.key', '-out', 'client.csr'], dir);
  openssl(['x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '30', '-extfile', 'client.ext', '-out', 'client.crt'], dir);
  return pki;
}

/** Universal `Secret` resources carrying the demo CA and client credentials (base64, as Kuma stores them). */
export function pkiSecretsYaml(pki: DemoPki, mesh = 'default'): string {
  const secret = (name: string, file: string): string =>
    `type: Secret\nname: ${name}\nmesh: ${mesh}\ndata: ${fs.readFileSync(file).toString('base64')}\n`;
  return [secret('demo-ca', pki.caCert), secret('demo-client-cert', pki.clientCert), secret('demo-client-key', pki.clientKey)].join('---\n');
}
