// Engine regressions that need events lined up in one epoll batch: the engine runs in a child process
// (test/fixtures/engine/child.mjs) that the test stops (SIGSTOP, or its engine thread by ptrace) while the peers
// act, so that on resume the loop sees them together. Each test failed (crash, wrong upstream, lost request,
// leaked timers) before the fix it names.
import test, { type ExecutionContext } from 'ava';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { closeServer, listen } from '../helpers/proxy.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CHILD = join(process.cwd(), 'test/fixtures/engine/child.mjs');

interface Endpoint { label: string; priority: number; host?: string; targets: Array<{ address: string; port: number }>; unavailable?: string }

/** The engine process: one service `svc` behind an outbound listener. */
class EngineChild {
  readonly proc: ChildProcess;
  port = 0;
  pid = 0;
  exit: { code: number | null; signal: string | null } | null = null;
  private lines: string[] = [];
  private waiters: Array<(line: string) => void> = [];
  private stderr = '';

  private constructor(protocol: string, connectMs: number) {
    this.proc = spawn(process.execPath, [CHILD, protocol, String(connectMs)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let buf = '';
    this.proc.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
    this.proc.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.proc.on('exit', (code, signal) => (this.exit = { code, signal }));
  }

  /** Starts the child; it is killed when the test ends, also when it fails before its own kill (or here). */
  static async start(t: ExecutionContext, protocol: string, connectMs = 20_000): Promise<EngineChild> {
    const c = new EngineChild(protocol, connectMs);
    t.teardown(async () => {
      await c.kill();
    });
    const first = JSON.parse(await c.line()) as { port: number; pid: number };
    c.port = first.port;
    c.pid = first.pid;
    return c;
  }

  private line(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`engine child did not answer (exit ${JSON.stringify(this.exit)}): ${this.stderr}`)), 10_000);
      this.waiters.push((x) => {
        clearTimeout(timer);
        resolve(x);
      });
    });
  }

  async install(endpoints: Endpoint[] | null): Promise<void> {
    this.proc.stdin?.write(JSON.stringify(endpoints) + '\n');
    const r = JSON.parse(await this.line()) as { installed: unknown[] };
    if (r.installed.length) throw new Error(`install failed: ${JSON.stringify(r.installed)}`);
  }

  async stats(): Promise<{ sessions: number; timers: number }> {
    this.proc.stdin?.write('stats\n');
    return (JSON.parse(await this.line()) as { stats: { sessions: number; timers: number } }).stats;
  }

  /** Kills the child; what it wrote to stderr (a crash's message) is returned. */
  async kill(): Promise<string> {
    if (this.exit === null) {
      this.proc.kill('SIGKILL');
      await once(this.proc, 'exit');
    }
    return this.stderr;
  }
}

const ep = (label: string, port: number, host?: string): Endpoint => ({ label, priority: 0, ...(host ? { host } : {}), targets: [{ address: '127.0.0.1', port }] });

function h2get(c: http2.ClientHttp2Session, path: string): Promise<string> {
  return new Promise((resolve) => {
    const r = c.request({ ':path': path });
    let status = '';
    let body = '';
    r.on('response', (h) => (status = String(h[':status'])));
    r.on('data', (d: Buffer) => (body += d.toString()));
    r.on('end', () => resolve(`${status} ${body}`));
    r.on('error', (e: Error) => resolve(`error ${e.message}`));
    r.end();
  });
}

/** An h2c upstream answering `200 ok`; `sessions` collects its connections (to make them send a frame). */
async function h2Upstream(): Promise<{ srv: http2.Http2Server; sessions: http2.ServerHttp2Session[]; port: number }> {
  const sessions: http2.ServerHttp2Session[] = [];
  const srv = http2.createServer();
  srv.on('session', (s) => sessions.push(s));
  srv.on('stream', (st) => {
    st.respond({ ':status': 200 });
    st.end('ok');
  });
  return { srv, sessions, port: (await listen(srv)).port };
}

test.serial('regression: an HTTP/2 client leaving while its upstream sends a frame, in one batch, does not crash the engine (parked side)', async (t) => {
  const { srv, sessions, port: up } = await h2Upstream();
  t.teardown(() => closeServer(srv));
  const e = await EngineChild.start(t, 'http2');
  try {
    await e.install([ep('up', up)]);
    for (let round = 0; round < 8 && e.exit === null; round++) {
      const c = http2.connect(`http://127.0.0.1:${e.port}`);
      c.on('error', () => {});
      t.is(await h2get(c, '/'), '200 ok');
      await sleep(30);
      process.kill(e.pid, 'SIGSTOP');
      c.destroy(); // the client's FIN first ...
      await sleep(30);
      for (const s of sessions.splice(0)) if (!s.destroyed) s.ping(() => {}); // ... then an upstream frame
      await sleep(30);
      process.kill(e.pid, 'SIGCONT');
      await sleep(80);
    }
    t.is(e.exit, null, 'the engine process is alive');
    const c = http2.connect(`http://127.0.0.1:${e.port}`);
    t.is(await h2get(c, '/after'), '200 ok');
    c.destroy();
  } finally {
    t.log(await e.kill()); // what a crash wrote
  }
});

