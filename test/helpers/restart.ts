/** Shared pieces of the agent restart tests: a one-service config, and traffic made while no agent runs. */
import type { ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { ask, type Reply } from './dns.js';
import { roundTrip } from './proxy.js';

/** Writes `<dir>/config/echo.yaml`: a TCP service to 127.0.0.1:`echoPort` and a Dataplane outbound on `outbound`. */
export function writeEchoConfig(dir: string, echoPort: number, outbound: number): string {
  const config = join(dir, 'config');
  mkdirSync(config, { recursive: true });
  writeFileSync(
    join(config, 'echo.yaml'),
    ['type: MeshExternalService', 'name: echo', 'mesh: default', 'spec:', '  match: { port: 4242, protocol: tcp }', '  endpoints:', `    - { address: 127.0.0.1, port: ${echoPort} }`,
      '---', 'type: Dataplane', 'name: local', 'mesh: default', 'networking:', '  address: 127.0.0.1', '  outbound:', `    - port: ${outbound}`, '      backendRef: { kind: MeshExternalService, name: echo }', ''].join('\n'),
  );
  return config;
}

/**
 * A connection to `port` that sends "while down", and a DNS query for the echo service on `dnsPort`, made now
 * (while no agent runs): each settles once an agent serves it, or fails.
 */
export function trafficWhileDown(port: number, dnsPort: number): { connection: Promise<{ got: string; refused: string }>; query: Promise<Reply> } {
  const connection = new Promise<{ got: string; refused: string }>((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let got = '';
    let refused = '';
    c.on('connect', () => c.end('while down'));
    c.on('data', (d: Buffer) => (got += d.toString()));
    c.on('error', (e: NodeJS.ErrnoException) => (refused = e.code ?? e.message));
    c.on('close', () => resolve({ got, refused }));
  });
  return { connection, query: ask(dnsPort, 'echo.extsvc.mesh.local', 'A') };
}

/**
 * `kill -9` of `agent`, then a connection and a DNS query while none runs, then `startNext()`: asserts that both
 * were served by the next agent (none refused) and that it serves new traffic. Returns the next agent.
 */
export async function killThenServe<A extends { child: ChildProcess }>(t: ExecutionContext, agent: A, startNext: () => A, port: number, dnsPort: number): Promise<A> {
  agent.child.kill('SIGKILL');
  await new Promise((r) => agent.child.once('exit', r));
  // Neither is refused: both wait in the sockets kept open outside the agent.
  const down = trafficWhileDown(port, dnsPort);
  await new Promise((r) => setTimeout(r, 300));
  const next = startNext();
  const served = await down.connection;
  t.is(served.got, 'while down', `refused: ${served.refused}`);
  t.is((await down.query).answers.length, 1, 'the query sent while no agent ran is answered by the next one');
  t.is(await roundTrip(port, 'after'), 'after');
  return next;
}

/** An agent process whose output is kept; killed (if still running) when the test ends. */
export interface AgentProcess {
  child: ChildProcess;
  log: () => string;
}

/**
 * A launcher of `meshext run` agents on the echo config in `dir` with DNS on `dnsPort` (forwarding to the dead
 * `deadDns`), `extra` flags, and `spawnIt` to start the process (plain, or as systemd would).
 */
export function agentLauncher(t: ExecutionContext, dir: string, dnsPort: number, deadDns: number, extra: string[], spawnIt: (args: string[]) => ChildProcess): () => AgentProcess {
  const agents: ChildProcess[] = [];
  t.teardown(() => agents.forEach((a) => a.exitCode === null && a.kill('SIGKILL')));
  return () => {
    const args = ['bin/meshext.js', 'run', '--config', join(dir, 'config'), '--redirect', 'off', '--state-dir', join(dir, 'state'), '--admin', '127.0.0.1:0', '--admin-socket', 'off',
      '--dns-address', '127.0.0.1', '--dns-port', String(dnsPort), '--dns-upstream', `127.0.0.1:${deadDns}`, '--log-format', 'json', ...extra];
    const child = spawnIt(args);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    agents.push(child);
    return { child, log: () => out };
  };
}
