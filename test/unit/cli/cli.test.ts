// The CLI as a user runs it: node bin/meshext.js validate|get on fixture directories.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function run(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['bin/meshext.js', ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const stateDir = (): Promise<string> => mkdtemp(join(tmpdir(), 'meshext-cli-'));

test('validate: exit 0 on valid configuration', (t) => {
  const r = run(['validate', 'test/fixtures/cli/valid']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '');
  t.regex(r.stderr, /3 resources valid/);
});

test('validate: exit 1 with one line per violation', (t) => {
  const r = run(['validate', 'test/fixtures/cli/mixed']);
  t.is(r.code, 1);
  const lines = r.stdout.trim().split('\n');
  t.true(lines.includes('test/fixtures/cli/mixed/services.yaml: MeshExternalService/bad: spec.match.protocol: in body should be one of [tcp grpc http http2]'), r.stdout);
  t.true(
    lines.includes(
      'test/fixtures/cli/mixed/services.yaml: MeshExternalService/needs-secret: spec.tls.verification.caCert.secret: could not load caCert: could not load data: Resource not found: type="Secret" name="missing-ca" mesh="default"',
    ),
    r.stdout,
  );
  t.true(lines.some((l) => /^test\/fixtures\/cli\/mixed\/broken\.yaml:[34]: invalid YAML: /.test(l)), r.stdout);
  t.false(r.stdout.includes('good'));
});

test('validate -o json', (t) => {
  const r = run(['validate', '-o', 'json', 'test/fixtures/cli/mixed']);
  t.is(r.code, 1);
  const out = JSON.parse(r.stdout) as { valid: boolean; errors: Array<{ name: string }> };
  t.false(out.valid);
  t.deepEqual(out.errors.map((e) => e.name).sort(), ['', 'bad', 'needs-secret']);
});

test('validate: warnings only → exit 0, each warning on stderr naming file:line, resource and field', (t) => {
  const r = run(['validate', 'test/fixtures/cli/warnings']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '', 'stdout carries errors only');
  const f = 'test/fixtures/cli/warnings/services.yaml';
  const lines = r.stderr.trim().split('\n');
  t.true(lines.includes(`${f}:2: warning: MeshExternalService/typo: spec.match.protcol: unknown field "spec.match.protcol"`), r.stderr);
  t.true(lines.some((l) => l.startsWith(`${f}:2: warning: MeshExternalService/typo: spec.endpoints[0].address: "999.1.1.1" looks like an IPv4 address`)), r.stderr);
  t.true(lines.some((l) => l.startsWith(`${f}:13: warning: MeshExternalService/9lives: name: Invalid MeshExternalService resource name: '9lives'. It does not conform to the DNS format (RFC 1035).`)), r.stderr);
  t.is(lines.at(-1), '2 resources valid, 3 warnings');
});

test('validate: warnings and errors → exit 1; -o json keeps them apart', (t) => {
  const r = run(['validate', 'test/fixtures/cli/warnings', 'test/fixtures/cli/mixed']);
  t.is(r.code, 1);
  t.regex(r.stderr, /warning: MeshExternalService\/typo: spec\.match\.protcol/);
  t.regex(r.stdout, /MeshExternalService\/bad: spec\.match\.protocol/);
  t.notRegex(r.stdout, /warning/);
  const j = run(['validate', '-o', 'json', 'test/fixtures/cli/warnings']);
  t.is(j.code, 0);
  const out = JSON.parse(j.stdout) as { valid: boolean; errors: unknown[]; warnings: Array<{ index: number; name: string; field: string }> };
  t.true(out.valid);
  t.deepEqual(out.errors, []);
  t.deepEqual(out.warnings.map((w) => [w.index, w.name, w.field]), [
    [0, 'typo', 'spec.match.protcol'],
    [0, 'typo', 'spec.endpoints[0].address'],
    [1, '9lives', 'name'],
  ]);
});

test('validate: the seed examples pass', (t) => {
  const r = run(['validate', 'test/fixtures/seeds/kong-mesh/universal', 'test/fixtures/seeds/secrets']);
  t.is(r.code, 0, r.stdout + r.stderr);
  t.is(run(['validate', 'test/fixtures/seeds/kong-mesh/kubernetes']).code, 0);
  t.is(r.code, 0, r.stdout + r.stderr);
});

test('get mes shows who may connect: the MeshTrafficPermission matchers, else the mesh default', async (t) => {
  const dir = await stateDir();
  const r = run(['get', 'mes', '-c', 'test/fixtures/cli/permissions', '--state-dir', dir]);
  t.is(r.code, 0, r.stderr);
  const rows = r.stdout.split('\n');
  t.regex(rows[0] ?? '', /WHO MAY CONNECT$/);
  t.regex(rows.find((l) => l.startsWith('payments')) ?? '', /deny spiffe:\/\/default\.default\.mesh\.local\/ns\/legacy\*; allow spiffe:\/\/default\.default\.mesh\.local\/ns\/shop\/sa\/checkout; others deny$/);
  t.regex(rows.find((l) => l.startsWith('docs')) ?? '', /nobody \(mesh forbids\)$/);
  const json = JSON.parse(run(['get', 'mes', '-c', 'test/fixtures/cli/permissions', '--state-dir', dir, '-o', 'json']).stdout) as Array<{ name: string; access: unknown }>;
  t.deepEqual(json.find((s) => s.name === 'payments')?.access, {
    policies: ['payments-clients'],
    deny: [{ policy: 'payments-clients', type: 'Prefix', value: 'spiffe://default.default.mesh.local/ns/legacy' }],
    allowWithShadowDeny: [],
    allow: [{ policy: 'payments-clients', type: 'Exact', value: 'spiffe://default.default.mesh.local/ns/shop/sa/checkout' }],
    otherwise: 'deny',
  });
});

