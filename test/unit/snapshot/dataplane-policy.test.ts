// Policies whose top-level targetRef is kind Dataplane (src/snapshot/policy.ts, compile.ts): which Dataplanes they
// select, Kuma's merge order with mesh-wide policies, and which outbounds get values (and a plan) of their own.
import test from 'ava';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseResourceText, type DataplaneResource, type MeshExternalServiceResource, type MeshTimeoutResource } from '../../../src/resources/index.js';
import { Ipam } from '../../../src/ipam/index.js';
import { compileSnapshot } from '../../../src/snapshot/compile.js';
import { effectiveTimeouts } from '../../../src/snapshot/meshtimeout.js';
import { effectiveAccessLog } from '../../../src/snapshot/accesslog.js';
import { mergeEntries, orderPolicies, selectsDataplane } from '../../../src/snapshot/policy.js';

function one<T>(text: string): T {
  const r = parseResourceText(text, 'test.yaml');
  if (r.errors.length) throw new Error(JSON.stringify(r.errors));
  return r.resources[0] as T;
}

const web = one<MeshExternalServiceResource>('type: MeshExternalService\nname: web\nmesh: default\nspec: {match: {port: 80, protocol: http}, endpoints: [{address: 127.0.0.1, port: 80}]}\n');

function dp(name: string, labels = '{}', mesh = 'default'): DataplaneResource {
  return one<DataplaneResource>(`type: Dataplane\nname: ${name}\nmesh: ${mesh}\nlabels: ${labels}\nnetworking:\n  address: 127.0.0.1\n  outbound: [{port: 18080, backendRef: {kind: MeshExternalService, name: web}}]\n`);
}

/** A MeshTimeout with a top-level targetRef (YAML flow text, or none) and one to[] entry. */
function mt(name: string, top: string | undefined, to: string, labels = '{}'): MeshTimeoutResource {
  return one<MeshTimeoutResource>(`type: MeshTimeout\nname: ${name}\nmesh: default\nlabels: ${labels}\nspec:\n${top ? `  targetRef: ${top}\n` : ''}  to: [${to}]\n`);
}

const toMesh = (d: string): string => `{targetRef: {kind: Mesh}, default: ${d}}`;
const toWeb = (d: string): string => `{targetRef: {kind: MeshExternalService, name: web}, default: ${d}}`;
const req = (v: string): string => `{http: {requestTimeout: ${v}}}`;

test('selection: by name or display name, by labels (all must match), every Dataplane when neither', (t) => {
  const a = dp('a-1', '{app: web, tier: front, kuma.io/display-name: a}');
  t.true(selectsDataplane({ kind: 'Dataplane', name: 'a-1' }, a));
  t.true(selectsDataplane({ kind: 'Dataplane', name: 'a' }, a), 'display name');
  t.false(selectsDataplane({ kind: 'Dataplane', name: 'b' }, a));
  t.false(selectsDataplane({ kind: 'Dataplane', name: 'a-1', namespace: 'apps' }, a), 'a Universal Dataplane has no namespace');
  t.true(selectsDataplane({ kind: 'Dataplane', labels: { app: 'web' } }, a));
  t.false(selectsDataplane({ kind: 'Dataplane', labels: { app: 'web', tier: 'back' } }, a), 'every label must match');
  t.true(selectsDataplane({ kind: 'Dataplane' }, a), 'neither: every Dataplane, as Kuma');
  t.false(selectsDataplane({ kind: 'Mesh' }, a));
});

test('without a Dataplane (the VIP path) Dataplane-targeted policies are left out; with one they apply only when they select it', (t) => {
  const mesh = mt('mesh', undefined, toWeb(req('20s')));
  const forA = mt('for-a', '{kind: Dataplane, name: a}', toWeb(req('1s')));
  t.is(effectiveTimeouts(web, [mesh, forA]).requestMs, 20_000);
  t.deepEqual(effectiveTimeouts(web, [mesh, forA]).policies, ['mesh']);
  t.is(effectiveTimeouts(web, [mesh, forA], dp('a')).requestMs, 1000);
  t.deepEqual(effectiveTimeouts(web, [mesh, forA], dp('a')).policies, ['mesh', 'for-a']);
  t.is(effectiveTimeouts(web, [mesh, forA], dp('b')).requestMs, 20_000);
  t.is(effectiveTimeouts(web, [mesh, forA], dp('a', '{}', 'other')).requestMs, 20_000, "another mesh's Dataplane named a is not selected");
});

test('order: top-level Dataplane ranks above Mesh before origin and name are looked at', (t) => {
  // By name alone "a-mesh" would win (inverted order puts z first); by origin global ranks before zone.
  const mesh = mt('a-mesh', '{kind: Mesh}', toWeb(req('20s')), '{kuma.io/origin: zone}');
  const forA = mt('z-dp', '{kind: Dataplane, name: a}', toWeb(req('1s')), '{kuma.io/origin: global}');
  t.deepEqual(orderPolicies([forA, mesh]).map((p) => p.name), ['a-mesh', 'z-dp']);
  t.is(effectiveTimeouts(web, [forA, mesh], dp('a')).requestMs, 1000);
  t.is(effectiveTimeouts(web, [mesh, forA], dp('a')).requestMs, 1000, 'input order does not matter');
});

