import test from 'ava';
import { ConfigError, DEFAULTS, envName, optionsFromEnv, parseDuration, parseHostPort, resolveConfig } from '../../src/agent/config.js';

test('defaults are Kuma-compatible and need only --config', (t) => {
  const cfg = resolveConfig([{ name: 'flags', options: { config: ['/etc/meshext'] } }]);
  t.deepEqual(cfg.configPaths, ['/etc/meshext']);
  t.is(cfg.vipCidr, '242.0.0.0/8');
  t.deepEqual(cfg.proxy, { address: '127.0.0.1', port: 15001 });
  t.deepEqual(cfg.dnsListen, { address: '127.0.0.1', port: 15053 });
  t.deepEqual(cfg.admin, { address: '127.0.0.1', port: 9901 });
  t.is(cfg.drainTimeMs, 30_000);
  t.is(cfg.stateDir, '/var/lib/meshext');
  t.is(DEFAULTS.proxy.port, 15001, 'resolving must not mutate the defaults');
});

test('flags override MESHEXT_* env which overrides defaults', (t) => {
  const env = optionsFromEnv({ MESHEXT_CONFIG: '/a,/b', MESHEXT_PROXY_PORT: '16001', MESHEXT_DNS_PORT: '16053', MESHEXT_DRAIN_TIME: '5s' });
  const cfg = resolveConfig([
    { name: 'env', options: env },
    { name: 'flags', options: { proxyPort: '17001' } },
  ]);
  t.deepEqual(cfg.configPaths, ['/a', '/b']);
  t.is(cfg.proxy.port, 17001);
  t.is(cfg.dnsListen.port, 16053);
  t.is(cfg.drainTimeMs, 5000);
  t.is(envName('dnsUpstream'), 'MESHEXT_DNS_UPSTREAM');
});

test('Kuma CIDR variable is honoured, MESHEXT_VIP_CIDR wins', (t) => {
  t.is(optionsFromEnv({ KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR: '10.9.0.0/16' }).vipCidr, '10.9.0.0/16');
  t.is(optionsFromEnv({ KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR: '10.9.0.0/16', MESHEXT_VIP_CIDR: '242.1.0.0/16' }).vipCidr, '242.1.0.0/16');
});

test('bad values name the option and the value', (t) => {
  const e1 = t.throws(() => resolveConfig([{ name: 'flags', options: { config: ['/x'], proxyPort: '70000' } }]), { instanceOf: ConfigError });
  t.is(e1.message, '--proxy-port: invalid value "70000": port must be 0-65535');
  const e2 = t.throws(() => resolveConfig([{ name: 'env', options: { config: ['/x'], redirect: 'maybe' } }]), { instanceOf: ConfigError });
  t.is(e2.message, 'MESHEXT_REDIRECT: invalid value "maybe": expected auto, on or off');
  const e3 = t.throws(() => resolveConfig([{ name: 'flags', options: { config: ['/x'], admin: '0.0.0.0:9901' } }]));
  t.regex(e3.message, /--admin: invalid value "0.0.0.0:9901": the admin API listens on loopback only/);
  t.throws(() => resolveConfig([{ name: 'flags', options: {} }]), { message: /at least one resource directory/ });
  const e4 = t.throws(() => resolveConfig([{ name: 'flags', options: { config: ['/x'], connectTimeout: '0s' } }]), { instanceOf: ConfigError });
  t.is(e4.message, '--connect-timeout: invalid value "0s": expected a connect timeout from 1ms to 24h');
  t.is(resolveConfig([{ name: 'flags', options: { config: ['/x'], connectTimeout: '250ms' } }]).connectTimeoutMs, 250);
  t.throws(() => parseDuration('soon', '--drain-time'), { message: '--drain-time: invalid value "soon": expected a duration such as 500ms, 30s or 2m' });
});

test('host:port forms', (t) => {
  t.deepEqual(parseHostPort('[::1]:9901', 'x'), { address: '::1', port: 9901 });
  t.deepEqual(parseHostPort(':9902', 'x'), { address: '127.0.0.1', port: 9902 });
  t.is(parseDuration('250ms', 'x'), 250);
  t.is(parseDuration('2m', 'x'), 120_000);
});
