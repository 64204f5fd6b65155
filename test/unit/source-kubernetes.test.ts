/**
 * `meshext run --source kubernetes` against an in-process API server that speaks the list/watch wire
 * protocol (test/helpers/fake-kube.ts), with the real @kubernetes/client-node talking to it through a
 * kubeconfig, and the real agent (engine, DNS resolver, admin state) on loopback; redirect off.
 */
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Agent } from '../../src/agent/agent.js';
import { resolveConfig, type RawOptions } from '../../src/agent/config.js';
import { createLogger } from '../../src/log.js';
import { KubernetesSource } from '../../src/sources/kubernetes.js';
import { Registry } from '../../src/stats/registry.js';
import { makePki, type TestPki } from '../helpers/certs.js';
import { FakeKubeApi, kumaCollections } from '../helpers/fake-kube.js';
import { refusedPort, roundTrip, tlsEcho, until, closeServer } from '../helpers/proxy.js';
import { ask } from '../helpers/dns.js';
import { JsonChild } from '../helpers/privileged.js';
import { spawn } from 'node:child_process';

const cols = kumaCollections('kuma-system');

type Logged = Record<string, unknown> & { msg: string; level: number };

interface Env {
  api: FakeKubeApi;
  agent: Agent;
  dir: string;
  dnsPort: number;
  logs: Logged[];
  pki: TestPki;
}

let sharedPki: TestPki | undefined;
function pki(): TestPki {
  sharedPki ??= makePki();
  return sharedPki;
}
test.after.always(() => sharedPki?.cleanup());

function mes(name: string, port: number, extra: Record<string, unknown> = {}): { metadata: { name: string; namespace: string; labels: Record<string, string> }; [k: string]: unknown } {
  return {
    metadata: { name, namespace: 'kuma-system', labels: { 'kuma.io/mesh': 'default' } },
    spec: { match: { type: 'HostnameGenerator', port, protocol: 'tcp' }, endpoints: [{ address: '127.0.0.1', port: 9 }] },
    ...extra,
  };
}

function kumaSecret(name: string, value: string): { metadata: { name: string; namespace: string; labels: Record<string, string> }; [k: string]: unknown } {
  return { metadata: { name, namespace: 'kuma-system', labels: { 'kuma.io/mesh': 'default' } }, type: 'system.kuma.io/secret', data: { value } };
}

/** Starts the fake API (seeded by `seed`) and an agent reading it; everything is stopped by teardown. */
async function setup(
  t: ExecutionContext,
  o: { seed?: (api: FakeKubeApi) => void; files?: Record<string, string>; startAgent?: boolean } = {},
): Promise<Env> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshext-k8s-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const api = new FakeKubeApi(pki(), Object.values(cols));
  await api.start();
  t.teardown(() => api.stop());
  o.seed?.(api);
  const logs: Logged[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l) logs.push(JSON.parse(l) as Logged);
      cb();
    },
  });
  const options: RawOptions = {
    source: 'kubernetes',
    kubeconfig: api.kubeconfig(dir),
    stateDir: path.join(dir, 'state'),
    admin: '127.0.0.1:0',
    redirect: 'off',
    dnsAddress: '127.0.0.1',
    // Port 0: a port picked here and bound later can be taken meanwhile by another test process.
    dnsPort: '0',
    dnsUpstream: [`127.0.0.1:${await refusedPort()}`],
  };
  if (o.files) {
    const cfgDir = path.join(dir, 'config');
    fs.mkdirSync(cfgDir);
    for (const [n, c] of Object.entries(o.files)) fs.writeFileSync(path.join(cfgDir, n), c);
    options.config = [cfgDir];
  }
  const cfg = resolveConfig([{ name: 'flags', options }]);
  cfg.reloadDebounceMs = 50;
  const agent = new Agent(cfg, createLogger({ format: 'json', level: 'debug', stream: sink }));
  t.teardown(() => agent.shutdown({ drainMs: 0 }));
  if (o.startAgent !== false) await agent.start();
  return {
    api,
    agent,
    dir,
    get dnsPort() {
      return agent.dnsPort();
    },
    logs,
    pki: pki(),
  };
}

