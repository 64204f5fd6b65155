// Socket activation (systemd's meshext.socket): the listening sockets live in the service manager, the agent
// takes the ones matching its addresses. When the agent is killed, connections and queries wait in the queues
// of those sockets and are served by the next agent: none is refused.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native/addon.js';
import { ask } from '../helpers/dns.js';
import { agentLauncher, killThenServe, writeEchoConfig } from '../helpers/restart.js';
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
  writeEchoConfig(dir, echo.port, outbound);
  // Started as systemd starts a socket-activated service: the sockets from fd 3 on, LISTEN_PID the service's pid.
  const start = agentLauncher(t, dir, dnsPort, deadDns, [], (args) =>
    spawn('sh', ['-c', `LISTEN_PID=$$ LISTEN_FDS=${fds.length} exec "$@"`, 'sh', process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe', ...fds] }),
  );

  const a = start();
  await until(() => /listening sockets kept open outside the agent/.test(a.log()) && /"msg":"meshext ready"/.test(a.log()), 'first agent ready', 20_000);
  t.regex(a.log(), new RegExp(`tcp://127.0.0.1:${outbound}`));
  t.is(await roundTrip(outbound, 'before'), 'before');
  t.is((await ask(dnsPort, 'echo.extsvc.mesh.local', 'A')).answers.length, 1);

  const b = await killThenServe(t, a, start, outbound, dnsPort);

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
