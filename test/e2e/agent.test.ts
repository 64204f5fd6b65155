/**
 * End to end, as a user runs it: `meshext run` as a child process in its own network namespace,
 * attached to a cgroup of its own; the seed scenarios by hostname with real clients (dig, nc, curl,
 * a gRPC reflection client) running in that cgroup and netns; reload during a long stream; restart;
 * SIGTERM during traffic.
 */
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { findCgroup2Mount } from '../../src/redirect/index.js';
import { JsonChild, privilegedTest, spawnInCgroup, tempCgroup, tempNetns, tempPinRoot } from '../helpers/privileged.js';
import { ensurePki, pkiSecretsYaml } from '../../src/demo/certs.js';

const root = process.cwd();
const node = process.execPath;
const meshext = path.join(root, 'bin/meshext.js');

interface Env {
  cgroup: string;
  netns: string;
  pinRoot: string;
  dir: string;
  configDir: string;
  stateDir: string;
  adminPort: number;
}

function setup(t: ExecutionContext): Env {
  const cgroup = tempCgroup(t);
  const netns = tempNetns(t);
  const pinRoot = tempPinRoot(t);
  // The agent starts in the cgroup2 root and moves itself into meshext.agent; remove that if this test made it.
  const agentCgroup = path.join(findCgroup2Mount(), 'meshext.agent');
  if (!fs.existsSync(agentCgroup)) {
    t.teardown(() => {
      try {
        fs.rmdirSync(agentCgroup);
      } catch {
        // Still in use (another agent runs here): leave it.
      }
    });
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshext-e2e-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const configDir = path.join(dir, 'config');
  fs.mkdirSync(configDir);
  for (const f of fs.readdirSync(path.join(root, 'examples/universal'))) fs.copyFileSync(path.join(root, 'examples/universal', f), path.join(configDir, f));
  const pki = ensurePki(path.join(dir, 'pki'));
  fs.writeFileSync(path.join(configDir, 'secrets.yaml'), pkiSecretsYaml(pki));
  // Universal without transparent proxying: a local listener bound to one service.
  fs.writeFileSync(
    path.join(configDir, 'dataplane.yaml'),
    'type: Dataplane\nname: e2e\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  outbound:\n  - port: 18888\n    backendRef:\n      kind: MeshExternalService\n      name: mes-tcp\n',
  );
  return { cgroup, netns, pinRoot, dir, configDir, stateDir: path.join(dir, 'state'), adminPort: 19901 };
}

async function startUpstreams(t: ExecutionContext, env: Env): Promise<JsonChild> {
  const child = new JsonChild(t, spawnInCgroup(null, node, [path.join(root, 'dist/src/demo/upstreams-main.js'), path.join(env.dir, 'pki'), '127.0.0.1'], { netns: env.netns }));
  const line = await child.next((l) => typeof l.raw === 'string' && l.raw.startsWith('READY'));
  if (line.exited) throw new Error(`stand-in upstreams did not start: ${child.stderr}`);
  return child;
}

async function startAgent(t: ExecutionContext, env: Env): Promise<JsonChild> {
  const args = [
    meshext, 'run',
    '--config', env.configDir,
    '--cgroup', env.cgroup,
    '--redirect', 'on',
    '--state-dir', env.stateDir,
    '--pin-root', env.pinRoot,
    '--admin', `127.0.0.1:${env.adminPort}`,
    '--log-format', 'json',
    '--drain-time', '8s',
  ];
  const agent = new JsonChild(t, spawnInCgroup(null, node, args, { netns: env.netns }));
  const ready = await agent.next((l) => l.msg === 'meshext ready' || l.level === 60);
  if (ready.msg !== 'meshext ready') throw new Error(`agent did not start: ${JSON.stringify(ready)} ${agent.stderr}`);
  return agent;
}

/** Runs a shell command as a workload: inside the test cgroup and netns. */
function client(env: Env, cmd: string, timeoutMs = 20_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawnInCgroup(env.cgroup, 'sh', ['-c', cmd], { netns: env.netns });
    child.stdin?.end();
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out: out.trim(), err: err.trim() });
    });
  });
}

/** An admin API call from inside the agent's netns (the admin API is loopback-only). */
async function admin(env: Env, pathAndQuery: string, method = 'GET'): Promise<{ status: number; body: string }> {
  const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn('nsenter', [`--net=/run/netns/${env.netns}`, 'curl', '-s', '-X', method, '-w', '\n%{http_code}', `http://127.0.0.1:${env.adminPort}${pathAndQuery}`]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code, out }));
  });
  const i = r.out.lastIndexOf('\n');
  return { status: Number(r.out.slice(i + 1)), body: r.out.slice(0, i).trimEnd() };
}