test('get mes -o json: VIPs, hostnames, endpoints (unix without port), conditions; stable across runs', async (t) => {
  const dir = await stateDir();
  const args = ['get', 'meshexternalservices', '--config', 'test/fixtures/cli/valid', '--state-dir', dir, '-o', 'json'];
  const r = run(args);
  t.is(r.code, 0, r.stderr);
  const items = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
  t.deepEqual(items[0], {
    name: 'tcp-echo',
    mesh: 'default',
    kri: 'kri_extsvc_default_default__tcp-echo_',
    vip: '242.0.0.1',
    hostnames: ['tcp-echo.extsvc.mesh.local', 'tcp-echo.svc.meshext.local'],
    port: 4242,
    protocol: 'tcp',
    endpoints: [{ address: '127.0.0.1', port: 14242 }],
    tls: { enabled: false },
    forbidden: false,
    access: { otherwise: 'allow' },
    conditions: [
      { generator: 'local-mesh-external-service', type: 'Generated', status: 'True', reason: 'Generated', message: '' },
      { generator: 'local', type: 'Generated', status: 'True', reason: 'Generated', message: '' },
    ],
  });
  t.deepEqual(items[1]?.endpoints, [{ address: 'unix:///run/app.sock' }]);
  // --mesh filter, alias and persisted VIPs
  const again = JSON.parse(run(['get', 'extsvc', '-c', 'test/fixtures/cli/valid', '--mesh', 'other', '-o', 'json'], { MESHEXT_STATE_DIR: dir }).stdout) as Array<{ name: string; vip: string }>;
  t.deepEqual(again.map((s) => [s.name, s.vip]), [['sock', '242.0.0.2']]);
});

test('get mes table; invalid resources and warnings go to stderr while valid ones print', async (t) => {
  const r = run(['get', 'mes', '--config', 'test/fixtures/cli/mixed', '--state-dir', await stateDir(), '--vip-cidr', '10.20.0.0/16']);
  t.is(r.code, 0);
  const [header, row] = r.stdout.trim().split('\n');
  t.regex(header ?? '', /^NAME\s+MESH\s+VIP\s+PORT\s+PROTOCOL\s+HOSTNAMES\s+ENDPOINTS\s+TLS\s+WHO MAY CONNECT$/);
  t.regex(row ?? '', /^good\s+default\s+10\.20\.0\.1\s+80\s+tcp\s+good\.extsvc\.mesh\.local\s+example\.com:80\s+-\s+everyone$/);
  t.regex(r.stderr, /MeshExternalService\/bad: spec\.match\.protocol/);
  t.regex(r.stderr, /MeshExternalService\/needs-secret/);
  const w = run(['get', 'mes', '--config', 'test/fixtures/cli/warnings', '--state-dir', await stateDir()]);
  t.is(w.code, 0, w.stderr);
  t.regex(w.stdout, /^typo\s/m);
  t.regex(w.stderr, /services\.yaml:2: warning: MeshExternalService\/typo: spec\.match\.protcol: unknown field/);
});

test('get hostnamegenerators and meshes', (t) => {
  const hg = run(['get', 'hg', '-c', 'test/fixtures/cli/valid', '-o', 'yaml']);
  t.is(hg.code, 0, hg.stderr);
  t.regex(hg.stdout, /name: local-mesh-external-service/);
  t.regex(hg.stdout, /template: "\{\{ \.DisplayName \}\}\.svc\.meshext\.local"/);
  const meshes = run(['get', 'meshes', '-c', 'test/fixtures/seeds/kong-mesh/universal', 'test/fixtures/seeds/secrets']);
  t.regex(meshes.stdout, /default\s+yes\s+true/);
});

test('bad arguments fail with a clear message', async (t) => {
  const r = run(['get', 'widgets', '-c', 'test/fixtures/cli/valid']);
  t.is(r.code, 1);
  t.regex(r.stderr, /unknown resource type "widgets"/);
  const c = run(['get', 'mes', '-c', 'test/fixtures/cli/valid', '--state-dir', await stateDir(), '--vip-cidr', 'nope']);
  t.is(c.code, 1);
  t.regex(c.stderr, /invalid VIP CIDR "nope".*MESHEXT_E_BAD_CIDR/);
});

test('get: a hand-edited IPAM state entry is named on stderr and the listing still works', async (t) => {
  const dir = await stateDir();
  await writeFile(join(dir, 'ipam.json'), JSON.stringify({ version: 1, cidr: '242.0.0.0/8', allocations: { 'default/tcp-echo': { vip: '127.0.0.1', allocatedAt: '2026-01-01T00:00:00Z' } }, tombstones: [] }));
  const r = run(['get', 'mes', '-c', 'test/fixtures/cli/valid', '--state-dir', dir, '-o', 'json']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /ERROR .*ipam\.json: allocations\["default\/tcp-echo"\]\.vip "127\.0\.0\.1" is a loopback address/);
  const items = JSON.parse(r.stdout) as Array<{ name: string; vip: string }>;
  t.is(items.find((i) => i.name === 'tcp-echo')?.vip, '242.0.0.1');
});
