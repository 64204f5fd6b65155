import test from 'ava';
import net from 'node:net';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { issueLeaf, makePki, type KeyPair, type TestPki } from '../helpers/certs.js';
import { closeServer, ipEp, listen, svc, tlsCfg } from '../helpers/proxy.js';
import type { CompiledEndpoint, CompiledTls, VerificationMode } from '../../src/snapshot/types.js';
import { nativeForTests, type NativeTlsContext, type NativeTlsProbeResult } from '../../src/native/addon.js';
import { compilePlan, DEFAULT_TIMEOUTS, sessionKey } from '../../src/snapshot/plan.js';
import { describeTlsFailure, type TlsFailReason } from '../../src/proxy/tls.js';

// The native TLS client without an engine (test addon exports): the contexts the engine builds from plans.
const addon = nativeForTests();
let pki: TestPki;
test.before(() => {
  pki = makePki();
});
test.after.always(() => pki?.cleanup());

/** A TLS echo server recording, per handshake, whether the session was resumed and the SNI it saw. */
async function echo(kp: KeyPair, extra: tls.TlsOptions = {}): Promise<{ srv: tls.Server; port: number; reused: boolean[]; sni: Array<string | false>; alpn: Array<string | false> }> {
  const reused: boolean[] = [];
  const sni: Array<string | false> = [];
  const alpn: Array<string | false> = [];
  const srv = tls.createServer({ key: kp.key, cert: kp.cert, ...extra }, (s) => {
    reused.push(s.isSessionReused());
    sni.push((s as tls.TLSSocket & { servername?: string | false }).servername ?? false);
    alpn.push(s.alpnProtocol ?? false);
    s.on('error', () => {});
    s.pipe(s);
  });
  srv.on('tlsClientError', () => {});
  return { ...(await listen(srv)), reused, sni, alpn };
}

/** The context the engine would build for a service with these TLS settings (from its plan). */
function context(cfg: Partial<CompiledTls>, endpoints: CompiledEndpoint[] = [ipEp(1)], systemCaPath: string | null = null): { ctx: NativeTlsContext; servername?: string } {
  const s = svc({ endpoints, tls: tlsCfg(cfg) });
  const plan = compilePlan(s, { vipCidr: '242.0.0.0/8', systemCaPath, readCa: (p) => readFileSync(p), answer: () => undefined, timeouts: DEFAULT_TIMEOUTS });
  if (!plan.tls) throw new Error(plan.error ?? 'no TLS in the plan');
  return { ctx: addon.tlsContextCreate(plan.tls), ...(plan.tls.servername !== undefined ? { servername: plan.tls.servername } : {}) };
}

/** A failure as the control plane names it: the reason for the metric, the text for the log, and the stage. */
interface Failure {
  reason: TlsFailReason;
  message: string;
  stage: string;
}

/** Dials `port` in Node, hands the fd to the native client (as the relay will) and runs one exchange. */
async function probe(ctx: NativeTlsContext, port: number, o: { sessionKey?: string; alpn?: string[]; send?: string; timeoutMs?: number } = {}): Promise<NativeTlsProbeResult & { err?: Failure; text: string }> {
  const raw = net.connect({ host: '127.0.0.1', port });
  await once(raw, 'connect');
  const fd = (raw as unknown as { _handle: { fd: number } })._handle.fd;
  const p = addon.tlsProbe(ctx, fd, { sessionKey: o.sessionKey, dialledIp: '127.0.0.1', alpn: o.alpn, timeoutMs: o.timeoutMs ?? 3000, send: Buffer.from(o.send ?? 'ping') });
  raw.destroy();
  const r = await p;
  if (!r.failure) return { ...r, text: r.received.toString() };
  const d = describeTlsFailure(r.failure);
  return { ...r, text: r.received.toString(), err: { reason: d.reason, message: d.text, stage: r.failure.stage } };
}

const matrix: Array<{ cert: 'good' | 'unknownCa' | 'wrongName' | 'expired'; reason: TlsFailReason | ''; pass: Record<VerificationMode, boolean> }> = [
  { cert: 'good', reason: '', pass: { Secured: true, SkipSAN: true, SkipCA: true, SkipAll: true } },
  { cert: 'unknownCa', reason: 'unknown_ca', pass: { Secured: false, SkipSAN: false, SkipCA: true, SkipAll: true } },
  { cert: 'wrongName', reason: 'name_mismatch', pass: { Secured: false, SkipSAN: true, SkipCA: false, SkipAll: true } },
  { cert: 'expired', reason: 'expired', pass: { Secured: false, SkipSAN: false, SkipCA: true, SkipAll: true } },
];

