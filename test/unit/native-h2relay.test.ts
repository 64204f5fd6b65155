import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

// The HTTP/2 relay core (native/src/http2/relay.cc) is tested in C++ against nghttp2 peers over real
// socketpairs; the binary is built with the addon by `npm run build:native`.
test('native HTTP/2 relay: every case of native/test/h2relay_test.cc passes', (t) => {
  const bin = join(process.cwd(), 'native/build/h2relay_test');
  t.true(existsSync(bin), `${bin} missing: run \`npm run build:native\``);
  const r = spawnSync(bin, { encoding: 'utf8', timeout: 120_000 });
  t.log(r.stdout.trim());
  t.is(r.status, 0, `${r.stdout}\n${r.stderr}`);
  t.regex(r.stdout, /^0 failure\(s\)$/m);
});
