import test from 'ava';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { makePki, type KeyPair, type TestPki } from '../helpers/certs.js';
import { closeServer, ipEp, listen, newProxy, roundTrip, settle, snap, svc, tlsCfg, until } from '../helpers/proxy.js';
import type { CompiledTls } from '../../src/snapshot/types.js';
import { buildUpstreamTls, secureUpstream, type UpstreamTls } from '../../src/proxy/tls.js';
import { TlsSessionCache } from '../../src/proxy/tls-sessions.js';
import type { UpstreamError } from '../../src/proxy/errors.js';

let pki: TestPki;
test.before(() => {
  pki = makePki();
});
test.after.always(() => pki?.cleanup());

/** A TLS echo server that records, per completed handshake, whether the client resumed a session. */
async function recordingEcho(kp: KeyPair, extra: tls.TlsOptions = {}): Promise<{ srv: tls.Server; port: number; reused: boolean[]; ciphers: string[] }> {
  const reused: boolean[] = [];
  const ciphers: string[] = [];
  const srv = tls.createServer({ key: kp.key, cert: kp.cert, ...extra }, (s) => {
    reused.push(s.isSessionReused());
    ciphers.push(s.getCipher().standardName);
    s.on('error', () => {});
    s.pipe(s);
  });
  srv.on('tlsClientError', () => {});
  const r = await listen(srv);
  return { ...r, reused, ciphers };
}

const metric = (stats: ReturnType<typeof newProxy>['stats'], name: string, kri: string): number => stats.get(name, { service: kri }) ?? 0;

for (const [version, dataPath] of [['TLSv1.2', 'native'], ['TLSv1.3', 'native'], ['TLSv1.2', 'node'], ['TLSv1.3', 'node']] as const) {
  test(`tcp+tls[${dataPath}] ${version}: connections after the first resume the upstream session and are counted`, async (t) => {
    // honorCipherOrder false: the server follows the client's suite order (Node's server default is its own).
    const up = await recordingEcho(pki.good, { minVersion: version, maxVersion: version, honorCipherOrder: false });
    const s = svc({ endpoints: [ipEp(up.port)], tls: tlsCfg({ ca: pki.ca }) });
    const { proxy, stats } = newProxy({ dataPath });
    proxy.setSnapshot(snap([s]));
    const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
    // Sequential, so each connection's tickets have arrived before the next one dials. Three connections:
    // the full handshake yields two TLS 1.3 tickets (OpenSSL's default), each used once.
    for (let i = 0; i < 3; i++) t.is(await roundTrip(l.port, `ping-${i}`), `ping-${i}`);
    await until(() => up.reused.length === 3, 'three upstream handshakes');
    await settle(proxy);
    t.deepEqual(up.reused, [false, true, true]);
    // TLS 1.3 suites are offered AES-128-GCM first, as Envoy does.
    if (version === 'TLSv1.3') t.deepEqual(up.ciphers, Array(3).fill('TLS_AES_128_GCM_SHA256'));
    t.is(metric(stats, 'meshext_upstream_tls_handshake_total', s.kri), 3);
    t.is(metric(stats, 'meshext_upstream_tls_session_reused_total', s.kri), 2);
    t.is(proxy.engineStats()?.tlsSessions ?? 0, dataPath === 'native' ? 3 : 0, 'TLS originated on the chosen data path');
    await proxy.close();
    await closeServer(up.srv);
  });
}

test('tcp+tls: a snapshot that changes the service TLS settings drops cached sessions; a now-failing name check fails', async (t) => {
  const up = await recordingEcho(pki.good);
  const base = svc({ endpoints: [ipEp(up.port)], tls: tlsCfg({ ca: pki.ca }) });
  const { proxy, stats } = newProxy();
  proxy.setSnapshot(snap([base], 1));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, base.id);
  t.is(await roundTrip(l.port, 'a'), 'a');
  t.is(await roundTrip(l.port, 'b'), 'b');
  await until(() => up.reused.length === 2, 'two handshakes');
  t.deepEqual(up.reused, [false, true]);

  // Same certificate still valid for the new name: the connection succeeds but with a full handshake.
  proxy.setSnapshot(snap([{ ...base, tls: tlsCfg({ ca: pki.ca, serverName: 'localhost' }) }], 2));
  t.is(await roundTrip(l.port, 'c'), 'c');
  await until(() => up.reused.length === 3, 'third handshake');
  t.false(up.reused[2], 'no session from the previous TLS settings was offered');

  // A name the certificate does not carry: no session may carry the connection past the check.
  proxy.setSnapshot(snap([{ ...base, tls: tlsCfg({ ca: pki.ca, serverName: 'api.example.com' }) }], 3));
  t.is(await roundTrip(l.port, 'd'), '');
  // The client sees its reset before the engine's close event (which carries the failure) reaches JS.
  await until(() => stats.get('meshext_upstream_tls_verify_fail_total', { service: base.kri, reason: 'name_mismatch' }) === 1, 'failure counted');
  t.is(metric(stats, 'meshext_upstream_tls_session_reused_total', base.kri), 1);
  t.is(proxy.engineStats()?.tlsSessions, 4, 'every connection originated TLS in the engine');
  await proxy.close();
  await closeServer(up.srv);
});