test('native client: verification matrix (certificate × mode) gives the outcome and the reason', async (t) => {
  const servers = Object.fromEntries(await Promise.all(matrix.map(async (r) => [r.cert, await echo(pki[r.cert])] as const)));
  for (const row of matrix) {
    for (const mode of ['Secured', 'SkipSAN', 'SkipCA', 'SkipAll'] as const) {
      const r = await probe(context({ ca: pki.ca, mode }).ctx, servers[row.cert]!.port);
      const what = `${row.cert}/${mode}`;
      t.is(r.ok, row.pass[mode], what);
      if (row.pass[mode]) t.is(r.text, 'ping', what);
      else {
        t.true(r.err?.stage === 'chain' || r.err?.stage === 'policy', what);
        t.is(r.err?.reason, row.reason || undefined, what);
        t.is(r.text, '', `${what}: nothing is sent to a rejected server`);
      }
    }
  }
  for (const s of Object.values(servers)) await closeServer(s.srv);
});

test('native client: SNI is serverName, else the first DNS endpoint, else none; the expected name follows it', async (t) => {
  const up = await echo(pki.good);
  t.true((await probe(context({ ca: pki.ca }, [{ kind: 'dns', address: 'localhost', port: 1 }]).ctx, up.port)).ok);
  const mismatch = await probe(context({ ca: pki.ca, serverName: 'api.example.com' }).ctx, up.port);
  t.is(mismatch.err?.reason, 'name_mismatch');
  t.regex(mismatch.err?.message ?? '', /expected api\.example\.com, certificate has DNS:localhost,IP:127\.0\.0\.1/);
  t.true((await probe(context({ ca: pki.ca }).ctx, up.port)).ok, 'no SNI: the dialled IP is checked');
  t.deepEqual(up.sni, ['localhost', 'api.example.com', false]);
  await closeServer(up.srv);
});

test('native client: user SAN matchers (Exact/Prefix) are OR-ed over DNS, IP and URI SANs', async (t) => {
  const uri = await echo(pki.uriOnly);
  t.true((await probe(context({ ca: pki.ca, subjectAltNames: [{ type: 'Prefix', value: 'spiffe://example.local/ns/local' }] }).ctx, uri.port)).ok);
  t.true((await probe(context({ ca: pki.ca, subjectAltNames: [{ type: 'Exact', value: 'spiffe://example.local/ns/local/sa/web' }] }).ctx, uri.port)).ok);
  t.is((await probe(context({ ca: pki.ca }).ctx, uri.port)).err?.reason, 'name_mismatch');
  t.is((await probe(context({ ca: pki.ca, subjectAltNames: [{ type: 'Prefix', value: 'spiffe://other.local/' }] }).ctx, uri.port)).err?.reason, 'name_mismatch');
  const v6 = issueLeaf(pki, 'v6only', 'subjectAltName=IP:::1,DNS:other.example\nextendedKeyUsage=serverAuth');
  const ip = await echo(v6);
  // An Exact matcher compares IPs in normalised form (so "0::1" equals the SAN ::1), a Prefix one as text.
  t.true((await probe(context({ ca: pki.ca, subjectAltNames: [{ type: 'Exact', value: '0::1' }] }).ctx, ip.port)).ok);
  t.true((await probe(context({ ca: pki.ca, subjectAltNames: [{ type: 'Prefix', value: '0:0:0:0' }] }).ctx, ip.port)).ok);
  t.false((await probe(context({ ca: pki.ca, subjectAltNames: [{ type: 'Prefix', value: '::' }] }).ctx, ip.port)).ok);
  await closeServer(uri.srv);
  await closeServer(ip.srv);
});

test('native client: host name checks agree with Node tls.checkServerIdentity (wildcards, case, trailing dot, CN fallback)', async (t) => {
  const certs: Record<string, KeyPair> = {
    wild: issueLeaf(pki, 'wild', 'subjectAltName=DNS:*.example.com,DNS:x*.test.org,DNS:*.xn--bcher-kva.example,DNS:*.com\nextendedKeyUsage=serverAuth'),
    cnOnly: issueLeaf(pki, 'cnonly', 'extendedKeyUsage=serverAuth', '/CN=Cn.Example.NET'),
    uriAndCn: issueLeaf(pki, 'uricn', 'subjectAltName=URI:spiffe://x/y\nextendedKeyUsage=serverAuth', '/CN=*.cn.example.net'),
  };
  const names = ['a.example.com', 'A.EXAMPLE.com.', 'b.a.example.com', 'example.com', 'xyz.test.org', 'x.test.org', 'y.test.org', 'a.xn--bcher-kva.example', 'foo.com', 'cn.example.net', 'CN.example.net.', 'q.cn.example.net', 'cn.example.net.evil'];
  for (const [label, kp] of Object.entries(certs)) {
    const up = await echo(kp);
    const x = new X509Certificate(kp.cert);
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(x.subject)?.[1];
    const peer = { subject: cn ? { CN: cn } : {}, subjectaltname: x.subjectAltName } as unknown as tls.PeerCertificate;
    for (const name of names) {
      const nodeOk = tls.checkServerIdentity(name, peer) === undefined;
      const r = await probe(context({ ca: pki.ca, mode: 'SkipCA', serverName: name }).ctx, up.port);
      t.is(r.ok, nodeOk, `${label} vs ${name}`);
    }
    await closeServer(up.srv);
  }
});

