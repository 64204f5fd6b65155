/**
 * A source of resource documents. Files and the Kubernetes API are two sources of the same stream: each
 * hands the agent parsed and validated documents (the loader of src/resources), the agent merges them
 * in order (an earlier source wins a name clash) and builds one snapshot from the result.
 */
import type { LoadOptions, LoadResult } from '../resources/index.js';

export interface ResourceSource {
  /** `files` or `kubernetes`: names the source in logs, metrics and /config_dump. */
  readonly name: string;
  /** Starts watching; resolves once a first complete load can be served. `onChange` asks for a reload. */
  start(onChange: (reason: string) => void): Promise<void>;
  /** The documents as they are now, each validated alone (never throws on bad input). */
  load(opts: LoadOptions): Promise<LoadResult>;
  /** Called once a snapshot built from `load` is serving. */
  markLoaded(): void;
  /** The source's state as shown in /config_dump. */
  describe(): Record<string, unknown>;
  stop(): void;
}
