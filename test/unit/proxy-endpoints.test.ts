// HealthSet, the one decider of endpoint state: passive back-off, Envoy's consecutive outlier detectors and
// active check thresholds, with a fake clock.
import test from 'ava';
import { BACKOFF_BASE_MS, HealthSet, MAX_EJECTION_MS, OUT_UNTIL_TOLD_MS } from '../../src/proxy/endpoints.js';
import type { PlanOutlierDetection } from '../../src/native/addon.js';

const od = (o: Partial<PlanOutlierDetection> = {}): PlanOutlierDetection => ({
  baseEjectionMs: 1000,
  maxEjectionPercent: 100,
  splitExternalAndLocalErrors: false,
  consecutiveTotal: 0,
  consecutiveGateway: 0,
  consecutiveLocalOrigin: 0,
  intervalMs: 10_000,
  ...o,
});

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

test('without outlier detection: three failed connects back off, the first successful connect clears it', (t) => {
  const c = clock();
  const h = new HealthSet(['a', 'b'], c.now);
  t.is(h.failure('a', 'refused'), undefined);
  t.is(h.failure('a', 'refused'), undefined);
  t.deepEqual(h.failure('a', 'refused'), { downForMs: BACKOFF_BASE_MS });
  t.is(h.status(h.get('a')!), 'backed_off');
  t.regex(h.reason(h.get('a')!) ?? '', /backed off after 3 failed connects: refused/);
  t.deepEqual(h.success('a', 'connect'), { downForMs: 0 });
  t.is(h.status(h.get('a')!), 'healthy');
  // 5xx mean nothing without outlier detection.
  t.is(h.status5xx('b', 503), undefined);
});

test('a passing active check ends a passive back-off at once (the endpoint accepts connections again)', (t) => {
  const c = clock();
  const h = new HealthSet(['a'], c.now, undefined, { unhealthyThreshold: 3, healthyThreshold: 1 });
  for (let i = 0; i < 8; i++) h.failure('a', 'refused');
  t.is(h.status(h.get('a')!), 'backed_off');
  t.true(h.downForMs(h.get('a')!) > 10_000);
  t.deepEqual(h.checked('a', true, ''), { downForMs: 0 });
  t.is(h.status(h.get('a')!), 'healthy');
});

test('active checks: unhealthyThreshold failures in a row take it out until told, healthyThreshold passes bring it back', (t) => {
  const c = clock();
  const h = new HealthSet(['a'], c.now, undefined, { unhealthyThreshold: 2, healthyThreshold: 2 });
  t.is(h.checked('a', false, 'HTTP status 503 is not an expected status'), undefined);
  t.is(h.checked('a', true, ''), undefined);
  t.is(h.checked('a', false, 'x'), undefined);
  t.deepEqual(h.checked('a', false, 'y'), { downForMs: OUT_UNTIL_TOLD_MS, failed: true });
  t.is(h.status(h.get('a')!), 'unhealthy');
  t.regex(h.reason(h.get('a')!) ?? '', /failed 2 active health check\(s\) in a row: y/);
  // Each further failure renews the engine's "out", with nothing new to log.
  t.deepEqual(h.checked('a', false, 'z'), { downForMs: OUT_UNTIL_TOLD_MS });
  t.is(h.checked('a', true, ''), undefined);
  t.deepEqual(h.checked('a', true, ''), { downForMs: 0, recovered: true });
});

test('outlier detection: consecutive 5xx / gateway failures eject for base × times ejected; other statuses reset the gateway run', (t) => {
  const c = clock();
  const h = new HealthSet(['a', 'b'], c.now, od({ consecutiveTotal: 5, consecutiveGateway: 3 }));
  h.status5xx('a', 503);
  h.status5xx('a', 500); // a 5xx that is not a gateway failure ends the gateway run
  h.status5xx('a', 502);
  t.is(h.status5xx('a', 504), undefined);
  t.deepEqual(h.status5xx('a', 503), { downForMs: 1000, ejected: 'consecutive_5xx' });
  t.is(h.status(h.get('a')!), 'ejected');
  c.advance(1000);
  t.is(h.status(h.get('a')!), 'healthy');
  for (let i = 0; i < 2; i++) h.status5xx('a', 502);
  t.deepEqual(h.status5xx('a', 502), { downForMs: 2000, ejected: 'consecutive_gateway_failure' });
  t.is(h.get('a')!.timesEjected, 2);
  // A non-5xx response resets the runs.
  c.advance(2000);
  h.status5xx('a', 502);
  h.status5xx('a', 502);
  h.success('a', 'response');
  t.is(h.status5xx('a', 502), undefined);
});

