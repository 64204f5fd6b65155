#!/usr/bin/env node
// `npm start`: runs the agent on examples/ with local stand-ins for the seed documents' upstreams, then
// shows with the seeds' own client commands (nc, curl, dig, a gRPC list) that every name resolves and
// answers through the agent. Keeps running until Ctrl-C; `--once` exits after the checks (used by tests).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const once = process.argv.includes('--once');
const adminPort = Number(process.env.MESHEXT_DEMO_ADMIN_PORT ?? 9901);
const demoDir = path.join(root, '.state', 'demo');
const pinRoot = '/sys/fs/bpf/meshext-demo';

function die(msg) {
  process.stderr.write(`demo: ${msg}\n`);
  process.exit(1);
}

if (process.getuid?.() !== 0) die('the demo attaches eBPF programs and must run as root (sudo npm start)');
if (!fs.existsSync(path.join(root, 'dist/src/cli/main.js'))) die('not built yet: run ./scripts/setup.sh first');

const { ensurePki, pkiSecretsYaml } = await import(path.join(root, 'dist/src/demo/certs.js'));
const { startUpstreams } = await import(path.join(root, 'dist/src/demo/upstreams.js'));

function cgroup2Mount() {
  const line = fs.readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[2] === 'cgroup2');
  if (!line) die('no cgroup2 filesystem mounted (see /proc/mounts); eBPF cgroup hooks need it');
  return line.split(' ')[1];
}

function getReady() {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: adminPort, path: '/ready', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
  });
}

// --- PKI and secrets, stand-in upstreams -------------------------------------------------------
fs.mkdirSync(path.join(demoDir, 'secrets'), { recursive: true });
const pki = ensurePki(path.join(demoDir, 'pki'));
fs.writeFileSync(path.join(demoDir, 'secrets', 'secrets.yaml'), pkiSecretsYaml(pki));
const upstreams = await startUpstreams({ pki });

// --- a cgroup for the demo's clients: only processes in it are redirected --------------------------
const cgroup = path.join(cgroup2Mount(), 'meshext-demo');
fs.mkdirSync(cgroup, { recursive: true });
// The agent moves itself out of the cgroup2 root into meshext.agent; the demo removes it again if it made it.
const agentCgroup = path.join(cgroup2Mount(), 'meshext.agent');
const agentCgroupExisted = fs.existsSync(agentCgroup);

const logFile = path.join(demoDir, 'agent.log');
const logFd = fs.openSync(logFile, 'w');
const agent = spawn(
  process.execPath,
  [
    path.join(root, 'bin/meshext.js'), 'run',
    '--config', path.join(root, 'examples/universal'),
    '--config', path.join(demoDir, 'secrets'),
    '--cgroup', cgroup,
    '--redirect', 'on',
    '--state-dir', path.join(demoDir, 'ipam'),
    '--pin-root', pinRoot,
    '--admin', `127.0.0.1:${adminPort}`,
    '--log-format', 'text',
  ],
  { stdio: ['ignore', logFd, logFd] },
);
let agentExited = false;
agent.on('exit', (code) => {
  agentExited = true;
  if (!stopping) {
    process.stderr.write(`demo: the agent exited (code ${code}); its log:\n${fs.readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n')}\n`);
    void stop(1);
  }
});

