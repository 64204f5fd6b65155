// The Kubernetes form of socket activation: a holder process (`meshext hold-sockets`, a sidecar container) keeps
// the listening sockets open and hands copies to each agent (`--socket-holder`). When the agent is killed,
// connections and queries wait in the holder's sockets and the restarted agent serves them: none is refused.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ask } from '../helpers/dns.js';
import { agentLauncher, killThenServe, writeEchoConfig } from '../helpers/restart.js';
import { closeServer, refusedPort, roundTrip, tcpEcho, until } from '../helpers/proxy.js';

test.serial('socket holder: a killed agent refuses nothing; the restarted one takes the held sockets and serves what waited', async (t) => {
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  const [outbound, dnsPort, deadDns] = [await refusedPort(), await refusedPort(), await refusedPort()];
  const dir = mkdtempSync(join(tmpdir(), 'meshext-holder-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeEchoConfig(dir, echo.port, outbound);
  const holderSock = join(dir, 'holder.sock');
  const holder = spawn(process.execPath, ['bin/meshext.js', 'hold-sockets', '--socket', holderSock, '--listen', `tcp://127.0.0.1:${outbound}`, '--listen', `udp://127.0.0.1:${dnsPort}`, '--listen', `tcp://127.0.0.1:${dnsPort}`], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => holder.kill('SIGKILL'));
  const first = JSON.parse((await createInterface({ input: holder.stdout! })[Symbol.asyncIterator]().next()).value as string) as { msg: string; sockets: string[] };
  t.is(first.msg, 'holding sockets');
  t.is(first.sockets.length, 3);

  const start = agentLauncher(t, dir, dnsPort, deadDns, ['--socket-holder', holderSock], (args) => spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));

  const a = start();
  await until(() => /"msg":"meshext ready"/.test(a.log()), 'first agent ready', 20_000);
  t.regex(a.log(), /"held":3/, 'the agent took the three held sockets');
  t.is(await roundTrip(outbound, 'before'), 'before');
  t.is((await ask(dnsPort, 'echo.extsvc.mesh.local', 'A')).answers.length, 1);

  const b = await killThenServe(t, a, start, outbound, dnsPort);
  // SIGTERM (the pod is going away): the agent releases the holder, which closes its copies and exits, so no
  // socket stays open with nobody accepting (connections waiting in it would move to a successor's).
  const holderExit = new Promise<number | null>((r) => holder.once('exit', r));
  b.child.kill('SIGTERM');
  await new Promise((r) => b.child.once('exit', r));
  t.regex(b.log(), /socket holder released/);
  t.is(await Promise.race([holderExit, new Promise<string>((r) => setTimeout(() => r('still running'), 5000))]), 0);
  t.is(await roundTrip(outbound, 'gone'), '', 'nothing holds the port any more');
});

test('hold-sockets: a malformed --listen is refused by name', async (t) => {
  const r = spawn(process.execPath, ['bin/meshext.js', 'hold-sockets', '--socket', '/tmp/x.sock', '--listen', 'tcp://127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  r.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => r.once('exit', resolve));
  t.is(code, 1);
  t.regex(err, /--listen "tcp:\/\/127\.0\.0\.1": expected tcp:\/\/ADDR:PORT/);
});

test('hold-sockets: a unix socket path too long for sun_path is refused by name, not cut short', async (t) => {
  const long = `/tmp/${'x'.repeat(200)}.sock`;
  const r = spawn(process.execPath, ['bin/meshext.js', 'hold-sockets', '--socket', long, '--listen', 'tcp://127.0.0.1:1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  r.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  t.is(await new Promise<number | null>((resolve) => r.once('exit', resolve)), 1);
  t.regex(err, /unix socket path "\/tmp\/x+\.sock" is empty or longer than 107 bytes/);
});