const services = (e: Env) => e.agent.currentSnapshot()?.services ?? [];
const service = (e: Env, name: string) => services(e).find((s) => s.name === name);
const rejected = (e: Env) => e.agent.currentSnapshot()?.rejected ?? [];

async function aRecord(e: Env, name: string): Promise<string | undefined> {
  const r = await ask(e.dnsPort, name, 'A');
  return r.answers.find((a) => a.type === 'A')?.data as string | undefined;
}

/** Waits for `pred` and returns how long it took (ms). */
async function timed(pred: () => boolean, what: string, maxMs = 5_000): Promise<number> {
  const t0 = Date.now();
  await until(pred, what, maxMs);
  return Date.now() - t0;
}

test('an object added, changed and deleted is served, updated and removed within a second; the VIP stays', async (t) => {
  const e = await setup(t, { seed: (api) => api.apply(cols.mes, mes('first', 80)) });
  t.is(e.agent.readiness(), 'READY');
  const vip1 = await aRecord(e, 'first.extsvc.mesh.local');
  t.regex(vip1 ?? '', /^242\./);

  e.api.apply(cols.mes, mes('web', 80));
  const added = await timed(() => service(e, 'web') !== undefined, 'web served');
  const vip = service(e, 'web')!.vip;
  t.is(await aRecord(e, 'web.extsvc.mesh.local'), vip);

  e.api.apply(cols.mes, mes('web', 8080));
  const changed = await timed(() => service(e, 'web')?.port === 8080, 'web updated');
  t.is(service(e, 'web')!.vip, vip, 'a change keeps the VIP');
  t.is(service(e, 'first')?.vip, vip1, 'the other service is untouched');

  e.api.remove(cols.mes, 'web', 'kuma-system');
  const removed = await timed(() => service(e, 'web') === undefined, 'web removed');
  t.true(added < 1000 && changed < 1000 && removed < 1000, `added ${added} ms, changed ${changed} ms, removed ${removed} ms`);
  t.log(`added ${added} ms, changed ${changed} ms, removed ${removed} ms`);
  t.is(await aRecord(e, 'first.extsvc.mesh.local'), vip1);
  const dump = e.agent.configDump() as { sources: Array<{ source: string; kinds: Array<{ kind: string; state: string; objects: number }> }> };
  t.like(dump.sources[0]?.kinds.find((k) => k.kind === 'MeshExternalService'), { state: 'watching', objects: 1 });
  t.is(e.agent.stats.prometheus().match(/meshext_source_connected\{[^}]*kind="MeshExternalService"[^}]*\} (\d)/)?.[1], '1');
});

test('a MeshTimeout from the API shapes the plan of the service it selects; editing and deleting it apply', async (t) => {
  // An http service: a request timeout is a route timeout, which tcp services do not have.
  const web = mes('web', 80);
  web.spec = { match: { port: 80, protocol: 'http' }, endpoints: [{ address: '127.0.0.1', port: 9 }] };
  const e = await setup(t, { seed: (api) => api.apply(cols.mes, web) });
  type DumpedPlan = { service: string; timeouts: { requestMs: number }; policies?: { meshTimeouts: string[] } };
  const plan = () => (e.agent.configDump() as { plans: DumpedPlan[] }).plans.find((p) => p.service === 'default/web');
  t.is(plan()?.timeouts.requestMs, 0);
  const mt = (requestTimeout: string) => ({
    metadata: { name: 'web-timeout', namespace: 'kuma-system', labels: { 'kuma.io/mesh': 'default' } },
    spec: { to: [{ targetRef: { kind: 'MeshExternalService', name: 'web' }, default: { http: { requestTimeout } } }] },
  });
  e.api.apply(cols.mt, mt('2s'));
  await until(() => plan()?.timeouts.requestMs === 2000, 'policy applied');
  t.deepEqual(plan()?.policies, { meshTimeouts: ['web-timeout'] });
  e.api.apply(cols.mt, mt('3s'));
  await until(() => plan()?.timeouts.requestMs === 3000, 'policy changed');
  e.api.remove(cols.mt, 'web-timeout', 'kuma-system');
  await until(() => plan()?.timeouts.requestMs === 0, 'policy removed');
  t.is(plan()?.policies, undefined);
});

