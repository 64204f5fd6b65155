// The things under test, each started from a config generated into a temp dir and listening on 127.0.0.1:
//   direct  - no proxy: clients talk to the upstream (and originate TLS themselves in the TLS scenario);
//   haproxy - Debian's HAProxy in the foreground, logs off;
//   nginx   - Debian's nginx (stream module for TCP/TLS, http module for HTTP/1.1 and HTTP/2), logs off;
//   meshext - this project's agent (`meshext run` with redirect and DNS off, a Dataplane outbound per service);
//   meshext-vip - the same agent with its eBPF redirect and DNS on for a cgroup of its own: clients run in
//             that cgroup and reach each service by name (its VIP), as workloads on a node do (vip.mjs).
//   meshext-vip-permissions - meshext-vip with the permission set of permissions.mjs (1,000 allow rules, 1,000
//             workload cgroups with identities) in a forbidding mesh; clients run as one of those identities.
// A service is {name, protocol: 'tcp'|'http'|'http2'|'grpc', upstreamPort, tls?: pki from tls.mjs}. With tls
// every proxy opens TLS 1.3 to the upstream and verifies its certificate against the CA and the server name
// (HTTP/2 and gRPC upstreams are offered ALPN h2), and keeps upstream connections alive between requests.
import { mkdirSync, writeFileSync, existsSync, chmodSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, treeCpuMs, treeRssKiB, lastLines, NOFILE } from './procs.mjs';
import { freePort, waitForPort, waitForHttp200 } from './net.mjs';
import { policySet } from './policies.mjs';
import { IDENTITIES, identityCgroup, permissionSet } from './permissions.mjs';

export const REPO = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const STARTUP_MS = 15000;

/** Start one target for the given services. Returns a handle; throws with the target's own output on failure. */
export async function startTarget(name, services, { dir, peerWorkers = 1, dataThreads = 1, maxSeconds }) {
  const tdir = join(dir, name);
  mkdirSync(tdir, { recursive: true });
  // nginx workers drop to `nobody` and must still reach their temp paths.
  chmodSync(dir, 0o755);
  chmodSync(tdir, 0o755);
  switch (name) {
    case 'direct':
      return direct(services);
    case 'haproxy':
      return haproxy(services, tdir, peerWorkers, maxSeconds);
    case 'nginx':
      return nginx(services, tdir, peerWorkers, maxSeconds);
    case 'meshext':
      return meshext(services, tdir, dataThreads, maxSeconds);
    case 'meshext-vip':
      return meshext(services, tdir, dataThreads, maxSeconds, { vip: true });
    case 'meshext-policies':
      return meshext(services, tdir, dataThreads, maxSeconds, { policies: true });
    case 'meshext-vip-permissions':
      return meshext(services, tdir, dataThreads, maxSeconds, { vip: true, permissions: true });
    default:
      throw new Error(`unknown target ${name}`);
  }
}

function handle(name, { ports, proc, peer, clientTls = () => undefined, hosts = {}, wrap = (cmd, args) => [cmd, args], stop }) {
  return {
    name,
    peer,
    direct: name === 'direct',
    /** Port a client connects to for a service. */
    port: (svc) => ports[svc],
    /** Host a client connects to for a service: 127.0.0.1, or the service's name on the VIP path. */
    host: (svc) => hosts[svc] ?? '127.0.0.1',
    /** [cmd, args] that run a client where this target expects its clients (meshext-vip: in its cgroup). */
    wrap,
    /** CA file when the client itself must speak TLS for a service (direct baseline), else undefined. */
    clientTls,
    /** Resident memory of the proxy's processes in KiB (NaN for direct). */
    rss: () => (proc ? treeRssKiB(proc) : NaN),
    /** CPU time (user + system) the proxy's processes have used, in ms (NaN for direct). */
    cpuMs: () => (proc ? treeCpuMs(proc) : NaN),
    proc,
    stop: stop ?? (() => (proc ? proc.stop() : Promise.resolve(0))),
  };
}

