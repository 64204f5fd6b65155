// MeshTrafficPermission (src/snapshot/meshtrafficpermission.ts): selection of services, Kuma's evaluation order,
// the mesh default, and what the plan and outbound listeners make of a governed service.
import test from 'ava';
import { parseResourceText, type MeshExternalServiceResource, type MeshTrafficPermissionResource } from '../../../src/resources/index.js';
import { effectivePermissions, evaluatePermission, unlistedVerdict } from '../../../src/snapshot/meshtrafficpermission.js';
import { compileSnapshot } from '../../../src/snapshot/compile.js';
import { compilePlan, DEFAULT_TIMEOUTS, type PlanContext } from '../../../src/snapshot/plan.js';

const CTX: PlanContext = { vipCidr: '242.0.0.0/8', systemCaPath: null, readCa: () => Buffer.alloc(0), answer: () => undefined, timeouts: DEFAULT_TIMEOUTS };

const TD = 'spiffe://default.zone-1.mesh.local';

function mes(name = 'web', labels = '{tier: front}'): MeshExternalServiceResource {
  const r = parseResourceText(`type: MeshExternalService\nname: ${name}\nmesh: default\nlabels: ${labels}\nspec: {match: {port: 80, protocol: http}, endpoints: [{address: 127.0.0.1, port: 80}]}\n`, 'mes.yaml');
  return r.resources[0] as MeshExternalServiceResource;
}

/** An MTP; `target` and `rules` are YAML flow text. */
function mtp(name: string, target: string | undefined, rules: string, mesh = 'default'): MeshTrafficPermissionResource {
  const text = `type: MeshTrafficPermission\nname: ${name}\nmesh: ${mesh}\nspec:\n${target ? `  targetRef: ${target}\n` : ''}  rules: ${rules}\n`;
  const r = parseResourceText(text, `${name}.yaml`);
  if (r.errors.length) throw new Error(JSON.stringify(r.errors));
  return r.resources[0] as MeshTrafficPermissionResource;
}

const m = (type: string, value: string): string => `{spiffeID: {type: ${type}, value: "${value}"}}`;

test('selection: kind Mesh (or no targetRef) selects every service of its mesh; name and labels select some; other meshes none', (t) => {
  const all = mtp('all', undefined, `[{default: {allow: [${m('Prefix', TD)}]}}]`);
  const byName = mtp('by-name', '{kind: MeshExternalService, name: web}', `[{default: {deny: [${m('Exact', `${TD}/ns/a/sa/b`)}]}}]`);
  const byLabel = mtp('by-label', '{kind: MeshExternalService, labels: {tier: back}}', `[{default: {deny: [${m('Exact', `${TD}/ns/x/sa/y`)}]}}]`);
  const other = mtp('other', undefined, `[{default: {allow: [${m('Prefix', TD)}]}}]`, 'other');
  t.deepEqual(effectivePermissions(mes(), [all, byName, byLabel, other], false)?.policies, ['by-name', 'all']);
  t.deepEqual(effectivePermissions(mes('db', '{tier: back}'), [byName, byLabel], false)?.policies, ['by-label']);
  t.is(effectivePermissions(mes('cache', '{}'), [byName, byLabel, other], true), undefined);
});

test("evaluation: a deny match denies even under a broader allow; shadow lets through; allow allows; else the mesh default", (t) => {
  const p = mtp(
    'p',
    undefined,
    `[{default: {deny: [${m('Prefix', `${TD}/ns/legacy`)}], allow: [${m('Prefix', `${TD}/ns`)}], allowWithShadowDeny: [${m('Exact', `${TD}/ns/shop/sa/cart`)}]}}]`,
  );
  const forbid = effectivePermissions(mes(), [p], true)!;
  t.like(evaluatePermission(forbid, `${TD}/ns/legacy/sa/app`), { verdict: 'denyRule', list: 'deny', matcher: { policy: 'p', type: 'Prefix', value: `${TD}/ns/legacy` } });
  t.is(evaluatePermission(forbid, `${TD}/ns/legacy-two/sa/app`).verdict, 'denyRule', 'Prefix is a string prefix, as Envoy matches it');
  t.like(evaluatePermission(forbid, `${TD}/ns/shop/sa/cart`), { verdict: 'shadowDeny', list: 'allowWithShadowDeny' });
  t.like(evaluatePermission(forbid, `${TD}/ns/shop/sa/checkout`), { verdict: 'allow', list: 'allow' });
  t.deepEqual(evaluatePermission(forbid, 'spiffe://other.zone-1.mesh.local/ns/shop/sa/x'), { verdict: 'denyDefault' });
  t.deepEqual(evaluatePermission(forbid, null), { verdict: 'denyNoIdentity' }, 'no identity: fail closed under a forbidding mesh');
  t.is(unlistedVerdict(forbid), 'denyDefault');
  const open = effectivePermissions(mes(), [p], false)!;
  t.deepEqual(evaluatePermission(open, 'spiffe://other.zone-1.mesh.local/ns/shop/sa/x'), { verdict: 'allow' });
  t.deepEqual(evaluatePermission(open, null), { verdict: 'allow' });
  t.is(evaluatePermission(open, `${TD}/ns/legacy/sa/app`).verdict, 'denyRule', 'a deny applies whatever the mesh default');
});