test.serial('regression: a pooled HTTP/1 upstream that closed while the engine was busy is not reused for the next request', async (t) => {
  // The upstream answers, then closes without Connection: close, while the engine is stopped: on resume the
  // response and the FIN arrive together, and the next request (a POST, not retried) must get a new connection.
  let conns = 0;
  const srv = net.createServer((s) => {
    conns++;
    s.once('data', () => setTimeout(() => s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 100));
  });
  t.teardown(() => closeServer(srv));
  const { port: up } = await listen(srv);
  const e = await EngineChild.start(t, 'http');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const req = (method: string): Promise<string> =>
    new Promise((resolve) => {
      const r = http.request({ host: '127.0.0.1', port: e.port, method, path: '/', agent, headers: { 'content-length': 0 } }, (x) => {
        let b = '';
        x.on('data', (d: Buffer) => (b += d.toString()));
        x.on('end', () => resolve(`${x.statusCode} ${b}`));
      });
      r.on('error', (err) => resolve(`error ${err.message}`));
      r.end();
    });
  await e.install([ep('up', up)]);
  for (let i = 0; i < 3; i++) {
    const get = req('GET');
    await sleep(50);
    process.kill(e.pid, 'SIGSTOP');
    await sleep(150);
    process.kill(e.pid, 'SIGCONT');
    t.is(await get, '200 ok');
    t.is(await req('POST'), '200 ok');
  }
  t.is(conns, 6, 'one upstream connection per request: none was reused after its FIN');
});

test.serial('regression: once its service is removed, every new stream of an HTTP/2 connection is refused (not served by the old plan)', async (t) => {
  const srv = http2.createServer();
  srv.on('stream', (st) => {
    st.respond({ ':status': 200 });
    st.end('from upstream');
  });
  t.teardown(() => closeServer(srv));
  const { port: up } = await listen(srv);
  const e = await EngineChild.start(t, 'http2');
  await e.install([ep('up', up)]);
  const c = http2.connect(`http://127.0.0.1:${e.port}`);
  t.teardown(() => {
    c.destroy();
  });
  t.is(await h2get(c, '/1'), '200 from upstream');
  await e.install(null);
  for (let i = 2; i < 5; i++) t.regex(await h2get(c, `/${i}`), /^503 upstream unavailable: the service of this connection is no longer/);
});

test.serial('regression: two DNS-name endpoints on one address keep their own pooled HTTP/1 connections (Host per endpoint)', async (t) => {
  const srv = http.createServer((q, s) => s.end(q.headers.host));
  t.teardown(() => closeServer(srv));
  const { port: up } = await listen(srv);
  const e = await EngineChild.start(t, 'http');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  // Both names reach the same listener: a pool keyed by address alone would hand b's requests a's connection.
  await e.install([ep('a.example:80', up, 'a.example'), ep('b.example:80', up, 'b.example')]);
  const hosts: string[] = [];
  for (let i = 0; i < 6; i++) {
    hosts.push(
      await new Promise<string>((resolve) =>
        http.get({ host: '127.0.0.1', port: e.port, path: '/', agent }, (r) => {
          let b = '';
          r.on('data', (d: Buffer) => (b += d.toString()));
          r.on('end', () => resolve(b));
        }),
      ),
    );
  }
  t.deepEqual(hosts, ['a.example', 'b.example', 'a.example', 'b.example', 'a.example', 'b.example']);
});

// A listener whose accept queue is full for `delay` s (connects stay pending), then a relay to the upstream.
const SLOW_ACCEPT_PY = `
import socket, sys, threading, time
up = int(sys.argv[1]); delay = float(sys.argv[2])
ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(0)
port = ls.getsockname()[1]
fill = []
for i in range(3):
    s = socket.socket(); s.setblocking(False)
    try: s.connect(('127.0.0.1', port))
    except BlockingIOError: pass
    fill.append(s)
print(port, flush=True)
time.sleep(delay)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except OSError: pass
    try: b.shutdown(socket.SHUT_WR)
    except OSError: pass
while True:
    c, _ = ls.accept()
    u = socket.create_connection(('127.0.0.1', up))
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
`;

