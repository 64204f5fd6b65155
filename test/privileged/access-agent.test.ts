/**
 * MeshTrafficPermission end to end, as a user runs it: `meshext run` with the redirect on a test cgroup; clients
 * in sub-cgroups shaped like systemd units and pods (given identities by the unit rule and by an identity map)
 * dial the services by hostname with nc, curl and a gRPC client. Denied connects fail with EPERM at connect().
 */
import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { privilegedTest, spawnInCgroup, JsonChild } from '../helpers/privileged.js';
import { pkiSecretsYaml } from '../../src/demo/certs.js';
import { admin, e2eSetup, metric, node, root, startAgent, startUpstreams, until, type E2eEnv } from '../helpers/e2e.js';

const TD = 'spiffe://default.default.mesh.local';
const HOST = `${TD}/host/node-1/unit`;
const LEGACY_POD = '11111111-2222-4333-8444-555555555555';
const SHOP_POD = '66666666-7777-4888-9999-aaaaaaaaaaaa';

function mtpYaml(allowUnit: string): string {
  return `type: MeshTrafficPermission
name: external-clients
mesh: default
spec:
  targetRef: {kind: Mesh}
  rules:
  - default:
      deny:
      - spiffeID: {type: Prefix, value: "${TD}/ns/legacy"}
      allow:
      - spiffeID: {type: Exact, value: "${HOST}/${allowUnit}"}
      - spiffeID: {type: Exact, value: "${HOST}/late.service"}
      - spiffeID: {type: Prefix, value: "${TD}/ns"}
      allowWithShadowDeny:
      - spiffeID: {type: Exact, value: "${HOST}/shadow.service"}
`;
}

/** A shell command as a workload in the sub-cgroup `sub` of the test cgroup. */
function run(env: E2eEnv, sub: string, cmd: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawnInCgroup(path.join(env.cgroup, sub), 'sh', ['-c', cmd], { netns: env.netns });
    child.stdin?.end();
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out: out.trim(), err: err.trim() });
    });
  });
}

const tcp = (env: E2eEnv, sub: string) => run(env, sub, "echo 'echo this' | nc -q 3 mes-tcp.svc.meshext.local 4242");
/** The errno code a TCP connect to the service fails with ('' when it connects). */
const connectError = async (env: E2eEnv, sub: string): Promise<string> => {
  // An allowed connect stays open (the echo server never closes): `timeout` ends it so a probe can be retried.
  const r = await run(env, sub, `timeout 3 ${node} ${path.join(root, 'dist/test/fixtures/bpf/client.js')} mes-tcp.svc.meshext.local 4242`);
  return (Object.assign({}, ...r.out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as object)) as { error?: string }).error ?? '';
};
const httpGet = (env: E2eEnv, sub: string) => run(env, sub, 'curl -s -S -o /dev/null -w "%{http_code}" http://mes-http.svc.meshext.local/get');
const grpcList = (env: E2eEnv, sub: string) => run(env, sub, `${node} ${path.join(root, 'dist/src/demo/grpc-list.js')} mes-grpc.svc.meshext.local:9000`);

