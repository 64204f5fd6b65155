// Plans are data: the seed documents' services compiled into plans, compared with golden files
// (test/golden/plans/<seed set>.yaml; regenerate with UPDATE_GOLDEN=1 after checking the diff by eye), and
// the rules a plan follows, case by case.
import test from 'ava';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadResources } from '../../../src/resources/index.js';
import { Ipam } from '../../../src/ipam/index.js';
import { compileSnapshot } from '../../../src/snapshot/compile.js';
import { compilePlan, compilePlans, DEFAULT_TIMEOUTS, planForDump, type NameAnswer, type PlanContext } from '../../../src/snapshot/plan.js';
import { ipEp, svc, tlsCfg } from '../../helpers/proxy.js';

const SEEDS = 'test/fixtures/seeds';
const GOLDEN = 'test/golden/plans';

/** A fixed run-time context: a fake system CA bundle, and DNS answers from a table (unknown names unresolved). */
function context(answers: Record<string, NameAnswer> = {}, systemCaPath: string | null = '/etc/ssl/certs/ca-certificates.crt'): PlanContext {
  return {
    vipCidr: '242.0.0.0/8',
    systemCaPath,
    readCa: (p) => Buffer.from(`-----BEGIN CERTIFICATE-----\nsystem bundle ${p}\n-----END CERTIFICATE-----\n`),
    answer: (name) => answers[name],
    timeouts: DEFAULT_TIMEOUTS,
  };
}

const SEED_ANSWERS: Record<string, NameAnswer> = {
  'httpbin.org': { addresses: ['54.0.0.1', '54.0.0.2'] },
  'tcpbin.com': { addresses: ['45.0.0.7'] },
  'grpcbin.test.k6.io': { error: 'no such name (ENOTFOUND)' },
};

const GOLDEN_SETS: Array<[string, string[]]> = [
  ...['kong-mesh/universal', 'kong-mesh/kubernetes', 'kuma-website'].map((set): [string, string[]] => [set, [`${SEEDS}/${set}`, `${SEEDS}/secrets`]]),
  // MeshTimeouts merged per service (test/fixtures/policies/meshtimeout/timeouts.yaml says what wins and why).
  ['meshtimeout', ['test/fixtures/policies/meshtimeout']],
  // MeshRetries merged per service and mapped as Kuma's plugin maps them (test/fixtures/policies/meshretry/retries.yaml).
  ['meshretry', ['test/fixtures/policies/meshretry']],
  // MeshAccessLogs merged per service (test/fixtures/policies/meshaccesslog/logs.yaml says what wins and why).
  ['meshaccesslog', ['test/fixtures/policies/meshaccesslog']],
  // MeshCircuitBreakers and MeshHealthChecks merged per service (test/fixtures/policies/health/policies.yaml says what wins).
  ['health-policies', ['test/fixtures/policies/health']],
  // Dataplane-targeted policies: a plan of its own for each Dataplane whose values differ (policies.yaml says which).
  ['dataplane', ['test/fixtures/policies/dataplane']],
];

for (const [set, dirs] of GOLDEN_SETS) {
  test(`golden plans: ${set} seed`, async (t) => {
    const load = await loadResources(dirs);
    const stateDir = await mkdtemp(join(tmpdir(), 'meshext-plan-'));
    t.teardown(() => rm(stateDir, { recursive: true, force: true }));
    const ipam = await Ipam.open({ stateDir, cidr: '242.0.0.0/8' });
    const snap = await compileSnapshot({ load, ipam, generation: 1 });
    const plans = compilePlans([...snap.services].sort((a, b) => a.id.localeCompare(b.id)), context(SEED_ANSWERS));
    const actual = stringify(plans.map(planForDump));
    const file = join(GOLDEN, `${set.replace('/', '-')}.yaml`);
    if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) {
      if (process.env.UPDATE_GOLDEN !== '1') t.fail(`missing ${file}; run with UPDATE_GOLDEN=1`);
      mkdirSync(GOLDEN, { recursive: true });
      writeFileSync(file, actual);
    }
    t.is(actual, readFileSync(file, 'utf8'));
    // Key material never appears in a dumped plan.
    t.false(actual.includes('PRIVATE KEY'));
  });
}

test('plan: keys, protocol, endpoints in order with priorities, Host rule for DNS names, timeouts', (t) => {
  const s = svc({
    protocol: 'http',
    vip: '242.0.0.9',
    port: 8080,
    endpoints: [{ ...ipEp(80, '10.0.0.1'), priority: 1 }, { kind: 'dns', address: 'api.example', port: 443 }, { kind: 'unix', path: '/run/u.sock' }, ipEp(80, '::1')],
  });
  const p = compilePlan(s, context({ 'api.example': { addresses: ['10.1.1.1', '2001:db8::1'] } }));
  t.deepEqual(p.keys, ['242.0.0.9:8080', `@${s.id}`]);
  t.is(p.protocol, 'http');
  t.deepEqual(p.endpoints, [
    { label: '10.0.0.1:80', priority: 1, targets: [{ address: '10.0.0.1', port: 80 }] },
    { label: 'api.example:443', priority: 0, host: 'api.example', targets: [{ address: '10.1.1.1', port: 443 }, { address: '2001:db8::1', port: 443 }] },
    { label: 'unix:/run/u.sock', priority: 0, targets: [{ address: '/run/u.sock', port: 0 }] },
    { label: '[::1]:80', priority: 0, targets: [{ address: '::1', port: 80 }] },
  ]);
  t.deepEqual(p.timeouts, DEFAULT_TIMEOUTS);
  t.is(p.deny, undefined);
  t.is(p.error, undefined);
});

