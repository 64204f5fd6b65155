// MeshTimeout merging (src/snapshot/meshtimeout.ts): Kuma's order of policies and of to[] entries, field-wise merge.
import test from 'ava';
import { parseResourceText, type MeshExternalServiceResource, type MeshTimeoutResource } from '../../../src/resources/index.js';
import { effectiveTimeouts } from '../../../src/snapshot/meshtimeout.js';
import { orderPolicies } from '../../../src/snapshot/policy.js';
import { parseGoDuration } from '../../../src/resources/duration.js';

const MES = `
type: MeshExternalService
name: web
mesh: default
labels: {tier: front}
spec: {match: {port: 80, protocol: http}, endpoints: [{address: 127.0.0.1, port: 80}]}
`;

function mes(): MeshExternalServiceResource {
  const r = parseResourceText(MES, 'mes.yaml');
  return r.resources[0] as MeshExternalServiceResource;
}

/** A MeshTimeout with one to[] entry (`to` is YAML flow text) and optional labels/mesh. */
function mt(name: string, to: string, extra: { labels?: string; mesh?: string } = {}): MeshTimeoutResource {
  const text = `type: MeshTimeout\nname: ${name}\nmesh: ${extra.mesh ?? 'default'}\n${extra.labels ? `labels: ${extra.labels}\n` : ''}spec:\n  to: [${to}]\n`;
  const r = parseResourceText(text, `${name}.yaml`);
  if (r.errors.length) throw new Error(JSON.stringify(r.errors));
  return r.resources[0] as MeshTimeoutResource;
}

const toMesh = (d: string): string => `{targetRef: {kind: Mesh}, default: ${d}}`;
const toWeb = (d: string): string => `{targetRef: {kind: MeshExternalService, name: web}, default: ${d}}`;

test('no policy: nothing set, so the agent defaults stay', (t) => {
  t.deepEqual(effectiveTimeouts(mes(), []), { policies: [] });
});

test('equal specificity: inverted name order, so the lexicographically smaller name wins', (t) => {
  const a = mt('a', toWeb('{http: {requestTimeout: 1s}}'));
  const b = mt('b', toWeb('{http: {requestTimeout: 2s}}'));
  t.deepEqual(orderPolicies([a, b]).map((p) => p.name), ['b', 'a']);
  t.is(effectiveTimeouts(mes(), [a, b]).requestMs, 1000);
  t.is(effectiveTimeouts(mes(), [b, a]).requestMs, 1000);
});

test('a zone policy outranks a global one whatever the names', (t) => {
  const global = mt('a-global', toWeb('{connectionTimeout: 1s}'), { labels: '{kuma.io/origin: global}' });
  const zone = mt('z-zone', toWeb('{connectionTimeout: 9s}'));
  t.is(effectiveTimeouts(mes(), [global, zone]).connectMs, 9000);
});

test('a MeshExternalService entry outranks a Mesh entry even from a higher-priority policy; fields merge one by one', (t) => {
  const specific = mt('z', toWeb('{http: {requestTimeout: 3s}}'));
  const broad = mt('a', toMesh('{connectionTimeout: 4s, http: {requestTimeout: 8s}}'));
  const r = effectiveTimeouts(mes(), [specific, broad]);
  t.is(r.requestMs, 3000);
  t.is(r.connectMs, 4000);
  t.deepEqual(r.policies, ['a', 'z']);
});

test('selection: by name, by labels (all must match), and only within the service\'s mesh', (t) => {
  t.is(effectiveTimeouts(mes(), [mt('n', `{targetRef: {kind: MeshExternalService, name: other}, default: {idleTimeout: 1s}}`)]).idleMs, undefined);
  t.is(effectiveTimeouts(mes(), [mt('l', `{targetRef: {kind: MeshExternalService, labels: {tier: front}}, default: {idleTimeout: 1s}}`)]).idleMs, 1000);
  t.is(effectiveTimeouts(mes(), [mt('l', `{targetRef: {kind: MeshExternalService, labels: {tier: front, x: y}}, default: {idleTimeout: 1s}}`)]).idleMs, undefined);
  t.is(effectiveTimeouts(mes(), [mt('m', toMesh('{idleTimeout: 1s}'), { mesh: 'other' })]).idleMs, undefined);
});

test('durations: Go syntax, sub-millisecond values round up so they never mean "none"', (t) => {
  t.deepEqual(parseGoDuration('1h30m'), { ms: 5_400_000 });
  t.deepEqual(parseGoDuration('1.5s'), { ms: 1500 });
  t.deepEqual(parseGoDuration('0'), { ms: 0 });
  t.deepEqual(parseGoDuration('-2ms'), { ms: -2 });
  t.deepEqual(parseGoDuration('10'), { error: 'time: missing unit in duration "10"' });
  t.deepEqual(parseGoDuration('1d'), { error: 'time: unknown unit "d" in duration "1d"' });
  t.deepEqual(parseGoDuration(''), { error: 'time: invalid duration ""' });
  t.is(effectiveTimeouts(mes(), [mt('u', toWeb('{http: {requestTimeout: 500us}}'))]).requestMs, 1);
});

test("Kuma's default MeshTimeouts: the sidecar one's to[] applies, its from[] and the gateway-only one do not", async (t) => {
  const { readFile } = await import('node:fs/promises');
  const r = parseResourceText(await readFile('test/golden/validation/kuma-default-policies.input.yaml', 'utf8'), 'defaults.yaml');
  t.deepEqual(r.errors, []);
  const eff = effectiveTimeouts(mes(), r.resources.filter((x): x is MeshTimeoutResource => x.kind === 'MeshTimeout'));
  // The gateway default would set streamIdleTimeout 5s (every slower response a 504); the sidecar one says 30m.
  t.deepEqual(eff, { policies: ['mesh-timeout-all-default'], connectMs: 5000, idleMs: 3_600_000, requestMs: 15_000, streamIdleMs: 1_800_000 });
});
