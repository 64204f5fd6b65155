/**
 * End to end with `meshext run --source kubernetes`: the agent lists and watches Kuma's objects in the fake
 * API server (test/helpers/fake-kube.ts, run as its own process inside the test's network namespace) with
 * the real @kubernetes/client-node, and workloads in the test cgroup reach them through the eBPF redirect:
 * the seed scenarios (TLS material from `system.kuma.io/secret` Secrets), Kuma's `status.vip.ip`, and a
 * MODIFIED and a DELETED event seen by the next connection and the next DNS query.
 */
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { JsonChild, privilegedTest, spawnInCgroup } from '../helpers/privileged.js';
import { SEED_SCENARIOS, admin, client, e2eSetup, metric, node, outboundDataplaneYaml, root, runSeedScenarios, startAgent, startUpstreams, until, vips, type E2eEnv } from '../helpers/e2e.js';

const NS = 'kuma-system';
/** Kuma names an object synced from the global control plane `<name>-<hash>` and keeps the name in this label. */
const DISPLAY = 'kuma.io/display-name';
const SUFFIX = '-7c9f4d';
/** Not a VIP the node's IPAM would hand out first: reaching it proves Kuma's address is the one served. */
const KUMA_VIP = '242.1.2.3';

type KubeObject = { apiVersion?: string; kind?: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: unknown };
type Collection = 'meshes' | 'mes' | 'hg' | 'secrets';

/** The fake API server's process, driven over its stdin (test/fixtures/e2e/fake-kube-main.ts). */
class KubeApiProcess {
  private nextId = 0;

  private constructor(
    private readonly proc: JsonChild,
    readonly kubeconfig: string,
  ) {}

  static async start(t: ExecutionContext, env: E2eEnv): Promise<KubeApiProcess> {
    const args = [path.join(root, 'dist/test/fixtures/e2e/fake-kube-main.js'), env.pki.dir, env.dir, NS];
    const proc = new JsonChild(t, spawnInCgroup(null, node, args, { netns: env.netns }));
    const ready = await proc.next((l) => l.event === 'ready' || l.exited === true);
    if (ready.event !== 'ready') throw new Error(`fake API server did not start: ${proc.stderr}`);
    return new KubeApiProcess(proc, String(ready.kubeconfig));
  }

  /** Creates or replaces an object: the agent's watch gets ADDED or MODIFIED. */
  apply(collection: Collection, object: KubeObject): Promise<void> {
    return this.call({ op: 'apply', collection, object });
  }

  /** Deletes an object: the agent's watch gets DELETED. */
  remove(collection: Collection, name: string): Promise<void> {
    return this.call({ op: 'remove', collection, name, namespace: NS });
  }

  private async call(cmd: Record<string, unknown>): Promise<void> {
    const id = ++this.nextId;
    this.proc.child.stdin!.write(JSON.stringify({ id, ...cmd }) + '\n');
    const reply = await this.proc.next((l) => l.id === id || l.exited === true);
    if (reply.ok !== true) throw new Error(`fake API server: ${JSON.stringify(cmd).slice(0, 200)}: ${JSON.stringify(reply)}`);
  }
}

function kumaSecret(name: string, file: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: NS, labels: { 'kuma.io/mesh': 'default' } },
    type: 'system.kuma.io/secret',
    data: { value: fs.readFileSync(file).toString('base64') },
  };
}

/** A TCP service on port 4300 whose one endpoint is 127.0.0.1:`port`. */
function mover(port: number): KubeObject {
  return {
    apiVersion: 'kuma.io/v1alpha1',
    kind: 'MeshExternalService',
    metadata: { name: `mover${SUFFIX}`, namespace: NS, labels: { 'kuma.io/mesh': 'default', [DISPLAY]: 'mover' } },
    spec: { match: { type: 'HostnameGenerator', port: 4300, protocol: 'tcp' }, endpoints: [{ address: '127.0.0.1', port }] },
  };
}

/**
 * examples/kubernetes as the API would serve them: MeshExternalServices renamed `<name>-<hash>` with the
 * display-name label (so only the label can give the seeds' hostnames), mes-http carrying a VIP from Kuma.
 */
