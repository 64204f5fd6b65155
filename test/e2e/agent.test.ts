/**
 * End to end, as a user runs it: `meshext run` as a child process in its own network namespace,
 * attached to a cgroup of its own; the seed scenarios by hostname with real clients (dig, nc, curl,
 * a gRPC reflection client) running in that cgroup and netns; reload during a long stream; restart;
 * SIGTERM during traffic.
 */
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { JsonChild, privilegedTest } from '../helpers/privileged.js';
import { pkiSecretsYaml } from '../../src/demo/certs.js';
import {
  SEED_SCENARIOS, admin, client, e2eSetup, metric, outboundDataplaneYaml, root, runSeedScenarios, startAgent as startAgentWith,
  startStream, startUpstreams, until, vips, type E2eEnv,
} from '../helpers/e2e.js';

/** The examples' Universal documents, the demo PKI's Secrets and an outbound Dataplane, as files. */
function setup(t: ExecutionContext): E2eEnv {
  const env = e2eSetup(t);
  for (const f of fs.readdirSync(path.join(root, 'examples/universal'))) fs.copyFileSync(path.join(root, 'examples/universal', f), path.join(env.configDir, f));
  fs.writeFileSync(path.join(env.configDir, 'secrets.yaml'), pkiSecretsYaml(env.pki));
  // Universal without transparent proxying: a local listener bound to one service.
  fs.writeFileSync(path.join(env.configDir, 'dataplane.yaml'), outboundDataplaneYaml('mes-tcp'));
  return env;
}

const startAgent = (t: ExecutionContext, env: E2eEnv): Promise<JsonChild> => startAgentWith(t, env, ['--config', env.configDir]);

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
  await runSeedScenarios(t, env);

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
  const engineLines = prom.split('\n').filter((l) => l.startsWith('meshext_engine') || l.startsWith('meshext_downstream_cx_total')).join('\n');
  t.true(metric(prom, /^meshext_engine_orig_dst_total\{result="found"\} (\d+)/m) >= SEED_SCENARIOS.length, engineLines);
  t.is(metric(prom, /^meshext_engine_orig_dst_total\{result="missing"\} (\d+)/m), 0, engineLines);
  t.true(metric(prom, /^meshext_engine_cx_accepted_total (\d+)/m) >= SEED_SCENARIOS.length + 1, engineLines);
  for (const name of SEED_SCENARIOS.map((s) => s.service)) {
    t.true(metric(prom, new RegExp(`^meshext_downstream_cx_total\\{service="kri_extsvc_default_default__${name}_"\\} (\\d+)`, 'm')) >= 1, `${name}: ${engineLines}`);
  }
  const dumpText = (await admin(env, '/config_dump')).body;
  const clientKeyB64 = fs.readFileSync(env.pki.clientKey).toString('base64').slice(0, 40);
  t.false(dumpText.includes(clientKeyB64), 'config_dump must not contain secret material');
  t.false(dumpText.includes('PRIVATE KEY'));
  t.is((await admin(env, '/reload')).status, 405);
  t.is((await admin(env, '/bpf')).status, 200);
  t.regex((await admin(env, '/clusters')).body, /mes-tcp/);

  // Reload while a long TCP stream runs: stream intact, new service reachable, VIPs unchanged.
  const before = await vips(env);
  const stream = startStream(t, env, 40, 100);
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
  // 6 s, so the checks below run while it is still open even on a loaded machine.
  const long = startStream(t, env, 60, 100);
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
