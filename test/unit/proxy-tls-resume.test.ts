import test from 'ava';
import tls from 'node:tls';
import { makePki, type KeyPair, type TestPki } from '../helpers/certs.js';
import { closeServer, ipEp, listen, newProxy, roundTrip, settle, snap, svc, tlsCfg, until } from '../helpers/proxy.js';

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

// The session cache itself (single-use TLS 1.3 tickets, bounds, SAN checks on resumed sessions, nothing cached
// from an unverified handshake) is tested on the native client in tls-native.test.ts.
for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
  test(`tcp+tls ${version}: connections after the first resume the upstream session and are counted`, async (t) => {
    // honorCipherOrder false: the server follows the client's suite order (Node's server default is its own).
    const up = await recordingEcho(pki.good, { minVersion: version, maxVersion: version, honorCipherOrder: false });
    const s = svc({ endpoints: [ipEp(up.port)], tls: tlsCfg({ ca: pki.ca }) });
    const { proxy, stats } = newProxy();
    await proxy.setSnapshot(snap([s]));
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
    await proxy.close();
    await closeServer(up.srv);
  });
}

test('tcp+tls: a snapshot that changes the service TLS settings drops cached sessions; a now-failing name check fails', async (t) => {
  const up = await recordingEcho(pki.good);
  const base = svc({ endpoints: [ipEp(up.port)], tls: tlsCfg({ ca: pki.ca }) });
  const { proxy, stats } = newProxy();
  await proxy.setSnapshot(snap([base], 1));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, base.id);
  t.is(await roundTrip(l.port, 'a'), 'a');
  t.is(await roundTrip(l.port, 'b'), 'b');
  await until(() => up.reused.length === 2, 'two handshakes');
  t.deepEqual(up.reused, [false, true]);

  // Same certificate still valid for the new name: the connection succeeds but with a full handshake.
  await proxy.setSnapshot(snap([{ ...base, tls: tlsCfg({ ca: pki.ca, serverName: 'localhost' }) }], 2));
  t.is(await roundTrip(l.port, 'c'), 'c');
  await until(() => up.reused.length === 3, 'third handshake');
  t.false(up.reused[2], 'no session from the previous TLS settings was offered');

  // A name the certificate does not carry: no session may carry the connection past the check.
  await proxy.setSnapshot(snap([{ ...base, tls: tlsCfg({ ca: pki.ca, serverName: 'api.example.com' }) }], 3));
  t.is(await roundTrip(l.port, 'd'), '');
  // The client sees its reset before the engine's report (which carries the failure) reaches JS.
  await until(() => stats.get('meshext_upstream_tls_verify_fail_total', { service: base.kri, reason: 'name_mismatch' }) === 1, 'failure counted');
  t.is(metric(stats, 'meshext_upstream_tls_session_reused_total', base.kri), 1);
  t.is(metric(stats, 'meshext_upstream_tls_handshake_total', base.kri), 3, 'the fourth connection never completed a verified handshake');
  await proxy.close();
  await closeServer(up.srv);
});