test('order: among Dataplane-targeted policies, origin then inverted name order, as among mesh-wide ones', (t) => {
  const a = mt('a', '{kind: Dataplane, labels: {app: web}}', toWeb(req('1s')));
  const b = mt('b', '{kind: Dataplane, name: a}', toWeb(req('2s')));
  t.is(effectiveTimeouts(web, [a, b], dp('a', '{app: web}')).requestMs, 1000, '"a" ranks after "b", so it wins');
  const g = mt('a', '{kind: Dataplane, name: a}', toWeb(req('3s')), '{kuma.io/origin: global}');
  t.is(effectiveTimeouts(web, [g, b], dp('a')).requestMs, 2000, 'zone ranks after global');
});

test('order: to[] entries sort by their kind after the policies, so a mesh-wide MeshExternalService entry beats a Dataplane Mesh entry', (t) => {
  const mesh = mt('mesh', undefined, toWeb(req('20s')));
  const forA = mt('for-a', '{kind: Dataplane, name: a}', toMesh(`{connectionTimeout: 2s, http: {requestTimeout: 1s}}`));
  const e = mergeEntries(web, [mesh, forA], dp('a'));
  t.deepEqual(e.policies, ['for-a', 'mesh']);
  const eff = effectiveTimeouts(web, [mesh, forA], dp('a'));
  t.is(eff.requestMs, 20_000);
  t.is(eff.connectMs, 2000, 'what the later entry leaves unset stays');
});

test('MeshAccessLog: a Dataplane-targeted policy logs that Dataplane only', (t) => {
  const text = (name: string, top: string, path: string): string =>
    `type: MeshAccessLog\nname: ${name}\nmesh: default\nspec:\n  targetRef: ${top}\n  to: [{targetRef: {kind: Mesh}, default: {backends: [{type: File, file: {path: ${path}}}]}}]\n`;
  const log = one<Parameters<typeof effectiveAccessLog>[1][number]>(text('a-log', '{kind: Dataplane, name: a}', '/tmp/a.log'));
  t.is(effectiveAccessLog(web, [log]), undefined);
  t.deepEqual(effectiveAccessLog(web, [log], dp('b')), undefined);
  t.deepEqual(effectiveAccessLog(web, [log], dp('a'))?.backends.map((b) => b.file?.path), ['/tmp/a.log']);
});

const SERVICES = `
type: MeshExternalService
name: web
mesh: default
spec: {match: {port: 80, protocol: http}, endpoints: [{address: 127.0.0.1, port: 8080}]}
---
type: Dataplane
name: a
mesh: default
networking: {address: 127.0.0.1, outbound: [{port: 18080, backendRef: {kind: MeshExternalService, name: web}}, {port: 18090, backendRef: {kind: MeshExternalService, name: web}}]}
---
type: Dataplane
name: b
mesh: default
networking: {address: 127.0.0.1, outbound: [{port: 18081, backendRef: {kind: MeshExternalService, name: web}}]}
`;

async function compile(extra: string) {
  const load = parseResourceText(SERVICES + extra, 'config.yaml');
  if (load.errors.length) throw new Error(JSON.stringify(load.errors));
  const ipam = await Ipam.open({ stateDir: await mkdtemp(join(tmpdir(), 'meshext-dp-')), cidr: '242.0.0.0/8' });
  return compileSnapshot({ load, ipam, generation: 1 });
}

test('compile: each Dataplane has one listener key per service; only one whose values differ gets them', async (t) => {
  const none = await compile('');
  t.deepEqual(none.outbounds.map((o) => [o.port, o.dataplane, o.key]), [
    [18080, 'a', '@default/web/a'],
    [18090, 'a', '@default/web/a'],
    [18081, 'b', '@default/web/b'],
  ]);
  t.deepEqual(none.services[0]?.dataplanes, [{ dataplane: 'a', key: '@default/web/a' }, { dataplane: 'b', key: '@default/web/b' }]);

  const some = await compile('---\ntype: MeshTimeout\nname: for-a\nmesh: default\nspec:\n  targetRef: {kind: Dataplane, name: a}\n  to: [{targetRef: {kind: Mesh}, default: {http: {requestTimeout: 1s}}}]\n');
  t.deepEqual(some.outbounds.map((o) => o.key), ['@default/web/a', '@default/web/a', '@default/web/b'], 'the keys do not move: listeners stay open');
  const s = some.services[0];
  t.is(s?.timeouts, undefined, 'the VIP path has no MeshTimeout');
  t.deepEqual(s?.dataplanes?.map((b) => [b.dataplane, b.policies?.timeouts?.requestMs]), [['a', 1000], ['b', undefined]]);

  // A Dataplane nothing selects shares the service's plan even when a mesh-wide policy applies; one a policy selects
  // has a plan of its own even with equal values, so /config_dump names the policies that decide its outbounds.
  const same = await compile(
    '---\ntype: MeshTimeout\nname: mesh\nmesh: default\nspec:\n  to: [{targetRef: {kind: Mesh}, default: {http: {requestTimeout: 1s}}}]\n' +
      '---\ntype: MeshTimeout\nname: for-b\nmesh: default\nspec:\n  targetRef: {kind: Dataplane, name: b}\n  to: [{targetRef: {kind: Mesh}, default: {http: {requestTimeout: 1s}}}]\n',
  );
  t.is(same.services[0]?.timeouts?.requestMs, 1000);
  t.deepEqual(same.services[0]?.dataplanes?.map((b) => [b.dataplane, b.policies === undefined]), [['a', true], ['b', false]]);
  t.deepEqual(same.services[0]?.dataplanes?.[1]?.policies?.timeouts?.policies, ['mesh', 'for-b']);
});
