/**
 * `meshext run` with its resolver and an outbound listener on 0.0.0.0 says so, loudly, naming each
 * exposure. Run in a network namespace of its own, so nothing outside can reach those listeners.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { JsonChild, privilegedTest, spawnInCgroup, tempNetns } from '../helpers/privileged.js';

privilegedTest('a resolver and an outbound listener on 0.0.0.0 log an EXPOSED warning each; loopback ones do not', async (t) => {
  const netns = tempNetns(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshext-exposure-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'config');
  fs.mkdirSync(config);
  fs.writeFileSync(
    path.join(config, 'services.yaml'),
    [
      'type: MeshExternalService\nname: open\nmesh: default\nspec:\n  match: {port: 80}\n  endpoints: [{address: 127.0.0.1, port: 9}]\n',
      'type: Dataplane\nname: local\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  outbound:\n  - {address: 0.0.0.0, port: 18081, backendRef: {kind: MeshExternalService, name: open}}\n  - {address: 127.0.0.1, port: 18082, backendRef: {kind: MeshExternalService, name: open}}\n',
    ].join('---\n'),
  );
  const args = ['bin/meshext.js', 'run', '--config', config, '--redirect', 'off', '--dns-address', '0.0.0.0', '--dns-port', '0', '--dns-upstream', '127.0.0.1:1', '--state-dir', path.join(dir, 'state'), '--admin', '127.0.0.1:0', '--admin-socket', path.join(dir, 'admin.sock'), '--log-format', 'json', '--drain-time', '0s'];
  const agent = new JsonChild(t, spawnInCgroup(null, process.execPath, args, { netns }));
  const ready = await agent.next((l) => l.msg === 'meshext ready' || l.level === 60);
  t.is(ready.msg, 'meshext ready', agent.stderr);
  const exposed = agent.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('EXPOSED:'));
  t.is(exposed.length, 2, JSON.stringify(exposed));
  t.true(exposed.some((l) => l.level === 40 && /^EXPOSED: the DNS resolver on 0\.0\.0\.0:\d+ answers, and forwards queries recursively for, every interface of this node/.test(String(l.msg))));
  t.true(exposed.some((l) => l.level === 40 && l.outbound === '0.0.0.0:18081' && /relays connections to .*open.* for every interface/.test(String(l.msg))));
});
