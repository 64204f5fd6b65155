// Loopback helpers: free ports and readiness waits.
import net from 'node:net';
import http from 'node:http';

const handedOut = new Set();

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it), never the same one twice. */
export async function freePort() {
  for (let i = 0; i < 100; i++) {
    const p = await kernelPort();
    if (!handedOut.has(p)) {
      handedOut.add(p);
      return p;
    }
  }
  throw new Error('freePort: the kernel keeps returning ports already handed out');
}

function kernelPort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Wait until a TCP connect to 127.0.0.1:port succeeds, or throw after timeoutMs. */
export async function waitForPort(port, timeoutMs, what = `port ${port}`, alive = () => true) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error(`${what}: process exited before listening`);
    if (Date.now() > deadline) throw new Error(`${what}: not listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Wait until GET http://127.0.0.1:port/path answers 200, or throw after timeoutMs. */
export async function waitForHttp200(port, path, timeoutMs, what, alive = () => true) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    const status = await new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path, timeout: 1000 }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', (e) => {
        last = e.message;
        resolve(0);
      });
    });
    if (status === 200) return;
    if (status) last = `HTTP ${status}`;
    if (!alive()) throw new Error(`${what}: process exited before ${path} answered 200 (last: ${last})`);
    if (Date.now() > deadline) throw new Error(`${what}: ${path} on 127.0.0.1:${port} not 200 after ${timeoutMs} ms (last: ${last})`);
    await sleep(100);
  }
}

/** Promise that resolves after ms. */
export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
