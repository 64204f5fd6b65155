// MeshHealthCheck and MeshCircuitBreaker added, changed and removed by reload, with no restart: priority
// failover follows the checks, limits follow the policy, and /clusters, /config_dump and /metrics say so.
import test from 'ava';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { startTestAgent } from '../helpers/agent.js';
import { closeServer, freePort, listen } from '../helpers/proxy.js';

/** An HTTP stand-in: /health answers `health`, /health-ok 200, /slow after 800 ms, the rest at once; bodies are `name`. */
async function standIn(name: string): Promise<{ port: number; srv: http.Server; setHealth: (s: number) => void }> {
  let health = 200;
  const srv = http.createServer((req, res) => {
    req.resume();
    if (req.url === '/health') res.writeHead(health).end(name);
    else if (req.url === '/slow') setTimeout(() => res.end(name), 800);
    else res.end(name);
  });
  const { port } = await listen(srv);
  return { port, srv, setHealth: (s) => (health = s) };
}

function get(port: number, p = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

test('reload: a MeshHealthCheck and a MeshCircuitBreaker added, changed and removed apply without a restart', async (t) => {
  const a = await standIn('a');
  const b = await standIn('b');
  t.teardown(() => closeServer(a.srv));
  t.teardown(() => closeServer(b.srv));
  a.setHealth(503);
  const outPort = await freePort();
  const ag = await startTestAgent(t, {
    'services.yaml': [
      `type: MeshExternalService\nname: web\nmesh: default\nspec:\n  match: {port: 80, protocol: http}\n  endpoints:\n    - {address: 127.0.0.1, port: ${a.port}}\n    - {address: 127.0.0.1, port: ${b.port}, priority: 1}\n`,
      `type: Dataplane\nname: dp\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  outbound:\n    - port: ${outPort}\n      backendRef: {kind: MeshExternalService, name: web}\n`,
    ].join('---\n'),
  });
  const admin = async (p: string): Promise<unknown> => (await fetch(`http://127.0.0.1:${ag.adminPort}${p}`)).json();
  const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${ag.adminPort}/metrics`)).text();
  type Ep = { address: string; priority: number; health: string; reason?: string };
  const endpoint = async (port: number): Promise<Ep> => {
    const cs = (await admin('/clusters?format=json')) as Array<{ service: string; endpoints: Ep[] }>;
    return cs.find((c) => c.service === 'default/web')?.endpoints.find((e) => e.address === `127.0.0.1:${port}`) as Ep;
  };
  const plan = async (): Promise<Record<string, unknown>> => {
    const dump = (await admin('/config_dump')) as { plans: Array<Record<string, unknown>> };
    return dump.plans.find((p) => p.service === 'default/web') as Record<string, unknown>;
  };
  const hcFile = path.join(ag.configDir, 'health.yaml');
  const writeCheck = (healthPath: string): void =>
    fs.writeFileSync(
      hcFile,
      `type: MeshHealthCheck\nname: web-check\nmesh: default\nspec:\n  to:\n    - targetRef: {kind: MeshExternalService, name: web}\n      default:\n        interval: 200ms\n        timeout: 1s\n        unhealthyThreshold: 1\n        healthyThreshold: 1\n        http: {path: ${healthPath}}\n`,
    );
  const cbFile = path.join(ag.configDir, 'breaker.yaml');
  const writeBreaker = (maxRequests: number): void =>
    fs.writeFileSync(cbFile, `type: MeshCircuitBreaker\nname: web-limits\nmesh: default\nspec:\n  to:\n    - targetRef: {kind: Mesh}\n      default:\n        connectionLimits: {maxRequests: ${maxRequests}}\n`);

  // No policy: nothing checks the endpoints, so a sick priority-0 endpoint keeps the traffic.
  t.is((await get(outPort)).body, 'a');
  t.is((await endpoint(a.port)).health, 'healthy');

  writeCheck('/health');
  t.true((await ag.agent.reload('test')).ok);
  t.like(await plan(), { healthCheck: { intervalMs: 200, check: { kind: 'http', path: '/health' } }, policies: { meshHealthChecks: ['web-check'] } });
  const added = Date.now();
  for (;;) {
    if ((await endpoint(a.port)).health === 'unhealthy') break;
    if (Date.now() - added > 3000) t.fail('a never became unhealthy');
    await new Promise((r) => setTimeout(r, 25));
  }
  t.is((await get(outPort)).body, 'b', 'added: priority 1 takes the traffic');
  t.regex((await endpoint(a.port)).reason ?? '', /HTTP status 503 is not an expected status/);
  t.regex(await metrics(), /meshext_upstream_health_check_failure_total\{service="[^"]*web[^"]*"\} [1-9]/);

  writeCheck('/health-ok');
  t.true((await ag.agent.reload('test')).ok);
  const changed = Date.now();
  for (;;) {
    if ((await endpoint(a.port)).health === 'healthy') break;
    if (Date.now() - changed > 3000) t.fail('a never became healthy');
    await new Promise((r) => setTimeout(r, 25));
  }
  t.is((await get(outPort)).body, 'a', 'changed: the new path passes, priority 0 is back');

  writeBreaker(1);
  t.true((await ag.agent.reload('test')).ok);
  t.like(await plan(), { limits: { maxRequests: 1, maxConnections: 1024, maxPendingRequests: 1024 }, policies: { meshCircuitBreakers: ['web-limits'] } });
  const slow = get(outPort, '/slow');
  await new Promise((r) => setTimeout(r, 200));
  const over = await get(outPort);
  t.is(over.status, 503, 'added: a second request in flight is over maxRequests');
  t.regex(over.body, /maxRequests/);
  t.is((await slow).status, 200);
  t.regex(await metrics(), /meshext_upstream_rq_pending_overflow_total\{service="[^"]*web[^"]*"\} 1/);

  writeBreaker(5);
  t.true((await ag.agent.reload('test')).ok);
  const slow2 = get(outPort, '/slow');
  await new Promise((r) => setTimeout(r, 200));
  t.is((await get(outPort)).status, 200, 'changed: 5 requests may be in flight');
  await slow2;

  a.setHealth(503);
  fs.rmSync(hcFile);
  fs.rmSync(cbFile);
  t.true((await ag.agent.reload('test')).ok);
  const after = await plan();
  t.is(after['healthCheck'], undefined);
  t.is(after['limits'], undefined);
  t.is(after['policies'], undefined);
  // Removed: nothing checks a any more, whatever its /health says, and no limit applies.
  await new Promise((r) => setTimeout(r, 500));
  t.is((await endpoint(a.port)).health, 'healthy');
  const slow3 = get(outPort, '/slow');
  await new Promise((r) => setTimeout(r, 200));
  t.is((await get(outPort)).body, 'a');
  await slow3;
});
