/**
 * The one place where sockets towards upstream nameservers are created. When the agent captures DNS with
 * eBPF, its own upstream traffic must bypass the capture; today that is done by cgroup exemption, and a
 * SO_MARK (or similar) hook belongs here so every upstream socket gets it.
 */
import dgram from 'node:dgram';
import net, { isIPv6 } from 'node:net';

export interface UpstreamSocketHooks {
  /** Called on every upstream socket before use (e.g. to set SO_MARK through the addon). */
  onUdpSocket?: (s: dgram.Socket) => void;
  onTcpSocket?: (s: net.Socket) => void;
}

let hooks: UpstreamSocketHooks = {};

/** Installs process-wide hooks applied to every upstream socket created afterwards. */
export function setUpstreamSocketHooks(h: UpstreamSocketHooks): void {
  hooks = h;
}

/** A fresh UDP socket for one upstream query (the kernel picks a random ephemeral source port at connect). */
export function createUpstreamUdpSocket(address: string): dgram.Socket {
  const s = dgram.createSocket({ type: isIPv6(address.replace(/%.*$/, '')) ? 'udp6' : 'udp4' });
  hooks.onUdpSocket?.(s);
  return s;
}

/** A TCP connection to an upstream nameserver. */
export function connectUpstreamTcp(address: string, port: number): net.Socket {
  const s = new net.Socket();
  hooks.onTcpSocket?.(s);
  s.setNoDelay(true);
  return s.connect({ host: address, port });
}
