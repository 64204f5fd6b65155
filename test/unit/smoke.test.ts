import test from 'ava';
import { Registry } from '../../src/stats/registry.js';
import { formatTextLine } from '../../src/log.js';

test('registry renders counters in Prometheus and text forms', (t) => {
  const r = new Registry();
  const c = r.counter('meshext_upstream_cx_total', 'Upstream connections', { service: 'kri_extsvc_default___a_' });
  c.inc();
  c.inc(2);
  r.gauge('meshext_upstream_cx_active', 'Active upstream connections', { service: 'x' }).set(4);
  t.is(r.get('meshext_upstream_cx_total', { service: 'kri_extsvc_default___a_' }), 3);
  t.regex(r.prometheus(), /# TYPE meshext_upstream_cx_total counter\nmeshext_upstream_cx_total\{service="kri_extsvc_default___a_"\} 3/);
  t.regex(r.text(), /meshext_upstream_cx_active\{service=x\}: 4/);
  t.throws(() => r.counter('meshext_bad', 'no suffix'));
});

test('text log lines keep component, message and fields', (t) => {
  const line = formatTextLine(JSON.stringify({ level: 40, time: '2026-01-01T00:00:00.000Z', component: 'dns', msg: 'upstream failed', upstream: '10.0.0.1:53' }));
  t.is(line, '2026-01-01T00:00:00.000Z WARN  [dns] upstream failed upstream=10.0.0.1:53\n');
});
