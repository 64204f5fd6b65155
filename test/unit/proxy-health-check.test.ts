// HealthChecker, the schedule of active checks: which endpoints are checked after each install, at which
// interval (the unhealthy one while failing), what a lost result counts as, with a fake engine.
import test from 'ava';
import { HealthChecker } from '../../src/proxy/health-check.js';
import type { EngineProbe, PlanHealthCheck } from '../../src/native/addon.js';
import type { ServicePlan } from '../../src/snapshot/plan.js';

const check = (o: Partial<PlanHealthCheck> = {}): PlanHealthCheck => ({
  intervalMs: 40,
  unhealthyIntervalMs: 40,
  timeoutMs: 30,
  unhealthyThreshold: 1,
  healthyThreshold: 1,
  initialJitterMs: 0,
  intervalJitterMs: 0,
  intervalJitterPercent: 0,
  check: { kind: 'http', http2: false, path: '/h', authority: '', headers: [], expectedStatuses: [200], grpcService: '' },
  ...o,
});

function plan(labels: string[], hc: PlanHealthCheck | undefined, host?: string): ServicePlan {
  return {
    service: 'default/web',
    keys: [],
    protocol: 'http',
    endpoints: labels.map((label) => ({ label, priority: 0, ...(host ? { host } : {}), targets: [] })),
    timeouts: { connectMs: 1, tcpIdleMs: 1, httpIdleMs: 1, httpHeaderMs: 1, upstreamIdleMs: 1, requestMs: 0, maxStreamMs: 0, streamIdleMs: 0, maxConnectionMs: 0 },
    ...(hc ? { healthCheck: hc } : {}),
  };
}

/** A fake engine: records probes and answers them after `delayMs` with `answer(label)`, or never when it returns undefined. */
function fakeHost(answer: (label: string) => boolean | undefined, delayMs = 1) {
  const probes: EngineProbe[] = [];
  const results: Array<{ label: string; ok: boolean; reason: string }> = [];
  const unhealthy = new Set<string>();
  let checker: HealthChecker | undefined;
  const host = {
    probe: (p: EngineProbe): boolean => {
      probes.push(p);
      const ok = answer(p.endpoint);
      if (ok !== undefined) setTimeout(() => checker?.onResult(p.token, ok, ok ? '' : 'HTTP status 503'), delayMs);
      return true;
    },
    result: (_s: string, label: string, ok: boolean, reason: string): void => {
      results.push({ label, ok, reason });
      if (ok) unhealthy.delete(label);
      else unhealthy.add(label);
    },
    unhealthy: (_s: string, label: string): boolean => unhealthy.has(label),
  };
  checker = new HealthChecker(host);
  return { checker, probes, results };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('every endpoint of a plan with a check is checked at once and every interval; the authority is the endpoint\'s name', async (t) => {
  const f = fakeHost(() => true);
  f.checker.update([plan(['a:80', 'b:80'], check(), 'api.example')]);
  await sleep(100);
  f.checker.close();
  const byLabel = (l: string): number => f.probes.filter((p) => p.endpoint === l).length;
  t.true(byLabel('a:80') >= 2 && byLabel('b:80') >= 2, `${byLabel('a:80')} / ${byLabel('b:80')} checks`);
  t.true(byLabel('a:80') <= 4);
  t.like(f.probes[0], { service: 'default/web', kind: 'http', path: '/h', authority: 'api.example', timeoutMs: 30, expectedStatuses: [200] });
});

test('a reload that drops an endpoint or the check stops its checks; a changed check restarts them; stale results are ignored', async (t) => {
  const f = fakeHost(() => true, 25);
  f.checker.update([plan(['a:80', 'b:80'], check())]);
  await sleep(5);
  const inFlight = f.probes.map((p) => p.token);
  f.checker.update([plan(['a:80'], check({ check: { ...check().check, path: '/other' } }))]);
  t.deepEqual(f.checker.checked(), [{ service: 'default/web', endpoint: 'a:80' }]);
  await sleep(60);
  t.false(f.probes.slice(inFlight.length).some((p) => p.endpoint === 'b:80'));
  t.true(f.probes.slice(inFlight.length).every((p) => p.path === '/other'));
  // Results of the checks the reload retired came back and were dropped.
  t.false(f.results.some((r) => r.label === 'b:80'));
  f.checker.update([plan(['a:80'], undefined)]);
  t.deepEqual(f.checker.checked(), []);
  const n = f.probes.length;
  await sleep(60);
  t.is(f.probes.length, n);
});

test('a check whose result never comes counts as failed after its timeout and a grace', async (t) => {
  const f = fakeHost(() => undefined);
  f.checker.update([plan(['a:80'], check({ timeoutMs: 10 }))]);
  await sleep(2200);
  f.checker.close();
  t.true(f.results.length >= 1);
  t.deepEqual(f.results[0], { label: 'a:80', ok: false, reason: 'no result within 2010 ms' });
});

test('while an endpoint fails, it is checked at the unhealthy interval', async (t) => {
  const f = fakeHost((l) => l !== 'sick:80');
  f.checker.update([plan(['sick:80', 'fine:80'], check({ intervalMs: 200, unhealthyIntervalMs: 20 }))]);
  await sleep(300);
  f.checker.close();
  const sick = f.probes.filter((p) => p.endpoint === 'sick:80').length;
  const fine = f.probes.filter((p) => p.endpoint === 'fine:80').length;
  t.true(sick >= 5, `${sick} checks of the failing endpoint`);
  t.true(fine <= 3, `${fine} checks of the healthy one`);
});
