// /config_dump's view of a service tells the truth about what its plan can do.
import test from 'ava';
import { dumpService } from '../../src/agent/agent.js';
import { compilePlan, DEFAULT_TIMEOUTS, type PlanContext } from '../../src/snapshot/plan.js';
import { ipEp, svc, tlsCfg } from '../helpers/proxy.js';

const ctx = (systemCaPath: string | null): PlanContext => ({ vipCidr: '242.0.0.0/8', systemCaPath, readCa: () => Buffer.from('pem'), answer: () => undefined, timeouts: DEFAULT_TIMEOUTS });

test('config_dump: where the CA comes from, and why a service cannot be served', (t) => {
  const secured = svc({ endpoints: [ipEp(443)], tls: tlsCfg({}) });
  const none = compilePlan(secured, ctx(null));
  const dumped = dumpService(secured, none, none.error) as { error?: string; tls: { caCert: string } };
  t.is(dumped.tls.caCert, 'none');
  t.regex(dumped.error ?? '', /needs a CA/);
  const sys = compilePlan(secured, ctx('/etc/ssl/certs/ca-certificates.crt'));
  t.like(dumpService(secured, sys, sys.error), { tls: { caCert: 'system bundle' } });
  t.false('error' in dumpService(secured, sys, sys.error));
  const skip = svc({ endpoints: [ipEp(443)], tls: tlsCfg({ mode: 'SkipAll' }) });
  t.like(dumpService(skip, compilePlan(skip, ctx(null))), { tls: { caCert: 'not used' } });
  const own = svc({ endpoints: [ipEp(443)], tls: tlsCfg({ ca: Buffer.from('x') }) });
  t.like(dumpService(own, compilePlan(own, ctx(null))), { tls: { caCert: 'configured' } });
});
