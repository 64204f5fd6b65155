// compileSnapshot: secrets, endpoints, forbidden flag, outbounds, rejections, VIP stability.
import test from 'ava';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseResourceText } from '../../../src/resources/index.js';
import { Ipam } from '../../../src/ipam/index.js';
import { compileSnapshot } from '../../../src/snapshot/compile.js';

const ipam = async (cidr = '242.0.0.0/8'): Promise<Ipam> => Ipam.open({ stateDir: await mkdtemp(join(tmpdir(), 'meshext-compile-')), cidr });
const b64 = (s: string): string => Buffer.from(s).toString('base64');

const CONFIG = `
type: Mesh
name: locked
routing:
  defaultForbidMeshExternalServiceAccess: true
---
type: Secret
name: ca
mesh: default
data: ${b64('CA-PEM')}
---
type: Secret
name: crt
mesh: default
data: ${b64('CERT-PEM')}
---
type: Secret
name: key
mesh: default
data: ${b64('KEY-PEM')}
---
type: MeshExternalService
name: tls
spec:
  match: {port: 443, protocol: http2}
  endpoints:
    - {address: api.example.com, port: 443}
    - {address: "2001:db8::1", port: 443}
    - {address: "unix:///run/x.sock"}
  tls:
    enabled: true
    version: {min: TLS12}
    verification:
      serverName: api.example.com
      caCert: {secret: ca}
      clientCert: {secret: crt}
      clientKey: {inlineString: KEY-INLINE}
---
type: MeshExternalService
name: missing-secret
spec:
  match: {port: 443}
  tls:
    enabled: true
    verification:
      caCert: {secret: nope}
---
type: MeshExternalService
name: tls-disabled-missing-secret
spec:
  match: {port: 443}
  tls:
    verification:
      caCert: {secret: nope}
---
type: MeshExternalService
name: denied
mesh: locked
spec:
  match: {port: 80, protocol: http}
  endpoints: [{address: 10.0.0.1, port: 80}]
---
type: MeshExternalService
name: loop
spec:
  match: {port: 80}
  endpoints: [{address: denied.extsvc.mesh.local, port: 80}]
---
type: Dataplane
name: dp
mesh: default
networking:
  outbound:
    - port: 8080
      backendRef: {kind: MeshExternalService, name: tls}
    - port: 8081
      backendRef: {kind: MeshExternalService, name: ghost}
    - port: 8082
      address: 127.0.0.2
      backendRef: {kind: MeshExternalService, labels: {kuma.io/origin: zone}}
---
type: MeshExternalService
name: broken
spec:
  match: {port: 0}
`;

test('compiles services with resolved TLS bytes, endpoint kinds, access flag and outbounds', async (t) => {
  const load = parseResourceText(CONFIG, 'c.yaml');
  const snap = await compileSnapshot({ load, ipam: await ipam(), generation: 7 });
  t.is(snap.generation, 7);
  t.is(snap.vipCidr, '242.0.0.0/8');
  const tls = snap.services.find((s) => s.name === 'tls');
  t.deepEqual(tls?.endpoints, [
    { kind: 'dns', address: 'api.example.com', port: 443 },
    { kind: 'ip', address: '2001:db8::1', port: 443, family: 6 },
    { kind: 'unix', path: '/run/x.sock' },
  ]);
  t.is(tls?.tls?.ca?.toString(), 'CA-PEM');
  t.is(tls?.tls?.cert?.toString(), 'CERT-PEM');
  t.is(tls?.tls?.key?.toString(), 'KEY-INLINE');
  t.is(tls?.tls?.minVersion, 'TLS12');
  t.is(tls?.tls?.maxVersion, 'TLSAuto');
  t.is(tls?.tls?.mode, 'Secured');
  t.is(tls?.kri, 'kri_extsvc_default_default__tls_');
  t.false(tls?.forbidden);
  t.true(snap.services.find((s) => s.name === 'denied')?.forbidden);
  // TLS not enabled: the Secret is never loaded, as in Kuma
  t.truthy(snap.services.find((s) => s.name === 'tls-disabled-missing-secret'));
  t.is(snap.services.find((s) => s.name === 'tls-disabled-missing-secret')?.tls, undefined);

  const rejected = Object.fromEntries(snap.rejected.map((r) => [r.name, r.violations]));
  t.deepEqual(rejected['missing-secret'], [
    { field: 'spec.tls.verification.caCert.secret', message: 'could not load caCert: could not load data: Resource not found: type="Secret" name="nope" mesh="default"' },
  ]);
  t.regex(rejected.loop?.[0]?.message ?? '', /served by meshext itself/);
  t.deepEqual(rejected.dp, [{ field: 'networking.outbound[1].backendRef', message: 'no MeshExternalService "ghost" in mesh "default"' }]);
  t.deepEqual(rejected.broken?.[0], { field: 'spec.match.port', message: 'in body should be greater than or equal to 1' });

  t.deepEqual(
    snap.outbounds.map((o) => [o.address, o.port, o.serviceId]),
    [
      ['127.0.0.1', 8080, 'default/tls'],
      ['127.0.0.2', 8082, 'default/tls'],
    ],
  );
  for (const s of snap.services) {
    t.is(snap.byVipPort.get(`${s.vip}:${s.port}`), s);
    for (const h of s.hostnames) t.is(snap.byHostname.get(h), s);
  }
});

test('VIPs of unchanged services do not move when others come and go', async (t) => {
  const ip = await ipam();
  const doc = (names: string[]): string => names.map((n) => `---\ntype: MeshExternalService\nname: ${n}\nspec:\n  match: {port: 80}\n`).join('');
  const s1 = await compileSnapshot({ load: parseResourceText(doc(['a', 'b', 'c']), 'x.yaml'), ipam: ip });
  const s2 = await compileSnapshot({ load: parseResourceText(doc(['c', 'new', 'a']), 'x.yaml'), ipam: ip });
  const v = (s: typeof s1, n: string): string | undefined => s.services.find((x) => x.name === n)?.vip;
  t.is(v(s2, 'a'), v(s1, 'a'));
  t.is(v(s2, 'c'), v(s1, 'c'));
  t.not(v(s2, 'new'), v(s1, 'b'));
  t.true(s2.generation > s1.generation);
});

test('exhaustion rejects only the services without a VIP', async (t) => {
  const doc = ['a', 'b', 'c'].map((n) => `---\ntype: MeshExternalService\nname: ${n}\nspec:\n  match: {port: 80}\n`).join('');
  const snap = await compileSnapshot({ load: parseResourceText(doc, 'x.yaml'), ipam: await ipam('10.0.0.0/30') });
  t.deepEqual(snap.services.map((s) => s.name), ['a', 'b']);
  t.regex(snap.rejected[0]?.violations[0]?.message ?? '', /could not allocate vip for MeshExternalService c: No addresses left/);
});

test('skipDefaultGenerators leaves services without hostnames unless a generator selects them', async (t) => {
  const load = parseResourceText('type: MeshExternalService\nname: a\nspec:\n  match: {port: 80}\n', 'x.yaml');
  const withDefault = await compileSnapshot({ load, ipam: await ipam() });
  t.deepEqual(withDefault.services[0]?.hostnames, ['a.extsvc.mesh.local']);
  const without = await compileSnapshot({ load, ipam: await ipam(), skipDefaultGenerators: true });
  t.deepEqual(without.services[0]?.hostnames, []);
  t.truthy(without.services[0]?.vip);
});