test('a MeshRetry from the API shapes the plan of the service it selects; editing and deleting it apply', async (t) => {
  const web = mes('web', 80);
  web.spec = { match: { port: 80, protocol: 'http' }, endpoints: [{ address: '127.0.0.1', port: 9 }] };
  const e = await setup(t, { seed: (api) => api.apply(cols.mes, web) });
  type DumpedPlan = { service: string; retry?: { numRetries: number }; policies?: { meshRetries?: string[] } };
  const plan = () => (e.agent.configDump() as { plans: DumpedPlan[] }).plans.find((p) => p.service === 'default/web');
  await until(() => plan() !== undefined, 'service planned');
  t.is(plan()?.retry, undefined);
  const mr = (numRetries: number) => ({
    metadata: { name: 'web-retry', namespace: 'kuma-system', labels: { 'kuma.io/mesh': 'default' } },
    spec: { to: [{ targetRef: { kind: 'MeshExternalService', name: 'web' }, default: { http: { numRetries, retryOn: ['5xx'] } } }] },
  });
  e.api.apply(cols.mr, mr(2));
  await until(() => plan()?.retry?.numRetries === 2, 'policy applied');
  t.deepEqual(plan()?.policies, { meshRetries: ['web-retry'] });
  e.api.apply(cols.mr, mr(4));
  await until(() => plan()?.retry?.numRetries === 4, 'policy changed');
  e.api.remove(cols.mr, 'web-retry', 'kuma-system');
  await until(() => plan()?.retry === undefined, 'policy removed');
  t.is(plan()?.policies, undefined);
});

test('a MeshAccessLog from the API shapes the plan of the service it selects; deleting it removes the log', async (t) => {
  const web = mes('web', 80);
  web.spec = { match: { port: 80, protocol: 'http' }, endpoints: [{ address: '127.0.0.1', port: 9 }] };
  const e = await setup(t, { seed: (api) => api.apply(cols.mes, web) });
  type DumpedPlan = { service: string; accessLog?: { backends: Array<{ path: string }> }; policies?: { meshAccessLogs?: string[] } };
  const plan = () => (e.agent.configDump() as { plans: DumpedPlan[] }).plans.find((p) => p.service === 'default/web');
  t.is(plan()?.accessLog, undefined);
  e.api.apply(cols.mal, {
    metadata: { name: 'web-log', namespace: 'kuma-system', labels: { 'kuma.io/mesh': 'default' } },
    spec: { to: [{ targetRef: { kind: 'MeshExternalService', name: 'web' }, default: { backends: [{ type: 'File', file: { path: '/dev/stdout' } }] } }] },
  });
  await until(() => plan()?.accessLog !== undefined, 'policy applied');
  t.deepEqual(plan()?.accessLog?.backends.map((b) => b.path), ['/dev/stdout']);
  t.deepEqual(plan()?.policies, { meshAccessLogs: ['web-log'] });
  e.api.remove(cols.mal, 'web-log', 'kuma-system');
  await until(() => plan()?.accessLog === undefined, 'policy removed');
  t.is(plan()?.policies, undefined);
});