test('plan: a DNS name without addresses, with an error, or answering inside the VIP CIDR has no targets and says why', (t) => {
  const s = svc({ endpoints: [{ kind: 'dns', address: 'gone.example', port: 1 }, { kind: 'dns', address: 'loop.example', port: 1 }, { kind: 'dns', address: 'new.example', port: 1 }, { kind: 'dns', address: 'half.example', port: 1 }, ipEp(1, '242.0.0.3')] });
  const p = compilePlan(
    s,
    context({
      'gone.example': { error: 'no such name (ENOTFOUND)' },
      'loop.example': { addresses: ['242.1.2.3'] },
      'half.example': { addresses: ['242.1.2.3', '10.0.0.5'] },
    }),
  );
  t.deepEqual(
    p.endpoints.map((e) => [e.targets.map((x) => x.address), e.unavailable]),
    [
      [[], 'cannot resolve endpoint gone.example: no such name (ENOTFOUND)'],
      [[], 'endpoint loop.example:1 resolves to 242.1.2.3, inside the VIP CIDR 242.0.0.0/8; refusing to dial'],
      [[], 'endpoint new.example:1 is not resolved yet'],
      [['10.0.0.5'], undefined],
      [[], 'endpoint 242.0.0.3:1 is inside the VIP CIDR 242.0.0.0/8; refusing to dial'],
    ],
  );
});

test('plan: TLS settings follow the service (SNI, verification, versions, session keys); equal settings share an id', (t) => {
  const ca = Buffer.from('-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n');
  const base = svc({ endpoints: [{ kind: 'dns', address: 'api.example', port: 443 }, ipEp(443, '10.0.0.1')], tls: tlsCfg({ ca, minVersion: 'TLS13', mode: 'SkipSAN', subjectAltNames: [{ type: 'Exact', value: '0::1' }] }) });
  const p = compilePlan(base, context({ 'api.example': { addresses: ['10.1.1.1'] } }));
  t.like(p.tls, { minVersion: 0x0304, maxVersion: 0x0304, verifyChain: true, verifyNames: false, servername: 'api.example', allowRenegotiation: false });
  t.deepEqual(p.tls?.subjectAltNames, [{ exact: true, value: '0::1', ipValue: '0:0:0:0:0:0:0:1' }], 'IP matchers in the normalised form IP SANs are compared in');
  t.deepEqual(p.tls?.sessionCache, { ticketsPerKey: 32, keys: 64 });
  t.deepEqual(p.endpoints[1]?.targets, [{ address: '10.0.0.1', port: 443, sessionKey: '10.0.0.1|443|api.example', dialledIp: '10.0.0.1' }]);
  t.is(compilePlan({ ...base, name: 'other' }, context({ 'api.example': { addresses: ['10.1.1.1'] } })).tls?.id, p.tls?.id, 'same settings, same id');
  t.not(compilePlan({ ...base, tls: tlsCfg({ ca, serverName: 'x.example' }) }, context()).tls?.id, p.tls?.id);
  // serverName wins over the first DNS endpoint; SkipAll checks nothing and carries no CA.
  const all = compilePlan({ ...base, tls: tlsCfg({ mode: 'SkipAll', serverName: 'x.example' }) }, context({}, null));
  t.like(all.tls, { verifyChain: false, verifyNames: false, servername: 'x.example' });
  t.is(all.tls?.ca, undefined);
  t.is(all.error, undefined);
  // TLS 1.0/1.1 asked for: OpenSSL's legacy ciphers are allowed for it.
  t.is(compilePlan({ ...base, tls: tlsCfg({ ca, minVersion: 'TLS10' }) }, context()).tls?.cipherList, 'DEFAULT:@SECLEVEL=0');
});

test('plan: Secured without any CA fails closed with the reason; the system bundle is used when caCert is absent', (t) => {
  const s = svc({ endpoints: [ipEp(443)], tls: tlsCfg({}) });
  const none = compilePlan(s, context({}, null));
  t.is(none.tls, undefined);
  t.is(none.errorCode, 'MESHEXT_E_TLS_NO_CA');
  t.regex(none.error ?? '', /tls\.verification\.mode Secured needs a CA/);
  const sys = compilePlan(s, context());
  t.regex(sys.tls?.ca?.toString() ?? '', /system bundle \/etc\/ssl\/certs\/ca-certificates\.crt/);
  const broken = compilePlan(s, { ...context(), readCa: () => { throw Object.assign(new Error('nope'), { code: 'EACCES' }); } });
  t.regex(broken.error ?? '', /system CA bundle \/etc\/ssl\/certs\/ca-certificates\.crt cannot be read \(EACCES\)/);
});

test('plan: a denied service carries its replies; a service without endpoints fails closed', (t) => {
  const denied = compilePlan(svc({ mesh: 'm1', endpoints: [ipEp(1)], forbidden: true }), context());
  t.deepEqual(denied.deny, { status: 403, grpcStatus: 7, message: 'MeshExternalService access denied by Mesh "m1" setting routing.defaultForbidMeshExternalServiceAccess' });
  const empty = compilePlan(svc({ endpoints: [] }), context());
  t.is(empty.error, 'service has no endpoints');
  t.is(empty.errorCode, 'MESHEXT_E_NO_ENDPOINTS');
});

test('plan: an extension service (none is supported) fails closed naming its type', (t) => {
  const p = compilePlan(svc({ endpoints: [], extension: 'Lambda' }), context());
  t.is(p.error, 'MeshExternalService extension Lambda is not supported by meshext');
  t.is(p.errorCode, 'MESHEXT_E_EXTENSION_UNSUPPORTED');
});
