import test from 'ava';
import net from 'node:net';
import tls from 'node:tls';
import { makePki, type KeyPair, type TestPki } from '../helpers/certs.js';
import { closeServer, ipEp, listen, newProxy, roundTrip, settle, snap, svc, tlsCfg, tlsEcho, until } from '../helpers/proxy.js';
import type { CompiledEndpoint, CompiledTls, VerificationMode } from '../../src/snapshot/types.js';
import { detectSystemCa } from '../../src/proxy/system-ca.js';

let pki: TestPki;
test.before(() => {
  pki = makePki();
});
test.after.always(() => pki?.cleanup());

/** Runs one echo through a TLS-originating tcp service; returns whether it passed and the verify-fail reasons counted. */
async function through(server: tls.TlsOptions, cfg: Partial<CompiledTls>, ep?: (port: number) => CompiledEndpoint): Promise<{ ok: boolean; reasons: string[]; handshakes: number }> {
  const up = await tlsEcho(server);
  // A failure (the throw below, a settle that times out) still stops the engine and the upstream.
  try {
    const s = svc({ endpoints: [ep ? ep(up.port) : ipEp(up.port)], tls: tlsCfg({ ca: pki.ca, ...cfg }) });
    const { proxy, stats } = newProxy();
    let got: string;
    try {
      await proxy.setSnapshot(snap([s]));
      const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
      got = await roundTrip(l.port, 'secret-ping');
      await settle(proxy);
      // Every attempt is one engine connect, whatever its outcome.
      if (stats.get('meshext_upstream_cx_total', { service: s.kri }) !== 1) throw new Error('expected the engine to make exactly one upstream connection');
    } finally {
      await proxy.close();
    }
    const reasons = stats.json().filter((x) => x.name === 'meshext_upstream_tls_verify_fail_total' && x.value > 0).map((x) => x.labels.reason as string);
    return { ok: got === 'secret-ping', reasons, handshakes: stats.get('meshext_upstream_tls_handshake_total', { service: s.kri }) ?? 0 };
  } finally {
    await closeServer(up.srv);
  }
}

const server = (kp: KeyPair, extra: tls.TlsOptions = {}): tls.TlsOptions => ({ key: kp.key, cert: kp.cert, ...extra });

// Expected outcome per certificate and mode (DESIGN decision 6): Secured = chain+names, SkipSAN = chain,
// SkipCA = names, SkipAll = neither.
const matrix: Array<{ cert: keyof Pick<TestPki, 'good' | 'unknownCa' | 'wrongName' | 'expired'>; reason: string; pass: Record<VerificationMode, boolean> }> = [
  { cert: 'good', reason: '', pass: { Secured: true, SkipSAN: true, SkipCA: true, SkipAll: true } },
  { cert: 'unknownCa', reason: 'unknown_ca', pass: { Secured: false, SkipSAN: false, SkipCA: true, SkipAll: true } },
  { cert: 'wrongName', reason: 'name_mismatch', pass: { Secured: false, SkipSAN: true, SkipCA: false, SkipAll: true } },
  { cert: 'expired', reason: 'expired', pass: { Secured: false, SkipSAN: false, SkipCA: true, SkipAll: true } },
];

for (const row of matrix) {
  for (const mode of ['Secured', 'SkipSAN', 'SkipCA', 'SkipAll'] as const) {
    const expect = row.pass[mode];
    test(`tcp+tls ${mode} with ${row.cert} certificate ${expect ? 'passes' : `fails (${row.reason})`}`, async (t) => {
      const r = await through(server(pki[row.cert]), { mode });
      t.is(r.ok, expect);
      if (expect) t.deepEqual(r.reasons, []);
      else t.deepEqual(r.reasons, [row.reason]);
    });
  }
}

test('tcp+tls: DNS endpoint sends SNI and is verified against it', async (t) => {
  let sni: string | undefined;
  const r = await through(
    server(pki.good, { SNICallback: (name, cb) => ((sni = name), cb(null, tls.createSecureContext({ key: pki.good.key, cert: pki.good.cert }))) }),
    {},
    (port) => ({ kind: 'dns', address: 'localhost', port }),
  );
  t.true(r.ok);
  t.is(sni, 'localhost');
});

test('tcp+tls: serverName is the SNI and the expected name', async (t) => {
  t.false((await through(server(pki.good), { serverName: 'api.example.com' })).ok);
  t.true((await through(server(pki.wrongName), { serverName: 'wrong.example' })).ok);
});

