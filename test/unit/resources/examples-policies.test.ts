// examples/policies: every policy kind in the form a user copies; it must load clean against the example services.
import test from 'ava';
import { loadResources } from '../../../src/resources/index.js';

test('examples/policies/universal.yaml loads without an error or a warning, one resource per kind', async (t) => {
  const r = await loadResources(['examples/universal', 'examples/policies/universal.yaml']);
  t.deepEqual(r.errors, []);
  t.deepEqual(r.warnings, []);
  const kinds = r.resources.filter((x) => x.source.file.endsWith('policies/universal.yaml')).map((x) => x.kind);
  t.deepEqual(kinds, ['MeshTimeout', 'MeshRetry', 'MeshCircuitBreaker', 'MeshHealthCheck', 'MeshAccessLog', 'MeshTrafficPermission']);
});