function direct(services) {
  const ports = Object.fromEntries(services.map((s) => [s.name, s.upstreamPort]));
  const tlsBy = Object.fromEntries(services.filter((s) => s.tls).map((s) => [s.name, s.tls.caFile]));
  return handle('direct', { ports, peer: false, clientTls: (svc) => tlsBy[svc] });
}

async function listenPorts(services) {
  const ports = {};
  for (const s of services) ports[s.name] = await freePort();
  return ports;
}

async function ready(name, proc, ports, check) {
  const alive = () => proc.child.exitCode === null && proc.child.signalCode === null;
  try {
    if (check) await check(alive);
    for (const p of Object.values(ports)) await waitForPort(p, STARTUP_MS, name, alive);
  } catch (e) {
    await proc.stop();
    throw new Error(`${e.message}; output: ${lastLines(proc.stderr + proc.stdout, 6) || '(none)'}`);
  }
}

async function haproxy(services, dir, threads, maxSeconds) {
  const ports = await listenPorts(services);
  const lines = [
    'global',
    `  maxconn ${Math.floor(NOFILE / 2) - 100}`,
    `  nbthread ${threads}`,
    '  tune.ssl.default-dh-param 2048',
    'defaults',
    '  timeout connect 5s',
    '  timeout client 120s',
    '  timeout server 120s',
  ];
  for (const s of services) {
    const mode = s.protocol === 'tcp' ? 'tcp' : 'http';
    const h2 = s.protocol === 'http2' || s.protocol === 'grpc';
    let server = `  server s1 127.0.0.1:${s.upstreamPort}`;
    if (s.tls) {
      server += ` ssl verify required ca-file ${s.tls.caFile} verifyhost ${s.tls.serverName} sni str(${s.tls.serverName})`;
      server += ' ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3';
      // Over TLS the HTTP version is chosen by ALPN (nginx answers h2 only to a client that offers it).
      if (h2) server += ' alpn h2';
      else if (mode === 'http') server += ' alpn http/1.1';
    } else if (h2) {
      server += ' proto h2';
    }
    lines.push(`frontend f_${s.name}`, `  mode ${mode}`, `  bind 127.0.0.1:${ports[s.name]}${h2 ? ' proto h2' : ''}`, `  default_backend b_${s.name}`);
    lines.push(`backend b_${s.name}`, `  mode ${mode}`);
    // Over TLS, idle server connections are shared by all clients, as nginx's keepalive pool is (HAProxy's
    // default `safe` sends each client connection's first request over a connection of its own: a TLS
    // handshake per new client connection). Plaintext backends keep the default the older scenarios used.
    if (mode === 'http' && s.tls) lines.push('  http-reuse always');
    lines.push(server);
  }
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(cfg, lines.join('\n') + '\n');
  const proc = startProcess('haproxy', 'haproxy', ['-db', '-f', cfg], { maxSeconds });
  await ready('haproxy', proc, ports);
  return handle('haproxy', { ports, proc, peer: true });
}

/** nginx main-context lines shared by the proxy and the HTTP upstream; `modules`: more .so files to load. */
export function nginxHead(dir, workers, modules = []) {
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d), { recursive: true, mode: 0o777 });
  return [
    'daemon off;',
    'master_process on;',
    `worker_processes ${workers};`,
    `worker_rlimit_nofile ${NOFILE};`,
    `pid ${join(dir, 'nginx.pid')};`,
    'error_log stderr crit;',
    'load_module /usr/lib/nginx/modules/ngx_stream_module.so;',
    ...modules.map((m) => `load_module /usr/lib/nginx/modules/${m};`),
    `events { worker_connections ${NOFILE - 100}; }`,
  ];
}

