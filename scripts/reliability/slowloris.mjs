#!/usr/bin/env node
// Slow-loris against a running agent, as issue 17 measured it: N connections to an HTTP outbound listener each
// send one header byte every few seconds. Prints how many the agent still holds over time, and whether a normal
// client is served meanwhile. Usage:
//   node scripts/reliability/slowloris.mjs [--conns 500] [--every-ms 3000] [--seconds 30] [--port P]
// Without --port it starts `meshext run` (redirect and DNS off) on a temp config with one HTTP service to a local
// upstream and an outbound listener, and stops it at the end.
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { conns: { type: 'string', default: '500' }, 'every-ms': { type: 'string', default: '3000' }, seconds: { type: 'string', default: '30' }, port: { type: 'string' } } });
const CONNS = Number(values.conns);
const EVERY = Number(values['every-ms']);
const SECONDS = Number(values.seconds);
const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const freePort = () => new Promise((r) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });

let agent;
let dir;
let port = values.port ? Number(values.port) : 0;
const upstream = http.createServer((_q, res) => res.end('ok')).listen(0, '127.0.0.1');
await new Promise((r) => upstream.once('listening', r));
if (!port) {
  port = await freePort();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshext-slowloris-'));
  fs.mkdirSync(path.join(dir, 'config'));
  fs.writeFileSync(path.join(dir, 'config', 'svc.yaml'), `type: MeshExternalService\nname: web\nmesh: default\nspec:\n  match: { port: 80, protocol: http }\n  endpoints: [{ address: 127.0.0.1, port: ${upstream.address().port} }]\n---\ntype: Dataplane\nname: local\nmesh: default\nnetworking:\n  address: 127.0.0.1\n  outbound:\n    - port: ${port}\n      backendRef: { kind: MeshExternalService, name: web }\n`);
  agent = spawn(process.execPath, [path.join(repo, 'bin/meshext.js'), 'run', '--config', path.join(dir, 'config'), '--redirect', 'off', '--dns', 'off', '--state-dir', path.join(dir, 'state'), '--admin', '127.0.0.1:0', '--admin-socket', path.join(dir, 'admin.sock'), '--log-format', 'json'], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((r) => net.connect(port, '127.0.0.1').on('connect', function () { this.destroy(); r(true); }).on('error', () => r(false)));
    if (up) break;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const head = 'GET / HTTP/1.1\r\nHost: web\r\nX-Slow: ' + 'a'.repeat(10_000);
const socks = [];
let open = 0;
for (let i = 0; i < CONNS; i++) {
  const s = net.connect(port, '127.0.0.1');
  s.pos = 0;
  s.on('connect', () => open++);
  s.on('close', () => { if (s.counted !== false) open--; s.counted = false; });
  s.on('error', () => {});
  socks.push(s);
}
const drip = setInterval(() => { for (const s of socks) if (!s.destroyed && s.pos < head.length) s.write(head[s.pos++]); }, EVERY);
const get = () => new Promise((r) => { const t0 = Date.now(); http.get({ host: '127.0.0.1', port, path: '/', timeout: 5000 }, (res) => { res.resume(); res.on('end', () => r(`${res.statusCode} in ${Date.now() - t0} ms`)); }).on('error', (e) => r(e.code)).on('timeout', function () { this.destroy(); r('timeout'); }); });
console.log(`slowloris: ${CONNS} connections, one header byte every ${EVERY} ms, ${SECONDS} s`);
for (let t = 0; t <= SECONDS; t += 5) {
  console.log(`t=${String(t).padStart(3)} s  held by the agent: ${String(open).padStart(4)}  normal client: ${await get()}`);
  if (t < SECONDS) await new Promise((r) => setTimeout(r, 5000));
}
clearInterval(drip);
for (const s of socks) s.destroy();
agent?.kill('SIGTERM');
upstream.close();
if (dir) fs.rmSync(dir, { recursive: true, force: true });