test('a Secret rotation changes the CA used on the next connection', async (t) => {
  const p = pki();
  const upstream = await tlsEcho({ key: p.good.key, cert: p.good.cert });
  t.teardown(() => closeServer(upstream.srv));
  const outPort = await refusedPort();
  const tlsMes = mes('secure', 443, {});
  tlsMes.spec = {
    match: { port: 443, protocol: 'tcp' },
    endpoints: [{ address: '127.0.0.1', port: upstream.port }],
    tls: { enabled: true, verification: { serverName: 'localhost', caCert: { secret: 'upstream-ca' } } },
  };
  const e = await setup(t, {
    seed: (api) => {
      api.apply(cols.secrets, kumaSecret('upstream-ca', p.otherCa.toString('base64')));
      api.apply(cols.mes, tlsMes);
    },
    // A Universal Dataplane in a file binds a local port to the API's service: files and API merge.
    files: {
      'dataplane.yaml': `type: Dataplane\nname: node\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  outbound:\n  - port: ${outPort}\n    backendRef: {kind: MeshExternalService, name: secure}\n`,
    },
  });
  t.deepEqual(rejected(e), []);
  t.is(await roundTrip(outPort, 'ping'), '', 'the wrong CA fails verification');
  e.api.apply(cols.secrets, kumaSecret('upstream-ca', p.ca.toString('base64')));
  await until(() => e.logs.some((l) => l.msg === 'configuration reloaded' && /Secret kuma-system\/upstream-ca updated/.test(String(l.reason))), 'reload after the Secret changed');
  t.is(await roundTrip(outPort, 'ping'), 'ping', 'the rotated CA verifies the upstream');
  t.false(JSON.stringify(e.agent.configDump()).includes(p.ca.toString('base64')), 'no secret bytes in /config_dump');
});

test('a 410 re-list and a dropped watch lose no object and duplicate none; bookmarks add nothing', async (t) => {
  const e = await setup(t, { seed: (api) => ['a', 'b', 'c'].forEach((n) => api.apply(cols.mes, mes(n, 80))) });
  const vips = Object.fromEntries(services(e).map((s) => [s.name, s.vip]));
  await until(() => e.api.watching(cols.mes) === 1, 'watching');
  e.api.bookmark(cols.mes);
  const listsBefore = e.api.lists(cols.mes);

  // History compacted: the open watch gets ERROR 410, then an object changes before the client re-lists.
  e.api.expire(cols.mes);
  e.api.apply(cols.mes, mes('d', 80));
  e.api.remove(cols.mes, 'a', 'kuma-system');
  await until(() => e.api.lists(cols.mes) > listsBefore, 're-list after 410');
  await until(() => service(e, 'd') !== undefined && service(e, 'a') === undefined, 're-listed state served');

  // A watch cut mid-event: changes made meanwhile arrive when the client watches again from its resourceVersion.
  await until(() => e.api.watching(cols.mes) === 1, 'watching again');
  const listsAfter410 = e.api.lists(cols.mes);
  t.is(e.api.dropWatches(cols.mes), 1);
  e.api.apply(cols.mes, mes('e', 80));
  e.api.apply(cols.mes, mes('b', 81));
  await until(() => service(e, 'e') !== undefined && service(e, 'b')?.port === 81, 'changes made while disconnected', 10_000);
  await until(() => e.api.watching(cols.mes) === 1, 'watching after the drop');
  e.api.bookmark(cols.mes);
  await new Promise((r) => setTimeout(r, 200));

  t.deepEqual(services(e).map((s) => s.name).sort(), ['b', 'c', 'd', 'e']);
  t.deepEqual(rejected(e), [], 'no duplicate and no phantom object');
  t.is(e.api.lists(cols.mes), listsAfter410, 'the dropped watch resumed from its resourceVersion without a re-list');
  t.is(service(e, 'b')?.vip, vips.b);
  t.is(service(e, 'c')?.vip, vips.c);
});

