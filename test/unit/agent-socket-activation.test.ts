// Socket activation (systemd's meshext.socket): the listening sockets live in the service manager, the agent
// takes the ones matching its addresses. When the agent is killed, connections and queries wait in the queues
// of those sockets and are served by the next agent: none is refused.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/addon.js';
import { ask } from '../helpers/dns.js';
import { closeServer, refusedPort, roundTrip, tcpEcho, until } from '../helpers/proxy.js';

test.serial('socket activation: a killed agent refuses nothing; the next one serves what waited in the sockets', async (t) => {
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  const [outbound, dnsPort, deadDns] = [await refusedPort(), await refusedPort(), await refusedPort()];
  const addon = native();
  // What systemd would hold: the outbound listener, and DNS over UDP and TCP.
  const fds = [addon.sharedSocket('tcp', '127.0.0.1', outbound, 511), addon.sharedSocket('udp', '127.0.0.1', dnsPort, 0), addon.sharedSocket('tcp', '127.0.0.1', dnsPort, 511)];
  t.teardown(() => fds.forEach((fd) => addon.closeFd(fd)));
  const dir = mkdtempSync(join(tmpdir(), 'meshext-sockact-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'config'));
  writeFileSync(
    join(dir, 'config', 'echo.yaml'),
    ['type: MeshExternalService', 'name: echo', 'mesh: default', 'spec:', '  match: { port: 4242, protocol: tcp }', '  endpoints:', `    - { address: 127.0.0.1, port: ${echo.port} }`,
      '---', 'type: Dataplane', 'name: local', 'mesh: default', 'networking:', '  address: 127.0.0.1', '  outbound:', `    - port: ${outbound}`, '      backendRef: { kind: MeshExternalService, name: echo }', ''].join('\n'),
  );
  const agents: ChildProcess[] = [];
  t.teardown(() => agents.forEach((a) => a.exitCode === null && a.kill('SIGKILL')));
  const start = (): { child: ChildProcess; log: () => string } => {
    const args = ['bin/meshext.js', 'run', '--config', join(dir, 'config'), '--redirect', 'off', '--state-dir', join(dir, 'state'), '--admin', '127.0.0.1:0', '--admin-socket', 'off',
      '--dns-address', '127.0.0.1', '--dns-port', String(dnsPort), '--dns-upstream', `127.0.0.1:${deadDns}`, '--log-format', 'json'];
    // As systemd starts a socket-activated service: the sockets from fd 3 on, LISTEN_PID the service's own pid.
    const child = spawn('sh', ['-c', `LISTEN_PID=$$ LISTEN_FDS=${fds.length} exec "$@"`, 'sh', process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe', ...fds] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    agents.push(child);
    return { child, log: () => out };
  };

  const a = start();
  await until(() => /listening sockets passed by systemd/.test(a.log()) && /"msg":"meshext ready"/.test(a.log()), 'first agent ready', 20_000);
  t.regex(a.log(), new RegExp(`tcp://127.0.0.1:${outbound}`));
  t.is(await roundTrip(outbound, 'before'), 'before');
  t.is((await ask(dnsPort, 'echo.extsvc.mesh.local', 'A')).answers.length, 1);

  a.child.kill('SIGKILL');
  await new Promise((r) => a.child.once('exit', r));
  // While no agent runs: a connection and a query. Neither is refused; both wait in systemd's sockets.
  let refused = '';
  const waiting = new Promise<string>((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port: outbound, allowHalfOpen: true });
    let got = '';
    c.on('connect', () => c.end('while down'));
    c.on('data', (d: Buffer) => (got += d.toString()));
    c.on('error', (e: NodeJS.ErrnoException) => (refused = e.code ?? e.message));
    c.on('close', () => resolve(got));
  });
  const query = ask(dnsPort, 'echo.extsvc.mesh.local', 'A');
  await new Promise((r) => setTimeout(r, 300));
  const b = start();
  t.is(await waiting, 'while down', `refused: ${refused}`);
  t.is((await query).answers.length, 1, 'the query sent while no agent ran is answered by the next one');
  t.is(await roundTrip(outbound, 'after'), 'after');

  // SIGTERM (systemctl restart): systemd starts the next agent only after this one exits, so it keeps accepting
  // while it drains rather than leave connections waiting in the sockets.
  const held = net.connect({ host: '127.0.0.1', port: outbound });
  t.teardown(() => held.destroy());
  await new Promise((r) => held.once('connect', r));
  b.child.kill('SIGTERM');
  await until(() => /still accepting while draining/.test(b.log()), 'draining');
  t.is(await roundTrip(outbound, 'during drain'), 'during drain', 'a new connection during the drain is served');
  held.destroy();
  await new Promise((r) => b.child.once('exit', r));
  const c = start();
  t.is(await roundTrip(outbound, 'next'), 'next', 'and the next agent takes over the same sockets');
  c.child.kill('SIGTERM');
  await new Promise((r) => c.child.once('exit', r));
});