function exampleObjects(): Array<{ collection: Collection; object: KubeObject }> {
  const dir = path.join(root, 'examples/kubernetes');
  const collections: Record<string, Collection> = { Mesh: 'meshes', MeshExternalService: 'mes', HostnameGenerator: 'hg' };
  return fs.readdirSync(dir).map((f) => {
    const object = parse(fs.readFileSync(path.join(dir, f), 'utf8')) as KubeObject;
    const collection = collections[object.kind ?? ''];
    if (!collection) throw new Error(`${f}: no collection for kind ${object.kind}`);
    if (collection === 'mes') {
      const name = object.metadata.name;
      object.metadata = { ...object.metadata, name: `${name}${SUFFIX}`, labels: { ...object.metadata.labels, [DISPLAY]: name } };
      if (name === 'mes-http') object.status = { vip: { ip: KUMA_VIP } };
    }
    return { collection, object };
  });
}

/** What `dig` says about a name: the A records and the response code. */
async function lookup(env: E2eEnv, name: string): Promise<{ a: string[]; status: string; raw: string }> {
  const r = await client(env, `dig +tries=1 +time=5 ${name} A`);
  const a = [...r.out.matchAll(/^\S+\s+\d+\s+IN\s+A\s+(\S+)$/gm)].map((m) => m[1]!);
  return { a, status: /status: (\w+)/.exec(r.out)?.[1] ?? `no answer: ${r.err}`, raw: r.out };
}

const greet = (env: E2eEnv, target: string): Promise<string> => client(env, `nc -w 2 ${target} 4300 </dev/null`, 5_000).then((r) => r.out);

