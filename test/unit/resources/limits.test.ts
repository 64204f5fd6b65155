// Bounded input: every limit rejects its file by name while the rest loads; special files never block.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadResources, parseResourceText } from '../../../src/resources/index.js';
import { DEFAULT_LOAD_LIMITS } from '../../../src/resources/limits.js';
import { schemaValidate } from '../../../src/resources/schema.js';
import { keepLastGood } from '../../../src/agent/agent.js';

const mes = (name: string, port = 80): string => `type: MeshExternalService\nname: ${name}\nspec:\n  match:\n    port: ${port}\n`;
const tmp = (): Promise<string> => mkdtemp(join(tmpdir(), 'meshext-limits-'));
const messages = (r: { errors: Array<{ violations: Array<{ message: string }> }> }): string => r.errors.map((e) => e.violations[0]?.message).join('\n');

/**
 * How the cost of `run(n)` grows from n to 4n (best of three each): about 4 when linear, 16 when quadratic. A
 * ratio measured in the same run holds on a loaded machine, where a wall-clock bound does not.
 */
async function growth(run: (n: number) => unknown, n: number): Promise<number> {
  const best = async (m: number): Promise<number> => {
    let min = Infinity;
    for (let i = 0; i < 3; i++) {
      const started = process.hrtime.bigint();
      await run(m);
      min = Math.min(min, Number(process.hrtime.bigint() - started));
    }
    return min;
  };
  return (await best(4 * n)) / (await best(n));
}

test('130,000 tiny documents: that file is rejected naming the limit, the next file still loads', async (t) => {
  const d = await tmp();
  await writeFile(join(d, 'a-flood.yaml'), '--- 1\n'.repeat(130_000));
  await writeFile(join(d, 'b-ok.yaml'), mes('ok'));
  const r = await loadResources([d]);
  t.deepEqual(r.resources.map((x) => x.name), ['ok']);
  t.is(r.errors.length, 1);
  t.is(r.errors[0]?.file, join(d, 'a-flood.yaml'));
  t.regex(messages(r), /more than 10000 YAML documents .*limit per file/);
  // Past the limit the file is not parsed on: four times the documents cost about four times the bytes read.
  const ratio = await growth((n) => parseResourceText('--- 1\n'.repeat(n), 'flood.yaml'), 130_000);
  t.true(ratio < 8, `4x the documents cost ${ratio.toFixed(1)}x`);
});

test('errors of many documents are merged without spreading them into one call', (t) => {
  // 130k errors in one file once overflowed the stack in push(...errors); with the limit raised they must all arrive.
  const r = parseResourceText('--- 1\n'.repeat(130_000), 'f.yaml', { limits: { maxDocuments: 200_000 } });
  t.is(r.errors.length, 130_000);
});

test('a file over the size limit is rejected before it is parsed', async (t) => {
  const d = await tmp();
  await writeFile(join(d, 'big.yaml'), mes('big') + '#'.repeat(DEFAULT_LOAD_LIMITS.maxFileBytes));
  await writeFile(join(d, 'ok.yaml'), mes('ok'));
  const r = await loadResources([d]);
  t.deepEqual(r.resources.map((x) => x.name), ['ok']);
  t.is(r.errors[0]?.file, join(d, 'big.yaml'));
  t.regex(messages(r), /over the limit of 4194304 bytes \(4 MiB\) per file/);
  const small = parseResourceText(mes('x'), 'f.yaml', { limits: { maxFileBytes: 10 } });
  t.regex(messages(small), /over the limit of 10 bytes per file/);
});

test('deep nesting is rejected by the depth limit, never by a stack overflow', (t) => {
  for (const text of ['- '.repeat(200_000) + 'x\n', '['.repeat(200_000) + ']'.repeat(200_000) + '\n', 'a: ' + '{a: '.repeat(50_000) + '1' + '}'.repeat(50_000) + '\n']) {
    const r = parseResourceText(text, 'deep.yaml');
    t.is(r.errors.length, 1);
    t.regex(messages(r), /nesting deeper than 64 levels .* at line 1, over the limit/);
  }
  // 64 levels are fine (as a free-form extension config, say).
  const ok = parseResourceText(`type: Mesh\nname: m\nx: ${'['.repeat(60)}1${']'.repeat(60)}\n`, 'ok.yaml');
  t.false(/nesting/.test(messages(ok)), messages(ok));
});

test('aliases can neither nest past the depth limit nor expand past maxAliasCount', (t) => {
  // Each anchor wraps the previous one ten levels deeper: the parser sees depth 11, the value is 70 deep.
  const lines = ['l0: &l0 ' + '['.repeat(10) + '1' + ']'.repeat(10)];
  for (let i = 1; i < 7; i++) lines.push(`l${i}: &l${i} ${'['.repeat(10)}*l${i - 1}${']'.repeat(10)}`);
  const deep = parseResourceText(lines.join('\n') + '\n', 'alias-deep.yaml');
  t.regex(messages(deep), /nesting deeper than 64 levels/);
  // Billion laughs, small: each level has ten aliases of the one before.
  const laughs = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 6; i++) laughs.push(`a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]`);
  const r = parseResourceText(laughs.join('\n') + '\n', 'laughs.yaml');
  t.is(r.errors[0]?.file, 'laughs.yaml');
  t.regex(messages(r), /expand to more than maxAliasCount 100/);
});

