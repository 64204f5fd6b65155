#!/usr/bin/env node
// Scenario: gRPC over TLS. h2load makes unary calls over h2c (prior knowledge) to the proxy (a grpc
// service): POST /meshext.bench.Echo/Call with a framed protobuf message, `content-type: application/grpc`
// and `te: trailers`. The proxy forwards them over verified TLS 1.3 with ALPN h2 to an nginx upstream that
// answers every call with a framed message and the `grpc-status: 0` trailer. HAProxy `proto h2` on the bind
// and `ssl verify required … alpn h2` on the server; nginx `grpc_pass grpcs://` with `grpc_ssl_verify on`.
// h2load sees only HTTP status 200, so each success is also checked for its message bytes (a trailers-only
// error has none), and a grpc-js probe checks the message and grpc-status before each run.
import { parseBenchArgs } from './lib/cli.mjs';
import { ORIGINATION_OPTIONS, ORIGINATION_USAGE, runOrigination } from './lib/origination.mjs';

const opts = parseBenchArgs(process.argv.slice(2), { ...ORIGINATION_OPTIONS, clients: { type: 'string', default: '10' }, streams: { type: 'string', default: '10' } },
  `${ORIGINATION_USAGE}\n  --clients N         h2load connections (default 10)\n  --streams N         concurrent calls per connection (default 10)`);

await runOrigination({
  id: 'grpc-tls',
  title: (s) => `gRPC over TLS (h2c in, verified TLS 1.3 + ALPN h2 out), unary calls, h2load -t1 -c${opts.clients} -m${opts.streams} -D${s}: calls/s (higher is better), latency and proxy CPU per call (lower is better)`,
  protocol: 'grpc',
  opts,
  load: { clients: Number(opts.clients), streams: Number(opts.streams) },
});