async function setup(t: ExecutionContext): Promise<{ env: E2eEnv; agent: JsonChild }> {
  const env = e2eSetup(t);
  for (const f of ['mes-tcp.yaml', 'mes-http.yaml', 'mes-grpc.yaml', 'hostname-generator.yaml']) fs.copyFileSync(path.join(root, 'examples/universal', f), path.join(env.configDir, f));
  fs.writeFileSync(path.join(env.configDir, 'secrets.yaml'), pkiSecretsYaml(env.pki));
  fs.writeFileSync(path.join(env.configDir, 'mesh.yaml'), 'type: Mesh\nname: default\nrouting:\n  defaultForbidMeshExternalServiceAccess: true\n');
  fs.writeFileSync(path.join(env.configDir, 'mtp.yaml'), mtpYaml('allowed.service'));
  for (const d of ['system.slice/allowed.service', 'system.slice/denied.service', 'system.slice/shadow.service', `kubepods/burstable/pod${LEGACY_POD}`, `kubepods/burstable/pod${SHOP_POD}`, 'user.slice']) {
    fs.mkdirSync(path.join(env.cgroup, d), { recursive: true });
  }
  // Pods without a Kubernetes API: an identity map names them (the pod rule itself is covered by unit tests).
  const map = path.join(env.dir, 'identities.yaml');
  fs.writeFileSync(map, `- cgroup: /kubepods/burstable/pod${LEGACY_POD}\n  spiffeID: ${TD}/ns/legacy/sa/app\n- cgroup: /kubepods/burstable/pod${SHOP_POD}\n  spiffeID: ${TD}/ns/shop/sa/checkout\n`);
  await startUpstreams(t, env);
  const agent = await startAgent(t, env, ['--config', env.configDir, '--identity-map', map, '--node-name', 'node-1']);
  return { env, agent };
}

