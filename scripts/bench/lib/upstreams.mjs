// Upstream servers the targets forward to. They are the same for every target, run in their own processes
// and are sized so they are not the bottleneck (direct runs show their ceiling).
import { writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, lastLines } from './procs.mjs';
import { freePort, waitForPort } from './net.mjs';
import { nginxHead, nginxHttpHead } from './targets.mjs';
import { GRPC_PATH, grpcResponseFrame } from './grpc.mjs';

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

/**
 * nginx upstream over TLS 1.3 (the test certificate) for the origination scenarios, one port each:
 * `https` HTTP/1.1 (ALPN http/1.1 only) and `h2` HTTP/2 (ALPN h2), both answering the small static body of
 * startNginxUpstream; `grpc` HTTP/2 reading each unary call to GRPC_PATH, then answering with a framed message and a
 * `grpc-status: 0` trailer (any other path or a non-gRPC content type gets 404/415). nginx answers from C,
 * far faster than any proxy in front of it; the direct rows show that ceiling. `counters()` reads nginx's
 * own counters (stub_status on a plaintext port; each read adds a connection and a request): requests, so a
 * scenario can check that every answer a client counted as a success came from the upstream and not from a
 * proxy's error path, and accepted connections, which show whether a proxy reuses its upstream connections.
 */
export async function startNginxTlsUpstream(dir, pki, { maxSeconds, workers = 1 }) {
  const d = join(dir, 'upstream-nginx-tls');
  mkdirSync(d, { recursive: true, mode: 0o755 });
  // The framed answer is sent from memory; nginx reads the quoted string as bytes (the frame holds none of
  // the characters a quoted string treats specially, which is checked here).
  const grpcAnswer = grpcResponseFrame().toString('latin1');
  if (/["\\$;{}]/.test(grpcAnswer)) throw new Error('the gRPC answer frame holds a byte nginx would read as syntax');
  const ports = { https: await freePort(), h2: await freePort(), grpc: await freePort(), status: await freePort() };
  const tls = [
    `    ssl_certificate ${pki.certFile};`,
    `    ssl_certificate_key ${pki.keyFile};`,
    '    ssl_protocols TLSv1.3;',
    '    ssl_session_cache shared:tls:10m;',
  ];
  const body = `default_type text/plain; return 200 "${HTTP_BODY.replace('\n', '\\n')}";`;
  const lines = [
    // Debian's nginx-light depends on the echo module (libnginx-mod-http-echo).
    ...nginxHead(d, workers, ['ngx_http_echo_module.so']),
    'http {',
    ...nginxHttpHead(d),
    '  server {', `    listen 127.0.0.1:${ports.https} ssl backlog=4096;`, ...tls, `    location / { ${body} }`, '  }',
    '  server {', `    listen 127.0.0.1:${ports.h2} ssl http2 backlog=4096;`, ...tls, `    location / { ${body} }`, '  }',
    '  server {',
    `    listen 127.0.0.1:${ports.grpc} ssl http2 backlog=4096;`,
    ...tls,
    '    location / { return 404; }',
    `    location = ${GRPC_PATH} {`,
    '      if ($content_type !~ "^application/grpc") { return 415; }',
    '      default_type application/grpc;',
    '      add_trailer grpc-status 0 always;',
    // Read the whole request before answering, as a gRPC server does: answering first makes nginx reset
    // the request stream (RST_STREAM NO_ERROR) after the response, which nginx's grpc_pass, reusing that
    // upstream connection, takes for a frame on an unknown stream and answers 502.
    '      echo_read_request_body;',
    `      echo -n "${grpcAnswer}";`,
    '    }',
    '  }',
    `  server { listen 127.0.0.1:${ports.status}; location / { stub_status; } }`,
    '}',
  ];
  const cfg = join(d, 'nginx.conf');
  writeFileSync(cfg, lines.join('\n') + '\n', 'latin1');
  const proc = startProcess('upstream-nginx-tls', 'nginx', ['-p', d, '-e', 'stderr', '-c', cfg], { maxSeconds });
  const alive = () => proc.child.exitCode === null;
  try {
    for (const p of Object.values(ports)) await waitForPort(p, 10000, 'nginx TLS upstream', alive);
  } catch (e) {
    throw new Error(`${e.message}; output: ${lastLines(proc.stderr, 5)}`);
  }
  return { ports, proc, counters: () => nginxCounters(ports.status) };
}

/** {connections (accepted), requests} of an nginx stub_status page on 127.0.0.1:port. */
export function nginxCounters(port) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        // "server accepts handled requests\n A H R"
        const m = /^\s*(\d+)\s+\d+\s+(\d+)\s*$/m.exec(text);
        if (!m) reject(new Error(`nginx stub_status: unexpected page: ${text.trim()}`));
        else resolve({ connections: Number(m[1]), requests: Number(m[2]) });
      });
    }).on('error', reject);
  });
}
