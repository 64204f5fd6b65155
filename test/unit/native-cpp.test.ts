import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

// C++ test binaries, built with the addon by `npm run build:native`; each runs its cases over real socketpairs
// and ends with a line "<n> failure(s)".
const binaries = [
  // The HTTP/2 relay core (native/src/http2/relay.cc), against nghttp2 peers.
  { name: 'h2relay_test', what: 'native HTTP/2 relay' },
  // The protocol bridges (native/src/bridge: HTTP/1.1 over HTTP/2 and HTTP/2 over HTTP/1.1) and the chunked
  // codec they use, against an nghttp2 server, a hand-written HTTP/1.1 upstream and the HTTP/2 relay.
  { name: 'bridge_test', what: 'native protocol bridges' },
];

for (const { name, what } of binaries) {
  test(`${what}: every case of native/test/${name}.cc passes`, (t) => {
    const bin = join(process.cwd(), 'native/build', name);
    t.true(existsSync(bin), `${bin} missing: run \`npm run build:native\``);
    const r = spawnSync(bin, { encoding: 'utf8', timeout: 120_000 });
    t.log(r.stdout.trim());
    t.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
    t.regex(r.stdout, /^0 failure\(s\)$/m);
  });
}
