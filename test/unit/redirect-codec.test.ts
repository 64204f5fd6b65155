import test from 'ava';
import { LAYOUT, LAYOUT_VERSION, COUNTER_NAMES, FLAGS, decodeAddr, decodeConfig, encodeAddr, encodeConfig, encodePeerKey } from '../../src/redirect/codec.js';
import { native } from '../../src/native/addon.js';

test('codec layout matches the C header as compiled into the addon', (t) => {
  const n = native().layout();
  t.is(n.layoutVersion, LAYOUT_VERSION);
  t.is(n.counterCount, COUNTER_NAMES.length);
  for (const name of ['mx_addr', 'mx_config', 'mx_orig', 'mx_peer_key', 'mx_svc_key', 'mx_svc_access', 'mx_verdict_key', 'mx_denial_key', 'mx_denial'] as const) {
    t.is(n[name].size, LAYOUT[name].size, `${name} size`);
    t.deepEqual(n[name].fields, LAYOUT[name].fields, `${name} offsets`);
  }
  for (const [k, v] of Object.entries(FLAGS)) t.is(n.constants[k], v, k);
});

test('addresses are 16 bytes with IPv4 v4-mapped, and round-trip', (t) => {
  t.is(encodeAddr('242.1.2.3').toString('hex'), '00000000000000000000ffff f2010203'.replace(' ', ''));
  t.is(decodeAddr(encodeAddr('::ffff:242.1.2.3')), '242.1.2.3');
  t.is(decodeAddr(encodeAddr('2001:db8::1')), '2001:db8::1');
  t.throws(() => encodeAddr('242.1.2'), { message: /invalid IP address "242.1.2"/ });
});

test('peer key: Node-style mapped peer equals the IPv4 form; ports in network order', (t) => {
  const a = encodePeerKey('::ffff:127.0.0.1', 40000, 15001);
  t.deepEqual(a, encodePeerKey('127.0.0.1', 40000, 15001));
  t.is(a.readUInt16BE(16), 40000);
  t.is(a.readUInt16BE(18), 15001);
});

test('config round-trips', (t) => {
  const c = { vipNet: '242.0.0.0', vipPrefix: 8, proxyAddress: '127.0.0.1', proxyPort: 15001, dnsAddress: '127.0.0.1', dnsPort: 15053, flags: 7, heartbeatMaxAgeMs: 3000, heartbeatNs: 123n, agentNetnsCookie: 4096n };
  const b = encodeConfig(c);
  t.is(b.readUInt32BE(4), 0xff000000);
  t.deepEqual(decodeConfig(b), c);
});