test('native client: protocol bounds apply in every mode; version failures are classified', async (t) => {
  const tls12 = await echo(pki.good, { maxVersion: 'TLSv1.2' });
  const v13 = await probe(context({ ca: pki.ca, minVersion: 'TLS13', maxVersion: 'TLS13' }).ctx, tls12.port);
  t.is(v13.err?.reason, 'version');
  t.is((await probe(context({ ca: pki.ca, minVersion: 'TLS13', maxVersion: 'TLS13', mode: 'SkipAll' }).ctx, tls12.port)).err?.reason, 'version');
  const ok12 = await probe(context({ ca: pki.ca, minVersion: 'TLS12', maxVersion: 'TLS12' }).ctx, tls12.port);
  t.true(ok12.ok);
  t.is(ok12.protocol, 'TLSv1.2');
  t.is((await probe(context({ ca: pki.ca }).ctx, tls12.port)).protocol, 'TLSv1.2', 'TLSAuto negotiates 1.2');
  const tls13 = await echo(pki.good, { minVersion: 'TLSv1.3' });
  t.is((await probe(context({ ca: pki.ca, maxVersion: 'TLS12' }).ctx, tls13.port)).err?.reason, 'version');
  t.is((await probe(context({ ca: pki.ca }).ctx, tls13.port)).protocol, 'TLSv1.3');
  await closeServer(tls12.srv);
  await closeServer(tls13.srv);
});

test('native client: the client certificate is presented in every mode; without it the server refuses (no_client_cert)', async (t) => {
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    const mtls = await echo(pki.good, { requestCert: true, rejectUnauthorized: true, ca: pki.ca, maxVersion });
    for (const mode of ['Secured', 'SkipSAN', 'SkipCA', 'SkipAll'] as const) {
      const r = await probe(context({ ca: pki.ca, mode, cert: pki.client.cert, key: pki.client.key }).ctx, mtls.port);
      t.is(r.text, 'ping', `${maxVersion} ${mode}`);
    }
    // TLS 1.3 rejects the missing certificate after the client's handshake completed: the alert arrives on read.
    const none = await probe(context({ ca: pki.ca }).ctx, mtls.port);
    t.is(none.text, '');
    t.is(none.err?.reason, maxVersion === 'TLSv1.3' ? 'no_client_cert' : 'handshake', maxVersion);
    await closeServer(mtls.srv);
  }
});

test('native client: ALPN is offered per connection and the selection reported', async (t) => {
  const up = await echo(pki.good, { ALPNProtocols: ['h2', 'http/1.1'] });
  const { ctx } = context({ ca: pki.ca });
  t.is((await probe(ctx, up.port, { alpn: ['h2'] })).alpn, 'h2');
  t.is((await probe(ctx, up.port, { alpn: ['http/1.1', 'x'] })).alpn, 'http/1.1');
  t.is((await probe(ctx, up.port)).alpn, '');
  t.deepEqual(up.alpn, ['h2', 'http/1.1', false]);
  await closeServer(up.srv);
});

for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
  test(`native client ${version}: sessions resume per endpoint key (1.3 tickets once each), and a resumed session still passes the SAN check`, async (t) => {
    const up = await echo(pki.uriOnly, { minVersion: version, maxVersion: version });
    const { ctx, servername } = context({ ca: pki.ca, subjectAltNames: [{ type: 'Prefix', value: 'spiffe://example.local/ns/local' }] });
    const key = sessionKey('127.0.0.1', up.port, servername);
    const runs: boolean[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await probe(ctx, up.port, { sessionKey: key });
      t.true(r.ok);
      runs.push(r.resumed);
    }
    // TLS 1.3: the full handshake brings two tickets, each used once; a resumed handshake brings none.
    t.deepEqual(runs, [false, true, true]);
    t.deepEqual(up.reused, runs);
    t.is(addon.tlsSessionCount(ctx, key), version === 'TLSv1.3' ? 0 : 1);
    t.false((await probe(ctx, up.port, { sessionKey: 'other|1|' })).resumed, 'another endpoint key has its own sessions');
    await closeServer(up.srv);
  });
}

