// Files and directories: recursion, extensions, dot entries, ConfigMap mounts, duplicates, bad files.
import test from 'ava';
import { mkdir, mkdtemp, symlink, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadResources, parseResourceText } from '../../../src/resources/index.js';

const mes = (name: string, port = 80): string => `type: MeshExternalService\nname: ${name}\nspec:\n  match:\n    port: ${port}\n`;
const tmp = (): Promise<string> => mkdtemp(join(tmpdir(), 'meshext-load-'));

test('walks directories recursively in name order, reading yaml/yml/json only, skipping dot entries', async (t) => {
  const d = await tmp();
  await mkdir(join(d, 'sub/deeper'), { recursive: true });
  await mkdir(join(d, '.hidden'));
  await writeFile(join(d, 'b.yaml'), mes('b'));
  await writeFile(join(d, 'a.yml'), mes('a'));
  await writeFile(join(d, 'sub/deeper/c.json'), JSON.stringify({ type: 'MeshExternalService', name: 'c', spec: { match: { port: 1 } } }));
  await writeFile(join(d, 'notes.txt'), 'not yaml at all: [');
  await writeFile(join(d, '.dot.yaml'), mes('dot'));
  await writeFile(join(d, '.hidden/h.yaml'), mes('hidden'));
  const r = await loadResources([d]);
  t.deepEqual(r.errors, []);
  t.deepEqual(r.resources.map((x) => x.name), ['a', 'b', 'c']);
  t.is(r.resources[2]?.source.file, join(d, 'sub/deeper/c.json'));
});

test('a Kubernetes ConfigMap mount is read once through its top-level symlinks', async (t) => {
  const d = await tmp();
  const ts = join(d, '..2024_11_23_09_00_00.123456789');
  await mkdir(ts);
  await writeFile(join(ts, 'services.yaml'), mes('x') + '---\n' + mes('y'));
  await symlink('..2024_11_23_09_00_00.123456789', join(d, '..data'));
  await symlink('..data/services.yaml', join(d, 'services.yaml'));
  const r = await loadResources([d]);
  t.deepEqual(r.errors, []);
  t.deepEqual(r.resources.map((x) => x.name), ['x', 'y']);
  t.is(r.resources[1]?.source.index, 1);
  t.is(r.resources[1]?.source.line, 7);
});

test('symlink loops do not recurse forever', async (t) => {
  const d = await tmp();
  await mkdir(join(d, 'a'));
  await writeFile(join(d, 'a/s.yaml'), mes('s'));
  await symlink('..', join(d, 'a/loop'));
  const r = await loadResources([d]);
  t.deepEqual(r.resources.map((x) => x.name), ['s']);
});

test('duplicates across files: the later one is rejected naming both files', async (t) => {
  const d = await tmp();
  await writeFile(join(d, '1.yaml'), mes('dup', 80));
  await writeFile(join(d, '2.yaml'), mes('dup', 81));
  const r = await loadResources([d]);
  t.is(r.resources.length, 1);
  t.is(r.errors.length, 1);
  const msg = r.errors[0]?.violations[0]?.message ?? '';
  t.true(msg.includes(join(d, '1.yaml')) && msg.includes(join(d, '2.yaml')), msg);
  t.is(r.errors[0]?.file, join(d, '2.yaml'));
});

test('missing and unreadable paths are errors naming the path; others still load', async (t) => {
  const d = await tmp();
  await writeFile(join(d, 'ok.yaml'), mes('ok'));
  const locked = join(d, 'locked.yaml');
  await writeFile(locked, mes('locked'));
  await chmod(locked, 0);
  const r = await loadResources([join(d, 'nope.yaml'), d]);
  t.true(r.errors.some((e) => e.file === join(d, 'nope.yaml') && /ENOENT/.test(e.violations[0]?.message ?? '')));
  t.true(r.resources.some((x) => x.name === 'ok'));
  // root reads anything; only assert the locked file's outcome when permissions apply
  if (process.getuid?.() !== 0) t.true(r.errors.some((e) => e.file === locked));
});

test('an explicitly named file is read whatever its extension', async (t) => {
  const d = await tmp();
  await writeFile(join(d, 'config'), mes('plain'));
  const r = await loadResources([join(d, 'config')]);
  t.deepEqual(r.resources.map((x) => x.name), ['plain']);
});

test('YAML syntax errors carry the file and the line', (t) => {
  const r = parseResourceText(mes('a') + '---\ntype: MeshExternalService\nname: b\nspec:\n  match: {port: 80\n', 'f.yaml');
  t.is(r.resources.length, 1);
  t.is(r.errors[0]?.file, 'f.yaml');
  t.is(typeof r.errors[0]?.line, 'number');
  t.true((r.errors[0]?.line ?? 0) >= 6);
  t.regex(r.errors[0]?.violations[0]?.message ?? '', /^invalid YAML: /);
});

test('labels are computed as a Kuma zone CP does, keeping a user display name', (t) => {
  const r = parseResourceText(
    'type: MeshExternalService\nname: a\nmesh: m1\nlabels:\n  kuma.io/display-name: pretty\n  team: x\nspec:\n  match:\n    port: 80\n',
    'f.yaml',
    { zone: 'zone-1' },
  );
  t.deepEqual(r.resources[0]?.labels, {
    'kuma.io/display-name': 'pretty',
    team: 'x',
    'kuma.io/mesh': 'm1',
    'kuma.io/origin': 'zone',
    'kuma.io/zone': 'zone-1',
    'kuma.io/env': 'universal',
  });
});

test('defaults are applied to accepted resources', (t) => {
  const r = parseResourceText('type: MeshExternalService\nname: a\nspec:\n  match:\n    port: 80\n  tls:\n    verification:\n      subjectAltNames: [{value: x}]\n', 'f.yaml');
  const spec = r.resources[0]?.kind === 'MeshExternalService' ? r.resources[0].spec : undefined;
  t.deepEqual(spec?.match, { port: 80, type: 'HostnameGenerator', protocol: 'tcp' });
  t.is(spec?.tls?.enabled, false);
  t.is(spec?.tls?.verification?.mode, 'Secured');
  t.is(spec?.tls?.verification?.subjectAltNames?.[0]?.type, 'Exact');
});

test('a custom VIP CIDR moves the loop guard', (t) => {
  const doc = 'type: MeshExternalService\nname: a\nspec:\n  match: {port: 80}\n  endpoints: [{address: 10.9.0.1, port: 80}]\n';
  t.is(parseResourceText(doc, 'f.yaml').errors.length, 0);
  const r = parseResourceText(doc, 'f.yaml', { vipCidr: '10.9.0.0/16' });
  t.regex(r.errors[0]?.violations[0]?.message ?? '', /inside the VIP CIDR 10\.9\.0\.0\/16/);
});
