// A MeshTimeout whose top-level targetRef is Dataplane A applies to A's outbound listener only: a slow request
// through it gets 504 at A's request timeout, while the same service through Dataplane B's outbound and through
// the transparent listener keeps the mesh-wide value. Adding and removing the policy by reload changes A's plan
// only, with no restart, on the same listener socket and kept-alive client connection.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Proxy } from '../../src/proxy/index.js';
import { startTestAgent } from '../helpers/agent.js';
import { closeServer, freePort, keepAliveGet, listen } from '../helpers/proxy.js';

const DELAY_MS = 1500;

const get = keepAliveGet;

interface Dump {
  services: Array<{ name: string; vip: string; dataplanes?: Array<{ dataplane: string; key: string; plan: string; timeouts: { requestMs: number }; policies: { meshTimeouts?: string[] } }> }>;
  plans: Array<{ service: string; dataplane?: string; keys: string[]; timeouts: { requestMs: number }; policies?: { meshTimeouts?: string[] } }>;
  outbounds: Array<{ port: number; dataplane: string; key: string }>;
}

test('a Dataplane-targeted MeshTimeout applies to that Dataplane\'s outbound only; reload adds and removes it in place', async (t) => {
  const up = await listen(http.createServer((req, res) => setTimeout(() => res.end('ok'), req.url === '/slow' ? DELAY_MS : 0)));
  t.teardown(() => closeServer(up.srv));
  const [outA, outB, vipPort] = [await freePort(), await freePort(), await freePort()];
  const dataplane = (name: string, port: number): string =>
    `type: Dataplane\nname: ${name}\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  outbound:\n    - port: ${port}\n      backendRef: {kind: MeshExternalService, name: web}\n`;
  const a = await startTestAgent(
    t,
    {
      // The service's port is the transparent listener's, and its VIP a loopback address: without the eBPF redirect
      // the listener routes a connection by the address it reached, so connecting to VIP:port is the VIP path.
      'services.yaml': [
        `type: MeshExternalService\nname: web\nmesh: default\nspec:\n  match: {port: ${vipPort}, protocol: http}\n  endpoints: [{address: 127.0.0.1, port: ${up.port}}]\n`,
        dataplane('a', outA),
        dataplane('b', outB),
        `type: MeshTimeout\nname: mesh-wide\nmesh: default\nspec:\n  to:\n    - targetRef: {kind: Mesh}\n      default:\n        http: {requestTimeout: 5s}\n`,
      ].join('---\n'),
    },
    { vipCidr: '127.77.0.0/16' },
  );
  const proxy = (a.agent as unknown as { proxy: Proxy }).proxy;
  await proxy.listenTransparent({ address: '0.0.0.0', port: vipPort });
  const dump = async (): Promise<Dump> => (await (await fetch(`http://127.0.0.1:${a.adminPort}/config_dump`)).json()) as Dump;
  // The VIP as the agent reports it (it must stay the same across reloads: checked below).
  const vipNow = async (): Promise<string> => (await dump()).services.find((s) => s.name === 'web')?.vip as string;

  const connect = (host: string, port: number): net.Socket => {
    const c = net.connect({ host, port });
    c.on('error', () => undefined);
    t.teardown(() => c.destroy());
    return c;
  };
  const viaA = connect('127.0.0.1', outA);
  const viaB = connect('127.0.0.1', outB);
  const slowAll = async (): Promise<Array<{ status: number; ms: number }>> => Promise.all([get(viaA, '/slow'), get(viaB, '/slow'), get(connect(await vipNow(), vipPort), '/slow')]);

  let r = await slowAll();
  t.deepEqual(r.map((x) => x.status), [200, 200, 200], 'no Dataplane policy: every path waits for the slow response');
  let vip = await vipNow();
  t.deepEqual((await dump()).plans.map((p) => [p.dataplane ?? null, p.keys]), [[null, [`${vip}:${vipPort}`, '@default/web', '@default/web/a', '@default/web/b']]]);

  const policyFile = path.join(a.configDir, 'dataplane-a.yaml');
  fs.writeFileSync(policyFile, `type: MeshTimeout\nname: a-only\nmesh: default\nspec:\n  targetRef: {kind: Dataplane, name: a}\n  to:\n    - targetRef: {kind: MeshExternalService, name: web}\n      default:\n        http: {requestTimeout: 1s}\n`);
  t.true((await a.agent.reload('test')).ok);
  let d = await dump();
  t.is(await vipNow(), vip, 'a reload keeps the VIP (a loopback CIDR the operator configured is read back from the state file)');
  t.deepEqual(
    d.plans.map((p) => [p.dataplane ?? null, p.keys, p.timeouts.requestMs, p.policies?.meshTimeouts]),
    [
      [null, [`${vip}:${vipPort}`, '@default/web', '@default/web/b'], 5000, ['mesh-wide']],
      ['a', ['@default/web/a'], 1000, ['mesh-wide', 'a-only']],
    ],
  );
  t.deepEqual(
    d.services[0]?.dataplanes?.map((b) => [b.dataplane, b.key, b.timeouts.requestMs, b.policies.meshTimeouts]),
    [
      ['a', '@default/web/a', 1000, ['mesh-wide', 'a-only']],
      ['b', '@default/web/b', 5000, ['mesh-wide']],
    ],
    '/config_dump shows the effective values per Dataplane outbound',
  );
  r = await slowAll();
  t.is(r[0]?.status, 504, "A's outbound times out at A's 1 s");
  t.true((r[0]?.ms ?? 0) >= 950 && (r[0]?.ms ?? 0) < DELAY_MS, `504 after ${r[0]?.ms} ms`);
  t.deepEqual(r.slice(1).map((x) => x.status), [200, 200], "B's outbound and the VIP path keep the mesh-wide 5 s");
  t.is((await get(viaA, '/fast')).status, 200, "A's kept-alive connection still serves");

  fs.rmSync(policyFile);
  t.true((await a.agent.reload('test')).ok);
  d = await dump();
  t.deepEqual(d.plans.map((p) => [p.dataplane ?? null, p.timeouts.requestMs]), [[null, 5000]]);
  r = await slowAll();
  t.deepEqual(r.map((x) => x.status), [200, 200, 200], 'removed: A is back on the service plan');
  // The outbound listeners were opened once, at start: reloads moved their keys between plans, never reopened them.
  const opened = a.log.find(/^listening$/).filter((l) => l['key'] !== undefined);
  t.deepEqual(opened.map((l) => l['key']).sort(), ['@default/web/a', '@default/web/b']);
});

