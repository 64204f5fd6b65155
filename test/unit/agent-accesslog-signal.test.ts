// `meshext run` as a user runs it: a MeshAccessLog file gets a line per connection, and SIGUSR1 (logrotate's
// postrotate) makes the agent write to the path again after the file was moved away, without starting Node's
// inspector (which SIGUSR1 would do to a Node process that does not handle it).
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentLauncher, writeEchoConfig } from '../helpers/restart.js';
import { closeServer, refusedPort, roundTrip, tcpEcho, until } from '../helpers/proxy.js';

function lines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : [];
}

test('SIGUSR1 reopens the access log files: after a move, new lines go to the path again', async (t) => {
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  const dir = mkdtempSync(join(tmpdir(), 'meshext-alog-cli-'));
  const [outbound, dnsPort, deadDns] = [await refusedPort(), await refusedPort(), await refusedPort()];
  const config = writeEchoConfig(dir, echo.port, outbound);
  const log = join(dir, 'access.log');
  writeFileSync(
    join(config, 'access-log.yaml'),
    `type: MeshAccessLog\nname: echo-log\nmesh: default\nspec:\n  to:\n    - targetRef: {kind: Mesh}\n      default:\n        backends:\n          - type: File\n            file: {path: ${log}, format: {type: Plain, plain: "%KUMA_DESTINATION_SERVICE% %BYTES_SENT%"}}\n`,
  );
  const start = agentLauncher(t, dir, dnsPort, deadDns, ['--access-log-dir', dir], (args) => spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const agent = start();
  // Until the outbound listener is up, connections are refused (and never reach the engine: no line).
  const deadline = Date.now() + 15_000;
  while ((await roundTrip(outbound, 'one')) !== 'one') {
    if (Date.now() > deadline) throw new Error(`agent not serving: ${agent.log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  await until(() => lines(log).length === 1, 'a line for the first connection');
  renameSync(log, `${log}.1`);
  agent.child.kill('SIGUSR1');
  await new Promise((r) => setTimeout(r, 200));
  t.is(await roundTrip(outbound, 'two!'), 'two!');
  await until(() => lines(log).length === 1, 'a line at the path again');
  t.deepEqual(lines(log), ['echo 4']);
  t.deepEqual(lines(`${log}.1`), ['echo 3'], 'the moved file kept the line before the signal');
  t.is(agent.child.exitCode, null, 'the agent runs on');
  t.false(agent.log().includes('Debugger listening'), 'SIGUSR1 did not start the inspector');
  agent.child.kill('SIGTERM');
  await new Promise((r) => agent.child.once('exit', r));
});
