// dialEach: the endpoint loop shared by both data paths, with the engine's pinned first attempt.
import test from 'ava';
import { silentLogger } from '../../src/log.js';
import { Registry } from '../../src/stats/registry.js';
import { ServiceMetrics } from '../../src/proxy/metrics.js';
import { EndpointResolver, type DnsResolver } from '../../src/proxy/resolve.js';
import { ServiceRuntime } from '../../src/proxy/runtime.js';
import { dialEach, connectFailure, type DialTarget } from '../../src/proxy/dial.js';
import { svc } from '../helpers/proxy.js';

/** A runtime whose DNS answers for every name are `answer()` (TTL 1 h). */
function runtime(endpoints: Parameters<typeof svc>[0]['endpoints'], answer: () => string[]) {
  const dns: DnsResolver = {
    resolve4: async () => answer().map((address) => ({ address, ttl: 3600 })),
    resolve6: async () => [],
  };
  const stats = new Registry();
  const s = svc({ endpoints });
  const rt = new ServiceRuntime(s, { log: silentLogger(), metrics: new ServiceMetrics(stats, s.kri), resolver: new EndpointResolver(dns), connectTimeoutMs: 1000, systemCaPath: null, vipCidr: '242.0.0.0/8' }, 'fp');
  return { rt, stats, kri: s.kri };
}

const name = (t: DialTarget): string => t.path ?? `${t.host}:${t.port}`;

test('dialEach: a pinned first attempt goes out as given; after it fails the endpoint\'s other addresses follow, not the pinned one again', async (t) => {
  // The engine's route was built from an answer that started with 10.0.0.1; DNS has rotated it since.
  const { rt, stats, kri } = runtime([{ kind: 'dns', address: 'api.example', port: 443 }], () => ['10.0.0.2', '10.0.0.1']);
  const st = rt.endpoints.states[0]!;
  const tried: string[] = [];
  const r = await dialEach(rt, [st], async (target) => {
    tried.push(name(target));
    if (target.host === '10.0.0.1') throw connectFailure(target, 'ECONNREFUSED', false, 1000);
    return 'up';
  }, { st, target: { host: '10.0.0.1', port: 443 } });
  t.deepEqual(tried, ['10.0.0.1:443', '10.0.0.2:443']);
  t.is(r.conn, 'up');
  t.is(stats.get('meshext_upstream_cx_total', { service: kri }), 2);
  t.is(stats.get('meshext_upstream_cx_connect_fail_total', { service: kri }), 1);
});

test('dialEach: a pinned attempt that connects needs no DNS answer at all', async (t) => {
  let asked = 0;
  const { rt } = runtime([{ kind: 'dns', address: 'api.example', port: 443 }], () => {
    asked++;
    return ['10.0.0.9'];
  });
  const st = rt.endpoints.states[0]!;
  const tried: string[] = [];
  await dialEach(rt, [st], async (target) => {
    tried.push(name(target));
    return 'up';
  }, { st, target: { host: '10.0.0.1', port: 443 } });
  t.deepEqual(tried, ['10.0.0.1:443']);
  t.is(asked, 0);
});

test('dialEach: without a pin, every address of a DNS endpoint is tried in answer order, VIP-CIDR ones refused', async (t) => {
  const { rt } = runtime([{ kind: 'dns', address: 'api.example', port: 443 }, { kind: 'ip', address: '10.0.1.1', port: 443, family: 4 }], () => ['242.0.0.7', '10.0.0.1']);
  const tried: string[] = [];
  const r = await dialEach(rt, rt.endpoints.states, async (target) => {
    tried.push(name(target));
    if (target.host === '10.0.0.1') throw connectFailure(target, 'ECONNREFUSED', false, 1000);
    return 'up';
  });
  t.deepEqual(tried, ['10.0.0.1:443', '10.0.1.1:443']);
  t.is(name(r.target), '10.0.1.1:443');
});
