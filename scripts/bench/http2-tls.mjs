#!/usr/bin/env node
// Scenario: HTTP/2 over TLS. h2load speaks h2c (prior knowledge) to the proxy (an http2 service), which
// forwards each stream to an nginx HTTP/2 upstream over verified TLS 1.3 with ALPN h2. HAProxy: `proto h2`
// on the bind, `ssl verify required … alpn h2` on the server. nginx cannot proxy plain HTTP/2 to an
// upstream (proxy_pass speaks HTTP/1.x only); its one HTTP/2 upstream client is the gRPC module, and
// `grpc_pass grpcs://` forwards any h2 request, so that is its row here (as in http2.mjs).
import { parseBenchArgs } from './lib/cli.mjs';
import { ORIGINATION_OPTIONS, ORIGINATION_USAGE, runOrigination } from './lib/origination.mjs';

const opts = parseBenchArgs(process.argv.slice(2), { ...ORIGINATION_OPTIONS, clients: { type: 'string', default: '10' }, streams: { type: 'string', default: '10' } },
  `${ORIGINATION_USAGE}\n  --clients N         h2load connections (default 10)\n  --streams N         concurrent streams per connection (default 10)`);

await runOrigination({
  id: 'http2-tls',
  title: (s) => `HTTP/2 over TLS (h2c in, verified TLS 1.3 + ALPN h2 out), h2load -t1 -c${opts.clients} -m${opts.streams} -D${s}: requests/s (higher is better), latency and proxy CPU per request (lower is better)`,
  protocol: 'http2',
  opts,
  load: { clients: Number(opts.clients), streams: Number(opts.streams) },
  notes: ['nginx cannot proxy plain HTTP/2 to an upstream; its row uses grpc_pass grpcs:// (its only HTTP/2 upstream client), which forwards any h2 request'],
});