test('outlier detection: unsplit, local-origin failures count as 503s; split, only the local-origin detector sees them', (t) => {
  const c = clock();
  const unsplit = new HealthSet(['a', 'b'], c.now, od({ consecutiveGateway: 2, consecutiveLocalOrigin: 0 }));
  unsplit.failure('a', 'refused');
  t.deepEqual(unsplit.failure('a', 'refused'), { downForMs: 1000, ejected: 'consecutive_gateway_failure' });
  const split = new HealthSet(['a', 'b'], c.now, od({ splitExternalAndLocalErrors: true, consecutiveGateway: 2, consecutiveLocalOrigin: 3 }));
  split.failure('a', 'refused');
  split.failure('a', 'refused');
  t.is(split.status(split.get('a')!), 'healthy');
  t.deepEqual(split.failure('a', 'refused'), { downForMs: 1000, ejected: 'consecutive_local_origin_failure' });
  // No passive back-off under outlier detection: the detectors replace it.
  t.is(split.get('a')!.backoffUntil, 0);
});

test('outlier detection: maxEjectionPercent bounds ejections but always allows one; ejections are capped at 300 s', (t) => {
  const c = clock();
  const h = new HealthSet(['a', 'b', 'c', 'd'], c.now, od({ consecutiveTotal: 1, maxEjectionPercent: 50, baseEjectionMs: 200_000 }));
  t.truthy(h.status5xx('a', 500)?.ejected);
  t.truthy(h.status5xx('b', 500)?.ejected);
  t.is(h.status5xx('c', 500), undefined);
  t.deepEqual(h.counts(), { healthy: 2, ejected: 2 });
  c.advance(200_000);
  t.deepEqual(h.status5xx('a', 500), { downForMs: MAX_EJECTION_MS, ejected: 'consecutive_5xx' });
  const tight = new HealthSet(['a', 'b'], c.now, od({ consecutiveTotal: 1, maxEjectionPercent: 0 }));
  t.truthy(tight.status5xx('a', 500)?.ejected);
  t.is(tight.status5xx('b', 500), undefined);
});

test('a reload keeps what is known of each label, and a removed policy takes its state with it', (t) => {
  const c = clock();
  const before = new HealthSet(['a', 'b'], c.now, od({ consecutiveTotal: 1 }), { unhealthyThreshold: 1, healthyThreshold: 1 });
  before.status5xx('a', 500);
  before.checked('b', false, 'down');
  const same = new HealthSet(['a', 'b', 'c'], c.now, od({ consecutiveTotal: 1 }), { unhealthyThreshold: 1, healthyThreshold: 1 });
  same.adopt(before);
  t.deepEqual(['a', 'b', 'c'].map((l) => same.status(same.get(l)!)), ['ejected', 'unhealthy', 'healthy']);
  const none = new HealthSet(['a', 'b'], c.now);
  none.adopt(before);
  t.deepEqual(['a', 'b'].map((l) => none.status(none.get(l)!)), ['healthy', 'healthy']);
});

test('failure percentage: among endpoints with enough responses (and enough of them), those failing at least the threshold are ejected', (t) => {
  const c = clock();
  const h = new HealthSet(['a', 'b', 'c', 'd'], c.now, od({ maxEjectionPercent: 50, failurePercentage: { minimumHosts: 3, requestVolume: 10, threshold: 50 } }));
  const counts = new Map([
    ['a', { responses: 20, failed: 12 }],
    ['b', { responses: 20, failed: 2 }],
    ['c', { responses: 20, failed: 0 }],
    ['d', { responses: 5, failed: 5 }], // too few responses to judge
  ]);
  t.deepEqual(h.sweep(counts).map((x) => [x.label, x.change.ejected]), [['a', 'failure_percentage']]);
  t.is(h.status(h.get('d')!), 'healthy');
  // Too few endpoints with enough volume: nothing is judged.
  const few = new HealthSet(['a', 'b'], c.now, od({ failurePercentage: { minimumHosts: 3, requestVolume: 10, threshold: 50 } }));
  t.deepEqual(few.sweep(new Map([['a', { responses: 20, failed: 20 }], ['b', { responses: 20, failed: 0 }]])), []);
});

test('success rate: an endpoint below the mean by more than stdevFactor standard deviations is ejected', (t) => {
  const c = clock();
  const labels = ['a', 'b', 'c', 'd', 'e'];
  const h = new HealthSet(labels, c.now, od({ maxEjectionPercent: 50, successRate: { minimumHosts: 5, requestVolume: 100, stdevFactor: 1.9 } }));
  const counts = new Map(labels.map((l) => [l, { responses: 200, failed: l === 'e' ? 120 : 2 }]));
  // Rates 99, 99, 99, 99, 40: mean 87.2, stdev 23.6, floor 42.4: only e is below.
  t.deepEqual(h.sweep(counts).map((x) => [x.label, x.change.ejected]), [['e', 'success_rate']]);
  const even = new HealthSet(labels, c.now, od({ successRate: { minimumHosts: 5, requestVolume: 100, stdevFactor: 1.9 } }));
  t.deepEqual(even.sweep(new Map(labels.map((l) => [l, { responses: 200, failed: 10 }]))), []);
});