test('tcp+tls: URI-only certificate passes with a Prefix spiffe:// SAN matcher, fails without', async (t) => {
  t.true((await through(server(pki.uriOnly), { subjectAltNames: [{ type: 'Prefix', value: 'spiffe://example.local/ns/local' }] })).ok);
  t.true((await through(server(pki.uriOnly), { subjectAltNames: [{ type: 'Exact', value: 'spiffe://example.local/ns/local/sa/web' }] })).ok);
  const no = await through(server(pki.uriOnly), {});
  t.false(no.ok);
  t.deepEqual(no.reasons, ['name_mismatch']);
  t.false((await through(server(pki.uriOnly), { subjectAltNames: [{ type: 'Prefix', value: 'spiffe://other.local/' }] })).ok);
});

test('tcp+tls: versions — min=max=TLS13 against a TLS1.2-only server fails, TLS12 works; limits apply in SkipAll too', async (t) => {
  const tls12 = server(pki.good, { maxVersion: 'TLSv1.2' });
  const v13 = await through(tls12, { minVersion: 'TLS13', maxVersion: 'TLS13' });
  t.false(v13.ok);
  t.deepEqual(v13.reasons, ['version']);
  t.true((await through(tls12, { minVersion: 'TLS12', maxVersion: 'TLS12' })).ok);
  t.false((await through(tls12, { minVersion: 'TLS13', maxVersion: 'TLS13', mode: 'SkipAll' })).ok);
  t.true((await through(tls12, {})).ok, 'TLSAuto negotiates 1.2');
});

test('tcp+mtls: client certificate is presented; without it the server refuses (no_client_cert)', async (t) => {
  const mtls = server(pki.good, { requestCert: true, rejectUnauthorized: true, ca: pki.ca });
  const ok = await through(mtls, { cert: pki.client.cert, key: pki.client.key });
  t.true(ok.ok);
  t.is(ok.handshakes, 1);
  for (const mode of ['SkipSAN', 'SkipCA', 'SkipAll'] as const) t.true((await through(mtls, { mode, cert: pki.client.cert, key: pki.client.key })).ok, mode);
  const none = await through(mtls, {});
  t.false(none.ok);
  t.deepEqual(none.reasons, ['no_client_cert']);
});

test('tcp+tls: Secured without any CA fails closed with MESHEXT_E_TLS_NO_CA; other services unaffected', async (t) => {
  const up = await tlsEcho(server(pki.good));
  const bad = svc({ endpoints: [ipEp(up.port)], tls: tlsCfg({}) });
  const fine = svc({ endpoints: [ipEp(up.port)], tls: tlsCfg({ ca: pki.ca }) });
  const { proxy } = newProxy({ systemCaPath: null });
  await proxy.setSnapshot(snap([bad, fine]));
  const lb = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, bad.id);
  const lf = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, fine.id);
  t.is(await roundTrip(lb.port, 'x'), '');
  t.is(await roundTrip(lf.port, 'y'), 'y');
  await proxy.close();
  // The system bundle is used when tls.ca is absent (here it is our test CA, via the override path).
  const { join } = await import('node:path');
  const caPath = join(pki.dir, 'ca.crt');
  const sys = newProxy({ systemCaPath: caPath });
  await sys.proxy.setSnapshot(snap([bad]));
  const ls = await sys.proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, bad.id);
  t.is(await roundTrip(ls.port, 'z'), 'z');
  await sys.proxy.close();
  await closeServer(up.srv);
});