test('many endpoints in one resource: validation loops, no spread', (t) => {
  // 150,000 violations once went through push(...violations), past a call's argument limit.
  const spec = { match: { port: 80 }, endpoints: Array.from({ length: 150_000 }, () => ({ address: 'a.example' })) };
  const v = schemaValidate('MeshExternalService', spec, 'spec');
  t.is(v.length, 150_000);
  t.is(v[0]?.field, 'spec.endpoints[0].port');
});

test('FIFOs, devices, sockets and symlink loops in a directory are skipped with a line naming them', async (t) => {
  const d = await tmp();
  execFileSync('mkfifo', [join(d, 'pipe.yaml')]);
  await symlink('/dev/null', join(d, 'null.yaml'));
  await symlink(join(d, 'loop-b.yaml'), join(d, 'loop-a.yaml'));
  await symlink(join(d, 'loop-a.yaml'), join(d, 'loop-b.yaml'));
  await writeFile(join(d, 'ok.yaml'), mes('ok'));
  const r = await loadResources([d]);
  t.deepEqual(r.resources.map((x) => x.name), ['ok']);
  t.deepEqual(r.errors, []);
  const w = (r.skipped ?? []).map((x) => `${x.file}: ${x.reason}`);
  t.true(w.includes(`${join(d, 'pipe.yaml')}: a FIFO (named pipe) is not a config file`), w.join('\n'));
  t.true(w.includes(`${join(d, 'null.yaml')}: a character device is not a config file`), w.join('\n'));
  t.true(w.some((x) => x.startsWith(join(d, 'loop-a.yaml')) && /symlink loop/.test(x)), w.join('\n'));
  // Named explicitly, a FIFO is an error (it is what the user asked for), still without opening it.
  const explicit = await loadResources([join(d, 'pipe.yaml')]);
  t.regex(messages(explicit), /not read: a FIFO \(named pipe\) is not a config file \(use - to read stdin\)/);
});

test('meshext validate never blocks on a FIFO', async (t) => {
  const d = await tmp();
  execFileSync('mkfifo', [join(d, 'pipe.yaml')]);
  await writeFile(join(d, 'ok.yaml'), mes('ok'));
  const r = spawnSync(process.execPath, ['bin/meshext.js', 'validate', d], { encoding: 'utf8', timeout: 20_000 });
  t.is(r.signal, null, 'validate hung on the FIFO');
  t.is(r.status, 0, r.stderr);
  t.regex(r.stderr, /pipe\.yaml: skipped: a FIFO/);
  t.regex(r.stderr, /1 resources valid/);
});

test('a document over the token budget is rejected (memory), and a big mapping is checked in linear time', async (t) => {
  const r = parseResourceText('type: Mesh\nname: m\nx: [' + '1,'.repeat(300_000) + '1]\n', 'wide.yaml');
  t.regex(messages(r), /more than 200000 YAML tokens .* over the limit per document/);
  // 25,000 keys in one mapping: yaml's own unique-key check took seconds at this size (minutes at 90,000);
  // duplicates are still found.
  const keys = Array.from({ length: 25_000 }, (_, i) => `  k${i}: 1`).join('\n');
  const ok = parseResourceText(`type: Mesh\nname: m\nx:\n${keys}\n`, 'keys.yaml');
  t.deepEqual(ok.errors, []);
  const dup = parseResourceText(`type: Mesh\nname: m\nx:\n${keys}\n  k7: 2\n`, 'keys.yaml');
  t.is(dup.errors[0]?.line, 25_004);
  t.regex(messages(dup), /invalid YAML: Map keys must be unique/);
  const mapping = (n: number): string => `type: Mesh\nname: m\nx:\n${Array.from({ length: n }, (_, i) => `  k${i}: 1`).join('\n')}\n`;
  const ratio = await growth((n) => parseResourceText(mapping(n), 'keys.yaml'), 6_000);
  t.true(ratio < 8, `4x the keys cost ${ratio.toFixed(1)}x`);
});

test('on a reload, a file that grew over a limit keeps serving its last good resources', async (t) => {
  const d = await tmp();
  await writeFile(join(d, 'a.yaml'), mes('a'));
  await writeFile(join(d, 'b.yaml'), mes('b'));
  const first = await loadResources([d]);
  await writeFile(join(d, 'a.yaml'), mes('a2') + '--- 1\n'.repeat(20_000));
  const fresh = await loadResources([d]);
  t.regex(messages(fresh), /more than 10000 YAML documents/);
  const { load, kept } = keepLastGood(fresh, first);
  t.deepEqual(load.resources.map((r) => r.name).sort(), ['a', 'b']);
  t.deepEqual(kept, ['MeshExternalService/a (mesh default)']);
});
