// Proxy options and snapshot application: timeouts the engine cannot arm are refused naming the option, and a
// DNS name that is slow to answer delays applying a snapshot by a bounded time only.
import test from 'ava';
import { ipEp, newProxy, roundTrip, snap, svc, tcpEcho, closeServer } from '../helpers/proxy.js';

test('timeouts: a value the engine cannot arm is refused naming the option and the value; a TCP idle timeout of 0 means none', (t) => {
  t.throws(() => newProxy({ httpIdleTimeoutMs: 0 }), { message: 'httpIdleTimeoutMs must be a whole number of ms from 1 to 2147483647, got 0' });
  t.throws(() => newProxy({ connectTimeoutMs: 1.5 }), { message: /^connectTimeoutMs must be a whole number of ms from 1 to 2147483647, got 1.5$/ });
  t.throws(() => newProxy({ httpUpstreamIdleTimeoutMs: -1 }), { message: /^httpUpstreamIdleTimeoutMs .* got -1$/ });
  t.throws(() => newProxy({ tcpIdleTimeoutMs: 2 ** 31 }), { message: /^tcpIdleTimeoutMs must be a whole number of ms from 0 to 2147483647/ });
  const { proxy } = newProxy({ tcpIdleTimeoutMs: 0 });
  t.is(proxy.currentPlans().length, 0);
  return proxy.close();
});

test('a DNS name that does not answer holds a snapshot back for about a second, not until it answers; its answer applies when it comes', async (t) => {
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  let answer: (() => void) | undefined;
  const resolver = {
    resolve4: () => new Promise<Array<{ address: string; ttl: number }>>((resolve) => (answer = () => resolve([{ address: '127.0.0.1', ttl: 300 }]))),
    resolve6: async () => [],
  };
  const { proxy } = newProxy({ resolver });
  t.teardown(() => proxy.close());
  const plain = svc({ endpoints: [ipEp(echo.port)] });
  const named = svc({ endpoints: [{ kind: 'dns', address: 'slow.example', port: echo.port }] });
  const start = Date.now();
  await proxy.setSnapshot(snap([plain, named]));
  const waited = Date.now() - start;
  t.true(waited >= 900 && waited < 5000, `setSnapshot waited ${waited} ms`);
  // The other service is served meanwhile; the named one has no address yet.
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, plain.id);
  t.is(await roundTrip(l.port, 'meanwhile'), 'meanwhile');
  const ep = (): string[] | undefined => proxy.clusters().find((c) => c.service === named.id)?.endpoints[0]?.addresses;
  t.deepEqual(ep(), []);
  answer?.();
  for (let i = 0; i < 200 && ep()?.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(ep(), [`127.0.0.1:${echo.port}`]);
  const ln = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, named.id);
  t.is(await roundTrip(ln.port, 'answered'), 'answered');
});
