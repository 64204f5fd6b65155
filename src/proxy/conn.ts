/** Per-connection bookkeeping shared by the proxy and the protocol handlers. */
import type net from 'node:net';
import type { CompiledService } from '../snapshot/types.js';

export interface ConnState {
  socket: net.Socket;
  service?: CompiledService;
  /** Set by protocol handlers: finish in-flight work, then close (called by Proxy.drain). */
  drain?: () => void;
}
