import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

// The protocol bridges (native/src/bridge: HTTP/1.1 over HTTP/2 and HTTP/2 over HTTP/1.1) and the chunked
// codec they use are tested in C++ over real socketpairs, against an nghttp2 server, a hand-written
// HTTP/1.1 upstream and the HTTP/2 relay; the binary is built with the addon by `npm run build:native`.
test('native protocol bridges: every case of native/test/bridge_test.cc passes', (t) => {
  const bin = join(process.cwd(), 'native/build/bridge_test');
  t.true(existsSync(bin), `${bin} missing: run \`npm run build:native\``);
  const r = spawnSync(bin, { encoding: 'utf8', timeout: 120_000 });
  t.log(r.stdout.trim());
  t.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
  t.regex(r.stdout, /^0 failure\(s\)$/m);
});