test('tls config errors never leak key material', async (t) => {
  const secret = Buffer.from('-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n');
  const s = svc({ endpoints: [ipEp(1)], tls: tlsCfg({ ca: pki.ca, cert: pki.client.cert, key: secret }) });
  const lines: string[] = [];
  const { createLogger } = await import('../../src/log.js');
  const { Writable } = await import('node:stream');
  const log = createLogger({ level: 'debug', stream: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  const { proxy } = newProxy({ log });
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  t.is(await roundTrip(l.port, 'x'), '');
  await proxy.close();
  const all = lines.join('');
  t.regex(all, /MESHEXT_E_TLS_CONFIG/);
  t.notRegex(all, /c2VjcmV0/);
});

test('system CA detection honours the env override, then the first existing candidate', (t) => {
  t.is(detectSystemCa({ KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH: '/x/ca.pem' }, () => false), '/x/ca.pem');
  t.is(detectSystemCa({}, (p) => p === '/etc/ssl/ca-bundle.pem' || p === '/etc/ssl/cert.pem'), '/etc/ssl/ca-bundle.pem');
  t.is(detectSystemCa({}, () => false), null);
});

test('tcp+tls: a server that accepts but never answers the ClientHello fails the handshake after the connect timeout', async (t) => {
  const held: net.Socket[] = [];
  const silent = net.createServer((c) => held.push(c));
  const l0 = await listen(silent);
  const s = svc({ endpoints: [ipEp(l0.port)], tls: tlsCfg({ ca: pki.ca }) });
  const { proxy, stats } = newProxy({ connectTimeoutMs: 300 });
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  t.is(await roundTrip(l.port, 'x'), '');
  // The engine closes the client before its report reaches the JS thread that counts the failure.
  await settle(proxy);
  t.is(stats.get('meshext_upstream_tls_verify_fail_total', { service: s.kri, reason: 'handshake' }), 1);
  t.is(stats.get('meshext_upstream_tls_handshake_total', { service: s.kri }) ?? 0, 0);
  await proxy.close();
  for (const c of held) c.destroy();
  await closeServer(silent);
});

test('tcp+tls: a server-first protocol (greeting before any client byte) and a large reply pass through', async (t) => {
  const big = Buffer.alloc(3 * 1024 * 1024 + 17, 'a');
  const srv = tls.createServer({ key: pki.good.key, cert: pki.good.cert }, (c) => {
    c.on('error', () => {});
    c.write('220 ready\r\n');
    c.once('data', () => c.end(big));
  });
  srv.on('tlsClientError', () => {});
  const up = await listen(srv);
  const s = svc({ endpoints: [ipEp(up.port)], tls: tlsCfg({ ca: pki.ca }) });
  const { proxy, stats } = newProxy();
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  const got = await new Promise<Buffer>((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port: l.port });
    const chunks: Buffer[] = [];
    let asked = false;
    c.on('data', (d: Buffer) => {
      chunks.push(d);
      if (!asked && Buffer.concat(chunks).toString().startsWith('220 ready\r\n')) {
        asked = true;
        c.write('GO\r\n');
      }
    });
    c.on('error', () => {});
    c.on('close', () => resolve(Buffer.concat(chunks)));
  });
  t.is(got.length, 11 + big.length);
  t.true(got.subarray(11).equals(big));
  await settle(proxy);
  await until(() => (stats.get('meshext_upstream_cx_active', { service: s.kri }) ?? 0) === 0, 'upstream closed');
  // Upstream byte counters count TLS records on the wire (more than the plaintext).
  t.true((stats.get('meshext_upstream_cx_rx_bytes_total', { service: s.kri }) ?? 0) > big.length);
  await proxy.close();
  await closeServer(srv);
});

test('tcp+tls: a failed verification fails over to the next endpoint, as a refused connect does', async (t) => {
  const bad = await tlsEcho(server(pki.unknownCa));
  const good = await tlsEcho(server(pki.good));
  const s = svc({ endpoints: [ipEp(bad.port), ipEp(good.port)], tls: tlsCfg({ ca: pki.ca }) });
  const { proxy, stats } = newProxy();
  await proxy.setSnapshot(snap([s]));
  const l = await proxy.listenOutbound({ address: '127.0.0.1', port: 0 }, s.id);
  // Round-robin starts at the endpoint with the untrusted certificate for the first connection.
  t.is(await roundTrip(l.port, 'one'), 'one');
  t.is(await roundTrip(l.port, 'two'), 'two');
  await settle(proxy);
  t.is(stats.get('meshext_upstream_tls_verify_fail_total', { service: s.kri, reason: 'unknown_ca' }), 1);
  t.is(stats.get('meshext_upstream_tls_handshake_total', { service: s.kri }), 2);
  t.is(stats.get('meshext_upstream_cx_total', { service: s.kri }), 3);
  const ep = proxy.clusters()[0]?.endpoints.find((e) => e.address === `127.0.0.1:${bad.port}`);
  t.is(ep?.consecutiveFailures, 1);
  t.regex(ep?.lastError ?? '', /unknown authority/);
  await proxy.close();
  await closeServer(bad.srv);
  await closeServer(good.srv);
});
