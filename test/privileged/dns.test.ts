import { join } from 'node:path';
import { Redirector } from '../../src/redirect/index.js';
import { JsonChild, fixture, privilegedTest, runJson, spawnInCgroup, tempBpffs, tempCgroup, tempNetns, tempVeth } from '../helpers/privileged.js';
import { native } from '../../src/native/addon.js';
import { LAYOUT, LAYOUT_VERSION, decodeConfig, encodeConfig, u32 } from '../../src/redirect/codec.js';

async function dig(cg: string | null, ns: string, extra: string[] = []): Promise<string> {
  const r = await runJson(spawnInCgroup(cg, 'dig', ['@127.0.0.53', 'web.test', 'A', '+short', '+tries=1', '+time=2', ...extra], { netns: ns }));
  return r.lines.map((l) => String(l.raw ?? JSON.stringify(l))).join('\n').trim();
}

privilegedTest('DNS to a captured nameserver is answered by the resolver (UDP, TCP, unconnected) and falls through when it is down', async (t) => {
  const cg = tempCgroup(t);
  const pinRoot = join(tempBpffs(t), 'meshext');
  const ns = tempNetns(t);
  // Stand-in for the node's real nameserver, and the test resolver (the agent's would answer VIPs).
  const upstream = new JsonChild(t, spawnInCgroup(null, process.execPath, [fixture('dnsserver'), '127.0.0.53', '53', '10.9.9.9'], { netns: ns }));
  const resolver = new JsonChild(t, spawnInCgroup(null, process.execPath, [fixture('dnsserver'), '127.0.0.1', '15053', '242.0.0.7'], { netns: ns }));
  t.truthy((await upstream.next((x) => 'listening' in x || 'exited' in x)).listening, upstream.stderr);
  t.truthy((await resolver.next((x) => 'listening' in x || 'exited' in x)).listening, resolver.stderr);

  // The loader runs in the resolver's netns, so the kernel checks the listener directly (fail open).
  const opts = { vipCidr: '242.0.0.0/8', proxy: { address: '127.0.0.1', port: 15001 }, dns: { address: '127.0.0.1', port: 15053, nameservers: ['127.0.0.53'] }, cgroupPath: cg, pinRoot, exemptSelf: false };
  const loaded = await runJson(spawnInCgroup(null, process.execPath, [fixture('loader'), JSON.stringify(opts)], { netns: ns }));
  t.is(loaded.code, 0, loaded.stderr);

  t.is(await dig(cg, ns), '242.0.0.7', 'connected UDP (dig) answered by the resolver');
  t.is(await dig(cg, ns, ['+tcp']), '242.0.0.7', 'TCP answered by the resolver');
  const u = await runJson(spawnInCgroup(cg, process.execPath, [fixture('udpclient'), '127.0.0.53', '53', 'web.test'], { netns: ns }));
  t.deepEqual(u.lines[0], { from: '127.0.0.53', fromPort: 53, answer: '242.0.0.7' }, 'recvmsg4 shows the nameserver as the source');
  t.is(await dig(null, ns), '10.9.9.9', 'outside the cgroup: untouched');

  await resolver.kill();
  t.is(await dig(cg, ns), '10.9.9.9', 'resolver down: UDP falls through to the real nameserver');
  t.is(await dig(cg, ns, ['+tcp']), '10.9.9.9', 'resolver down: TCP falls through');

  const c = Redirector.list({ pinRoot }).counters;
  t.is(c.dns_redirect, 3);
  t.is(c.dns_passthrough, 2);
  t.true((c.recv_rewrite ?? 0) >= 1);
});

privilegedTest('pods in another netns: DNS goes to the node resolver while the agent heartbeat is fresh, to the real nameserver once stale', async (t) => {
  const cg = tempCgroup(t);
  const pinRoot = join(tempBpffs(t), 'meshext');
  const pod = tempNetns(t);
  const node = tempNetns(t);
  tempVeth(t, pod, '169.254.78.2/30', node, '169.254.78.1/30');
  const upstream = new JsonChild(t, spawnInCgroup(null, process.execPath, [fixture('dnsserver'), '127.0.0.53', '53', '10.9.9.9'], { netns: pod }));
  const resolver = new JsonChild(t, spawnInCgroup(null, process.execPath, [fixture('dnsserver'), '169.254.78.1', '15053', '242.0.0.7'], { netns: node }));
  t.truthy((await upstream.next((x) => 'listening' in x || 'exited' in x)).listening, upstream.stderr);
  t.truthy((await resolver.next((x) => 'listening' in x || 'exited' in x)).listening, resolver.stderr);

  const r = await Redirector.start({ vipCidr: '242.0.0.0/8', proxy: { address: '169.254.78.1', port: 15001 }, dns: { address: '169.254.78.1', port: 15053, nameservers: ['127.0.0.53'] }, cgroupPath: cg, pinRoot, exemptSelf: false });
  t.teardown(() => r.close());
  t.is(await dig(cg, pod), '242.0.0.7');
  r.close(); // stops the heartbeat

  // Age the heartbeat as if the agent had died long ago (rather than sleeping past the max age).
  const addon = native();
  const fd = addon.objGet(join(pinRoot, `v${LAYOUT_VERSION}/maps/mx_config`));
  t.teardown(() => addon.closeFd(fd));
  const cfg = decodeConfig(addon.mapLookup(fd, u32(0), LAYOUT.mx_config.size)!);
  addon.mapUpdate(fd, u32(0), encodeConfig({ ...cfg, heartbeatNs: 1n }), 0);
  t.is(await dig(cg, pod), '10.9.9.9');
});
