#!/usr/bin/env node
// Scenario: HTTPS origination. wrk speaks HTTP/1.1 with keep-alive in plaintext to the proxy (an http
// service), which sends each request over verified TLS 1.3 to an nginx HTTPS upstream and keeps those
// connections alive: HAProxy `ssl verify required ca-file … verifyhost … sni …` with http-reuse, nginx
// `proxy_pass https://` with `proxy_ssl_verify on`, SNI and an upstream `keepalive` pool, meshext
// `spec.tls` (mode Secured, caCert inline, serverName).
import { parseBenchArgs } from './lib/cli.mjs';
import { ORIGINATION_OPTIONS, ORIGINATION_USAGE, runOrigination } from './lib/origination.mjs';

const opts = parseBenchArgs(process.argv.slice(2), { ...ORIGINATION_OPTIONS, connections: { type: 'string', default: '50' } },
  `${ORIGINATION_USAGE}\n  --connections N     wrk connections (default 50)`);

await runOrigination({
  id: 'https-origination',
  title: (s) => `HTTPS origination (HTTP/1.1 in, verified TLS 1.3 out), wrk -t1 -c${opts.connections} -d${s}s: requests/s (higher is better), latency and proxy CPU per request (lower is better)`,
  protocol: 'http',
  opts,
  load: { connections: opts.connections },
});
