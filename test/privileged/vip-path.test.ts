// What the configuration says is what the traffic gets, through the eBPF redirect: clients in a cgroup dial VIPs,
// the programs send them to the engine's transparent listener, and the engine routes by the original destination.
// Each case is a behaviour the outbound-listener tests also cover; here it is shown on the path users take.
import type { ExecutionContext } from 'ava';
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { Redirector } from '../../src/redirect/index.js';
import type { ProxyOptions } from '../../src/proxy/index.js';
import type { CompiledService } from '../../src/snapshot/types.js';
import { closeServer, ipEp, newProxy, removableName, snap, svc } from '../helpers/proxy.js';
import { fixture, privilegedTest, runJson, spawnInCgroup, tempCgroup, tempPinRoot } from '../helpers/privileged.js';

const VIPS = '242.0.0.0/8';

/** A redirect into a fresh engine serving `services`; `set` installs a new snapshot (a reload). */
async function vipPath(t: ExecutionContext, services: CompiledService[], resolver?: ProxyOptions['resolver']) {
  const cg = tempCgroup(t);
  const pinRoot = tempPinRoot(t);
  const { proxy, stats } = newProxy(resolver ? { resolver } : {});
  t.teardown(() => proxy.close());
  let generation = 1;
  await proxy.setSnapshot(snap(services, generation));
  const port = (await proxy.listenTransparent({ address: '127.0.0.1', port: 0 })).port;
  const r = await Redirector.start({ vipCidr: VIPS, proxy: { address: '127.0.0.1', port }, cgroupPath: cg, pinRoot, exemptSelf: false });
  t.teardown(() => r.close());
  proxy.useOriginalDstMap(r.peerOrigMapFd());
  return {
    proxy,
    stats,
    set: (next: CompiledService[]) => proxy.setSnapshot(snap(next, ++generation)),
    /** A TCP client in the cgroup: what it read before the connection ended ('' when refused or reset). */
    tcp: async (vip: string, port: number): Promise<string> => {
      const lines = (await runJson(spawnInCgroup(cg, process.execPath, [fixture('client'), vip, String(port)]))).lines;
      return (Object.assign({}, ...lines) as { data?: string }).data ?? '';
    },
    /** A test fixture client (test/fixtures/bpf) run in the cgroup. */
    spawnClient: (name: string, args: string[]) => spawnInCgroup(cg, process.execPath, [fixture(name), ...args]),
    /** curl in the cgroup: its stdout, each response's body followed by ` <status>` and a newline. */
    curl: async (...args: string[]): Promise<string> => {
      const child = spawnInCgroup(cg, 'curl', ['-s', '--max-time', '10', '-w', ' %{http_code}\\n', ...args]);
      let out = '';
      child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      await once(child, 'close');
      return out.trimEnd();
    },
  };
}

