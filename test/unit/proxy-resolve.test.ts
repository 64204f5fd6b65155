// What a DNS answer means for a DNS-name endpoint (src/proxy/resolve.ts): addresses until the next answer;
// NXDOMAIN/NODATA mean no address now (the last answer is not kept); a failure to get an answer keeps the
// last addresses for at most STALE_ANSWER_MAX_MS.
import test from 'ava';
import { EndpointResolver, FALLBACK_TTL_S, STALE_ANSWER_MAX_MS, type DnsResolver } from '../../src/proxy/resolve.js';

const err = (code: string): Error => Object.assign(new Error(code), { code });

/** A resolver whose next answer the test sets: addresses (TTL 30 s) or an error code for A (AAAA: NODATA). */
function fake(): { dns: DnsResolver; set: (a: string[] | string) => void; calls: () => number } {
  let next: string[] | string = [];
  let calls = 0;
  return {
    dns: {
      resolve4: async () => {
        calls++;
        if (typeof next === 'string') throw err(next);
        return next.map((address) => ({ address, ttl: 30 }));
      },
      resolve6: async () => {
        throw err(typeof next === 'string' ? next : 'ENODATA');
      },
    },
    set: (a) => (next = a),
    calls: () => calls,
  };
}

test('resolve: an answer holds for its TTL, then is asked again', async (t) => {
  let now = 1_000_000;
  const f = fake();
  const r = new EndpointResolver(f.dns, () => now, async () => { throw err('ENOTFOUND'); });
  f.set(['10.0.0.1', '10.0.0.2']);
  t.deepEqual(await r.resolve('api.example'), { addresses: ['10.0.0.1', '10.0.0.2'] });
  t.is(r.expiry('api.example'), now + 30_000);
  now += 10_000;
  await r.resolve('api.example');
  t.is(f.calls(), 1, 'served from the answer while its TTL lasts');
  now += 25_000;
  f.set(['10.0.0.3']);
  t.deepEqual(await r.resolve('api.example'), { addresses: ['10.0.0.3'] });
});

test('resolve: NXDOMAIN or NODATA means the endpoint has no address now; the last answer is not kept', async (t) => {
  let now = 1_000_000;
  const f = fake();
  const r = new EndpointResolver(f.dns, () => now, async () => { throw err('ENOTFOUND'); });
  f.set(['10.0.0.1']);
  await r.resolve('gone.example');
  now += 31_000;
  f.set('ENOTFOUND');
  t.deepEqual(await r.resolve('gone.example'), { error: 'no such name (ENOTFOUND)' });
  t.deepEqual(r.answer('gone.example'), { error: 'no such name (ENOTFOUND)' });
  // Asked again soon, not at some far TTL.
  t.is(r.expiry('gone.example'), now + FALLBACK_TTL_S * 1000);
  f.set(['10.0.0.1']);
  now += 6_000;
  await r.resolve('gone.example');
  now += 31_000;
  f.set('ENODATA');
  t.deepEqual(await r.resolve('gone.example'), { error: 'no address records (ENODATA)' });
});

test('resolve: a server failure or timeout keeps the last answer for a bounded time, then the endpoint has no address', async (t) => {
  let now = 1_000_000;
  const f = fake();
  const r = new EndpointResolver(f.dns, () => now, async () => { throw err('ENOTFOUND'); });
  f.set(['10.0.0.1']);
  await r.resolve('flaky.example');
  now += 31_000;
  f.set('ESERVFAIL');
  t.deepEqual(await r.resolve('flaky.example'), { addresses: ['10.0.0.1'] }, 'kept across a server failure');
  now += FALLBACK_TTL_S * 1000;
  f.set('ETIMEOUT');
  t.deepEqual(await r.resolve('flaky.example'), { addresses: ['10.0.0.1'] }, 'kept across a timeout');
  now = 1_000_000 + STALE_ANSWER_MAX_MS + 1;
  t.deepEqual(await r.resolve('flaky.example'), { error: 'ETIMEOUT' }, 'not beyond STALE_ANSWER_MAX_MS after it was obtained');
});

test('resolve: names DNS does not know fall back to the hosts file (getaddrinfo); failures of both say the DNS verdict', async (t) => {
  const f = fake();
  f.set('ENOTFOUND');
  const r = new EndpointResolver(f.dns, Date.now, async (name) => (name === 'localhost' ? [{ address: '127.0.0.1', family: 4 }] : Promise.reject(err('ENOTFOUND'))));
  t.deepEqual(await r.resolve('localhost'), { addresses: ['127.0.0.1'] });
  t.deepEqual(await r.resolve('nowhere.example'), { error: 'no such name (ENOTFOUND)' });
  f.set('ESERVFAIL');
  t.deepEqual(await r.resolve('other.example'), { error: 'ESERVFAIL' });
});