privilegedTest('e2e --source kubernetes: objects from the API server through the redirect; MODIFIED and DELETED reach the next connection', async (t) => {
  const env = e2eSetup(t);
  const api = await KubeApiProcess.start(t, env);
  for (const { collection, object } of exampleObjects()) await api.apply(collection, object);
  for (const [name, file] of [['demo-ca', env.pki.caCert], ['demo-client-cert', env.pki.clientCert], ['demo-client-key', env.pki.clientKey]] as const) {
    await api.apply('secrets', kumaSecret(name, file));
  }
  await api.apply('mes', mover(14300));
  // Dataplanes are not read from the API (README): the outbound listener comes from a file, bound to an API object.
  fs.writeFileSync(path.join(env.configDir, 'dataplane.yaml'), outboundDataplaneYaml(`mes-tcp${SUFFIX}`));
  await startUpstreams(t, env);
  const greeters = new JsonChild(t, spawnInCgroup(null, node, [path.join(root, 'dist/test/fixtures/e2e/greeters.js'), 'upstream-a:14300', 'upstream-b:14301'], { netns: env.netns }));
  t.like(await greeters.next((l) => l.raw === 'READY' || l.exited === true), { raw: 'READY' }, greeters.stderr);
  await startAgent(t, env, ['--source', 'kubernetes', '--kubeconfig', api.kubeconfig, '--system-namespace', NS, '--config', env.configDir]);

  // Served from the API: every kind watched, nothing rejected, no secret bytes in the dump.
  const dumpText = (await admin(env, '/config_dump')).body;
  const dump = JSON.parse(dumpText) as { rejected: unknown[]; sources: Array<{ source: string; kinds: Array<{ kind: string; state: string; objects: number }> }> };
  t.deepEqual(dump.rejected, []);
  const kube = dump.sources.find((s) => s.source === 'kubernetes');
  t.deepEqual(kube?.kinds.map((k) => [k.kind, k.state]).sort(), [['HostnameGenerator', 'watching'], ['Mesh', 'watching'], ['MeshAccessLog', 'watching'], ['MeshCircuitBreaker', 'watching'], ['MeshExternalService', 'watching'], ['MeshHealthCheck', 'watching'], ['MeshRetry', 'watching'], ['MeshTimeout', 'watching'], ['MeshTrafficPermission', 'watching'], ['Secret', 'watching']], JSON.stringify(dump.sources));
  t.false(dumpText.includes(fs.readFileSync(env.pki.clientKey).toString('base64').slice(0, 40)), 'config_dump must not contain secret material');

  // Names come from the display-name label (the API names are `<name>-<hash>`), answered by the redirected resolver.
  const served = await vips(env);
  const tcp = await lookup(env, 'mes-tcp.svc.meshext.local');
  t.deepEqual(tcp.a, [served[`mes-tcp${SUFFIX}`]], tcp.raw);
  t.regex(tcp.a[0] ?? '', /^242\./);
  t.deepEqual((await lookup(env, `mes-tcp${SUFFIX}.svc.meshext.local`)).a, [], 'the API name is not the display name');

  // Kuma's status.vip.ip is the VIP: DNS answers it and the client's connection goes to it.
  t.is(served[`mes-http${SUFFIX}`], KUMA_VIP);
  t.deepEqual((await lookup(env, 'mes-http.svc.meshext.local')).a, [KUMA_VIP]);
  const viaKumaVip = await client(env, "curl -s -o /dev/null -w '%{remote_ip} %{http_code}' http://mes-http.svc.meshext.local/get");
  t.is(viaKumaVip.out, `${KUMA_VIP} 200`, viaKumaVip.err);

  // The seed scenarios over TCP, TLS and mTLS (CA and client keys from the Secrets), HTTP(S) and gRPC(s).
  await runSeedScenarios(t, env);
  const outbound = await client(env, "echo 'via outbound' | nc -q 1 127.0.0.1 18888");
  t.is(outbound.out, 'via outbound', outbound.err);
  // Each went through the engine by its VIP: the original destination was found in the BPF map.
  const prom = (await admin(env, '/stats/prometheus')).body;
  t.true(metric(prom, /^meshext_engine_orig_dst_total\{result="found"\} (\d+)/m) >= SEED_SCENARIOS.length + 1);
  t.is(metric(prom, /^meshext_engine_orig_dst_total\{result="missing"\} (\d+)/m), 0);
  t.regex(prom, /^meshext_source_objects\{[^}]*kind="MeshExternalService"[^}]*\} 8$/m);

  // MODIFIED: the endpoint moves to the second upstream; the next connections go there, the VIP stays.
  const vip = (await lookup(env, 'mover.svc.meshext.local')).a;
  t.is(vip.length, 1);
  t.is(await greet(env, 'mover.svc.meshext.local'), 'upstream-a');
  await api.apply('mes', mover(14301));
  const modifiedAt = Date.now();
  const seen: string[] = [];
  await until(async () => {
    const out = await greet(env, 'mover.svc.meshext.local');
    seen.push(out);
    return out;
  }, (out) => out === 'upstream-b', 60, 20);
  const switchedMs = Date.now() - modifiedAt;
  t.is(seen.at(-1), 'upstream-b', seen.join(','));
  t.true(switchedMs < 2000, `the next connection went to the new endpoint after ${switchedMs} ms`);
  t.deepEqual(seen.filter((o) => o !== 'upstream-a' && o !== 'upstream-b'), [], 'no connection failed while the config changed');
  t.deepEqual((await lookup(env, 'mover.svc.meshext.local')).a, vip, 'the VIP is unchanged');
  t.is(await greet(env, vip[0]!), 'upstream-b', 'the VIP itself leads to the new endpoint');

  // DELETED: the name stops resolving, and a client that cached the VIP reaches no upstream through it.
  await api.remove('mes', `mover${SUFFIX}`);
  const deletedAt = Date.now();
  const gone = await until(() => lookup(env, 'mover.svc.meshext.local'), (r) => r.a.length === 0, 60, 20);
  const goneMs = Date.now() - deletedAt;
  t.deepEqual(gone.a, [], gone.raw);
  // No longer an owned name: it is forwarded to the node's nameserver, which this netns cannot reach.
  t.not(gone.status, 'NOERROR', gone.raw);
  t.true(goneMs < 2000, `the name stopped resolving after ${goneMs} ms`);
  // The whole CIDR is redirected, so the engine takes the connection and resets it: no service owns that VIP:port.
  const noRoute = async (): Promise<number> => metric((await admin(env, '/stats/prometheus')).body, /^meshext_downstream_cx_no_route_total (\d+)$/m);
  const noRouteBefore = await noRoute();
  t.is(await greet(env, vip[0]!), '', 'the old VIP leads to no upstream');
  t.is(await until(noRoute, (n) => n > noRouteBefore, 20, 50), noRouteBefore + 1);
  t.is((await vips(env))[`mover${SUFFIX}`], undefined);
  t.deepEqual((await lookup(env, 'mes-tcp.svc.meshext.local')).a, tcp.a, 'the other services keep serving');
  t.log(`MODIFIED reached the next connection in ${switchedMs} ms, DELETED the next query in ${goneMs} ms (${gone.status})`);
});
