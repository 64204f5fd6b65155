/**
 * Listening sockets an agent shares with its successor during a restart (SO_REUSEPORT): both serve while the new
 * one starts, and the old one closes its own when it hands over. Node 20 cannot set SO_REUSEPORT, so the addon
 * makes the socket and Node serves it by fd (DNS over TCP, admin). The engine's listeners (proxy, outbound, DNS
 * over UDP) set it themselves.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import type net from 'node:net';
import { native } from '../native/addon.js';

/** The addon's error reshaped as Node's listen errors are (`code` EADDRINUSE etc.), so callers' messages hold. */
function nodeShaped(e: unknown, syscall: string, address: string, port: number): Error {
  const x = e as Error & { errnoName?: string; errno?: number };
  const code = x.errnoName ?? 'EINVAL';
  return Object.assign(new Error(`${syscall} ${code} ${address}:${port}`), { code, ...(x.errno ? { errno: -x.errno } : {}), syscall, address, port });
}

/** Listens `server` on address:port (TCP) in a port group shared with other meshext agents. */
export async function listenShared(server: net.Server, address: string, port: number, backlog = 511): Promise<void> {
  let fd: number;
  try {
    fd = native().sharedSocket('tcp', address, port, backlog);
  } catch (e) {
    throw nodeShaped(e, 'listen', address, port);
  }
  const ready = once(server, 'listening');
  server.listen({ fd });
  await ready;
}

/**
 * Takes the listening sockets kept open outside the agent: those systemd passed (socket activation, LISTEN_FDS)
 * and those a holder process passes over a unix socket (`meshext hold-sockets`, a Kubernetes sidecar). They stay
 * open while the agent restarts or crashes, so connections and queries queue instead of being refused. Every
 * listener whose address matches one uses it instead of binding (the engine's, DNS and admin alike).
 * `heldError` says why the holder could not be asked (the agent then binds its own).
 */
export function adoptInheritedSockets(holder?: string): { sockets: Array<{ type: string; address: string; port: number }>; fromSystemd: number; held: number; heldError?: string } {
  const addon = native();
  let held = 0;
  let heldError: string | undefined;
  if (holder) {
    try {
      held = addon.adoptHeldSockets(holder);
    } catch (e) {
      heldError = (e as Error).message;
    }
  }
  const sockets = addon.adoptListenFds().map(({ type, address, port }) => ({ type, address, port }));
  return { sockets, fromSystemd: sockets.length - held, held, ...(heldError ? { heldError } : {}) };
}

/**
 * Tells the holder at `path` that this agent stops for good (its pod is going away): the holder closes its copies
 * of the sockets and exits, so the connections waiting in them move to a successor's sockets at once instead of
 * waiting there for the whole drain. Returns why it could not, or undefined.
 */
export function releaseHeldSockets(path: string): string | undefined {
  try {
    native().releaseHeldSockets(path);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Holds listening sockets for agents (`meshext hold-sockets`): opens each (shared, SO_REUSEPORT) and hands copies to
 * every agent that connects to the unix socket `path`. Returns what it holds.
 */
export function holdSockets(path: string, listens: Array<{ type: 'tcp' | 'udp'; address: string; port: number }>): string[] {
  const addon = native();
  const fds = listens.map((l) => addon.sharedSocket(l.type, l.address, l.port, 4096));
  addon.serveHeldSockets(path, fds);
  return listens.map((l) => `${l.type}://${l.address}:${l.port}`);
}

const MIGRATE_REQ = '/proc/sys/net/ipv4/tcp_migrate_req';

/**
 * When a listener in a shared port group closes, the kernel resets the connections still waiting in its accept
 * queue unless net.ipv4.tcp_migrate_req is 1 (Linux 5.14+): then they move to another listener of the group, so
 * an agent handing over to its successor loses none. The setting is per network namespace and only affects
 * SO_REUSEPORT groups. Returns what it found and did; never throws.
 */
export function enableListenerMigration(): { state: 'on' | 'enabled' | 'unavailable'; reason?: string } {
  try {
    if (readFileSync(MIGRATE_REQ, 'utf8').trim() === '1') return { state: 'on' };
    writeFileSync(MIGRATE_REQ, '1\n');
    return { state: 'enabled' };
  } catch (e) {
    return { state: 'unavailable', reason: (e as Error).message };
  }
}