test('native client: a failed connection drops the sessions cached for its endpoint key', async (t) => {
  const up = await echo(pki.good, { maxVersion: 'TLSv1.2' });
  const { ctx } = context({ ca: pki.ca });
  const key = sessionKey('127.0.0.1', up.port, undefined);
  t.true((await probe(ctx, up.port, { sessionKey: key })).ok);
  t.is(addon.tlsSessionCount(ctx, key), 1);
  t.true((await probe(ctx, up.port, { sessionKey: key })).resumed);
  // Same key, but this time the peer hangs up during the handshake (the offered session was rejected).
  const dead = net.createServer((s) => s.destroy());
  const d = await listen(dead);
  const fail = await probe(ctx, d.port, { sessionKey: key });
  t.is(fail.err?.reason, 'handshake');
  t.is(addon.tlsSessionCount(ctx, key), 0);
  await closeServer(up.srv);
  await closeServer(dead);
});

test('native client: a session from an unverified handshake is never cached', async (t) => {
  const up = await echo(pki.wrongName, { maxVersion: 'TLSv1.2' });
  const { ctx } = context({ ca: pki.ca });
  const key = sessionKey('127.0.0.1', up.port, undefined);
  t.is((await probe(ctx, up.port, { sessionKey: key })).err?.reason, 'name_mismatch');
  t.is(addon.tlsSessionCount(ctx, key), 0);
  t.is((await probe(ctx, up.port, { sessionKey: key })).err?.reason, 'name_mismatch');
  t.deepEqual(up.reused, [false, false]);
  await closeServer(up.srv);
});

test('native client: a server that never answers times out the handshake', async (t) => {
  const held: net.Socket[] = [];
  const silent = net.createServer((c) => held.push(c));
  const s = await listen(silent);
  const r = await probe(context({ ca: pki.ca }).ctx, s.port, { timeoutMs: 200 });
  t.false(r.ok);
  t.is(r.err?.stage, 'timeout');
  t.is(r.err?.reason, 'handshake');
  t.regex(r.err?.message ?? '', /TLS handshake timed out after 200 ms/);
  for (const c of held) c.destroy();
  await closeServer(silent);
});

test('native context: Secured uses the system CA bundle path when caCert is absent; bad key material is a config error without the key', async (t) => {
  // The "system" bundle is the test CA: a server it signed verifies, so the bundle was loaded and used.
  const up = await echo(pki.good);
  const r = await probe(context({}, [ipEp(up.port)], `${pki.dir}/ca.crt`).ctx, up.port);
  t.true(r.ok, r.err?.message);
  const none = await probe(context({}, [ipEp(up.port)], '/dev/null').ctx, up.port).catch((e: Error) => ({ ok: false, err: e }));
  t.false(none.ok, 'an empty bundle verifies nothing');
  await closeServer(up.srv);
  // A certificate and a key that do not belong together: OpenSSL's words, never the key.
  const e = t.throws(() => context({ ca: pki.ca, cert: pki.client.cert, key: pki.good.key }), { code: 'MESHEXT_E_TLS_CONFIG', message: /key values mismatch/ });
  t.false((e?.message ?? '').includes('PRIVATE KEY'));
  t.throws(() => addon.tlsContextCreate({ minVersion: 0x0303, maxVersion: 0x0304, cipherList: '', cipherSuites: '', verifyChain: false, verifyNames: false, allowRenegotiation: false, cert: pki.client.cert, key: pki.good.key, subjectAltNames: [], sessionCache: { ticketsPerKey: 1, keys: 1 } }), { code: 'MESHEXT_E_TLS_CONFIG', message: /key values mismatch/ });
  t.throws(() => addon.tlsContextCreate({ minVersion: 0x0303 } as never), { message: /tls\.maxVersion must be an integer/ });
});

test('native session cache: 64 endpoint keys per context, the oldest evicted first; a TLS 1.2 session replaces the previous one', async (t) => {
  const up = await echo(pki.good, { maxVersion: 'TLSv1.2' });
  const { ctx } = context({ ca: pki.ca });
  for (let i = 0; i <= 64; i++) t.true((await probe(ctx, up.port, { sessionKey: `ep${i}|1|` })).ok);
  t.is(addon.tlsSessionCount(ctx, 'ep0|1|'), 0, 'the first key was evicted by the 65th');
  t.is(addon.tlsSessionCount(ctx, 'ep1|1|'), 1);
  t.is(addon.tlsSessionCount(ctx, 'ep64|1|'), 1);
  // A reusable (TLS 1.2) session stays after use and is replaced, not accumulated, by later full handshakes.
  t.true((await probe(ctx, up.port, { sessionKey: 'ep64|1|' })).resumed);
  t.is(addon.tlsSessionCount(ctx, 'ep64|1|'), 1);
  await closeServer(up.srv);
});
