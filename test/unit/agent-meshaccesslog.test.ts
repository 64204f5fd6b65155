// A MeshAccessLog added, changed and removed by reload applies to the next request on a kept-alive client
// connection, with no restart; /config_dump shows the service's effective backends; a bad one is rejected alone.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { startTestAgent } from '../helpers/agent.js';
import { closeServer, freePort, keepAliveGet, listen, until } from '../helpers/proxy.js';

/** The status of a whole response to GET on the kept-alive socket. */
const get = async (c: net.Socket, pathName: string): Promise<number> => (await keepAliveGet(c, pathName)).status;

function readLines(file: string): string[] {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : [];
}

test('reload: adding, changing and removing a MeshAccessLog applies to the next request without a restart', async (t) => {
  const up = await listen(http.createServer((req, res) => res.end('ok')));
  t.teardown(() => closeServer(up.srv));
  const outPort = await freePort();
  const a = await startTestAgent(t, {
    'services.yaml': [
      `type: MeshExternalService\nname: web\nmesh: default\nspec:\n  match: {port: 80, protocol: http}\n  endpoints: [{address: 127.0.0.1, port: ${up.port}}]\n`,
      `type: Dataplane\nname: dp\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  outbound:\n    - port: ${outPort}\n      backendRef: {kind: MeshExternalService, name: web}\n`,
    ].join('---\n'),
  });
  // The helper's --access-log-dir, created by the agent at start.
  const logDir = path.join(a.configDir, '..', 'logs');
  const jsonLog = path.join(logDir, 'web.json');
  const plainLog = path.join(logDir, 'web.log');
  const policyFile = path.join(a.configDir, 'access-log.yaml');
  const writePolicy = (backend: string): void =>
    fs.writeFileSync(policyFile, `type: MeshAccessLog\nname: web-log\nmesh: default\nspec:\n  to:\n    - targetRef: {kind: MeshExternalService, name: web}\n      default:\n        backends:\n${backend}`);
  type DumpedPlan = { service: string; accessLog?: { backends: Array<{ path: string; json: boolean }> }; policies?: { meshAccessLogs?: string[] } };
  const plan = async (): Promise<DumpedPlan> => {
    const dump = (await (await fetch(`http://127.0.0.1:${a.adminPort}/config_dump`)).json()) as { plans: DumpedPlan[] };
    return dump.plans.find((p) => p.service === 'default/web') as DumpedPlan;
  };

  const c = net.connect({ host: '127.0.0.1', port: outPort });
  c.on('error', () => undefined);
  t.teardown(() => c.destroy());
  t.is(await get(c, '/before'), 200);
  t.is((await plan()).accessLog, undefined);

  writePolicy(`          - type: File\n            file:\n              path: ${jsonLog}\n              format:\n                type: Json\n                json: [{key: path, value: "%REQ(:PATH)%"}, {key: status, value: "%RESPONSE_CODE%"}]\n`);
  t.true((await a.agent.reload('test')).ok);
  const added = await plan();
  t.deepEqual(added.accessLog?.backends.map((b) => [b.path, b.json]), [[jsonLog, true]]);
  t.deepEqual(added.policies?.meshAccessLogs, ['web-log']);
  t.is(await get(c, '/one'), 200, 'added: the same client connection is logged');
  await until(() => readLines(jsonLog).length === 1, 'one JSON line');
  t.deepEqual(JSON.parse(readLines(jsonLog)[0] ?? ''), { path: '/one', status: 200 });

  writePolicy(`          - type: File\n            file:\n              path: ${plainLog}\n              format:\n                type: Plain\n                plain: "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%"\n`);
  t.true((await a.agent.reload('test')).ok);
  t.is(await get(c, '/two'), 200);
  await until(() => readLines(plainLog).length === 1, 'one plain line');
  t.deepEqual(readLines(plainLog), ['GET /two 200'], 'changed: the new file and format');
  t.is(readLines(jsonLog).length, 1, 'the old file gets nothing more');

  // A bad edit is rejected alone and the policy's last good version stays in force.
  writePolicy(`          - type: Tcp\n            tcp: {address: "127.0.0.1:5000"}\n`);
  const bad = await a.agent.reload('test');
  t.is(bad.rejected, 1);
  t.is(await get(c, '/three'), 200);
  await until(() => readLines(plainLog).length === 2, 'the last good policy still logs');

  // Outside --access-log-dir (the agent is root: /proc/sys/kernel/core_pattern would be a node escape): that
  // backend is left out with an error naming the path and the directory; the service keeps serving.
  const outside = path.join(a.configDir, 'escape.log');
  writePolicy(`          - type: File\n            file:\n              path: ${outside}\n`);
  t.true((await a.agent.reload('test')).ok);
  t.is((await plan()).accessLog, undefined);
  const refused = a.log.find(/access log backend left out/).map((l) => l as { code?: string; err?: string });
  t.is(refused.length, 1);
  t.is(refused[0]?.code, 'MESHEXT_E_ACCESS_LOG');
  t.is(
    refused[0]?.err,
    `access log backend ${outside} of MeshAccessLog web-log: file.path "${outside}" is outside the access log directory ${path.resolve(logDir)} (--access-log-dir): only files under it, /dev/stdout and /dev/stderr are written`,
  );
  t.is(await get(c, '/outside'), 200);
  await new Promise((r) => setTimeout(r, 100));
  t.false(fs.existsSync(outside), 'nothing is written outside the directory');

  fs.rmSync(policyFile);
  t.true((await a.agent.reload('test')).ok);
  const after = await plan();
  t.is(after.accessLog, undefined);
  t.is(after.policies, undefined);
  t.is(await get(c, '/four'), 200);
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(readLines(plainLog), ['GET /two 200', 'GET /three 200'], 'removed: nothing more is logged');
  t.is((fs.statSync(plainLog).mode & 0o777) & ~0o640, 0, 'created 0640 at most');
});
