/** The per-file input limits, defaults in one place. */
import type { LoadLimits, LoadOptions } from './types.js';

/**
 * A Kubernetes ConfigMap holds at most 1 MiB, so 4 MiB leaves host installs room for large generated files
 * while the parse of a file at the limit stays within tens of MB (docs/reliability.md has the figures).
 * A MeshExternalService is about 60 tokens, so 200,000 per document leaves room for a `kind: List` of
 * thousands while a document's parse stays under about 100 MB.
 * Real resources nest 6 to 8 levels deep; 64 leaves free-form `extension.config` plenty.
 */
export const DEFAULT_LOAD_LIMITS: Readonly<LoadLimits> = Object.freeze({
  maxFileBytes: 4 * 1024 * 1024,
  maxDocuments: 10_000,
  maxDocumentTokens: 200_000,
  maxDepth: 64,
  maxAliasCount: 100,
});

/** The limits in force for these options. */
export function loadLimits(opts: LoadOptions = {}): LoadLimits {
  return { ...DEFAULT_LOAD_LIMITS, ...opts.limits };
}

/** `4194304` → `4194304 bytes (4 MiB)`. */
export function describeBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n} bytes (${n / (1024 * 1024)} MiB)`;
  if (n >= 1024 && n % 1024 === 0) return `${n} bytes (${n / 1024} KiB)`;
  return `${n} bytes`;
}