/** http{} lines shared by every nginx http context. */
export function nginxHttpHead(dir) {
  return [
    '  access_log off;',
    '  keepalive_requests 10000000;',
    '  keepalive_timeout 120s;',
    `  client_body_temp_path ${join(dir, 'body')};`,
    `  proxy_temp_path ${join(dir, 'proxy')};`,
    `  fastcgi_temp_path ${join(dir, 'fastcgi')};`,
    `  uwsgi_temp_path ${join(dir, 'uwsgi')};`,
    `  scgi_temp_path ${join(dir, 'scgi')};`,
  ];
}

async function nginx(services, dir, workers, maxSeconds) {
  const ports = await listenPorts(services);
  const lines = nginxHead(dir, workers);
  const stream = services.filter((s) => s.protocol === 'tcp');
  const http = services.filter((s) => s.protocol !== 'tcp');
  if (stream.length) {
    lines.push('stream {');
    for (const s of stream) {
      lines.push('  server {', `    listen 127.0.0.1:${ports[s.name]} backlog=4096;`, `    proxy_pass 127.0.0.1:${s.upstreamPort};`);
      if (s.tls) {
        lines.push(
          '    proxy_ssl on;',
          '    proxy_ssl_protocols TLSv1.3;',
          '    proxy_ssl_verify on;',
          `    proxy_ssl_trusted_certificate ${s.tls.caFile};`,
          `    proxy_ssl_name ${s.tls.serverName};`,
          '    proxy_ssl_server_name on;',
        );
      }
      lines.push('  }');
    }
    lines.push('}');
  }
  if (http.length) {
    lines.push('http {', ...nginxHttpHead(dir));
    for (const s of http) {
      lines.push(`  upstream u_${s.name} { server 127.0.0.1:${s.upstreamPort}; keepalive 128; keepalive_requests 10000000; }`);
      if (s.protocol === 'http2' || s.protocol === 'grpc') {
        // nginx speaks HTTP/2 to an upstream only through the gRPC module; grpc_pass forwards any h2 request
        // (over TLS it offers ALPN h2).
        const tls = s.tls ? nginxUpstreamTls('grpc', s.tls) : [];
        lines.push(
          '  server {',
          `    listen 127.0.0.1:${ports[s.name]} http2 backlog=4096;`,
          `    location / { grpc_pass ${s.tls ? 'grpcs' : 'grpc'}://u_${s.name};${tls.map((l) => ` ${l}`).join('')} }`,
          '  }',
        );
      } else {
        const tls = s.tls ? nginxUpstreamTls('proxy', s.tls) : [];
        lines.push(
          '  server {',
          `    listen 127.0.0.1:${ports[s.name]} backlog=4096;`,
          `    location / { proxy_pass ${s.tls ? 'https' : 'http'}://u_${s.name}; proxy_http_version 1.1; proxy_set_header Connection "";${tls.map((l) => ` ${l}`).join('')} }`,
          '  }',
        );
      }
    }
    lines.push('}');
  }
  const cfg = join(dir, 'nginx.conf');
  writeFileSync(cfg, lines.join('\n') + '\n');
  const proc = startProcess('nginx', 'nginx', ['-p', dir, '-e', 'stderr', '-c', cfg], { maxSeconds });
  await ready('nginx', proc, ports);
  return handle('nginx', { ports, proc, peer: true });
}

/** nginx directives (module prefix `proxy` or `grpc`) for verified TLS 1.3 to an upstream, sessions reused. */
function nginxUpstreamTls(prefix, tls) {
  return [
    `${prefix}_ssl_protocols TLSv1.3;`,
    `${prefix}_ssl_verify on;`,
    `${prefix}_ssl_trusted_certificate ${tls.caFile};`,
    `${prefix}_ssl_name ${tls.serverName};`,
    `${prefix}_ssl_server_name on;`,
    `${prefix}_ssl_session_reuse on;`,
  ];
}

/**
 * Universal YAML for meshext: one MeshExternalService per service (matched on its port in `ports`) plus,
 * unless `outbound` is false, a Dataplane with an outbound listener on that port for each.
 */
