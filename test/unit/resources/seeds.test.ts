// Every example of both seed documents loads, validates and compiles.
import test from 'ava';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadResources } from '../../../src/resources/index.js';
import { Ipam } from '../../../src/ipam/index.js';
import { compileSnapshot } from '../../../src/snapshot/compile.js';

const SEEDS = 'test/fixtures/seeds';
const SEED_SETS = [`${SEEDS}/kong-mesh/universal`, `${SEEDS}/kong-mesh/kubernetes`, `${SEEDS}/kuma-website`];

for (const dir of SEED_SETS) {
  test(`seed examples load without errors: ${dir}`, async (t) => {
    const r = await loadResources([dir, `${SEEDS}/secrets`]);
    t.deepEqual(r.errors, []);
    t.true(r.resources.filter((x) => x.kind === 'MeshExternalService').length >= 7);
  });
}

test('Kong Mesh Universal seed compiles: hostnames, VIPs, outbound, unix endpoint, secrets', async (t) => {
  const load = await loadResources([`${SEEDS}/kong-mesh/universal`, `${SEEDS}/secrets`]);
  const ipam = await Ipam.open({ stateDir: await mkdtemp(join(tmpdir(), 'meshext-seed-')), cidr: '242.0.0.0/8' });
  const snap = await compileSnapshot({ load, ipam });
  t.deepEqual(snap.rejected, []);
  const http = snap.services.find((s) => s.name === 'mes-http');
  t.truthy(http);
  t.deepEqual(http?.hostnames, ['mes-http.extsvc.mesh.local', 'mes-http.svc.meshext.local']);
  t.is(snap.byHostname.get('mes-http.svc.meshext.local'), http);
  t.is(http?.protocol, 'http');
  t.deepEqual(http?.endpoints, [{ kind: 'dns', address: 'httpbin.org', port: 80 }]);
  t.is(snap.byVipPort.get(`${http?.vip}:80`), http);
  // The seed's Mesh forbids MES access.
  t.true(http?.forbidden);
  t.deepEqual(snap.outbounds.map((o) => [o.address, o.port, o.serviceId]), [['127.0.0.1', 8080, 'default/mes-http']]);

  const snippets = snap.services.find((s) => s.name === 'snippets');
  t.deepEqual(snippets?.endpoints[2], { kind: 'unix', path: '/tmp/example.sock' });
  t.deepEqual(snippets?.endpoints[0], { kind: 'ip', address: '1.1.1.1', port: 12345, family: 4 });
  // The snippet never sets `enabled: true`: its tls block is validated but no TLS is originated (Kuma).
  t.is(snippets?.tls, undefined);
  const mtls = snap.services.find((s) => s.name === 'mes-tcp-mtls');
  t.regex(mtls?.tls?.cert?.toString() ?? '', /^-----BEGIN CERTIFICATE-----/);
  t.regex(mtls?.tls?.key?.toString() ?? '', /^-----BEGIN PRIVATE KEY-----/);
  t.is(mtls?.tls?.serverName, 'tcpbin.com');
  t.is(mtls?.tls?.minVersion, 'TLSAuto');
});

test('Kubernetes seed: namespace label, .Name is the object name, kri carries the namespace', async (t) => {
  const load = await loadResources([`${SEEDS}/kong-mesh/kubernetes`]);
  const ipam = await Ipam.open({ stateDir: await mkdtemp(join(tmpdir(), 'meshext-seed-')), cidr: '242.0.0.0/8' });
  const snap = await compileSnapshot({ load, ipam });
  const tcp = snap.services.find((s) => s.name === 'mes-tcp');
  t.is(tcp?.labels['k8s.kuma.io/namespace'], 'kong-mesh-system');
  t.is(tcp?.labels['kuma.io/env'], 'kubernetes');
  t.is(tcp?.kri, 'kri_extsvc_default_default_kong-mesh-system_mes-tcp_');
  t.true(tcp?.hostnames.includes('mes-tcp.svc.meshext.local'));
});

test('kuma-website seed: {{ .Name }}.mesh generator with empty selector', async (t) => {
  const load = await loadResources([`${SEEDS}/kuma-website`, `${SEEDS}/secrets`]);
  const ipam = await Ipam.open({ stateDir: await mkdtemp(join(tmpdir(), 'meshext-seed-')), cidr: '242.0.0.0/8' });
  const snap = await compileSnapshot({ load, ipam, skipDefaultGenerators: true });
  t.deepEqual(snap.rejected, []);
  t.is(snap.byHostname.get('mes-tcp.mesh')?.name, 'mes-tcp');
  t.is(snap.services.find((s) => s.name === 'mes-grpcs')?.tls?.serverName, 'grpcbin.test.k6.io');
  t.is(snap.services.find((s) => s.name === 'mes-tcp')?.labels['kuma.io/origin'], 'zone');
});
