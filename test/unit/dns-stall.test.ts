// A stalled JS thread never stops DNS or traffic: owned names are answered by the engine's threads, routed
// services keep flowing, and a forwarded query the JS side cannot answer gets SERVFAIL in bounded time.
import test from 'ava';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { TestUpstream, answerA, ask, rcodeOf } from '../helpers/dns.js';
import { closeServer, roundTrip, tcpEcho } from '../helpers/proxy.js';

test('with the JS thread blocked, owned names and routed TCP keep working; forwarded queries get SERVFAIL by the deadline', async (t) => {
  const up = await new TestUpstream('127.0.0.1', (q) => [answerA(q, ['192.0.2.7'])]).start();
  t.teardown(() => up.stop());
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  const child = spawn(process.execPath, [join(process.cwd(), 'test/fixtures/engine/dns-stall.mjs'), String(up.port), String(echo.port), '500'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => JSON.parse((await lines.next()).value as string) as Record<string, unknown>;
  const { dns, tcp } = (await next()) as { dns: number; tcp: number };
  t.is((await ask(dns, 'elsewhere.example', 'A')).answers[0]?.data, '192.0.2.7', 'forwarding works before the stall');

  child.stdin!.write('block 4000\n');
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  const owned = await ask(dns, 'svc.mesh.local', 'A');
  t.is(owned.answers[0]?.data, '242.0.0.9');
  t.true(Date.now() - t0 < 1000, `owned name answered in ${Date.now() - t0} ms while JS is blocked`);
  t.is(await roundTrip(tcp, 'still flowing'), 'still flowing', 'a routed TCP service keeps working');
  const t1 = Date.now();
  const stalled = await ask(dns, 'other.example', 'A');
  const waited = Date.now() - t1;
  t.is(rcodeOf(stalled), 'SERVFAIL');
  // The engine answers at the query timeout (500 ms) plus its grace (1 s); the JS thread is blocked for 4 s.
  t.true(waited >= 1000 && waited < 3000, `SERVFAIL after ${waited} ms`);

  t.deepEqual(await next(), { unblocked: true });
  t.is((await ask(dns, 'elsewhere.example', 'A')).answers[0]?.data, '192.0.2.7', 'forwarding works again');
  child.stdin!.write('stats\n');
  const { stats } = (await next()) as { stats: string };
  t.regex(stats, /meshext_dns_queries_total\{outcome="stalled",qtype="A"\} 1\n/);
  t.regex(stats, /meshext_dns_queries_total\{outcome="answered",qtype="A"\} 1\n/);
  t.regex(stats, /meshext_dns_queries_total\{outcome="forwarded",qtype="A"\} 2\n/, 'the stalled query is not forwarded late');
});
