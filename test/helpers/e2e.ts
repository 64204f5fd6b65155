/**
 * What the end-to-end tests share: a cgroup, network namespace and bpffs of the test's own, the demo PKI
 * and stand-in upstreams inside that namespace, `meshext run` started as a user runs it (the source
 * flags are the caller's), clients run as workloads in the cgroup, and the admin API asked from inside.
 */
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { findCgroup2Mount } from '../../src/redirect/index.js';
import { ensurePki, type DemoPki } from '../../src/demo/certs.js';
import { JsonChild, spawnInCgroup, tempCgroup, tempNetns, tempPinRoot } from './privileged.js';

export const root = process.cwd();
export const node = process.execPath;
const meshext = path.join(root, 'bin/meshext.js');

export interface E2eEnv {
  cgroup: string;
  netns: string;
  pinRoot: string;
  dir: string;
  /** An empty directory for `--config` documents. */
  configDir: string;
  stateDir: string;
  adminPort: number;
  pki: DemoPki;
}

/** The test's cgroup, netns, private bpffs and temp dir (with the demo PKI), all removed in teardown. */
export function e2eSetup(t: ExecutionContext): E2eEnv {
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
  const pki = ensurePki(path.join(dir, 'pki'));
  return { cgroup, netns, pinRoot, dir, configDir, stateDir: path.join(dir, 'state'), adminPort: 19901, pki };
}

/** A Universal Dataplane (no transparent proxying) whose outbound port 18888 is bound to one service. */
export function outboundDataplaneYaml(service: string): string {
  return `type: Dataplane\nname: e2e\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  outbound:\n  - port: 18888\n    backendRef:\n      kind: MeshExternalService\n      name: ${service}\n`;
}

/** The demo's stand-in upstreams (TCP/TLS/mTLS echo, HTTP(S), gRPC(s) on their demo ports) in the test netns. */
export async function startUpstreams(t: ExecutionContext, env: E2eEnv): Promise<JsonChild> {
  const child = new JsonChild(t, spawnInCgroup(null, node, [path.join(root, 'dist/src/demo/upstreams-main.js'), env.pki.dir, '127.0.0.1'], { netns: env.netns }));
  const line = await child.next((l) => typeof l.raw === 'string' && l.raw.startsWith('READY'));
  if (line.exited) throw new Error(`stand-in upstreams did not start: ${child.stderr}`);
  return child;
}

/** `meshext run` with the redirect on the test cgroup, in the test netns; `sourceArgs` say where config comes from. */
export async function startAgent(t: ExecutionContext, env: E2eEnv, sourceArgs: string[]): Promise<JsonChild> {
  const args = [
    meshext, 'run',
    ...sourceArgs,
    '--cgroup', env.cgroup,
    '--redirect', 'on',
    '--state-dir', env.stateDir,
    '--pin-root', env.pinRoot,
    '--admin', `127.0.0.1:${env.adminPort}`,
    // Its own probe socket: the default (/run/meshext/admin.sock) is one per machine, and tests run side by side.
    '--admin-socket', path.join(env.dir, 'admin.sock'),
    '--log-format', 'json',
    '--drain-time', '8s',
  ];
  const agent = new JsonChild(t, spawnInCgroup(null, node, args, { netns: env.netns }));
  const ready = await agent.next((l) => l.msg === 'meshext ready' || l.level === 60);
  if (ready.msg !== 'meshext ready') throw new Error(`agent did not start: ${JSON.stringify(ready)} ${agent.stderr}`);
  return agent;
}

export interface ClientResult {
  code: number | null;
  out: string;
  err: string;
}

/** Runs a shell command as a workload: inside the test cgroup and netns. */
export function client(env: E2eEnv, cmd: string, timeoutMs = 20_000): Promise<ClientResult> {
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
export async function admin(env: E2eEnv, pathAndQuery: string, method = 'GET'): Promise<{ status: number; body: string }> {
  const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn('nsenter', [`--net=/run/netns/${env.netns}`, 'curl', '-s', '-X', method, '-w', '\n%{http_code}', `http://127.0.0.1:${env.adminPort}${pathAndQuery}`]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code, out }));
  });
  const i = r.out.lastIndexOf('\n');
  return { status: Number(r.out.slice(i + 1)), body: r.out.slice(0, i).trimEnd() };
}

