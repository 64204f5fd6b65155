/**
 * deploy/kubernetes/*.yaml, since no cluster can run here: every object validated against the Kubernetes
 * OpenAPI schemas (kubernetes-models: ajv validators generated from the upstream definitions), the RBAC
 * granting exactly list/watch on what the Kubernetes source reads, and the agent's arguments accepted
 * by the real option parser.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { WATCHED_KINDS } from '../../src/sources/kubernetes.js';
import { resolveConfig, OPTION_NAMES, type OptionName, type RawOptions } from '../../src/agent/config.js';

const DIR = 'deploy/kubernetes';
type Doc = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: unknown };
type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'apps/v1/DaemonSet': DaemonSet,
  'batch/v1/Job': Job,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
};

function manifests(): Array<{ file: string; doc: Doc }> {
  const out: Array<{ file: string; doc: Doc }> = [];
  for (const f of fs.readdirSync(DIR).filter((n) => /\.ya?ml$/.test(n)).sort()) {
    for (const d of parseAllDocuments(fs.readFileSync(path.join(DIR, f), 'utf8'))) {
      if (d.errors.length) throw new Error(`${f}: ${d.errors[0]?.message}`);
      const doc = d.toJS() as Doc | null;
      if (doc) out.push({ file: f, doc });
    }
  }
  return out;
}

/** Schema errors of one object, or a message saying no schema is known for its kind. */
function schemaErrors(doc: Doc): string | undefined {
  const Model = MODELS[`${doc.apiVersion}/${doc.kind}`];
  if (!Model) return `no schema registered for ${doc.apiVersion} ${doc.kind}: add it to MODELS`;
  try {
    new Model(doc as never).validate();
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

const all = manifests();
const find = (kind: string) => all.filter((m) => m.doc.kind === kind).map((m) => m.doc);

test('every manifest object is valid against the Kubernetes OpenAPI schemas', (t) => {
  t.true(all.length >= 8);
  for (const { file, doc } of all) t.is(schemaErrors(doc), undefined, `${file}: ${doc.kind} ${doc.metadata?.name}`);
});

test('the schema check fails on a broken object (so the test above can fail)', (t) => {
  const ds = structuredClone(find('DaemonSet')[0]!) as Doc & { spec: { template: { spec: { containers: Array<Record<string, unknown>> } }; selector?: unknown } };
  ds.spec.template.spec.containers[0]!.args = '--source=kubernetes';
  t.regex(schemaErrors(ds) ?? '', /args/);
  delete ds.spec.selector;
  t.regex(schemaErrors(structuredClone(ds)) ?? '', /selector/);
  const role = structuredClone(find('Role')[0]!) as Doc & { rules: Array<Record<string, unknown>> };
  delete role.rules[0]!.verbs;
  t.regex(schemaErrors(role) ?? '', /verbs/);
});

test('RBAC grants exactly list and watch on the kinds the Kubernetes source reads; Secrets only in the system namespace', (t) => {
  const [clusterRole] = find('ClusterRole') as Array<Doc & { rules: Rule[] }>;
  const [role] = find('Role') as Array<Doc & { rules: Rule[] }>;
  t.is(find('ClusterRole').length, 1);
  t.is(find('Role').length, 1);
  const grants = (rules: Rule[]) => rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.map((res) => `${g}/${res}:${[...r.verbs].sort().join(',')}`))).sort();
  const want = (namespaced: boolean) => WATCHED_KINDS.filter((k) => k.namespaced === namespaced).map((k) => `${k.group}/${k.plural}:list,watch`).sort();
  // Besides the Kuma kinds, the pods of this node (all namespaces, field selector spec.nodeName): workload identities.
  t.deepEqual(grants(clusterRole!.rules), [...want(false), '/pods:list,watch'].sort());
  t.deepEqual(grants(role!.rules), want(true));
  t.true(grants(role!.rules).includes('/secrets:list,watch'));
  t.false(grants(clusterRole!.rules).some((g) => g.includes('secrets')));
  // Bindings point at the agent's ServiceAccount.
  const [sa] = find('ServiceAccount');
  for (const b of [...find('RoleBinding'), ...find('ClusterRoleBinding')] as Array<Doc & { subjects: Array<{ name: string; namespace: string }> }>) {
    t.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: sa!.metadata.name, namespace: sa!.metadata.namespace }] as never);
  }
});