export function meshextConfig(services, ports, { outbound = true } = {}) {
  const docs = [];
  for (const s of services) {
    const d = [
      'type: MeshExternalService',
      `name: ${s.name}`,
      'mesh: default',
      'spec:',
      '  match:',
      '    type: HostnameGenerator',
      `    port: ${ports[s.name]}`,
      `    protocol: ${s.protocol}`,
      '  endpoints:',
      `  - address: 127.0.0.1`,
      `    port: ${s.upstreamPort}`,
    ];
    if (s.tls) {
      d.push(
        '  tls:',
        '    enabled: true',
        '    version:',
        '      min: TLS13',
        '      max: TLS13',
        '    verification:',
        '      mode: Secured',
        `      serverName: ${s.tls.serverName}`,
        '      caCert:',
        '        inlineString: |',
        ...s.tls.caPem.trim().split('\n').map((l) => `          ${l}`),
      );
    }
    docs.push(d.join('\n'));
  }
  if (!outbound) return docs.join('\n---\n') + '\n';
  const dp = ['type: Dataplane', 'name: bench', 'mesh: default', 'networking:', '  address: 127.0.0.1', '  outbound:'];
  for (const s of services) dp.push(`  - port: ${ports[s.name]}`, `    backendRef: {kind: MeshExternalService, name: ${s.name}}`);
  docs.push(dp.join('\n'));
  return docs.join('\n---\n') + '\n';
}

/** Why meshext cannot run yet, or undefined when its `run` command is built. */
export function meshextMissing() {
  const run = join(REPO, 'dist/src/cli/commands/run.js');
  if (!existsSync(run)) return `meshext not built: ${run} does not exist (merge main and run \`npm run build:ts\`)`;
  return undefined;
}

