// The agent as issue 17 found it: one hostile file in the shared config directory must not stop it.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { startTestAgent } from '../helpers/agent.js';

test('the agent starts and serves next to a 130,000-document file and a FIFO, naming both', async (t) => {
  const a = await startTestAgent(
    t,
    {
      'a-flood.yaml': '--- 1\n'.repeat(130_000),
      'b-service.yaml': 'type: MeshExternalService\nname: ok\nmesh: default\nspec:\n  match: {port: 80}\n  endpoints: [{address: 127.0.0.1, port: 9}]\n',
    },
    {},
    (dir) => execFileSync('mkfifo', [path.join(dir, 'c-pipe.yaml')]),
  );
  t.is(a.agent.readiness(), 'READY');
  const lines = a.log.lines() as Array<{ msg?: string; file?: string; reason?: string; violations?: Array<{ message: string }> }>;
  const rejected = lines.find((l) => l.msg === 'resource rejected' && l.file === path.join(a.configDir, 'a-flood.yaml'));
  t.regex(rejected?.violations?.[0]?.message ?? '', /more than 10000 YAML documents .* limit per file/);
  const skipped = lines.find((l) => l.msg === 'config entry skipped');
  t.is(skipped?.file, path.join(a.configDir, 'c-pipe.yaml'));
  t.is(skipped?.reason, 'a FIFO (named pipe) is not a config file');
  const dump = (await (await fetch(`http://127.0.0.1:${a.adminPort}/config_dump`)).json()) as { services: Array<{ name: string }> };
  t.deepEqual(dump.services.map((s) => s.name), ['ok']);
});