test("the DaemonSet's arguments are accepted by the agent and match the RBAC", (t) => {
  const ds = find('DaemonSet')[0] as Doc & {
    spec: { template: { spec: { serviceAccountName: string; containers: Array<{ name: string; args: string[]; env?: Array<{ name: string; value?: string }> }> } } };
  };
  const pod = ds.spec.template.spec;
  t.is(pod.serviceAccountName, find('ServiceAccount')[0]!.metadata.name);
  const agent = pod.containers.find((c) => c.name === 'agent')!;
  // The kubelet expands $(VAR) from the container's env before the agent sees its arguments.
  const env = new Map((agent.env ?? []).map((e) => [e.name, e.value]));
  const args = agent.args.map((a) => a.replace(/\$\(([A-Z_]+)\)/g, (whole, n: string) => env.get(n) ?? whole));
  t.is(args[0], 'run');
  const options: RawOptions = {};
  for (const a of args.slice(1)) {
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (!m) return t.fail(`argument ${a} is not --name=value`);
    const name = m[1]!.replace(/-([a-z])/g, (_x, c: string) => c.toUpperCase()) as OptionName;
    t.true((OPTION_NAMES as readonly string[]).includes(name), `unknown option --${m[1]}`);
    const prev = options[name];
    const value = m[2] ?? '';
    options[name] = name === 'config' || name === 'dnsUpstream' ? [...((prev as string[] | undefined) ?? []), value] : value;
  }
  const cfg = resolveConfig([{ name: 'flags', options }]);
  t.is(cfg.source, 'kubernetes');
  t.is(cfg.systemNamespace, find('Role')[0]?.metadata.namespace ?? 'the Role has no namespace');
  t.is(cfg.kubeconfig, undefined, 'in-cluster service account');
});

test('the DaemonSet rolls without an outage: the new pod starts beside the old one, and probes ask each pod its own agent', (t) => {
  type Probe = { exec?: { command: string[] }; httpGet?: unknown };
  const ds = find('DaemonSet')[0] as Doc & {
    spec: {
      updateStrategy: { type: string; rollingUpdate: { maxSurge?: number | string; maxUnavailable?: number | string } };
      template: { spec: { containers: Array<{ name: string; ports?: unknown[]; startupProbe?: Probe; readinessProbe?: Probe; livenessProbe?: Probe }> } };
    };
  };
  const u = ds.spec.updateStrategy;
  t.is(u.type, 'RollingUpdate');
  t.is(u.rollingUpdate.maxUnavailable, 0, 'the old pod stays until the new one is ready');
  t.true(Number(u.rollingUpdate.maxSurge) >= 1, 'the new pod starts while the old one serves');
  const agent = ds.spec.template.spec.containers.find((c) => c.name === 'agent')!;
  // Declared host ports would keep the surge pod from being scheduled next to the old one.
  t.is(agent.ports, undefined);
  for (const [kind, want] of [['startupProbe', 'ready'], ['readinessProbe', 'ready'], ['livenessProbe', 'live']] as const) {
    const p = agent[kind];
    t.is(p?.httpGet, undefined, `${kind} over the shared TCP admin port could be answered by the other agent`);
    t.deepEqual(p?.exec?.command.slice(-2), ['probe', want], kind);
  }
});

test('the socket-holder sidecar holds exactly the agent\'s proxy and DNS sockets, at the path the agent asks', (t) => {
  type C = { name: string; args: string[]; restartPolicy?: string; env?: Array<{ name: string; value?: string }> };
  const ds = find('DaemonSet')[0] as Doc & { spec: { template: { spec: { initContainers: C[]; containers: C[] } } } };
  const holder = ds.spec.template.spec.initContainers.find((c) => c.name === 'sockets');
  t.is(holder?.restartPolicy, 'Always', 'a sidecar: it keeps running beside the agent');
  const agent = ds.spec.template.spec.containers.find((c) => c.name === 'agent')!;
  const env = new Map((agent.env ?? []).map((e) => [e.name, e.value]));
  const options: RawOptions = {};
  for (const a of agent.args.slice(1)) {
    const m = /^--([a-z-]+)=(.*)$/.exec(a.replace(/\$\(([A-Z_]+)\)/g, (w, n: string) => env.get(n) ?? w))!;
    const name = m[1]!.replace(/-([a-z])/g, (_x, c: string) => c.toUpperCase()) as OptionName;
    options[name] = name === 'config' || name === 'dnsUpstream' ? [...((options[name] as string[] | undefined) ?? []), m[2]!] : m[2]!;
  }
  const cfg = resolveConfig([{ name: 'flags', options }]);
  const arg = (name: string): string[] => (holder?.args ?? []).filter((a) => a.startsWith(`--${name}=`)).map((a) => a.slice(name.length + 3));
  t.deepEqual(arg('socket'), [cfg.socketHolder]);
  t.deepEqual(arg('listen').sort(), [`tcp://${cfg.proxy.address}:${cfg.proxy.port}`, `tcp://${cfg.dnsListen.address}:${cfg.dnsListen.port}`, `udp://${cfg.dnsListen.address}:${cfg.dnsListen.port}`].sort());
});