test('bad objects are rejected alone with their namespace/name; a 403 on one kind leaves the rest serving', async (t) => {
  const secretText = 'not base64 -----BEGIN PRIVATE KEY-----';
  const e = await setup(t, {
    seed: (api) => {
      api.forbidden.add(cols.meshes.path);
      api.apply(cols.mes, mes('good', 80));
      api.apply(cols.mes, { ...mes('bad', 80), spec: { match: { port: 0 }, endpoints: [{ address: '', port: 80 }] } });
      api.apply(cols.mes, { ...mes('odd', 80), apiVersion: 'kuma.io/v1alpha1', kind: 'MeshService' });
      api.apply(cols.secrets, kumaSecret('broken', secretText));
      api.apply(cols.secrets, { metadata: { name: 'nokey', namespace: 'kuma-system' }, type: 'system.kuma.io/secret', data: { 'ca.crt': 'aGVsbG8=' } });
    },
  });
  t.is(e.agent.readiness(), 'READY', 'a forbidden kind does not hold readiness back');
  t.deepEqual(services(e).map((s) => s.name), ['good']);
  const byFile = Object.fromEntries(rejected(e).map((r) => [r.file, r.violations.map((v) => `${v.field}: ${v.message}`).join('; ')]));
  t.regex(byFile['kubernetes:kuma-system/meshexternalservices/bad'] ?? '', /spec\.match\.port/);
  t.regex(byFile['kubernetes:kuma-system/meshexternalservices/odd'] ?? '', /unknown kind "MeshService"/);
  t.regex(byFile['kubernetes:kuma-system/secrets/broken'] ?? '', /must be valid base64 \(the value is secret and not shown/);
  t.regex(byFile['kubernetes:kuma-system/secrets/nokey'] ?? '', /missing: .*"value"/);
  const all = JSON.stringify(e.logs) + JSON.stringify(e.agent.configDump());
  t.false(all.includes('BEGIN PRIVATE KEY'), 'secret bytes are never echoed');
  t.true(e.logs.some((l) => l.msg === 'resource rejected' && l.file === 'kubernetes:kuma-system/meshexternalservices/bad'));
  const forbidden = e.logs.find((l) => l.kind === 'Mesh' && l.reason === 'forbidden');
  t.regex(String(forbidden?.msg), /cannot list\/watch Mesh \(RBAC/);
  t.regex(String(forbidden?.error), /HTTP 403: meshes is forbidden/);
  t.regex(e.agent.stats.prometheus(), /meshext_source_errors_total\{[^}]*kind="Mesh"[^}]*reason="forbidden"[^}]*\} [1-9]/);

  // Fixing the object serves it; the others are not touched.
  e.api.apply(cols.mes, mes('bad', 81));
  await until(() => service(e, 'bad') !== undefined, 'fixed object served');
  t.truthy(service(e, 'good'));

  // An edit that breaks a served object keeps its last good version serving, as for files.
  e.api.apply(cols.mes, { ...mes('good', 80), spec: { match: { port: 70000 } } });
  await until(() => rejected(e).some((r) => r.file === 'kubernetes:kuma-system/meshexternalservices/good'), 'broken edit rejected');
  t.is(service(e, 'good')?.port, 80);
});

test("status.vip from Kuma is adopted; one outside the CIDR is ignored with a warning", async (t) => {
  const e = await setup(t, {
    seed: (api) => {
      api.apply(cols.mes, mes('plain', 80));
      api.apply(cols.mes, mes('kuma', 80, { status: { vip: { ip: '242.0.0.1' }, addresses: [] } }));
      api.apply(cols.mes, mes('elsewhere', 80, { status: { vip: { ip: '10.0.0.1' } } }));
    },
  });
  t.is(service(e, 'kuma')?.vip, '242.0.0.1');
  t.is(await aRecord(e, 'kuma.extsvc.mesh.local'), '242.0.0.1');
  t.not(service(e, 'plain')?.vip, '242.0.0.1');
  t.regex(service(e, 'elsewhere')?.vip ?? '', /^242\./);
  t.true(e.logs.some((l) => l.msg === 'resource warning' && l.field === 'status.vip.ip' && /"10\.0\.0\.1" is not an address in the VIP CIDR/.test(String(l.warning))));

  // Kuma assigns a VIP later (status update): the node follows it; the other VIPs stay.
  const plainVip = service(e, 'plain')!.vip;
  e.api.apply(cols.mes, mes('elsewhere', 80, { status: { vip: { ip: '242.0.0.200' } } }));
  await until(() => service(e, 'elsewhere')?.vip === '242.0.0.200', 'status update adopted');
  t.is(service(e, 'plain')!.vip, plainVip);
  t.is(service(e, 'kuma')!.vip, '242.0.0.1');
});

