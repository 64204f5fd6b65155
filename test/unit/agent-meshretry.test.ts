// A MeshRetry added, changed and removed by reload applies to the next request on a kept-alive client
// connection, with no restart; /config_dump shows the effective values in the service's plan.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { startTestAgent } from '../helpers/agent.js';
import { closeServer, freePort, keepAliveGet, listen } from '../helpers/proxy.js';

/** The status of a whole response to GET on the kept-alive socket. */
const get = async (c: net.Socket, pathName: string): Promise<number> => (await keepAliveGet(c, pathName)).status;

test('reload: adding, changing and removing a MeshRetry applies to the next request without a restart', async (t) => {
  // One endpoint of two always fails: round-robin sends every other first attempt there.
  const bad = await listen(http.createServer((_req, res) => res.writeHead(503).end('bad')));
  const good = await listen(http.createServer((_req, res) => res.end('ok')));
  t.teardown(() => closeServer(bad.srv));
  t.teardown(() => closeServer(good.srv));
  const outPort = await freePort();
  const a = await startTestAgent(t, {
    'services.yaml': [
      `type: MeshExternalService\nname: web\nmesh: default\nspec:\n  match: {port: 80, protocol: http}\n  endpoints: [{address: 127.0.0.1, port: ${bad.port}}, {address: 127.0.0.1, port: ${good.port}}]\n`,
      `type: Dataplane\nname: dp\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  outbound:\n    - port: ${outPort}\n      backendRef: {kind: MeshExternalService, name: web}\n`,
    ].join('---\n'),
  });
  const policyFile = path.join(a.configDir, 'retries.yaml');
  const writePolicy = (numRetries: number): void =>
    fs.writeFileSync(policyFile, `type: MeshRetry\nname: web-retry\nmesh: default\nspec:\n  to:\n    - targetRef: {kind: MeshExternalService, name: web}\n      default:\n        http: {numRetries: ${numRetries}, retryOn: [5xx], backOff: {baseInterval: 1ms}}\n`);
  type Plan = { retry?: { numRetries: number; on: string[]; backOffBaseMs: number }; policies?: { meshRetries?: string[] } };
  const plan = async (): Promise<Plan> => {
    const dump = (await (await fetch(`http://127.0.0.1:${a.adminPort}/config_dump`)).json()) as { plans: Array<Plan & { service: string }> };
    return dump.plans.find((p) => p.service === 'default/web') as Plan;
  };
  const statuses = async (c: net.Socket, n: number): Promise<number[]> => {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await get(c, `/r${i}`));
    return out;
  };

  const c = net.connect({ host: '127.0.0.1', port: outPort });
  c.on('error', () => undefined);
  t.teardown(() => c.destroy());
  t.is((await plan()).retry, undefined);
  t.true((await statuses(c, 6)).includes(503), 'no policy: the failing endpoint answers clients');

  writePolicy(2);
  t.true((await a.agent.reload('test')).ok);
  t.like(await plan(), { retry: { numRetries: 2, on: ['5xx'], backOffBaseMs: 1 }, policies: { meshRetries: ['web-retry'] } });
  t.deepEqual(await statuses(c, 8), Array(8).fill(200), 'added: the same client connection never sees the 503s');

  writePolicy(0);
  t.true((await a.agent.reload('test')).ok);
  t.like(await plan(), { retry: undefined, policies: { meshRetries: ['web-retry'] } });
  t.true((await statuses(c, 6)).includes(503), 'changed to numRetries 0: nothing is retried');

  fs.rmSync(policyFile);
  t.true((await a.agent.reload('test')).ok);
  const after = await plan();
  t.is(after.retry, undefined);
  t.is(after.policies, undefined);
  t.true((await statuses(c, 6)).includes(503), 'removed: back to no retry');
});