async function meshext(services, dir, dataThreads, maxSeconds, { vip = false, policies = false, permissions = false } = {}) {
  const missing = meshextMissing();
  if (missing) throw new Error(missing);
  const name = permissions ? 'meshext-vip-permissions' : vip ? 'meshext-vip' : policies ? 'meshext-policies' : 'meshext';
  const ports = await listenPorts(services);
  const admin = await freePort();
  const transparent = await freePort(); // the eBPF-fed listener: unused unless vip, but must not clash
  const cfgDir = join(dir, 'config');
  const stateDir = join(dir, 'state');
  mkdirSync(cfgDir, { recursive: true });
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(join(cfgDir, 'bench.yaml'), meshextConfig(services, ports, { outbound: !vip }));
  if (policies) writeFileSync(join(cfgDir, 'policies.yaml'), policySet(dir));
  if (permissions) writeFileSync(join(cfgDir, 'permissions.yaml'), permissionSet('bench-node'));
  const redirect = vip ? await vipRedirect(permissions ? { identities: IDENTITIES } : {}) : undefined;
  // MESHEXT_BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") reaches only the agent: Node
  // refuses --cpu-prof in NODE_OPTIONS, and that would profile the clients too.
  const nodeArgs = (process.env.MESHEXT_BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const args = [
    ...nodeArgs, join(REPO, 'bin/meshext.js'), 'run', '--config', cfgDir,
    ...(redirect ? redirect.args : ['--redirect', 'off', '--dns', 'off']),
    ...(permissions ? ['--node-name', 'bench-node'] : []),
    '--admin', `127.0.0.1:${admin}`, '--state-dir', stateDir, '--log-format', 'json',
    '--proxy-port', String(transparent), '--log-level', 'warn', '--drain-time', '0s',
    '--data-threads', String(dataThreads),
    // The policy set's access log is written in the target's own directory.
    ...(policies ? ['--access-log-dir', dir] : []),
  ];
  const proc = startProcess(name, process.execPath, args, { maxSeconds, cwd: REPO });
  if (!redirect) {
    await ready(name, proc, ports, (alive) => waitForHttp200(admin, '/ready', STARTUP_MS, name, alive));
    return { ...handle(name, { ports, proc, peer: false }), stats: () => httpGet(admin, '/stats/prometheus'), dir };
  }
  const stop = async () => {
    const code = await proc.stop();
    redirect.remove();
    return code;
  };
  try {
    // Nothing listens on the service ports: clients reach the transparent listener through the redirect.
    await ready(name, proc, {}, (alive) => waitForHttp200(admin, '/ready', STARTUP_MS, name, alive));
    const dump = JSON.parse(await httpGet(admin, '/config_dump'));
    const hosts = {};
    for (const s of services) {
      const svc = dump.services?.find((d) => d.name === s.name);
      if (!svc?.hostnames?.length || !svc.vip) throw new Error(`${name}: service ${s.name} has no VIP or hostname in /config_dump`);
      hosts[s.name] = svc.hostnames[0];
    }
    return { ...handle(name, { ports, proc, peer: false, hosts, wrap: redirect.wrap, stop }), pinRoot: redirect.pinRoot };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * A cgroup and a bpffs pin root of this run's own for meshext-vip: the agent's arguments, `wrap` to run a
 * client inside the cgroup, and `remove()`, which detaches the agent's links and removes both. Only run
 * inside the network namespace of vip.mjs, where the VIP range is unroutable: a connect the redirect missed
 * fails there instead of leaving the machine.
 */
async function vipRedirect({ identities = 0 } = {}) {
  if (!process.env.MESHEXT_BENCH_NETNS) throw new Error('meshext-vip runs only inside the network namespace vip.mjs makes (--vip)');
  const { findCgroup2Mount } = await import(join(REPO, 'dist/src/redirect/index.js'));
  const cg2 = findCgroup2Mount();
  const id = randomBytes(4).toString('hex');
  const cgroup = join(cg2, `meshext-bench-${id}`);
  const pinRoot = `/sys/fs/bpf/meshext-bench-${id}`;
  // The agent moves itself into <cgroup2>/meshext.agent; remove that afterwards only if this run made it.
  const agentCgroup = join(cg2, 'meshext.agent');
  const agentCgroupExisted = existsSync(agentCgroup);
  mkdirSync(cgroup);
  // Workload cgroups with identities (meshext-vip-permissions): the clients run in the first.
  for (let i = 0; i < identities; i++) mkdirSync(join(cgroup, identityCgroup(i)), { recursive: true });
  const clientCgroup = identities ? join(cgroup, identityCgroup(0)) : cgroup;
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    try {
      execFileSync(process.execPath, [join(REPO, 'bin/meshext.js'), 'cleanup', '--pin-root', pinRoot], { stdio: 'ignore', timeout: 30000 });
    } catch {
      /* nothing pinned (the agent did not get that far) */
    }
    rmSync(pinRoot, { recursive: true, force: true });
    for (const dir of agentCgroupExisted ? [cgroup] : [cgroup, agentCgroup]) {
      try {
        rmCgroupTree(dir);
      } catch {
        /* still in use (another agent's) or already gone */
      }
    }
  };
  // Also when the runner exits on an error or a signal (procs.mjs has killed the agent by then).
  process.once('exit', remove);
  return {
    args: ['--redirect', 'on', '--cgroup', cgroup, '--pin-root', pinRoot, '--dns', 'on', '--dns-port', String(await freePort()), '--ip-family-mode', 'ipv4'],
    wrap: (cmd, args) => ['sh', ['-c', `echo $$ > '${clientCgroup}/cgroup.procs' && exec "$@"`, 'sh', cmd, ...args]],
    remove,
    pinRoot,
  };
}

/** Removes a cgroup and its sub-cgroups (no process left in them), deepest first. */
function rmCgroupTree(dir) {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmCgroupTree(join(dir, e.name));
  rmdirSync(dir);
}

function httpGet(port, path) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`GET ${path}: HTTP ${res.statusCode}`))));
    }).on('error', reject);
  });
}