test('the API server going away keeps the last good config serving; it resumes when the server is back', async (t) => {
  const e = await setup(t, { seed: (api) => api.apply(cols.mes, mes('web', 80)) });
  const vip = service(e, 'web')!.vip;
  await e.api.stop();
  await until(() => /meshext_source_connected\{[^}]*kind="MeshExternalService"[^}]*\} 0/.test(e.agent.stats.prometheus()), 'disconnect seen');
  await new Promise((r) => setTimeout(r, 700)); // a failed retry or two
  t.is(e.agent.readiness(), 'READY');
  t.is(await aRecord(e, 'web.extsvc.mesh.local'), vip);
  const dump = e.agent.configDump() as { sources: Array<{ kinds: Array<{ kind: string; state: string; lastError: { reason: string } | null }> }> };
  t.like(dump.sources[0]?.kinds.find((k) => k.kind === 'MeshExternalService'), { state: 'retrying', lastError: { reason: 'unreachable' } });

  await e.api.start();
  e.api.apply(cols.mes, mes('later', 80));
  await until(() => service(e, 'later') !== undefined, 'change after the API server came back', 15_000);
  t.is(service(e, 'web')!.vip, vip);
});

test('at start, an unreachable API server holds readiness back instead of serving an empty config', async (t) => {
  const e = await setup(t, { seed: (api) => api.apply(cols.mes, mes('web', 80)), startAgent: false });
  await e.api.stop();
  const started = e.agent.start();
  type Waiting = { services: unknown[]; sources: Array<{ kinds: Array<{ state: string; lastError: { reason: string } | null }> }> };
  // Every kind has tried and failed once (how long that takes depends on the machine's load).
  await until(() => (e.agent.configDump() as Waiting).sources[0]?.kinds.every((k) => k.state === 'retrying') === true, 'every kind retrying');
  t.is(e.agent.readiness(), 'NOT_READY');
  t.is(e.agent.currentSnapshot(), undefined);
  // The admin API already answers: why it is not ready shows in /config_dump.
  const waiting = e.agent.configDump() as Waiting;
  t.deepEqual(waiting.services, []);
  t.true(waiting.sources[0]?.kinds.every((k) => k.state === 'retrying' && k.lastError?.reason === 'unreachable'));
  t.deepEqual(e.agent.clusters(), []);
  await e.api.start();
  await started;
  t.is(e.agent.readiness(), 'READY');
  t.truthy(service(e, 'web'));
});

test('on a name clash the API object wins over a file, and the file copy is reported', async (t) => {
  const e = await setup(t, {
    seed: (api) => api.apply(cols.mes, mes('web', 8080)),
    files: { 'web.yaml': 'type: MeshExternalService\nname: web\nmesh: default\nspec:\n  match: {port: 80}\n  endpoints: [{address: 127.0.0.1, port: 9}]\n' },
  });
  t.is(service(e, 'web')?.port, 8080);
  const dup = rejected(e).find((r) => r.name === 'web');
  t.regex(JSON.stringify(dup), /already defined in kubernetes:kuma-system\/meshexternalservices\/web/);
});

test('a kubeconfig that cannot be read fails the start with a message naming it', async (t) => {
  const src = new KubernetesSource({ kubeconfig: '/nonexistent/kubeconfig', systemNamespace: 'kuma-system', debounceMs: 10, stats: new Registry(), log: createLogger({ level: 'silent' }) });
  await t.throwsAsync(src.start(() => undefined), { code: 'MESHEXT_E_KUBECONFIG', message: /cannot load the Kubernetes client configuration from \/nonexistent\/kubeconfig/ } as never);
});

