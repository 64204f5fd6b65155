/** Per-connection bookkeeping shared by the proxy and the protocol handlers. */
import type net from 'node:net';
import type { CompiledService } from '../snapshot/types.js';
import type { RelayedConnection } from './fastpath.js';

export interface ConnState {
  /** The client's Node socket; none for a connection the engine accepted and relays. */
  socket?: net.Socket;
  service?: CompiledService;
  /** Set by protocol handlers: finish in-flight work, then close (called by Proxy.drain). */
  drain?: () => void;
  /** Set once the native engine owns the connection: `socket` is destroyed, this closes the connection. */
  relayed?: RelayedConnection;
  /** The proxy's end-of-connection accounting; a relayed connection calls it when the engine reports the close. */
  ended?: () => void;
}