/** Dials `port`, runs secureUpstream with `ut`, echoes one message; resolves with the error if verification failed. */
async function direct(ut: UpstreamTls, port: number, key: string): Promise<UpstreamError | undefined> {
  const raw = net.connect({ host: '127.0.0.1', port });
  await once(raw, 'connect');
  let s: tls.TLSSocket;
  try {
    s = await secureUpstream(raw, ut, '127.0.0.1', undefined, 2000, key);
  } catch (e) {
    return e as UpstreamError;
  }
  s.end('x');
  // Reading to the end lets TLS 1.3 tickets (sent after the handshake) reach the cache.
  s.resume();
  await once(s, 'close');
  return undefined;
}

for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
  test(`${version}: a resumed session still goes through the SAN check and a failure empties that endpoint's cache`, async (t) => {
    const up = await recordingEcho(pki.uriOnly, { minVersion: version, maxVersion: version });
    const cfg: CompiledTls = tlsCfg({ ca: pki.ca, subjectAltNames: [{ type: 'Prefix', value: 'spiffe://example.local/ns/local' }] });
    const ok = buildUpstreamTls(svc({ endpoints: [ipEp(up.port)], tls: cfg }), null);
    const key = TlsSessionCache.key('127.0.0.1', up.port, ok.servername);
    t.is(await direct(ok, up.port, key), undefined);
    t.true(ok.sessions.size(key) > 0, 'a session was cached after a verified handshake');
    t.is(await direct(ok, up.port, key), undefined);
    // Same context and cache, but a policy the certificate fails: the cached session is offered and
    // accepted by the server, and the connection must still be refused.
    const strict: UpstreamTls = { ...ok, subjectAltNames: [{ type: 'Exact', value: 'spiffe://example.local/ns/other/sa/web' }] };
    t.true(strict.sessions.size(key) > 0);
    const err = await direct(strict, up.port, key);
    t.is(err?.code, 'MESHEXT_E_TLS_VERIFY');
    t.is(err?.tlsReason, 'name_mismatch');
    t.regex(err?.message ?? '', /resumed session/, 'the failing connection was a resumed one');
    t.deepEqual(up.reused.slice(0, 2), [false, true]);
    t.is(strict.sessions.size(key), 0, 'verification failure dropped the cached sessions');
    await closeServer(up.srv);
  });
}

test('a session from an unverified handshake is never cached', async (t) => {
  const up = await recordingEcho(pki.wrongName, { maxVersion: 'TLSv1.2' });
  const ut = buildUpstreamTls(svc({ endpoints: [ipEp(up.port)], tls: tlsCfg({ ca: pki.ca }) }), null);
  const key = TlsSessionCache.key('127.0.0.1', up.port, ut.servername);
  t.is((await direct(ut, up.port, key))?.tlsReason, 'name_mismatch');
  t.is(ut.sessions.size(key), 0);
  t.is((await direct(ut, up.port, key))?.tlsReason, 'name_mismatch');
  await until(() => up.reused.length === 2, 'two handshakes');
  t.deepEqual(up.reused, [false, false]);
  await closeServer(up.srv);
});

test('TlsSessionCache: TLS 1.3 tickets are single-use and bounded; TLS 1.2 sessions are reusable', (t) => {
  const c = new TlsSessionCache(2, 2);
  const b = (x: string): Buffer => Buffer.from(x);
  const peer = { subject: { CN: 'x' } } as unknown as tls.PeerCertificate;
  c.put('k', b('t1'), 'TLSv1.3', peer);
  c.put('k', b('t2'), 'TLSv1.3', peer);
  c.put('k', b('t3'), 'TLSv1.3', peer);
  t.is(c.size('k'), 2);
  const first = c.take('k');
  t.is(first?.session.toString(), 't3');
  t.is(first?.peer, peer, 'the certificate the session was verified with comes back with it');
  t.is(c.take('k')?.session.toString(), 't2');
  t.is(c.take('k'), undefined);
  c.put('k', b('s12'), 'TLSv1.2', peer);
  t.is(c.take('k')?.session.toString(), 's12');
  t.is(c.take('k')?.session.toString(), 's12');
  c.put('k2', b('x'), 'TLSv1.3', peer);
  c.put('k3', b('y'), 'TLSv1.3', peer);
  t.is(c.size('k'), 0, 'oldest endpoint evicted beyond the key bound');
  t.is(c.size('k3'), 1);
  c.drop('k3');
  t.is(c.take('k3'), undefined);
});
