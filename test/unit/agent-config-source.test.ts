// --source, --kubeconfig and --system-namespace: defaults, precedence and the errors that name the option.
import test from 'ava';
import { optionsFromEnv, resolveConfig } from '../../src/agent/config.js';

test('--source kubernetes needs no --config; the system namespace defaults to kuma-system', (t) => {
  const cfg = resolveConfig([{ name: 'flags', options: { source: 'kubernetes' } }]);
  t.is(cfg.source, 'kubernetes');
  t.deepEqual(cfg.configPaths, []);
  t.is(cfg.systemNamespace, 'kuma-system');
  t.is(cfg.kubeconfig, undefined);
  t.throws(() => resolveConfig([{ name: 'flags', options: {} }]), { message: /--config: .*or --source kubernetes/ });
});

test('env and Kuma variable for the system namespace; flags win', (t) => {
  const env = optionsFromEnv({ MESHEXT_SOURCE: 'kubernetes', KUMA_STORE_KUBERNETES_SYSTEM_NAMESPACE: 'kong-mesh-system', MESHEXT_KUBECONFIG: '/k' });
  t.is(resolveConfig([{ name: 'env', options: env }]).systemNamespace, 'kong-mesh-system');
  t.is(resolveConfig([{ name: 'env', options: env }]).kubeconfig, '/k');
  const both = resolveConfig([
    { name: 'env', options: { ...env, ...optionsFromEnv({ MESHEXT_SYSTEM_NAMESPACE: 'mesh' }) } },
    { name: 'flags', options: { systemNamespace: 'other' } },
  ]);
  t.is(both.systemNamespace, 'other');
});

test('bad values name the option', (t) => {
  t.throws(() => resolveConfig([{ name: 'flags', options: { source: 'etcd' } }]), { message: '--source: invalid value "etcd": expected one of files, kubernetes' });
  t.throws(() => resolveConfig([{ name: 'flags', options: { source: 'kubernetes', systemNamespace: 'Kuma_System' } }]), { message: /--system-namespace: invalid value "Kuma_System"/ });
  t.throws(() => resolveConfig([{ name: 'flags', options: { config: ['/x'], kubeconfig: '/k' } }]), { message: /--kubeconfig: .*only used with --source kubernetes/ });
});
