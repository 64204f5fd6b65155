// Upstream servers the targets forward to. They are the same for every target, run in their own processes
// and are sized so they are not the bottleneck (direct runs show their ceiling).
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, lastLines } from './procs.mjs';
import { freePort, waitForPort } from './net.mjs';
import { nginxHead, nginxHttpHead } from './targets.mjs';

export const CLIENTS = fileURLToPath(new URL('../clients/', import.meta.url));

/**
 * Node upstream (clients/upstream.mjs) with the given roles: sink, echo, once, tls-sink, tls-once.
 * Returns {ports: {role: port}, proc}.
 */
export async function startNodeUpstream(roles, { pki, maxSeconds, onceSize = 64 }) {
  const ports = {};
  const args = [join(CLIENTS, 'upstream.mjs'), '--once-size', String(onceSize)];
  for (const r of roles) {
    ports[r] = await freePort();
    args.push(`--${r}`, String(ports[r]));
  }
  if (pki) args.push('--cert', pki.certFile, '--key', pki.keyFile);
  const proc = startProcess('upstream', process.execPath, args, { maxSeconds });
  const alive = () => proc.child.exitCode === null;
  try {
    for (const p of Object.values(ports)) await waitForPort(p, 10000, 'node upstream', alive);
  } catch (e) {
    throw new Error(`${e.message}; output: ${lastLines(proc.stderr, 5)}`);
  }
  return { ports, proc };
}

export const HTTP_BODY = 'hello from the meshext bench upstream\n';

/**
 * nginx upstream answering every request with a small static body: HTTP/1.1 on `http1`, h2c (prior
 * knowledge) on `h2c`. One worker keeps it off the proxies' CPU; nginx's `return` is far faster than any proxy.
 */
export async function startNginxUpstream(dir, { maxSeconds, workers = 1 }) {
  const d = join(dir, 'upstream-nginx');
  mkdirSync(d, { recursive: true, mode: 0o755 });
  const ports = { http1: await freePort(), h2c: await freePort() };
  const body = `default_type text/plain; return 200 "${HTTP_BODY.replace('\n', '\\n')}";`;
  const lines = [
    ...nginxHead(d, workers),
    'http {',
    ...nginxHttpHead(d),
    `  server { listen 127.0.0.1:${ports.http1} backlog=4096; location / { ${body} } }`,
    `  server { listen 127.0.0.1:${ports.h2c} http2 backlog=4096; location / { ${body} } }`,
    '}',
  ];
  const cfg = join(d, 'nginx.conf');
  writeFileSync(cfg, lines.join('\n') + '\n');
  const proc = startProcess('upstream-nginx', 'nginx', ['-p', d, '-e', 'stderr', '-c', cfg], { maxSeconds });
  const alive = () => proc.child.exitCode === null;
  try {
    for (const p of Object.values(ports)) await waitForPort(p, 10000, 'nginx upstream', alive);
  } catch (e) {
    throw new Error(`${e.message}; output: ${lastLines(proc.stderr, 5)}`);
  }
  return { ports, proc };
}

/**
 * TLS 1.3 terminator in front of plaintext upstream ports: nginx stream with the test certificate, so the
 * upstream side of TLS runs in C and is not what limits the proxies. `backends` maps a role to a port;
 * returns {ports: {role: tlsPort}, proc}.
 */
export async function startNginxTlsFront(dir, pki, backends, { maxSeconds, workers = 1 }) {
  const d = join(dir, 'upstream-tls');
  mkdirSync(d, { recursive: true, mode: 0o755 });
  const ports = {};
  const lines = [...nginxHead(d, workers), 'stream {'];
  for (const [role, port] of Object.entries(backends)) {
    ports[role] = await freePort();
    lines.push(
      '  server {',
      `    listen 127.0.0.1:${ports[role]} ssl backlog=4096;`,
      `    ssl_certificate ${pki.certFile};`,
      `    ssl_certificate_key ${pki.keyFile};`,
      '    ssl_protocols TLSv1.3;',
      '    ssl_session_cache shared:tls:10m;',
      `    proxy_pass 127.0.0.1:${port};`,
      '  }',
    );
  }
  lines.push('}');
  const cfg = join(d, 'nginx.conf');
  writeFileSync(cfg, lines.join('\n') + '\n');
  const proc = startProcess('upstream-tls', 'nginx', ['-p', d, '-e', 'stderr', '-c', cfg], { maxSeconds });
  const alive = () => proc.child.exitCode === null;
  try {
    for (const p of Object.values(ports)) await waitForPort(p, 10000, 'nginx TLS upstream', alive);
  } catch (e) {
    throw new Error(`${e.message}; output: ${lastLines(proc.stderr, 5)}`);
  }
  return { ports, proc };
}
