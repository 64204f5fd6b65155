// The agent and the VIP allocator together: a service refused a VIP (range full) is visible as rejected,
// the others keep serving, and once a released VIP's quarantine (twice the DNS TTL) ends the agent
// recompiles by itself and the waiting service resolves. What changes is logged; a steady reload is quiet.
import test from 'ava';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { resolveConfig } from '../../src/agent/config.js';
import { ask, until } from '../helpers/dns.js';
import { captureLog } from '../helpers/log.js';

const mes = (name: string, port: number): string =>
  `type: MeshExternalService\nname: ${name}\nmesh: default\nspec:\n  match:\n    type: HostnameGenerator\n    port: ${port}\n    protocol: tcp\n  endpoints:\n    - address: 127.0.0.1\n      port: ${port}\n`;

test('a service without a VIP gets one when a released VIP leaves quarantine, without a user action', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'meshext-agent-vip-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const conf = join(dir, 'config');
  await mkdir(conf);
  await writeFile(join(conf, 'a.yaml'), mes('svc-a', 4001));
  await writeFile(join(conf, 'b.yaml'), mes('svc-b', 4002));
  await writeFile(join(conf, 'c.yaml'), mes('svc-c', 4003));
  const cfg = {
    ...resolveConfig([
      {
        name: 'flags',
        options: { config: [conf], redirect: 'off', stateDir: join(dir, 'state'), vipCidr: '10.1.1.0/30', admin: '127.0.0.1:0', dnsPort: '0', dnsUpstream: ['127.0.0.1:9'] },
      },
    ]),
    rescanIntervalMs: 0,
    reloadDebounceMs: 60_000,
    dnsTtlSeconds: 1,
  };
  const cap = captureLog();
  const agent = new Agent(cfg, cap.log);
  await agent.start();
  t.teardown(() => agent.shutdown({ drainMs: 0 }));
  const dnsPort = Number(/:(\d+)$/.exec(String((cap.find(/meshext ready/)[0]?.dns as string[])[0]))?.[1]);
  const vipOf = (name: string): string | undefined => agent.currentSnapshot()?.services.find((s) => s.name === name)?.vip;

  // /30 holds two VIPs: svc-c is refused, visible as rejected and logged once; the others serve.
  t.is(vipOf('svc-a'), '10.1.1.1');
  t.is(vipOf('svc-b'), '10.1.1.2');
  t.like(agent.currentSnapshot()?.rejected.find((r) => r.name === 'svc-c')?.violations[0], { field: 'status.vip' });
  t.like(cap.find(/could not allocate a VIP/)[0], { component: 'ipam', service: 'default/svc-c', level: 50 });
  // Not an owned name: forwarded to the (dead) upstream, so no answer.
  t.deepEqual((await ask(dnsPort, 'svc-c.extsvc.mesh.local', 'A')).answers, []);

  // A reload with nothing changed says nothing about VIPs.
  const quiet = cap.lines().length;
  await agent.reload('test: nothing changed');
  t.deepEqual(cap.lines().slice(quiet).filter((l) => l.component === 'ipam'), []);

  // svc-a goes away: its VIP is quarantined for 2 x TTL = 2 s, then svc-c gets it by itself.
  await rm(join(conf, 'a.yaml'));
  const released = Date.now();
  await agent.reload('test: svc-a deleted');
  t.like(cap.find(/VIP released/)[0], { service: 'default/svc-a', vip: '10.1.1.1' });
  t.is(vipOf('svc-c'), undefined, 'not while the quarantine lasts');
  const deadline = Date.now() + 8000;
  await until(() => vipOf('svc-c') !== undefined || Date.now() > deadline, 50);
  t.true(Date.now() - released >= 2000, 'not before the quarantine ends');
  t.is(vipOf('svc-c'), '10.1.1.1');
  t.is(vipOf('svc-b'), '10.1.1.2');
  t.like(cap.find(/a VIP is free again/)[0], { waiting: ['default/svc-c'] });
  t.like(cap.find(/reusing a released VIP after its quarantine/)[0], { service: 'default/svc-c', vip: '10.1.1.1', previousOwner: 'default/svc-a' });
  t.like(cap.find(/configuration reloaded/).at(-1), { reason: 'VIP available', changes: { added: ['default/svc-c'], removed: [] } });
  t.is(cap.find(/could not allocate a VIP/).length, 1, 'the wait was reported once, not on every reload');
  const answer = await ask(dnsPort, 'svc-c.extsvc.mesh.local', 'A');
  t.like(answer.answers[0], { data: '10.1.1.1', ttl: 1 });
});