/** An HTTP upstream that answers with its name, the request target and Host. */
async function namedUpstream(t: ExecutionContext, name: string): Promise<number> {
  const srv = http.createServer((req, res) => res.end(JSON.stringify({ name, url: req.url, host: req.headers.host })));
  srv.listen(0, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  t.teardown(() => closeServer(srv));
  return (srv.address() as net.AddressInfo).port;
}

privilegedTest('vip path: a ban applied by reload refuses the next TCP connection and HTTP request; lifting it restores both', async (t) => {
  let accepted = 0;
  const greeter = net.createServer((c) => (accepted++, c.end('hi\n')));
  greeter.listen(0, '127.0.0.1');
  await new Promise((r) => greeter.once('listening', r));
  t.teardown(() => closeServer(greeter));
  const up = await namedUpstream(t, 'a');
  const tcpSvc = svc({ vip: '242.0.16.1', port: 7001, endpoints: [ipEp((greeter.address() as net.AddressInfo).port)] });
  const httpSvc = svc({ vip: '242.0.16.2', port: 80, protocol: 'http', endpoints: [ipEp(up)] });
  const p = await vipPath(t, [tcpSvc, httpSvc]);
  t.regex(await p.curl('http://242.0.16.2/x'), / 200$/);
  t.is(await p.tcp('242.0.16.1', 7001), 'hi\n');
  const banned = (s: CompiledService): CompiledService => ({ ...s, forbidden: true });
  for (let round = 0; round < 2; round++) {
    await p.set([banned(tcpSvc), banned(httpSvc)]);
    t.regex(await p.curl('http://242.0.16.2/x'), / 403$/, `round ${round}: HTTP refused after the ban`);
    const before = accepted;
    t.is(await p.tcp('242.0.16.1', 7001), '', `round ${round}: TCP refused after the ban`);
    t.is(accepted, before, `round ${round}: no TCP connection reached the upstream after the ban`);
    await p.set([tcpSvc, httpSvc]);
    t.regex(await p.curl('http://242.0.16.2/x'), / 200$/, `round ${round}: HTTP served after the lift`);
    t.is(await p.tcp('242.0.16.1', 7001), 'hi\n', `round ${round}: TCP served after the lift`);
    t.is(accepted, before + 1);
  }
});

privilegedTest('vip path: sequential keep-alive requests of one client are balanced over the endpoints', async (t) => {
  const a = await namedUpstream(t, 'a');
  const b = await namedUpstream(t, 'b');
  const s = svc({ vip: '242.0.16.3', port: 80, protocol: 'http', endpoints: [ipEp(a), ipEp(b)] });
  const p = await vipPath(t, [s]);
  // One curl, one connection (curl reuses it for the same host), four requests in a row.
  const out = await p.curl(...[1, 2, 3, 4].map((i) => `http://242.0.16.3/r${i}`));
  const names = [...out.matchAll(/"name":"(\w)"/g)].map((m) => m[1]);
  t.deepEqual(names.sort(), ['a', 'a', 'b', 'b'], out);
});

privilegedTest('vip path: a DNS-name endpoint whose record is removed gets no more traffic', async (t) => {
  const named = await namedUpstream(t, 'named');
  const other = await namedUpstream(t, 'other');
  const { resolver, remove } = removableName();
  const s = svc({ vip: '242.0.16.4', port: 80, protocol: 'http', endpoints: [{ kind: 'dns', address: 'api.example', port: named }, ipEp(other)] });
  const p = await vipPath(t, [s], resolver);
  const first = await p.curl(...[1, 2].map((i) => `http://242.0.16.4/a${i}`));
  t.regex(first, /"name":"named"/, 'the name resolves: it takes its share');
  remove();
  const deadline = Date.now() + 5000;
  while ((p.proxy.clusters()[0]?.endpoints[0]?.addresses.length ?? 0) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const after = await p.curl(...[1, 2, 3, 4].map((i) => `http://242.0.16.4/b${i}`));
  t.notRegex(after, /"name":"named"/, after);
  t.is([...after.matchAll(/"name":"other"/g)].length, 4, after);
});

privilegedTest('vip path: an extension MeshExternalService is refused at once, TCP and HTTP', async (t) => {
  const tcp = svc({ vip: '242.0.16.5', port: 7005, endpoints: [], extension: 'Lambda' });
  const web = svc({ vip: '242.0.16.6', port: 80, protocol: 'http', endpoints: [], extension: 'Lambda' });
  const p = await vipPath(t, [tcp, web]);
  const started = Date.now();
  t.is(await p.tcp('242.0.16.5', 7005), '');
  const out = await p.curl('http://242.0.16.6/');
  t.is(out, 'upstream unavailable: MeshExternalService extension Lambda is not supported by meshext\n 503');
  t.true(Date.now() - started < 8000, 'no hang (curl would give up at 10 s)');
});

privilegedTest('vip path: an absolute-form request goes upstream in origin form under the Host rule', async (t) => {
  const up = await namedUpstream(t, 'up');
  const s = svc({ vip: '242.0.16.7', port: 80, protocol: 'http', endpoints: [{ kind: 'dns', address: 'localhost', port: up }] });
  const p = await vipPath(t, [s]);
  const out = await p.curl('--request-target', 'http://other.example/elsewhere?q=1', 'http://242.0.16.7/');
  const body = JSON.parse(out.replace(/ 200$/, '')) as { url: string; host: string };
  t.deepEqual([body.url, body.host], ['/elsewhere?q=1', 'localhost']);
});

privilegedTest('vip path: sequential HTTP/2 requests of one client connection are balanced over the endpoints', async (t) => {
  const named = async (name: string): Promise<number> => {
    const srv = http2.createServer((_req, res) => res.end(JSON.stringify({ name })));
    srv.listen(0, '127.0.0.1');
    await new Promise((r) => srv.once('listening', r));
    t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
    return (srv.address() as net.AddressInfo).port;
  };
  const s = svc({ vip: '242.0.16.8', port: 80, protocol: 'http2', endpoints: [ipEp(await named('a')), ipEp(await named('b'))] });
  const p = await vipPath(t, [s]);
  // One HTTP/2 connection (h2c prior knowledge), four requests in a row. (curl 7.88 sends nothing for the
  // requests after the first on a reused prior-knowledge connection, whatever the server: a Node client here.)
  const lines = (await runJson(p.spawnClient('h2client', ['242.0.16.8', '80', '4']))).lines;
  const names = lines.map((l) => String(l.name ?? JSON.stringify(l)));
  t.deepEqual(names.sort(), ['a', 'a', 'b', 'b'], JSON.stringify(lines));
});
