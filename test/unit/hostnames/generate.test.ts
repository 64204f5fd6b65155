// Generation loop: selectors, ordering, collisions, conditions, default generator.
import test from 'ava';
import { parseResourceText, type HostnameGeneratorResource, type MeshExternalServiceResource } from '../../../src/resources/index.js';
import { generateHostnames, defaultGenerators } from '../../../src/hostnames/index.js';

function load(text: string): { services: MeshExternalServiceResource[]; generators: HostnameGeneratorResource[] } {
  const r = parseResourceText(text, 'g.yaml');
  if (r.errors.length) throw new Error(JSON.stringify(r.errors));
  return {
    services: r.resources.filter((x): x is MeshExternalServiceResource => x.kind === 'MeshExternalService'),
    generators: r.resources.filter((x): x is HostnameGeneratorResource => x.kind === 'HostnameGenerator'),
  };
}
const mes = (name: string, mesh = 'default', labels = ''): string =>
  `---\ntype: MeshExternalService\nname: ${name}\nmesh: ${mesh}\n${labels ? `labels:\n${labels}\n` : ''}spec:\n  match: {port: 80}\n`;
const hg = (name: string, template: string, matchLabels = '{}'): string =>
  `---\ntype: HostnameGenerator\nname: ${name}\nspec:\n  selector:\n    meshExternalService:\n      matchLabels: ${matchLabels}\n  template: '${template}'\n`;

test('matching generators produce hostnames in generator order with Generated conditions', (t) => {
  const { services, generators } = load(mes('a', 'default', '  team: x') + mes('b') + hg('g1', '{{ .Name }}.one') + hg('g2', '{{ .Name }}.{{ label "team" }}', '{team: x}'));
  const out = generateHostnames({ services, generators, zone: 'default' });
  t.deepEqual(out.get('default/a')?.hostnames, ['a.one', 'a.x']);
  t.deepEqual(out.get('default/b')?.hostnames, ['b.one']);
  t.deepEqual(out.get('default/a')?.generatorStatus, [
    { generator: 'g1', conditions: [{ type: 'Generated', status: 'True', reason: 'Generated', message: '' }] },
    { generator: 'g2', conditions: [{ type: 'Generated', status: 'True', reason: 'Generated', message: '' }] },
  ]);
  // g2 does not select b: no trace in its status
  t.deepEqual(out.get('default/b')?.generatorStatus.map((g) => g.generator), ['g1']);
});

test('collision: the first declared service keeps the name, the other gets Collision naming the owner', (t) => {
  const { services, generators } = load(mes('first', 'default', '  kuma.io/display-name: same') + mes('second', 'default', '  kuma.io/display-name: same') + hg('g', '{{ .DisplayName }}.mesh'));
  const out = generateHostnames({ services, generators, zone: 'default' });
  t.deepEqual(out.get('default/first')?.hostnames, ['same.mesh']);
  t.deepEqual(out.get('default/second')?.hostnames, []);
  t.deepEqual(out.get('default/second')?.generatorStatus[0]?.conditions, [
    { type: 'Generated', status: 'False', reason: 'Collision', message: 'Hostname collision with MeshExternalService: first' },
  ]);
});

test('collision across meshes is reported with the mesh (one node DNS namespace)', (t) => {
  const { services, generators } = load(mes('a', 'm1') + mes('a', 'm2') + hg('g', '{{ .Name }}.mesh'));
  const out = generateHostnames({ services, generators, zone: 'default' });
  t.deepEqual(out.get('m1/a')?.hostnames, ['a.mesh']);
  t.is(out.get('m2/a')?.generatorStatus[0]?.conditions[0]?.message, 'Hostname collision with MeshExternalService: a in mesh m1');
});

test('template errors become TemplateError conditions with Kuma messages', (t) => {
  const { services, generators } = load(mes('a') + mes('b-upper', 'default', '  kuma.io/display-name: UPPER') + hg('g', '{{ .DisplayName }}.{{ label "team" }}'));
  const out = generateHostnames({ services, generators, zone: 'default' });
  const c = out.get('default/a')?.generatorStatus[0]?.conditions[0];
  t.is(c?.reason, 'TemplateError');
  t.is(c?.status, 'False');
  t.regex(c?.message ?? '', /^pre evaluation of template with parameters failed with error="template: :1:\d+: executing "" at <label "team">: error calling label: label team not found"$/);
  const g2 = generateHostnames({ services, generators: load(hg('g', '{{ .DisplayName }}.mesh')).generators, zone: 'default' });
  t.regex(g2.get('default/b-upper')?.generatorStatus[0]?.conditions[0]?.message ?? '', /^generated hostname "UPPER\.mesh" is not a valid DNS name: a lowercase RFC 1123/);
});

test('zone-origin generators come first, then declaration order', (t) => {
  const { services, generators } = load(mes('a') + hg('z-global', '{{ .Name }}.global') + hg('a-zone', '{{ .Name }}.zone'));
  const global = { ...(generators[0] as HostnameGeneratorResource), labels: { 'kuma.io/origin': 'global' } };
  const out = generateHostnames({ services, generators: [global, generators[1] as HostnameGeneratorResource], zone: 'default' });
  t.deepEqual(out.get('default/a')?.hostnames, ['a.zone', 'a.global']);
});

test('default generator mirrors Kuma: {{ .DisplayName }}.extsvc.mesh.local selecting kuma.io/origin: zone', (t) => {
  const { services } = load(mes('a') + mes('g', 'default', '  kuma.io/origin: global'));
  const out = generateHostnames({ services, generators: defaultGenerators('default'), zone: 'default' });
  t.deepEqual(out.get('default/a')?.hostnames, ['a.extsvc.mesh.local']);
  t.deepEqual(out.get('default/g')?.hostnames, []);
  t.is(defaultGenerators('default')[0]?.name, 'local-mesh-external-service');
});

test('template data: Namespace and Zone come from labels', (t) => {
  const r = parseResourceText(
    'apiVersion: kuma.io/v1alpha1\nkind: MeshExternalService\nmetadata:\n  name: k\n  namespace: kuma-system\nspec:\n  match: {port: 80}\n',
    'k.yaml',
    { zone: 'east' },
  );
  const services = r.resources as MeshExternalServiceResource[];
  const out = generateHostnames({ services, generators: load(hg('g', '{{ .Name }}.{{ .Namespace }}.{{ .Zone }}.{{ .Mesh }}')).generators, zone: 'east' });
  t.deepEqual(out.get('default/k')?.hostnames, ['k.kuma-system.east.default']);
});