async function vips(env: Env): Promise<Record<string, string>> {
  const dump = JSON.parse((await admin(env, '/config_dump')).body) as { services: Array<{ name: string; vip: string }> };
  return Object.fromEntries(dump.services.map((s) => [s.name, s.vip]));
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, tries = 100, delayMs = 100): Promise<T> {
  let v = await fn();
  for (let i = 0; i < tries && !ok(v); i++) {
    await new Promise((r) => setTimeout(r, delayMs));
    v = await fn();
  }
  return v;
}

const grpcList = `${node} ${path.join(root, 'dist/src/demo/grpc-list.js')}`;

const SEED_SCENARIOS: Array<{ name: string; cmd: string; expect: (out: string) => boolean }> = [
  { name: 'tcp', cmd: "echo 'echo this' | nc -q 3 mes-tcp.svc.meshext.local 4242", expect: (o) => o === 'echo this' },
  { name: 'tcp+tls', cmd: "echo 'echo this' | nc -q 3 mes-tcp-tls.svc.meshext.local 4243", expect: (o) => o === 'echo this' },
  { name: 'tcp+mtls', cmd: "echo 'echo this' | nc -q 3 mes-tcp-mtls.svc.meshext.local 4244", expect: (o) => o === 'echo this' },
  // An IP endpoint keeps the client's Host (decision 7).
  { name: 'http', cmd: 'curl -s http://mes-http.svc.meshext.local/get', expect: (o) => /"scheme": "http"/.test(o) && /"host": "mes-http.svc.meshext.local"/.test(o) },
  { name: 'https', cmd: 'curl -s http://mes-https.svc.meshext.local/get', expect: (o) => /"scheme": "https"/.test(o) },
  { name: 'grpc', cmd: `${grpcList} mes-grpc.svc.meshext.local:9000`, expect: (o) => o.includes('meshext.demo.Echo') },
  { name: 'grpcs', cmd: `${grpcList} mes-grpcs.svc.meshext.local:9001`, expect: (o) => o.includes('meshext.demo.Echo') },
];