test('rules of several policies are unioned: a deny from any of them wins over an allow from another', (t) => {
  const allow = mtp('zzz-allow', undefined, `[{default: {allow: [${m('Exact', `${TD}/ns/a/sa/b`)}]}}]`);
  const deny = mtp('aaa-deny', '{kind: MeshExternalService, name: web}', `[{default: {deny: [${m('Exact', `${TD}/ns/a/sa/b`)}]}}]`);
  const p = effectivePermissions(mes(), [allow, deny], true)!;
  t.like(evaluatePermission(p, `${TD}/ns/a/sa/b`), { verdict: 'denyRule', matcher: { policy: 'aaa-deny' } });
});

const DOCS = `
type: Mesh
name: default
routing: {defaultForbidMeshExternalServiceAccess: true}
---
type: MeshExternalService
name: web
mesh: default
spec: {match: {port: 80, protocol: http}, endpoints: [{address: 127.0.0.1, port: 8080}]}
---
type: MeshExternalService
name: api
mesh: default
spec: {match: {port: 80, protocol: http}, endpoints: [{address: 127.0.0.1, port: 8081}]}
---
type: Dataplane
name: dp
mesh: default
networking:
  address: 127.0.0.1
  outbound:
  - port: 18001
    backendRef: {kind: MeshExternalService, name: web}
  - port: 18002
    backendRef: {kind: MeshExternalService, name: api}
---
type: MeshTrafficPermission
name: web-clients
mesh: default
spec:
  targetRef: {kind: MeshExternalService, name: web}
  rules: [{default: {allow: [{spiffeID: {type: Exact, value: "${TD}/ns/a/sa/b"}}]}}]
`;

test("a governed service in a forbidding mesh: the plan no longer answers the mesh's 403 (the kernel refused the denied at connect()); an outbound listener to it is refused", async (t) => {
  const { Ipam } = await import('../../../src/ipam/index.js');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'mtp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const ipam = await Ipam.open({ stateDir: dir, cidr: '242.0.0.0/8' });
  const snap = await compileSnapshot({ load: parseResourceText(DOCS, 'docs.yaml', { zone: 'zone-1' }), ipam, zone: 'zone-1' });
  const web = snap.services.find((s) => s.name === 'web')!;
  const api = snap.services.find((s) => s.name === 'api')!;
  t.deepEqual(web.permissions?.policies, ['web-clients']);
  t.is(api.permissions, undefined);
  t.is(compilePlan(web, CTX).deny, undefined);
  t.like(compilePlan(api, CTX).deny, { status: 403 });
  // Only once the kernel holds its verdicts does the 403 go (maps full, a failed write, not written yet: it stays).
  t.like(compilePlan(web, { ...CTX, accessEnforced: () => false }).deny, { status: 403 });
  t.is(compilePlan(web, { ...CTX, accessEnforced: (id) => id === web.id }).deny, undefined);
  t.deepEqual(snap.outbounds.map((o) => o.port), [18002]);
  const v = snap.rejected.find((r) => r.kind === 'Dataplane')?.violations[0];
  t.is(v?.field, 'networking.outbound[0].backendRef');
  t.regex(v?.message ?? '', /is under MeshTrafficPermission web-clients: access is decided at connect\(\)/);
});
