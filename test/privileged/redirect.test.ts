import type { ExecutionContext } from 'ava';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redirector, findCgroup2Mount } from '../../src/redirect/index.js';
import { JsonChild, fixture, privilegedTest, runJson, spawnInCgroup, tempCgroup, tempNetns, tempPinRoot, tempVeth } from '../helpers/privileged.js';

const VIPS = '242.0.0.0/8';

async function startListener(t: ExecutionContext, netns: string, host = '127.0.0.1'): Promise<{ l: JsonChild; port: number }> {
  const l = new JsonChild(t, spawnInCgroup(null, process.execPath, [fixture('listener'), host, '0'], { netns }));
  const line = await l.next((x) => 'listening' in x || 'exited' in x);
  if (!('listening' in line)) throw new Error(`listener failed: ${l.stderr}`);
  return { l, port: line.listening as number };
}

async function runClient(cg: string | null, netns: string, host: string, port: number): Promise<Record<string, unknown>> {
  const r = await runJson(spawnInCgroup(cg, process.execPath, [fixture('client'), host, String(port)], { netns }));
  return Object.assign({}, ...r.lines, { stderr: r.stderr });
}

privilegedTest('client in the cgroup reaches the listener through a VIP; listener learns VIP:port; getpeername shows the VIP', async (t) => {
  const cg = tempCgroup(t);
  const pinRoot = tempPinRoot(t);
  const ns = tempNetns(t);
  const { l, port } = await startListener(t, ns);
  const r = await Redirector.start({ vipCidr: VIPS, proxy: { address: '127.0.0.1', port }, cgroupPath: cg, pinRoot, exemptSelf: false });
  t.teardown(() => r.close());

  const c = await runClient(cg, ns, '242.1.2.3', 8080);
  t.is(c.data, 'hello\n', JSON.stringify(c));
  t.is(c.remoteAddress, '242.1.2.3'); // getpeername4 rewrite
  t.is(c.remotePort, 8080);
  const acc = await l.next((x) => x.accepted === true && x.remotePort === c.localPort);
  t.deepEqual(r.takeOriginalDst({ address: acc.remoteAddress as string, port: acc.remotePort as number }, acc.localPort as number), { address: '242.1.2.3', port: 8080 });
  t.is(r.takeOriginalDst({ address: acc.remoteAddress as string, port: acc.remotePort as number }, acc.localPort as number), null, 'taken once');

  // IPv6 socket to a v4-mapped VIP (connect6/getpeername6); Node reports the peer as '::ffff:' mapped.
  const c6 = await runClient(cg, ns, '::ffff:242.9.8.7', 443);
  t.is(c6.data, 'hello\n', JSON.stringify(c6));
  t.is(c6.remoteAddress, '::ffff:242.9.8.7');
  t.is(c6.remotePort, 443);
  const acc6 = await l.next((x) => x.accepted === true && x.remotePort === c6.localPort);
  t.deepEqual(r.takeOriginalDst({ address: acc6.remoteAddress as string, port: acc6.remotePort as number }, acc6.localPort as number), { address: '242.9.8.7', port: 443 });

  // Same netns, root cgroup: untouched, so the unroutable VIP fails.
  const outside = await runClient(null, ns, '242.1.2.3', 8080);
  t.is(outside.error, 'ENETUNREACH', JSON.stringify(outside));
  // A non-VIP destination from inside the cgroup is untouched too.
  const direct = await runClient(cg, ns, '127.0.0.1', port);
  t.is(direct.remoteAddress, '127.0.0.1');

  const counters = r.counters();
  t.is(counters.tcp_redirect, 2);
  t.is(counters.peer_stored, 2);
  t.true((counters.peername_rewrite ?? 0) >= 2);
});

privilegedTest('a client in another network namespace is redirected to a node-local address over veth', async (t) => {
  const cg = tempCgroup(t);
  const pinRoot = tempPinRoot(t);
  const pod = tempNetns(t);
  const node = tempNetns(t);
  tempVeth(t, pod, '169.254.77.2/30', node, '169.254.77.1/30');
  const { l, port } = await startListener(t, node, '169.254.77.1');
  const r = await Redirector.start({ vipCidr: VIPS, proxy: { address: '169.254.77.1', port }, cgroupPath: cg, pinRoot, exemptSelf: false });
  t.teardown(() => r.close());
  const c = await runClient(cg, pod, '242.0.0.7', 4242);
  t.is(c.data, 'hello\n', JSON.stringify(c));
  const acc = await l.next((x) => x.accepted === true);
  t.is(acc.remoteAddress, '169.254.77.2');
  t.deepEqual(r.takeOriginalDst({ address: acc.remoteAddress as string, port: acc.remotePort as number }, acc.localPort as number), { address: '242.0.0.7', port: 4242 });
});

privilegedTest('the agent never redirects itself: its exempt cgroup dials a VIP directly', async (t) => {
  const cg = tempCgroup(t);
  const agentCg = join(cg, 'agent');
  mkdirSync(agentCg);
  const pinRoot = tempPinRoot(t);
  const ns = tempNetns(t);
  const { port } = await startListener(t, ns);
  // The agent (in cg/agent, under the attach point) registers its own cgroup and dials a VIP.
  const opts = { vipCidr: VIPS, proxy: { address: '127.0.0.1', port }, cgroupPath: cg, pinRoot, exemptSelf: true, dial: { host: '242.0.0.9', port: 80 } };
  const res = await runJson(spawnInCgroup(agentCg, process.execPath, [fixture('loader'), JSON.stringify(opts)], { netns: ns }));
  const out = Object.assign({}, ...res.lines) as { dial?: { error?: string }; counters?: Record<string, number> };
  t.is(res.code, 0, res.stderr);
  t.is(out.dial?.error, 'ENETUNREACH', 'agent dial went out unredirected, not into its own proxy');
  t.is(out.counters?.exempt_skip, 1);
  t.is(out.counters?.tcp_redirect, 0);
  // Control: a sibling workload in the same attach cgroup is redirected.
  const c = await runClient(cg, ns, '242.0.0.9', 80);
  t.is(c.data, 'hello\n', JSON.stringify(c));
});

privilegedTest('an agent in the cgroup2 root moves itself into its own cgroup; one already placed stays', async (t) => {
  const cg = tempCgroup(t); // its name doubles as the agent cgroup name below the root
  const name = cg.split('/').pop() as string;
  const { rmdirSync } = await import('node:fs');
  rmdirSync(cg); // placeSelf must create it
  const fromRoot = await runJson(spawnInCgroup(findCgroup2Mount(), process.execPath, [fixture('placeself'), name]));
  t.like(fromRoot.lines[0], { path: cg, moved: true, procCgroup: `0::/${name}` }, fromRoot.stderr);
  const inChild = await runJson(spawnInCgroup(cg, process.execPath, [fixture('placeself'), 'unused']));
  t.like(inChild.lines[0], { path: cg, moved: false }, inChild.stderr);
});