test("a Dataplane-targeted MeshAccessLog logs the requests through that Dataplane's outbound only", async (t) => {
  const up = await listen(http.createServer((_req, res) => res.end('ok')));
  t.teardown(() => closeServer(up.srv));
  const [outA, outB] = [await freePort(), await freePort()];
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshext-dp-log-'));
  t.teardown(() => fs.rmSync(logDir, { recursive: true, force: true }));
  const logFile = path.join(logDir, 'a.log');
  const dataplane = (name: string, port: number): string =>
    `type: Dataplane\nname: ${name}\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  outbound:\n    - port: ${port}\n      backendRef: {kind: MeshExternalService, name: web}\n`;
  const a = await startTestAgent(
    t,
    {
      'services.yaml': [
        `type: MeshExternalService\nname: web\nmesh: default\nspec:\n  match: {port: 80, protocol: http}\n  endpoints: [{address: 127.0.0.1, port: ${up.port}}]\n`,
        dataplane('a', outA),
        dataplane('b', outB),
        `type: MeshAccessLog\nname: a-log\nmesh: default\nspec:\n  targetRef: {kind: Dataplane, name: a}\n  to:\n    - targetRef: {kind: Mesh}\n      default:\n        backends: [{type: File, file: {path: ${logFile}, format: {type: Plain, plain: "%REQ(:PATH)%"}}}]\n`,
      ].join('---\n'),
    },
    { accessLogDir: logDir },
  );
  for (const [port, p] of [[outA, '/via-a'], [outB, '/via-b'], [outA, '/via-a-again']] as const) {
    const r = await fetch(`http://127.0.0.1:${port}${p}`);
    t.is(r.status, 200);
    await r.text();
  }
  // The writer thread empties its queue every 20 ms.
  let lines: string[] = [];
  for (let i = 0; i < 100 && lines.length < 2; i++) {
    await new Promise((r) => setTimeout(r, 20));
    lines = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean) : [];
  }
  t.deepEqual(lines, ['/via-a', '/via-a-again']);
  t.is(a.log.find(/access log/).length, 0, 'no backend was left out');
});
