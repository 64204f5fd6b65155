// A MeshTimeout added, changed and removed by reload applies to the next request on a kept-alive client
// connection, with no restart; /config_dump shows the effective values in the service's plan.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { startTestAgent } from '../helpers/agent.js';
import { closeServer, freePort, keepAliveGet, listen } from '../helpers/proxy.js';

const DELAY_MS = 1200;

/** The status of a whole response to GET on the kept-alive socket. */
const get = async (c: net.Socket, pathName: string): Promise<number> => (await keepAliveGet(c, pathName)).status;

test('reload: adding, changing and removing a MeshTimeout applies to the next request without a restart', async (t) => {
  const up = await listen(http.createServer((req, res) => setTimeout(() => res.end('ok'), req.url === '/slow' ? DELAY_MS : 0)));
  t.teardown(() => closeServer(up.srv));
  const outPort = await freePort();
  const a = await startTestAgent(t, {
    'services.yaml': [
      `type: MeshExternalService\nname: web\nmesh: default\nspec:\n  match: {port: 80, protocol: http}\n  endpoints: [{address: 127.0.0.1, port: ${up.port}}]\n`,
      `type: Dataplane\nname: dp\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  outbound:\n    - port: ${outPort}\n      backendRef: {kind: MeshExternalService, name: web}\n`,
    ].join('---\n'),
  });
  const policyFile = path.join(a.configDir, 'timeouts.yaml');
  const writePolicy = (requestTimeout: string): void =>
    fs.writeFileSync(policyFile, `type: MeshTimeout\nname: web-timeout\nmesh: default\nspec:\n  to:\n    - targetRef: {kind: MeshExternalService, name: web}\n      default:\n        http: {requestTimeout: ${requestTimeout}}\n`);
  const plan = async (): Promise<{ timeouts: { requestMs: number }; policies?: { meshTimeouts: string[] } }> => {
    const dump = (await (await fetch(`http://127.0.0.1:${a.adminPort}/config_dump`)).json()) as { plans: Array<{ service: string; timeouts: { requestMs: number } }> };
    return dump.plans.find((p) => p.service === 'default/web') as never;
  };

  const c = net.connect({ host: '127.0.0.1', port: outPort });
  c.on('error', () => undefined);
  t.teardown(() => c.destroy());
  t.is((await plan()).timeouts.requestMs, 0);
  t.is(await get(c, '/slow'), 200, 'no policy: the slow response is waited for');

  writePolicy('300ms');
  t.true((await a.agent.reload('test')).ok);
  t.deepEqual(await plan(), { ...(await plan()), timeouts: { ...(await plan()).timeouts, requestMs: 300 }, policies: { meshTimeouts: ['web-timeout'] } });
  t.is(await get(c, '/slow'), 504, 'added: the same client connection times out at 300 ms');
  t.is(await get(c, '/fast'), 200);

  writePolicy('5s');
  t.true((await a.agent.reload('test')).ok);
  t.is((await plan()).timeouts.requestMs, 5000);
  t.is(await get(c, '/slow'), 200, 'changed: 5 s is long enough');

  fs.rmSync(policyFile);
  t.true((await a.agent.reload('test')).ok);
  const after = await plan();
  t.is(after.timeouts.requestMs, 0);
  t.is(after.policies, undefined);
  t.is(await get(c, '/slow'), 200, 'removed: back to no request timeout');
});
