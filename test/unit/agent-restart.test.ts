// A restart without an outage: a second agent starts on the same ports while the first serves (SO_REUSEPORT),
// says it is ready on its own admin socket, and only then is the first one stopped. Under a steady stream of new
// connections none is refused, a long connection lives until the drain time, and DNS answers throughout.
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ask, rcodeOf } from '../helpers/dns.js';
import { writeEchoConfig } from '../helpers/restart.js';
import { closeServer, refusedPort, roundTrip, tcpEcho, until } from '../helpers/proxy.js';

/** GET /ready over an agent's own admin socket: its status code, or 0 when nothing answers. */
function readyOn(socketPath: string): Promise<number> {
  return new Promise((resolve) => {
    http
      .get({ socketPath, path: '/ready', headers: { host: 'localhost' }, timeout: 1000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', () => resolve(0))
      .on('timeout', function (this: http.ClientRequest) {
        this.destroy();
      });
  });
}

/** `meshext probe <what>` against one agent's socket, with a generous timeout: a loaded CI machine can take seconds. */
function probe(what: string, socket: string): { status: number | null; stdout: string } {
  const r = spawnSync(process.execPath, ['bin/meshext.js', 'probe', what, '--admin-socket', socket, '--timeout', '8000'], { encoding: 'utf8', timeout: 10_000 });
  return { status: r.status, stdout: r.stdout };
}

/** Polls an async predicate every 100 ms until it holds. */
async function eventually(pred: () => Promise<boolean>, what: string, maxMs: number): Promise<void> {
  const end = Date.now() + maxMs;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test.serial('restart: a successor on the same ports takes over with no connection refused, the long one lasts the drain', async (t) => {
  const echo = await tcpEcho();
  t.teardown(() => closeServer(echo.srv));
  const [outbound, dnsPort, adminPort, deadDns] = [await refusedPort(), await refusedPort(), await refusedPort(), await refusedPort()];
  const dir = mkdtempSync(join(tmpdir(), 'meshext-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = writeEchoConfig(dir, echo.port, outbound);
  const agents: ChildProcess[] = [];
  t.teardown(() => agents.forEach((a) => a.exitCode === null && a.kill('SIGKILL')));
  const start = (name: string): { child: ChildProcess; socket: string; log: () => string } => {
    const socket = join(dir, `${name}.sock`);
    const args = ['bin/meshext.js', 'run', '--config', config, '--redirect', 'off', '--state-dir', join(dir, 'state'), '--admin', `127.0.0.1:${adminPort}`, '--admin-socket', socket,
      '--dns-address', '127.0.0.1', '--dns-port', String(dnsPort), '--dns-upstream', `127.0.0.1:${deadDns}`, '--log-format', 'json', '--drain-time', '3s'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    agents.push(child);
    return { child, socket, log: () => out };
  };

  const a = start('a');
  await eventually(async () => (await readyOn(a.socket)) === 200, 'first agent ready', 20_000);
  t.is(await roundTrip(outbound, 'first'), 'first');

  // A long connection through the first agent.
  const long = net.connect({ host: '127.0.0.1', port: outbound });
  t.teardown(() => long.destroy());
  let longData = '';
  let longClosedAt = 0;
  long.on('data', (d: Buffer) => (longData += d.toString()));
  long.on('close', () => (longClosedAt = Date.now()));
  long.on('error', () => {});
  long.write('L1');
  await until(() => longData === 'L1', 'long connection echoes');

  // 200 new connections a second, each must echo; DNS over UDP and TCP alongside.
  let ok = 0;
  const failures: string[] = [];
  let running = true;
  const load = (async () => {
    const pending: Array<Promise<void>> = [];
    for (let i = 0; running; i++) {
      pending.push(
        roundTrip(outbound, `c${i}`).then((r) => {
          if (r === `c${i}`) ok++;
          else failures.push(`tcp ${i}: ${JSON.stringify(r)}`);
        }),
      );
      if (i % 10 === 0) {
        const transport = i % 20 === 0 ? 'udp' : 'tcp';
        pending.push(
          ask(dnsPort, 'echo.extsvc.mesh.local', 'A', { transport })
            .then((r) => {
              if (r.answers.length !== 1) failures.push(`dns ${transport} ${i}: ${rcodeOf(r)}`);
            })
            .catch((e: Error) => {
              failures.push(`dns ${transport} ${i}: ${e.message}`);
            }),
        );
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(pending);
  })();

  await new Promise((r) => setTimeout(r, 500));
  const b = start('b');
  await eventually(async () => (await readyOn(b.socket)) === 200, 'successor ready', 20_000);
  t.is(await readyOn(a.socket), 200, 'each agent answers for itself on its own socket');
  t.is(probe('ready', b.socket).status, 0, 'meshext probe ready: the successor');
  const stoppedAt = Date.now();
  a.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));
  const draining = probe('ready', a.socket);
  t.is(draining.status, 1, 'the old agent is not ready while it drains');
  t.is(draining.stdout.trim(), 'TERMINATING');
  t.is(probe('live', a.socket).status, 0, 'but alive');
  long.write('L2');
  await until(() => longData === 'L1L2', 'the long connection still echoes during the drain');
  await new Promise((r) => setTimeout(r, 500));
  running = false;
  await load;
  const code = a.child.exitCode ?? (await new Promise<number | null>((r) => a.child.once('exit', (c) => r(c))));
  t.is(code, 0, a.log().slice(-2000));
  t.true(longClosedAt === 0 || longClosedAt - stoppedAt >= 2500, `the long connection ended ${longClosedAt - stoppedAt} ms after SIGTERM, before the 3 s drain`);
  t.deepEqual(failures, [], `${failures.length} of ${ok + failures.length} failed`);
  t.true(ok > 200, `only ${ok} connections ran`);
  // The successor serves alone now, on every shared port.
  t.is(await roundTrip(outbound, 'after'), 'after');
  t.is((await ask(dnsPort, 'echo.extsvc.mesh.local', 'A')).answers.length, 1);
  t.is(await readyOn(b.socket), 200);
  b.child.kill('SIGTERM');
  await new Promise((r) => b.child.once('exit', r));
});