/** Service name → VIP, from /config_dump. */
export async function vips(env: E2eEnv): Promise<Record<string, string>> {
  const dump = JSON.parse((await admin(env, '/config_dump')).body) as { services: Array<{ name: string; vip: string }> };
  return Object.fromEntries(dump.services.map((s) => [s.name, s.vip]));
}

/** Calls fn until ok holds (at most `tries` more times, `delayMs` apart) and returns the last value. */
export async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, tries = 100, delayMs = 100): Promise<T> {
  let v = await fn();
  for (let i = 0; i < tries && !ok(v); i++) {
    await new Promise((r) => setTimeout(r, delayMs));
    v = await fn();
  }
  return v;
}

/** The counter's value in Prometheus text (0 when absent); `re` captures the number. */
export function metric(prom: string, re: RegExp): number {
  return Number(re.exec(prom)?.[1] ?? 0);
}

const grpcList = `${node} ${path.join(root, 'dist/src/demo/grpc-list.js')}`;

export interface SeedScenario {
  /** The example service the scenario reaches (examples/universal, examples/kubernetes). */
  service: string;
  name: string;
  cmd: string;
  expect: (out: string) => boolean;
}

/** The seed documents' client commands, by generated hostname, against the demo upstreams. */
export const SEED_SCENARIOS: SeedScenario[] = [
  { service: 'mes-tcp', name: 'tcp', cmd: "echo 'echo this' | nc -q 3 mes-tcp.svc.meshext.local 4242", expect: (o) => o === 'echo this' },
  { service: 'mes-tcp-tls', name: 'tcp+tls', cmd: "echo 'echo this' | nc -q 3 mes-tcp-tls.svc.meshext.local 4243", expect: (o) => o === 'echo this' },
  { service: 'mes-tcp-mtls', name: 'tcp+mtls', cmd: "echo 'echo this' | nc -q 3 mes-tcp-mtls.svc.meshext.local 4244", expect: (o) => o === 'echo this' },
  // An IP endpoint keeps the client's Host (decision 7).
  { service: 'mes-http', name: 'http', cmd: 'curl -s http://mes-http.svc.meshext.local/get', expect: (o) => /"scheme": "http"/.test(o) && /"host": "mes-http.svc.meshext.local"/.test(o) },
  { service: 'mes-https', name: 'https', cmd: 'curl -s http://mes-https.svc.meshext.local/get', expect: (o) => /"scheme": "https"/.test(o) },
  { service: 'mes-grpc', name: 'grpc', cmd: `${grpcList} mes-grpc.svc.meshext.local:9000`, expect: (o) => o.includes('meshext.demo.Echo') },
  { service: 'mes-grpcs', name: 'grpcs', cmd: `${grpcList} mes-grpcs.svc.meshext.local:9001`, expect: (o) => o.includes('meshext.demo.Echo') },
];

/** Runs every seed scenario at once as a workload; each failure is reported with its output. */
export async function runSeedScenarios(t: ExecutionContext, env: E2eEnv): Promise<void> {
  const results = await Promise.all(SEED_SCENARIOS.map(async (s) => ({ s, r: await client(env, s.cmd) })));
  for (const { s, r } of results) t.true(s.expect(r.out), `${s.name}: ${r.out} ${r.err}`);
}

/** A long-lived TCP stream to the echo service by hostname (test/fixtures/e2e/stream.ts), as a workload. */
export function startStream(t: ExecutionContext, env: E2eEnv, chunks: number, intervalMs: number): JsonChild {
  const args = [path.join(root, 'dist/test/fixtures/e2e/stream.js'), 'mes-tcp.svc.meshext.local', '4242', String(chunks), String(intervalMs)];
  return new JsonChild(t, spawnInCgroup(env.cgroup, node, args, { netns: env.netns }));
}