privilegedTest('e2e: seed scenarios by hostname, admin API, reload during a stream, restart, drain on SIGTERM', async (t) => {
  const env = setup(t);
  await startUpstreams(t, env);
  let agent = await startAgent(t, env);

  // DNS: every generated name resolves to a VIP through the node nameserver (captured by eBPF).
  const dig = await client(env, 'dig +short mes-tcp.svc.meshext.local; dig +short MES-HTTP.svc.meshext.local; dig +short AAAA mes-tcp.svc.meshext.local; getent hosts mes-grpc.svc.meshext.local');
  const lines = dig.out.split('\n');
  t.regex(lines[0] ?? '', /^242\.\d+\.\d+\.\d+$/, dig.err);
  t.regex(lines[1] ?? '', /^242\.\d+\.\d+\.\d+$/);
  t.regex(lines[2] ?? '', /^::ffff:(f2|242\.)/);
  t.regex(lines[3] ?? '', /^(242\.|::ffff:242\.)/);

  // The seven seed scenarios with the seeds' own clients.
  const results = await Promise.all(SEED_SCENARIOS.map(async (s) => ({ s, r: await client(env, s.cmd) })));
  for (const { s, r } of results) t.true(s.expect(r.out), `${s.name}: ${r.out} ${r.err}`);

  // The Dataplane outbound listener reaches the service without any redirect.
  const outbound = await client(env, "echo 'via outbound' | nc -q 1 127.0.0.1 18888");
  t.is(outbound.out, 'via outbound', outbound.err);

  // Admin API.
  t.deepEqual(await admin(env, '/ready'), { status: 200, body: 'READY' });
  const prom = (await admin(env, '/stats/prometheus')).body;
  t.regex(prom, /meshext_upstream_cx_total\{[^}]*service="kri_extsvc_default_default__mes-tcp_"[^}]*\} [1-9]/);
  t.regex(prom, /meshext_dns_queries_total\{/);
  // Every seed scenario went through the engine, by its VIP: the engine looked each connection's original
  // destination up in the BPF map, and counted each service's client connections itself.
  const metric = (re: RegExp): number => Number(re.exec(prom)?.[1] ?? 0);
  const engineLines = prom.split('\n').filter((l) => l.startsWith('meshext_engine') || l.startsWith('meshext_downstream_cx_total')).join('\n');
  t.true(metric(/^meshext_engine_orig_dst_total\{result="found"\} (\d+)/m) >= SEED_SCENARIOS.length, engineLines);
  t.is(metric(/^meshext_engine_orig_dst_total\{result="missing"\} (\d+)/m), 0, engineLines);
  t.true(metric(/^meshext_engine_cx_accepted_total (\d+)/m) >= SEED_SCENARIOS.length + 1, engineLines);
  for (const name of ['mes-tcp', 'mes-tcp-tls', 'mes-tcp-mtls', 'mes-http', 'mes-https', 'mes-grpc', 'mes-grpcs']) {
    t.true(metric(new RegExp(`^meshext_downstream_cx_total\\{service="kri_extsvc_default_default__${name}_"\\} (\\d+)`, 'm')) >= 1, `${name}: ${engineLines}`);
  }
  const dumpText = (await admin(env, '/config_dump')).body;
  const clientKeyB64 = fs.readFileSync(path.join(env.dir, 'pki', 'client.key')).toString('base64').slice(0, 40);
  t.false(dumpText.includes(clientKeyB64), 'config_dump must not contain secret material');
  t.false(dumpText.includes('PRIVATE KEY'));
  t.is((await admin(env, '/reload')).status, 405);
  t.is((await admin(env, '/bpf')).status, 200);
  t.regex((await admin(env, '/clusters')).body, /mes-tcp/);

  // Reload while a long TCP stream runs: stream intact, new service reachable, VIPs unchanged.
  const before = await vips(env);
  const stream = new JsonChild(t, spawnInCgroup(env.cgroup, node, [path.join(root, 'dist/test/fixtures/e2e/stream.js'), 'mes-tcp.svc.meshext.local', '4242', '40', '100'], { netns: env.netns }));
  const connected = await stream.next((l) => l.event === 'connected' || l.event === 'error' || l.exited === true);
  t.is(connected.event, 'connected', JSON.stringify(connected));
  fs.writeFileSync(
    path.join(env.configDir, 'mes-new.yaml'),
    'type: MeshExternalService\nname: mes-new\nmesh: default\nspec:\n  match:\n    port: 4250\n    protocol: tcp\n  endpoints:\n  - address: 127.0.0.1\n    port: 14242\n',
  );
  // An invalid edit of a serving resource keeps its last good version.
  const httpYaml = fs.readFileSync(path.join(env.configDir, 'mes-http.yaml'), 'utf8');
  fs.writeFileSync(path.join(env.configDir, 'mes-http.yaml'), httpYaml.replace('port: 80', 'port: 0'));
  const after = await until(() => vips(env), (v) => v['mes-new'] !== undefined);
  t.truthy(after['mes-new'], 'the new service got a VIP');
  for (const [name, vip] of Object.entries(before)) t.is(after[name], vip, `VIP of ${name} moved on reload`);
  const fresh = await until(() => client(env, "echo 'new one' | nc -q 1 mes-new.svc.meshext.local 4250"), (r) => r.out === 'new one', 20, 200);
  t.is(fresh.out, 'new one');
  t.true(SEED_SCENARIOS[3]!.expect((await client(env, SEED_SCENARIOS[3]!.cmd)).out), 'mes-http keeps serving its last good config');
  const dump = JSON.parse((await admin(env, '/config_dump')).body) as { rejected: Array<{ name: string; violations: Array<{ field: string; message: string }> }> };
  t.true(dump.rejected.some((r) => r.name === 'mes-http' && r.violations.some((v) => v.field === 'spec.match.port')), JSON.stringify(dump.rejected));
  const done = await stream.next((l) => l.event === 'done' || l.event === 'error' || l.exited === true);
  t.like(done, { event: 'done', ok: true });

  // Fixing the resource again keeps its VIP.
  fs.writeFileSync(path.join(env.configDir, 'mes-http.yaml'), httpYaml);
  const fixed = await until(async () => JSON.parse((await admin(env, '/config_dump')).body) as { rejected: unknown[] }, (d) => d.rejected.length === 0);
  t.deepEqual(fixed.rejected, []);
  t.deepEqual(await vips(env), after);

  // Restart: names keep their VIPs.
  agent.child.kill('SIGTERM');
  await agent.next((l) => l.exited === true);
  t.is(agent.child.exitCode, 0, agent.stderr);
  agent = await startAgent(t, env);
  t.deepEqual(await vips(env), after);
  const again = await client(env, "echo 'after restart' | nc -q 1 mes-tcp.svc.meshext.local 4242");
  t.is(again.out, 'after restart');

  // SIGTERM during traffic: not ready, the stream drains to the end, new connections are refused, exit 0.
  const long = new JsonChild(t, spawnInCgroup(env.cgroup, node, [path.join(root, 'dist/test/fixtures/e2e/stream.js'), 'mes-tcp.svc.meshext.local', '4242', '30', '100'], { netns: env.netns }));
  t.is((await long.next((l) => l.event === 'connected' || l.exited === true)).event, 'connected');
  agent.child.kill('SIGTERM');
  await agent.next((l) => l.msg === 'draining');
  t.is((await admin(env, '/ready')).body, 'TERMINATING');
  const refused = await client(env, "echo x | nc -q 1 -w 2 mes-tcp.svc.meshext.local 4242; echo rc=$?");
  t.regex(refused.out, /rc=1/);
  t.like(await long.next((l) => l.event === 'done' || l.event === 'error' || l.exited === true), { event: 'done', ok: true });
  await agent.next((l) => l.exited === true);
  t.is(agent.child.exitCode, 0, agent.stderr);
});