test.serial('regression: an HTTP/2 connection whose plan changes while it is connecting upstream uses the endpoint it dialled', async (t) => {
  const srv = http2.createServer();
  srv.on('stream', (st, h) => {
    st.respond({ ':status': 200 });
    st.end(`authority=${String(h[':authority'])}`);
  });
  t.teardown(() => closeServer(srv));
  const { port: up } = await listen(srv);
  const slow = spawn('python3', ['-c', SLOW_ACCEPT_PY, String(up), '0.6'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    slow.kill('SIGKILL');
  });
  const [line] = (await once(slow.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
  const slowPort = Number(line.toString().trim());
  const e = await EngineChild.start(t, 'http2');
  const none = (label: string, host: string): Endpoint => ({ label, priority: 0, host, targets: [], unavailable: 'none' });
  // The session's first pick is endpoint 3 of the old plan (the others have no address): its connect is pending
  // when a plan with one endpoint is installed. The old code indexed the new plan with the old pick.
  await e.install([none('a', 'old-a'), none('b', 'old-b'), ep('c', slowPort, 'old-c')]);
  const c = http2.connect(`http://127.0.0.1:${e.port}`);
  c.on('error', () => {});
  t.teardown(() => {
    c.destroy();
  });
  const first = h2get(c, '/1');
  await sleep(200);
  await e.install([ep('z', up, 'new-z')]);
  const second = h2get(c, '/2');
  const both = await Promise.race([Promise.all([first, second]), sleep(5000).then(() => null)]);
  // The first stream rides the connection dialled for old-c; the second picks its endpoint from the plan current
  // when it arrives (every request is routed on its own), new-z.
  t.deepEqual(both, ['200 authority=old-c', '200 authority=new-z']);
  t.is(e.exit, null);
});

test.serial('regression: a keep-alive HTTP/1 client whose every request dials upstream does not grow the timer heap', async (t) => {
  const srv = http.createServer((q, s) => {
    s.setHeader('connection', 'close');
    s.end('x');
  });
  t.teardown(() => closeServer(srv));
  const { port: up } = await listen(srv);
  const e = await EngineChild.start(t, 'http', 300);
  await e.install([ep('up', up)]);
  const sock = net.connect(e.port, '127.0.0.1');
  t.teardown(() => {
    sock.destroy();
  });
  let got = '';
  sock.on('data', (d: Buffer) => (got += d.toString()));
  const answers = (): number => (got.match(/HTTP\/1\.1 200/g) ?? []).length;
  const N = 300;
  for (let i = 0; i < N; i++) {
    sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    while (answers() === i) await sleep(1);
  }
  const busy = await e.stats();
  t.true(busy.timers < N, `timers after ${N} requests: ${busy.timers}`);
  await sleep(1000); // every connect deadline (300 ms) has passed
  const idle = await e.stats();
  t.is(idle.sessions, 1);
  t.true(idle.timers <= 4, `timers of one idle session: ${idle.timers}`);
});

// Stops one thread with PTRACE_SEIZE + PTRACE_INTERRUPT; a line on stdin resumes it.
const THREAD_STOP_PY = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
tid = int(sys.argv[1])
if libc.ptrace(0x4206, tid, None, None) != 0: print('seize failed', ctypes.get_errno(), flush=True); sys.exit(1)
libc.ptrace(0x4207, tid, None, None)
os.waitpid(tid, 0x40000000)
print('stopped', flush=True)
sys.stdin.readline()
libc.ptrace(17, tid, None, None)
`;

function engineThread(pid: number): number {
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    if (readFileSync(`/proc/${pid}/task/${task}/comm`, 'utf8').trim() === 'mx-engine-0') return Number(task);
  }
  throw new Error(`no mx-engine-0 thread in process ${pid}`);
}

test.serial('regression: a reload that retires parked HTTP/2 upstreams, in the batch where one of them reads, does not crash the engine', async (t) => {
  const { srv, sessions, port: up } = await h2Upstream();
  t.teardown(() => closeServer(srv));
  const e = await EngineChild.start(t, 'http2');
  const tid = engineThread(e.pid);
  for (let round = 0; round < 4 && e.exit === null; round++) {
    await e.install([ep(`u${round}`, up)]);
    const c = http2.connect(`http://127.0.0.1:${e.port}`);
    t.teardown(() => {
      c.destroy();
    });
    t.is(await h2get(c, '/'), '200 ok');
    c.close(); // the session ends normally: its upstream connection is parked for reuse
    await sleep(100);
    const stopper = spawn('python3', ['-c', THREAD_STOP_PY, String(tid)], { stdio: ['pipe', 'pipe', 'inherit'] });
    // A test that fails while the thread is stopped leaves this tracer waiting on stdin.
    t.teardown(() => {
      stopper.kill('SIGKILL');
    });
    const [said] = (await once(stopper.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
    t.is(said.toString().trim(), 'stopped');
    // The engine's JS side still runs: the install is posted (its wake-up is ready first), then the parked
    // connection's fd becomes readable.
    await e.install([ep(`v${round}`, up)]);
    await sleep(100);
    for (const s of sessions.splice(0)) if (!s.destroyed) s.ping(() => {});
    await sleep(100);
    stopper.stdin?.write('\n');
    await once(stopper, 'exit');
    await sleep(150);
  }
  t.is(e.exit, null, 'the engine process is alive');
});