privilegedTest('MeshTrafficPermission at connect(): allowed workloads reach TCP, HTTP and gRPC services; others get EPERM; a Prefix deny beats a broader allow; shadow deny passes and counts', async (t) => {
  const { env, agent } = await setup(t);

  // Allowed by an Exact unit identity: TCP, HTTP and gRPC all work.
  t.is((await tcp(env, 'system.slice/allowed.service')).out, 'echo this');
  t.is((await httpGet(env, 'system.slice/allowed.service')).out, '200');
  t.regex((await grpcList(env, 'system.slice/allowed.service')).out, /meshext\.demo\.Echo/);

  // Not listed, mesh forbids by default: connect() fails with EPERM for every protocol, no proxy hop.
  t.is((await tcp(env, 'system.slice/denied.service')).out, '');
  t.is(await connectError(env, 'system.slice/denied.service'), 'EPERM');
  const curl = await httpGet(env, 'system.slice/denied.service');
  t.is(curl.code, 7, curl.err); // curl: couldn't connect
  t.regex(curl.err, /Operation not permitted|Couldn't connect/);
  const grpc = await grpcList(env, 'system.slice/denied.service');
  t.not(grpc.code, 0);
  t.notRegex(grpc.out, /meshext\.demo\.Echo/);

  // No identity at all (a user session): refused too.
  t.is(await connectError(env, 'user.slice'), 'EPERM');

  // Prefix deny (ns/legacy) beats the broader Prefix allow (ns); a pod of another namespace is allowed.
  t.is(await connectError(env, `kubepods/burstable/pod${LEGACY_POD}`), 'EPERM');
  fs.mkdirSync(path.join(env.cgroup, `kubepods/burstable/pod${SHOP_POD}/container1`));
  t.is((await tcp(env, `kubepods/burstable/pod${SHOP_POD}/container1`)).out, 'echo this', 'a container sub-cgroup has its pod identity');

  // allowWithShadowDeny: passes, counted and logged as denied.
  t.is((await tcp(env, 'system.slice/shadow.service')).out, 'echo this');

  const prom = await until(
    async () => (await admin(env, '/stats/prometheus')).body,
    (p) => metric(p, /^meshext_access_shadow_denied_total\{service="kri_extsvc_default_default__mes-tcp_"\} (\d+)/m) === 1,
  );
  // A client may try each address of the name (A and the ::ffff: AAAA): at least one refusal each.
  t.true(metric(prom, /^meshext_access_denied_total\{reason="mesh_default",service="kri_extsvc_default_default__mes-tcp_"\} (\d+)/m) >= 2, prom);
  t.true(metric(prom, /^meshext_access_denied_total\{reason="mesh_default",service="kri_extsvc_default_default__mes-http_"\} (\d+)/m) >= 1);
  t.true(metric(prom, /^meshext_access_denied_total\{reason="mesh_default",service="kri_extsvc_default_default__mes-grpc_"\} (\d+)/m) >= 1);
  t.true(metric(prom, /^meshext_access_denied_total\{reason="no_identity",service="kri_extsvc_default_default__mes-tcp_"\} (\d+)/m) >= 1);
  t.true(metric(prom, /^meshext_access_denied_total\{reason="rule",service="kri_extsvc_default_default__mes-tcp_"\} (\d+)/m) >= 1);
  t.is(metric(prom, /^meshext_access_denied_total\{reason="rule",service="kri_extsvc_default_default__mes-http_"\} (\d+)/m), 0);

  // One log line per denial names the cgroup, the identity, the service and the rule.
  const line = await agent.next((l) => l.msg === 'connection denied by MeshTrafficPermission' && (l.identity as string | null)?.endsWith('/ns/legacy/sa/app') === true);
  t.like(line, { cgroup: `/kubepods/burstable/pod${LEGACY_POD}`, service: 'default/mes-tcp', verdict: 'denyRule', rule: { policy: 'external-clients', list: 'deny', spiffeID: { type: 'Prefix', value: `${TD}/ns/legacy` } } });
  const shadowLine = await agent.next((l) => typeof l.msg === 'string' && l.msg.startsWith('connection would be denied') && l.cgroup === '/system.slice/shadow.service');
  t.is(shadowLine.verdict, 'shadowDeny');

  // /config_dump: the rules per service and who on this node may connect.
  const dump = JSON.parse((await admin(env, '/config_dump')).body) as { services: Array<{ name: string; permissions?: { policies: string[]; identitiesOnNode: Record<string, string[]> } }> };
  const perm = dump.services.find((s) => s.name === 'mes-tcp')?.permissions;
  t.deepEqual(perm?.policies, ['external-clients']);
  t.true(perm?.identitiesOnNode.allow?.includes(`${HOST}/allowed.service`));
  t.true(perm?.identitiesOnNode.denyDefault?.includes(`${HOST}/denied.service`));
});

privilegedTest('MeshTrafficPermission reload flips new connections and leaves open ones; a cgroup created after start is governed', async (t) => {
  const { env } = await setup(t);
  // An open stream from the allowed unit, started before the reload.
  const stream = new JsonChild(t, spawnInCgroup(path.join(env.cgroup, 'system.slice/allowed.service'), node, [path.join(root, 'dist/test/fixtures/e2e/stream.js'), 'mes-tcp.svc.meshext.local', '4242', '30', '100'], { netns: env.netns }));
  await stream.next((l) => l.event === 'connected');

  fs.writeFileSync(path.join(env.configDir, 'mtp.yaml'), mtpYaml('denied.service'));
  await until(() => tcp(env, 'system.slice/denied.service'), (r) => r.out === 'echo this', 100, 100);
  t.is((await tcp(env, 'system.slice/denied.service')).out, 'echo this', 'newly allowed');
  t.is(await connectError(env, 'system.slice/allowed.service'), 'EPERM', 'newly denied');
  const done = await stream.next((l) => l.event === 'done' || 'exited' in l);
  t.like(done, { event: 'done', ok: true }, 'the connection opened before the reload kept flowing');

  // A unit cgroup that appears after start gets its identity (late.service is allowed by Exact).
  fs.mkdirSync(path.join(env.cgroup, 'system.slice/late.service'));
  const late = await until(() => tcp(env, 'system.slice/late.service'), (r) => r.out === 'echo this', 50, 100);
  t.is(late.out, 'echo this', late.err);
  // And one that no rule allows stays refused.
  fs.mkdirSync(path.join(env.cgroup, 'system.slice/late2.service'));
  await new Promise((r) => setTimeout(r, 300));
  t.is(await connectError(env, 'system.slice/late2.service'), 'EPERM');
});

/** The fake API server (test/fixtures/e2e/fake-kube-main.ts) in the test's netns, driven over stdin. */
async function fakeKube(t: ExecutionContext, env: E2eEnv): Promise<{ kubeconfig: string; call: (cmd: Record<string, unknown>) => Promise<void> }> {
  const proc = new JsonChild(t, spawnInCgroup(null, node, [path.join(root, 'dist/test/fixtures/e2e/fake-kube-main.js'), env.pki.dir, env.dir, 'kuma-system'], { netns: env.netns }));
  const ready = await proc.next((l) => l.event === 'ready' || l.exited === true);
  if (ready.event !== 'ready') throw new Error(`fake API server did not start: ${proc.stderr}`);
  let id = 0;
  return {
    kubeconfig: String(ready.kubeconfig),
    call: async (cmd) => {
      const n = ++id;
      proc.child.stdin!.write(JSON.stringify({ id: n, ...cmd }) + '\n');
      const reply = await proc.next((l) => l.id === n || l.exited === true);
      if (reply.ok !== true) throw new Error(`fake API server: ${JSON.stringify(reply)}`);
    },
  };
}

privilegedTest('MeshTrafficPermission on Kubernetes: a pod of this node gets its namespace/serviceaccount identity when the API lists it, and loses it when it is deleted, without a restart', async (t) => {
  const env = e2eSetup(t);
  fs.copyFileSync(path.join(root, 'examples/universal/mes-tcp.yaml'), path.join(env.configDir, 'mes-tcp.yaml'));
  fs.copyFileSync(path.join(root, 'examples/universal/hostname-generator.yaml'), path.join(env.configDir, 'hostname-generator.yaml'));
  fs.writeFileSync(path.join(env.configDir, 'mesh.yaml'), 'type: Mesh\nname: default\nrouting:\n  defaultForbidMeshExternalServiceAccess: true\n');
  fs.writeFileSync(path.join(env.configDir, 'mtp.yaml'), mtpYaml('none.service'));
  const pod = (uid: string, node: string) => ({ metadata: { name: `checkout-${uid.slice(0, 4)}`, namespace: 'shop', uid }, spec: { nodeName: node, serviceAccountName: 'checkout' } });
  for (const uid of [SHOP_POD, LEGACY_POD]) fs.mkdirSync(path.join(env.cgroup, `kubepods/burstable/pod${uid}`), { recursive: true });
  await startUpstreams(t, env);
  const kube = await fakeKube(t, env);
  // SHOP_POD runs on this node; LEGACY_POD's uid belongs to a pod of another node (never listed here).
  await kube.call({ op: 'apply', collection: 'pods', object: pod(SHOP_POD, 'node-1') });
  await kube.call({ op: 'apply', collection: 'pods', object: pod(LEGACY_POD, 'node-2') });
  await startAgent(t, env, ['--config', env.configDir, '--source', 'kubernetes', '--kubeconfig', kube.kubeconfig, '--node-name', 'node-1']);

  const shop = `kubepods/burstable/pod${SHOP_POD}`;
  const other = `kubepods/burstable/pod${LEGACY_POD}`;
  const allowed = await until(() => tcp(env, shop), (r) => r.out === 'echo this', 50, 100);
  t.is(allowed.out, 'echo this', `${TD}/ns/shop/sa/checkout is allowed by the Prefix ${TD}/ns: ${allowed.err}`);
  t.is(await connectError(env, other), 'EPERM', 'a pod this node does not run has no identity');

  // The pod is deleted: its cgroup (still there for a moment, as when kubelet tears it down) loses its identity.
  await kube.call({ op: 'remove', collection: 'pods', name: `checkout-${SHOP_POD.slice(0, 4)}`, namespace: 'shop' });
  t.is(await until(() => connectError(env, shop), (e) => e === 'EPERM', 50, 100), 'EPERM');
  // A new pod on this node with that cgroup's uid is governed at once.
  await kube.call({ op: 'apply', collection: 'pods', object: pod(LEGACY_POD, 'node-1') });
  const moved = await until(() => tcp(env, other), (r) => r.out === 'echo this', 50, 100);
  t.is(moved.out, 'echo this', moved.err);
});
