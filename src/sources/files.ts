/** Resource files and directories (`--config`) as a source: read by the loader, watched for changes. */
import { loadResources, type LoadOptions, type LoadResult } from '../resources/index.js';
import { ConfigWatcher } from '../agent/watch.js';
import type { ResourceSource } from './source.js';

export interface FileSourceOptions {
  paths: string[];
  debounceMs: number;
  rescanIntervalMs: number;
  onError: (err: Error) => void;
}

export class FileSource implements ResourceSource {
  readonly name = 'files';
  private watcher: ConfigWatcher | undefined;

  constructor(private readonly opts: FileSourceOptions) {}

  /** Files are readable at once: resolves immediately after the watch starts. */
  async start(onChange: (reason: string) => void): Promise<void> {
    this.watcher = new ConfigWatcher({ ...this.opts, onChange });
    this.watcher.start();
  }

  load(opts: LoadOptions): Promise<LoadResult> {
    this.watcher?.beginLoad();
    return loadResources(this.opts.paths, opts);
  }

  markLoaded(): void {
    this.watcher?.markLoaded();
  }

  describe(): Record<string, unknown> {
    return { source: this.name, paths: this.opts.paths };
  }

  stop(): void {
    this.watcher?.stop();
  }
}