let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  if (!agentExited) {
    agent.kill('SIGTERM');
    await new Promise((r) => agent.once('exit', r));
  }
  spawnSync(process.execPath, [path.join(root, 'bin/meshext.js'), 'cleanup', '--pin-root', pinRoot], { stdio: 'ignore' });
  if (!agentCgroupExisted) {
    try {
      fs.rmdirSync(agentCgroup);
    } catch {
      // Not there (the agent was not in the root cgroup) or still in use by another agent: leave it.
    }
  }
  // Clients that are still running (an nc waiting out -q) would keep the cgroup busy.
  for (let i = 0; i < 50; i++) {
    try {
      fs.rmdirSync(cgroup);
      break;
    } catch {
      try {
        fs.writeFileSync(path.join(cgroup, 'cgroup.kill'), '1');
      } catch {
        // Older kernels have no cgroup.kill; the retry loop still gives clients time to exit.
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await upstreams.close();
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

for (let i = 0; i < 150 && !(await getReady()); i++) {
  if (agentExited) break;
  await new Promise((r) => setTimeout(r, 200));
}
if (!(await getReady())) {
  process.stderr.write(`demo: the agent did not become ready; log in ${logFile}\n`);
  await stop(1);
}

// --- the seeds' client commands, run inside the demo cgroup -------------------------------------
function inCgroup(cmd) {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', `echo $$ > ${cgroup}/cgroup.procs && exec sh -c '${cmd.replace(/'/g, `'\\''`)}'`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out: out.trim(), err: err.trim() });
    });
  });
}

const grpcList = `${process.execPath} ${path.join(root, 'dist/src/demo/grpc-list.js')}`;
const checks = [
  { name: 'DNS', cmd: 'dig +short mes-tcp.svc.meshext.local', ok: (r) => /^242\./.test(r.out) },
  { name: 'TCP', cmd: "echo 'echo this' | nc -q 3 mes-tcp.svc.meshext.local 4242", ok: (r) => r.out === 'echo this' },
  { name: 'TCP+TLS', cmd: "echo 'echo this' | nc -q 3 mes-tcp-tls.svc.meshext.local 4243", ok: (r) => r.out === 'echo this' },
  { name: 'TCP+mTLS', cmd: "echo 'echo this' | nc -q 3 mes-tcp-mtls.svc.meshext.local 4244", ok: (r) => r.out === 'echo this' },
  { name: 'HTTP', cmd: 'curl -s http://mes-http.svc.meshext.local', ok: (r) => /"scheme": "http"/.test(r.out) },
  { name: 'HTTPS', cmd: 'curl -s http://mes-https.svc.meshext.local', ok: (r) => /"scheme": "https"/.test(r.out) },
  { name: 'gRPC', cmd: `${grpcList} mes-grpc.svc.meshext.local:9000`, ok: (r) => r.out.includes('meshext.demo.Echo') },
  { name: 'gRPCS', cmd: `${grpcList} mes-grpcs.svc.meshext.local:9001`, ok: (r) => r.out.includes('meshext.demo.Echo') },
];

const results = await Promise.all(checks.map(async (c) => ({ c, r: await inCgroup(c.cmd) })));
let failed = 0;
process.stdout.write('\nmeshext demo: each seed scenario through the agent\n\n');
for (const { c, r } of results) {
  const good = c.ok(r);
  if (!good) failed++;
  process.stdout.write(`  ${good ? 'ok  ' : 'FAIL'}  ${c.name.padEnd(9)} $ ${c.cmd.replace(process.execPath, 'node').replace(root + '/', '')}\n`);
  const shown = (r.out || r.err).split('\n').slice(0, 3).join('\n          ');
  if (shown) process.stdout.write(`          ${shown}\n`);
}
process.stdout.write(`\n${checks.length - failed} of ${checks.length} scenarios answered through meshext\n`);

if (once) await stop(failed ? 1 : 0);

process.stdout.write(`
The agent keeps running (log: ${path.relative(root, logFile)}).
  admin API:   http://127.0.0.1:${adminPort}/   (/ready /stats /stats/prometheus /config_dump /clusters /bpf)
  services:    node bin/meshext.js get mes --config examples/universal .state/demo/secrets --state-dir .state/demo/ipam
  try it:      sudo sh -c 'echo $$ > ${cgroup}/cgroup.procs; exec bash'   # a shell whose traffic goes through meshext
               curl -s http://mes-http.svc.meshext.local/get
Ctrl-C stops the agent and removes its BPF programs.
`);
