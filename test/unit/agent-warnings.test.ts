// The agent logs validation warnings at every load and keeps serving the resource they are about.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeServer, refusedPort, roundTrip, tcpEcho, until } from '../helpers/proxy.js';

interface LogLine {
  level: number;
  msg: string;
  admin?: string;
  file?: string;
  line?: number;
  kind?: string;
  name?: string;
  mesh?: string;
  field?: string;
  warning?: string;
}

test('agent: a warned resource is logged (with file, line, resource and field) and still served; each load logs it again', async (t) => {
  const echo = await tcpEcho();
  const outboundPort = await refusedPort();
  const dir = mkdtempSync(join(tmpdir(), 'meshext-warn-'));
  const config = join(dir, 'config');
  const file = join(config, 'services.yaml');
  mkdirSync(config);
  writeFileSync(
    file,
    [
      'type: MeshExternalService',
      'name: echo',
      'mesh: default',
      'spec:',
      '  match:',
      '    port: 4242',
      '    protcol: tcp',
      '  endpoints:',
      '    - address: 127.0.0.1',
      `      port: ${echo.port}`,
      '---',
      'type: Dataplane',
      'name: local',
      'mesh: default',
      'networking:',
      '  address: 127.0.0.1',
      '  outbound:',
      `    - port: ${outboundPort}`,
      '      backendRef:',
      '        kind: MeshExternalService',
      '        name: echo',
      '',
    ].join('\n'),
  );
  const args = ['bin/meshext.js', 'run', '--config', config, '--redirect', 'off', '--dns', 'off', '--state-dir', join(dir, 'state'), '--admin', '127.0.0.1:0', '--log-format', 'json', '--drain-time', '1s'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    await closeServer(echo.srv);
    rmSync(dir, { recursive: true, force: true });
  });
  const lines = (): LogLine[] =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
  await until(() => lines().some((l) => l.msg === 'meshext ready' || l.level >= 60) || child.exitCode !== null, 'the agent ready', 30_000);
  const ready = lines().find((l) => l.msg === 'meshext ready');
  t.truthy(ready, stdout + stderr);

  const warnings = (): LogLine[] => lines().filter((l) => l.msg === 'resource warning');
  t.is(warnings().length, 1);
  t.like(warnings()[0], {
    level: 40,
    file,
    line: 1,
    kind: 'MeshExternalService',
    name: 'echo',
    mesh: 'default',
    field: 'spec.match.protcol',
    warning: 'unknown field "spec.match.protcol"',
  });
  t.false(lines().some((l) => l.msg === 'resource rejected'));

  // Served: traffic through the Dataplane outbound reaches the upstream.
  t.is(await roundTrip(outboundPort, 'still served'), 'still served');

  // /config_dump shows the same warning, from the snapshot.
  const dump = (await (await fetch(`http://${ready?.admin ?? ''}/config_dump`)).json()) as { warnings: Array<{ name: string; field: string }>; services: Array<{ name: string }> };
  t.deepEqual(dump.warnings.map((w) => [w.name, w.field]), [['echo', 'spec.match.protcol']]);
  t.deepEqual(dump.services.map((s) => s.name), ['echo']);

  // A reload reads the files again and logs their warnings again.
  const res = (await (await fetch(`http://${ready?.admin ?? ''}/reload`, { method: 'POST' })).json()) as { ok: boolean };
  t.true(res.ok);
  await until(() => warnings().length === 2, 'the warning logged by the reload');
});
