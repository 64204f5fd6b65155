import test from 'ava';
import { Redirector } from '../../src/redirect/index.js';

const base = { vipCidr: '242.0.0.0/8', proxy: { address: '127.0.0.1', port: 15001 } };

for (const [title, opts, msg] of [
  ['bad CIDR', { ...base, vipCidr: '242.0.0.0/33' }, /vipCidr: expected an IPv4 CIDR such as 242.0.0.0\/8, got "242.0.0.0\/33"/],
  ['IPv6 CIDR', { ...base, vipCidr: 'fd00::/8' }, /vipCidr: only IPv4 VIP CIDRs are supported/],
  ['/0', { ...base, vipCidr: '0.0.0.0/0' }, /prefix \/0 would capture all IPv4 traffic/],
  ['proxy port', { ...base, proxy: { address: '127.0.0.1', port: 70000 } }, /proxy.port: expected a port 1-65535, got 70000/],
  ['proxy address', { ...base, proxy: { address: '127.1', port: 1 } }, /proxy.address: expected an IP address, got "127.1"/],
  ['nameserver', { ...base, dns: { address: '127.0.0.1', port: 15053, nameservers: ['10.0.0.1', 'dns.google'] } }, /dns.nameservers\[1\]: expected an IP address, got "dns.google"/],
] as const) {
  test(`start rejects ${title} before touching the kernel`, async (t) => {
    const err = await t.throwsAsync(Redirector.start({ ...opts, pinRoot: '/nonexistent/pins' } as never), { message: msg });
    t.is((err as { code?: string }).code, 'MESHEXT_E_BPF_ARG');
  });
}
