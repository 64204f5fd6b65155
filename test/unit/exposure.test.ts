// Which listen addresses are exposures, and how the warning describes who can reach them.
import test from 'ava';
import { exposureOf, isLoopback } from '../../src/exposure.js';

test('loopback addresses are no exposure; everything else says who can reach it', (t) => {
  for (const a of ['127.0.0.1', '127.10.20.30', '::1', '::ffff:127.0.0.1', 'localhost']) {
    t.true(isLoopback(a), a);
    t.is(exposureOf(a), undefined, a);
  }
  t.regex(exposureOf('0.0.0.0') ?? '', /every interface of this node/);
  t.regex(exposureOf('::') ?? '', /every interface of this node/);
  t.regex(exposureOf('169.254.20.11') ?? '', /link-local address 169\.254\.20\.11: .*every pod of this node/);
  t.regex(exposureOf('fe80::1') ?? '', /link-local/);
  t.regex(exposureOf('10.1.2.3') ?? '', /^10\.1\.2\.3: anything that can route to that address$/);
  t.false(isLoopback('128.0.0.1'));
  t.false(isLoopback('127.0.0.1.example'));
});