test('meshext run --source kubernetes as a user runs it: ready, sources in /config_dump, meshext_source_* metrics', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshext-k8s-cli-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const api = new FakeKubeApi(pki(), Object.values(cols));
  await api.start();
  t.teardown(() => api.stop());
  api.apply(cols.mes, mes('web', 80, { status: { vip: { ip: '242.0.0.42' } } }));
  const adminPort = await refusedPort();
  const args = ['bin/meshext.js', 'run', '--source', 'kubernetes', '--kubeconfig', api.kubeconfig(dir), '--system-namespace', 'kuma-system',
    '--redirect', 'off', '--dns', 'off', '--state-dir', path.join(dir, 'state'), '--admin', `127.0.0.1:${adminPort}`, '--log-format', 'json'];
  const child = new JsonChild(t, spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const ready = await child.next((l) => l.msg === 'meshext ready' || l.level === 60 || l.exited === true);
  t.is(ready.msg, 'meshext ready', JSON.stringify(ready));
  const get = async (p: string) => (await fetch(`http://127.0.0.1:${adminPort}${p}`)).text();
  t.is(await get('/ready'), 'READY\n');
  type Dump = { services: Array<{ name: string; vip: string }>; sources: Array<{ source: string; kinds: Array<{ state: string }> }> };
  let dump = JSON.parse(await get('/config_dump')) as Dump;
  t.deepEqual(dump.services.map((s) => [s.name, s.vip]), [['web', '242.0.0.42']]);
  t.is(dump.sources[0]?.source, 'kubernetes');
  // Ready means every kind was listed; each kind's watch connects right after its list, so the last ones may
  // still be 'listing' for a moment.
  for (const until = Date.now() + 3000; !dump.sources[0]?.kinds.every((k) => k.state === 'watching') && Date.now() < until; ) {
    await new Promise((r) => setTimeout(r, 20));
    dump = JSON.parse(await get('/config_dump')) as Dump;
  }
  t.true(dump.sources[0]?.kinds.every((k) => k.state === 'watching'), JSON.stringify(dump.sources[0]?.kinds));
  t.regex(await get('/metrics'), /meshext_source_objects\{[^}]*kind="MeshExternalService"[^}]*\} 1/);
});

/** The Kubernetes source alone against the fake API server, with short watch timeouts. */
async function sourceOnly(t: ExecutionContext, watch: { timeoutSeconds: number; graceMs: number }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshext-k8s-src-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const api = new FakeKubeApi(pki(), Object.values(cols));
  await api.start();
  t.teardown(() => api.stop());
  api.apply(cols.mes, mes('web', 80));
  const logs: Logged[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l) logs.push(JSON.parse(l) as Logged);
      cb();
    },
  });
  const stats = new Registry();
  const src = new KubernetesSource({
    kubeconfig: api.kubeconfig(dir),
    systemNamespace: 'kuma-system',
    debounceMs: 20,
    stats,
    log: createLogger({ format: 'json', level: 'debug', stream: sink }),
    retry: { initialMs: 100, maxMs: 1000 },
    watch,
  });
  t.teardown(() => src.stop());
  const changes: string[] = [];
  await src.start((r) => changes.push(r));
  t.deepEqual(changes, [], 'what the first lists brought is no change: it is in the first load');
  const names = async () => (await src.load({})).resources.map((r) => r.name).sort();
  return { api, src, stats, logs, changes, names };
}

test('watches end after their timeoutSeconds and resume from their resourceVersion without a re-list; they ask for bookmarks', async (t) => {
  const s = await sourceOnly(t, { timeoutSeconds: 1, graceMs: 2000 });
  await until(() => s.api.watches(cols.mes) >= 3, 'two renewed watches', 5000);
  t.is(s.api.lists(cols.mes), 1, 'no re-list');
  t.true(s.api.watchQueries.every((q) => q.get('allowWatchBookmarks') === 'true' && q.get('timeoutSeconds') === '1'));
  t.notRegex(s.stats.prometheus(), /meshext_source_errors_total/);
  t.false(s.logs.some((l) => l.level >= 40), 'a watch ending on time is not a problem');
  s.api.apply(cols.mes, mes('later', 80));
  await until(() => s.changes.some((c) => c.includes('later added')), 'change after renewals');
  t.deepEqual(await s.names(), ['later', 'web']);
});

