// Golden validation cases: test/golden/validation/<case>.input.yaml → <case>.output.yaml.
// Regenerate with UPDATE_GOLDEN=1 after checking the diff by eye.
import test from 'ava';
import { readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseResourceText } from '../../../src/resources/index.js';

const DIR = 'test/golden/validation';
const cases = readdirSync(DIR).filter((f) => f.endsWith('.input.yaml')).map((f) => f.replace(/\.input\.yaml$/, '')).sort();

/** Renders a load result as the golden YAML: errors with their violations, accepted resources, warnings. */
function render(file: string): string {
  const r = parseResourceText(readFileSync(file, 'utf8'), file, { zone: 'default', vipCidr: '242.0.0.0/8' });
  return stringify({
    errors: r.errors.map((e) => ({ line: e.line, kind: e.kind, name: e.name, violations: e.violations })),
    resources: r.resources.map((x) => `${x.kind} ${x.mesh}/${x.name}`),
    warnings: r.warnings.map((w) => ({ line: w.line, name: w.name, field: w.field, message: w.message })),
  });
}

test('there are golden cases', (t) => {
  t.true(cases.length >= 40);
});

for (const c of cases) {
  test(`golden ${c}`, (t) => {
    const actual = render(join(DIR, `${c}.input.yaml`));
    const outFile = join(DIR, `${c}.output.yaml`);
    if (process.env.UPDATE_GOLDEN === '1' || !existsSync(outFile)) {
      if (process.env.UPDATE_GOLDEN !== '1') t.fail(`missing ${outFile}; run with UPDATE_GOLDEN=1`);
      writeFileSync(outFile, actual);
    }
    t.is(actual, readFileSync(outFile, 'utf8'));
  });
}
