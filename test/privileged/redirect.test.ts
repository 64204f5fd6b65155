import type { ExecutionContext } from 'ava';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { native } from '../../src/native/addon.js';
import { FLAGS, LAYOUT, LAYOUT_VERSION, encodeOrig, encodePeerKey } from '../../src/redirect/codec.js';
import { Redirector, findCgroup2Mount } from '../../src/redirect/index.js';
import { ipEp, listen, newProxy, snap, svc, until } from '../helpers/proxy.js';
import { JsonChild, fixture, privilegedTest, runJson, spawnInCgroup, tempCgroup, tempNetns, tempPinRoot, tempVeth } from '../helpers/privileged.js';

const VIPS = '242.0.0.0/8';

async function startListener(t: ExecutionContext, netns: string, host = '127.0.0.1', port = 0): Promise<{ l: JsonChild; port: number }> {
  const l = new JsonChild(t, spawnInCgroup(null, process.execPath, [fixture('listener'), host, String(port)], { netns }));
  const line = await l.next((x) => 'listening' in x || 'exited' in x);
  if (!('listening' in line)) throw new Error(`listener failed: ${l.stderr}`);
  return { l, port: line.listening as number };
}

async function runClient(cg: string | null, netns: string, host: string, port: number, localPort?: number): Promise<Record<string, unknown>> {
  const args = [fixture('client'), host, String(port), ...(localPort ? [String(localPort)] : [])];
  const r = await runJson(spawnInCgroup(cg, process.execPath, args, { netns }));
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

/** A loopback port in `netns` that nobody listens on (a listener bound it, then went away). */
async function freedPort(t: ExecutionContext, netns: string): Promise<number> {
  const { l, port } = await startListener(t, netns);
  await l.kill();
  return port;
}

privilegedTest('a redirected connect that fails leaves no original destination: a socket outside the cgroup reusing its port gets none', async (t) => {
  const cg = tempCgroup(t);
  const pinRoot = tempPinRoot(t);
  const ns = tempNetns(t);
  const proxyPort = await freedPort(t, ns); // the proxy is down: the redirected connect is refused
  const r = await Redirector.start({ vipCidr: VIPS, proxy: { address: '127.0.0.1', port: proxyPort }, cgroupPath: cg, pinRoot, exemptSelf: false });
  t.teardown(() => r.close());
  const clientPort = 20000 + Math.floor(Math.random() * 20000);

  const refused = await runClient(cg, ns, '242.1.2.3', 8080, clientPort);
  t.is(refused.error, 'ECONNREFUSED', JSON.stringify(refused));
  t.is(r.counters().peer_stored, 1);
  t.is(r.counters().peer_dropped, 1, 'the refused socket removed its own entry');

  // The proxy is back; a process outside the cgroup dials it directly from the same source port.
  const { l } = await startListener(t, ns, '127.0.0.1', proxyPort);
  const outside = await runClient(null, ns, '127.0.0.1', proxyPort, clientPort);
  t.is(outside.data, 'hello\n', JSON.stringify(outside));
  const acc = await l.next((x) => x.accepted === true && x.remotePort === clientPort);
  t.is(r.takeOriginalDst({ address: acc.remoteAddress as string, port: clientPort }, proxyPort), null, 'no VIP for a socket that made no entry');

  // Control: a redirected connection that the proxy takes keeps its entry until taken.
  const ok = await runClient(cg, ns, '242.1.2.3', 8080);
  t.is(ok.data, 'hello\n', JSON.stringify(ok));
  const acc2 = await l.next((x) => x.accepted === true && x.remotePort === ok.localPort);
  t.deepEqual(r.takeOriginalDst({ address: acc2.remoteAddress as string, port: acc2.remotePort as number }, proxyPort), { address: '242.1.2.3', port: 8080 });
});

privilegedTest('an original destination nobody took in time is refused by the engine and swept by the agent', async (t) => {
  const cg = tempCgroup(t);
  const pinRoot = tempPinRoot(t);
  const up = await listen(net.createServer((s) => s.end('upstream\n')));
  t.teardown(() => up.srv.close());
  const vip = '242.0.0.77';
  const service = svc({ vip, port: 7000, endpoints: [ipEp(up.port)] });
  const { proxy, stats } = newProxy();
  t.teardown(() => proxy.close());
  await proxy.setSnapshot(snap([service]));
  const proxyPort = (await proxy.listenTransparent({ address: '127.0.0.1', port: 0 })).port;
  const r = await Redirector.start({ vipCidr: VIPS, proxy: { address: '127.0.0.1', port: proxyPort }, cgroupPath: cg, pinRoot, exemptSelf: false });
  t.teardown(() => r.close());
  proxy.useOriginalDstMap(r.peerOrigMapFd());
  const mapFd = r.peerOrigMapFd();
  const addon = native();
  const plant = (clientPort: number, ageMs: number): void => {
    const orig = { address: vip, port: 7000, proto: 6, flags: FLAGS.MX_ORIG_TCP_VIP, pid: 1, cgroupId: 1n, cookie: 1n, createdNs: process.hrtime.bigint() - BigInt(ageMs) * 1_000_000n };
    addon.mapUpdate(mapFd, encodePeerKey('127.0.0.1', clientPort, proxyPort), encodeOrig(orig), 0);
  };

  // A stale entry (an agent stopped with this connection in its queue) for a port a process outside the cgroup now uses.
  const clientPort = 20000 + Math.floor(Math.random() * 20000);
  plant(clientPort, 60_000);
  const outside = await runJson(spawnInCgroup(null, process.execPath, [fixture('client'), '127.0.0.1', String(proxyPort), String(clientPort)]));
  const o = Object.assign({}, ...outside.lines) as Record<string, unknown>;
  t.not(o.data, 'upstream\n', JSON.stringify(o));
  await until(() => proxy.engineCounters()?.origDstStale === 1, 'stale entry refused');
  t.regex(stats.prometheus(), /meshext_engine_orig_dst_total\{result="stale"\} 1/);

  // A fresh one still routes (the rule is age, not distrust of planted entries), and a real redirected client works.
  const freshPort = clientPort === 39999 ? 20000 : clientPort + 1;
  plant(freshPort, 0);
  const fresh = Object.assign({}, ...(await runJson(spawnInCgroup(null, process.execPath, [fixture('client'), '127.0.0.1', String(proxyPort), String(freshPort)]))).lines) as Record<string, unknown>;
  t.is(fresh.data, 'upstream\n', JSON.stringify(fresh));
  const viaVip = Object.assign({}, ...(await runJson(spawnInCgroup(cg, process.execPath, [fixture('client'), vip, '7000']))).lines) as Record<string, unknown>;
  t.is(viaVip.data, 'upstream\n', JSON.stringify(viaVip));

  // The sweep removes what is stale and keeps what is fresh.
  plant(41001, 60_000);
  plant(41002, 0);
  t.is(r.sweepStaleOrigins(), 1);
  t.is(addon.mapLookup(mapFd, encodePeerKey('127.0.0.1', 41001, proxyPort), LAYOUT.mx_orig.size), null);
  t.not(addon.mapLookup(mapFd, encodePeerKey('127.0.0.1', 41002, proxyPort), LAYOUT.mx_orig.size), null);
});

privilegedTest('after an upgrade that changed the map layout, the old version\'s links are detached so they no longer take connections', async (t) => {
  const cg = tempCgroup(t);
  const pinRoot = tempPinRoot(t);
  const ns = tempNetns(t);
  const { l, port } = await startListener(t, ns);
  // The "previous agent": this layout's pins, moved to another version's directory (bpffs allows rename).
  const old = await Redirector.start({ vipCidr: VIPS, proxy: { address: '127.0.0.1', port }, cgroupPath: cg, pinRoot, exemptSelf: false });
  old.close();
  renameSync(join(pinRoot, `v${LAYOUT_VERSION}`), join(pinRoot, 'v1'));
  t.is(Redirector.list({ pinRoot }).links.length, 0, 'nothing under the current version');

  const r = await Redirector.start({ vipCidr: VIPS, proxy: { address: '127.0.0.1', port }, cgroupPath: cg, pinRoot, exemptSelf: false });
  t.teardown(() => r.close());
  t.false(existsSync(join(pinRoot, 'v1')), 'the old layout is unpinned');
  const c = await runClient(cg, ns, '242.1.2.3', 8080);
  t.is(c.data, 'hello\n', JSON.stringify(c));
  const acc = await l.next((x) => x.accepted === true && x.remotePort === c.localPort);
  t.deepEqual(r.takeOriginalDst({ address: acc.remoteAddress as string, port: acc.remotePort as number }, port), { address: '242.1.2.3', port: 8080 }, 'the current maps have the entry');
  t.is(r.counters().tcp_redirect, 1, 'redirected once, by the current programs only');
});