test('a watch that goes silent (dead connection) is aborted after its timeout and grace; the change made meanwhile arrives', async (t) => {
  const s = await sourceOnly(t, { timeoutSeconds: 1, graceMs: 300 });
  await until(() => s.api.watching(cols.mes) === 1, 'watching');
  t.is(s.api.silence(cols.mes), 1);
  s.api.apply(cols.mes, mes('during', 80));
  await new Promise((r) => setTimeout(r, 300));
  t.deepEqual(await s.names(), ['web'], 'nothing arrives over the dead connection');
  await until(() => s.changes.some((c) => c.includes('during added')), 'change after the dead watch was replaced', 8000);
  t.deepEqual(await s.names(), ['during', 'web']);
  t.true(s.logs.some((l) => l.msg === 'watch still open past its timeout: taking the connection as dead and watching again' && l.kind === 'MeshExternalService'));
  t.is(s.api.lists(cols.mes), 1, 'resumed from its resourceVersion');
});

test('an object is parsed again only when its resourceVersion changes', async (t) => {
  const s = await sourceOnly(t, { timeoutSeconds: 60, graceMs: 1000 });
  s.api.apply(cols.mes, mes('other', 80));
  await until(() => s.changes.some((c) => c.includes('other added')), 'other added');
  const first = await s.src.load({});
  const again = await s.src.load({});
  const web = (r: typeof first) => r.resources.find((x) => x.name === 'web');
  t.is(web(again), web(first), 'unchanged: the parsed document is reused');
  s.api.apply(cols.mes, mes('web', 81));
  await until(() => s.changes.some((c) => c.includes('web updated')), 'web updated');
  const after = await s.src.load({});
  t.not(web(after), web(first));
  t.is((web(after)?.spec as { match: { port: number } }).match.port, 81);
  t.is(after.resources.find((x) => x.name === 'other'), first.resources.find((x) => x.name === 'other'));
});

test('pods of this node only (field selector spec.nodeName) are reported with their identity fields, on add and delete', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshext-k8s-pods-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const api = new FakeKubeApi(pki(), Object.values(cols));
  await api.start();
  t.teardown(() => api.stop());
  const pod = (name: string, ns: string, node: string, sa?: string, labels: Record<string, string> = {}, annotations: Record<string, string> = {}) => ({
    metadata: { name, namespace: ns, labels, annotations },
    spec: { nodeName: node, ...(sa ? { serviceAccountName: sa } : {}) },
  });
  const a = api.apply(cols.pods, pod('checkout-1', 'shop', 'node-1', 'checkout', { 'kuma.io/mesh': 'payments' }));
  api.apply(cols.pods, pod('other-node', 'shop', 'node-2', 'checkout'));
  const reports: Array<Map<string, { namespace: string; serviceAccount: string; mesh: string }>> = [];
  const src = new KubernetesSource({
    kubeconfig: api.kubeconfig(dir),
    systemNamespace: 'kuma-system',
    debounceMs: 10,
    stats: new Registry(),
    log: createLogger({ level: 'silent' }),
    pods: { nodeName: 'node-1', onChange: (p) => reports.push(p) },
  });
  await src.start(() => undefined);
  t.teardown(() => src.stop());
  await until(() => reports.length > 0, 'a first report of pods');
  t.deepEqual([...reports.at(-1)!], [[a.metadata.uid, { namespace: 'shop', serviceAccount: 'checkout', mesh: 'payments' }]]);
  // The annotation is not the mesh (Kuma reads the label): a pod's owner could put a forged trust domain in it.
  const b = api.apply(cols.pods, pod('web-1', 'front', 'node-1', undefined, {}, { 'kuma.io/mesh': 'default.zone1.mesh.local/ns/kube-system/sa/x' }));
  await until(() => reports.at(-1)!.size === 2, 'the added pod');
  t.deepEqual(reports.at(-1)!.get(b.metadata.uid as string), { namespace: 'front', serviceAccount: 'default', mesh: 'default' });
  api.remove(cols.pods, 'checkout-1', 'shop');
  await until(() => reports.at(-1)!.size === 1, 'the removed pod gone');
  t.false(reports.at(-1)!.has(a.metadata.uid as string));
  t.true(api.watchQueries.some((q) => q.get('fieldSelector') === 'spec.nodeName=node-1'));
});
