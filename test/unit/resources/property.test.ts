// parseResourceText must never throw, whatever it is fed: it reports.
import test from 'ava';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseResourceText } from '../../../src/resources/index.js';

const VALID = {
  type: 'MeshExternalService',
  name: 'mes-1',
  mesh: 'default',
  spec: {
    match: { type: 'HostnameGenerator', port: 80, protocol: 'http' },
    endpoints: [{ address: 'example.com', port: 80 }, { address: 'unix:///tmp/x.sock' }],
    tls: { enabled: true, version: { min: 'TLS12', max: 'TLS13' }, verification: { serverName: 'example.com', caCert: { inline: 'dGVzdA==' } } },
  },
};

function wellFormed(r: ReturnType<typeof parseResourceText>): boolean {
  return (
    Array.isArray(r.resources) &&
    Array.isArray(r.errors) &&
    r.errors.every((e) => typeof e.file === 'string' && e.violations.length > 0 && e.violations.every((v) => typeof v.field === 'string' && typeof v.message === 'string'))
  );
}

/** Replaces the value at a random path of the valid document with an arbitrary JSON value. */
function mutate(path: number[], value: unknown): unknown {
  const doc = structuredClone(VALID) as unknown;
  let cur = doc as Record<string, unknown>;
  for (let i = 0; i < path.length; i++) {
    const keys = Object.keys(cur);
    if (keys.length === 0) break;
    const k = keys[(path[i] as number) % keys.length] as string;
    const next = cur[k];
    if (i === path.length - 1 || next === null || typeof next !== 'object') {
      cur[k] = value;
      break;
    }
    cur = next as Record<string, unknown>;
  }
  return doc;
}

test('arbitrary JSON values as documents', (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      const r = parseResourceText(JSON.stringify(v), 'p.json');
      return wellFormed(r);
    }),
    { numRuns: 300 },
  );
  t.pass();
});

test('random strings', (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (s) => wellFormed(parseResourceText(s, 'p.yaml'))),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(fc.array(fc.constantFrom('type: ', 'MeshExternalService', '\n', '  ', '- ', '{{', '}}', ':', '---\n', '[', '&a ', '*a', '!!binary ', '"', 'spec:', 'port: 80', '\t'), { maxLength: 60 }), (parts) =>
      wellFormed(parseResourceText(parts.join(''), 'p.yaml')),
    ),
    { numRuns: 300 },
  );
  t.pass();
});

test('mutated valid documents', (t) => {
  fc.assert(
    fc.property(fc.array(fc.nat(20), { minLength: 1, maxLength: 6 }), fc.jsonValue(), (path, value) => {
      const doc = mutate(path, value);
      return wellFormed(parseResourceText(stringify(doc), 'p.yaml')) && wellFormed(parseResourceText(JSON.stringify(doc), 'p.json'));
    }),
    { numRuns: 400 },
  );
  t.pass();
});

test('mutated templates in HostnameGenerators', (t) => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom('{{', '}}', '{{-', '-}}', ' ', '.Name', '.Foo', 'label', '"k"', '`r`', 'printf', '"%s"', '|', '(', ')', 'if', 'else', 'end', 'eq', 'and', 'not', '/*', '*/', '$x', '1', '.', 'x'), { maxLength: 30 }), (parts) => {
      const doc = { type: 'HostnameGenerator', name: 'g', spec: { selector: { meshExternalService: {} }, template: parts.join('') } };
      return wellFormed(parseResourceText(JSON.stringify(doc), 'p.json'));
    }),
    { numRuns: 400 },
  );
  t.pass();
});
