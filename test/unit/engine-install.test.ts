// What the engine makes of a plan at install: endpoint groups by priority, and target addresses parsed once
// (one that does not parse fails only its own attempts: relay-tcp.test.ts shows the EINVAL).
import test from 'ava';
import net from 'node:net';
import { closeServer, ipEp, newProxy, roundTrip, snap, svc, tcpEcho } from '../helpers/proxy.js';
import { nativeForTests } from '../../src/native/addon.js';
import { Engine } from '../../src/engine/engine.js';

test('round-robin runs within a priority over its own endpoints, whatever endpoints of other priorities stand between them', async (t) => {
  const a = await tcpEcho();
  const b = await tcpEcho();
  const c = await tcpEcho();
  t.teardown(async () => {
    for (const x of [a, b, c]) await closeServer(x.srv);
  });
  // Declared A (priority 0), B (priority 1), C (priority 0): A and C share the connections, B takes none.
  const s = svc({ endpoints: [ipEp(a.port), { ...ipEp(b.port), priority: 1 }, ipEp(c.port)] });
  const { proxy } = newProxy();
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  for (let i = 0; i < 8; i++) t.is(await roundTrip(l.port, `c${i}`), `c${i}`);
  t.deepEqual([a.accepted(), b.accepted(), c.accepted()], [4, 0, 4]);
});

test('a target address that does not parse fails its own connections, not the install of the others', (t) => {
  const addon = nativeForTests();
  const e = addon.engineStart(1, () => {});
  t.teardown(() => addon.engineStop(e));
  const plan = (service: string, address: string, port: number) => ({
    service,
    keys: [`@${service}`],
    protocol: 'tcp' as const,
    endpoints: [{ label: 'ep', priority: 0, targets: [{ address, port }] }],
    timeouts: { connectMs: 1000, tcpIdleMs: 0, httpIdleMs: 1000, httpHeaderMs: 1000, upstreamIdleMs: 1000, requestMs: 0, maxStreamMs: 0, streamIdleMs: 0, maxConnectionMs: 0 },
  });
  const r = addon.engineInstall(e, { source: 'local', plans: [plan('a', 'not-an-ip', 80), plan('b', '::1%nosuchif0', 80), plan('c', '127.0.0.1', 80), plan('d', '/run/x.sock', 0)] });
  t.deepEqual(r.errors, []);
  t.deepEqual(addon.engineCounters(e).services.map((s) => s.service).sort(), ['a', 'b', 'c', 'd']);
});

test('an event handler that throws is reported to onHandlerError; the batch and the process go on', async (t) => {
  const failures: string[] = [];
  const engine = Engine.start(1, nativeForTests(), (err, ev) => failures.push(`${ev.kind}: ${err.message}`));
  t.teardown(() => engine.stop());
  engine.on('no-route', () => {
    throw new Error('handler bug');
  });
  engine.install({ source: 'local', plans: [] });
  const l = engine.listen('127.0.0.1', 0, () => {}, '@nothing');
  await new Promise<void>((resolve) => {
    const c = net.connect(l.address.port, '127.0.0.1');
    c.on('error', () => {});
    c.on('close', () => resolve());
  });
  await engine.settled(); // its own 'flushed' event comes after the failed one: still handled
  t.deepEqual(failures, ['no-route: handler bug']);
  l.close();
});
