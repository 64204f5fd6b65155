/**
 * Kuma's own custom resources and Secrets, listed and watched in the Kubernetes API.
 *
 * - One informer of `@kubernetes/client-node` per kind: the library keeps the cache, resourceVersion,
 *   bookmarks and the re-list after `410 Gone`. It stops on any other error; restarting it with a capped
 *   back-off is the one thing done here. Its cache survives errors, so the last listed objects keep
 *   serving while the API server is away: a failed list never empties the configuration.
 * - Each watch request asks the server to end it after 5-10 minutes and for bookmarks (as client-go
 *   does), and one still open well past that is aborted: a connection that died silently cannot hide
 *   changes for longer than that.
 * - Each object is turned into the document a file would hold and goes through the same loader, so it is
 *   validated and rejected alone; its errors name it as `kubernetes:<namespace>/<plural>/<name>`.
 * - MeshExternalServices, HostnameGenerators and Secrets (type `system.kuma.io/secret` only) are read in
 *   the system namespace, where Kuma admits them; Meshes are cluster-scoped. Nothing is ever written.
 * - 401/403/404 on a list (RBAC, a CRD that is not installed) does not hold readiness back: that kind is
 *   logged, retried with the back-off, and served empty; every other error at start is retried until the
 *   first list succeeds, so the agent never becomes ready with a configuration a failed list emptied.
 */
import { CoreV1Api, CustomObjectsApi, KubeConfig, ListWatch, Watch, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { parseResourceText, mergeResults, POLICY_KINDS, POLICY_KIND_NAMES, type LoadOptions, type LoadResult, type ResourceKind } from '../resources/index.js';
import type { Registry, Series } from '../stats/registry.js';
import type { Logger } from '../log.js';
import type { ResourceSource } from './source.js';
import type { PodIdentity } from '../access/identity.js';

const KUMA_SECRET_TYPE = 'system.kuma.io/secret';

/** One kind the source reads: where it lives in the API and how it is listed. */
export interface WatchedKind {
  kind: ResourceKind;
  group: string;
  version: string;
  plural: string;
  /** Read in the system namespace; false = cluster-scoped. */
  namespaced: boolean;
  fieldSelector?: string;
}

/** Every kind read, with exactly what the ServiceAccount's Role/ClusterRole grant (deploy/kubernetes). */
export const WATCHED_KINDS: readonly WatchedKind[] = [
  { kind: 'Mesh', group: 'kuma.io', version: 'v1alpha1', plural: 'meshes', namespaced: false },
  { kind: 'MeshExternalService', group: 'kuma.io', version: 'v1alpha1', plural: 'meshexternalservices', namespaced: true },
  { kind: 'HostnameGenerator', group: 'kuma.io', version: 'v1alpha1', plural: 'hostnamegenerators', namespaced: true },
  // System policies only: a policy in an application namespace selects that namespace's sidecars in Kuma, and a
  // node agent has none to give it to.
  ...POLICY_KIND_NAMES.map((kind) => ({ kind, group: 'kuma.io', version: 'v1alpha1', plural: POLICY_KINDS[kind].plural, namespaced: true })),
  { kind: 'Secret', group: '', version: 'v1', plural: 'secrets', namespaced: true, fieldSelector: `type=${KUMA_SECRET_TYPE}` },
];

export interface KubernetesSourceOptions {
  /** kubeconfig path; undefined = the in-cluster service account. */
  kubeconfig?: string;
  systemNamespace: string;
  /** Quiet period after an event before asking for a reload (a re-list comes as a burst). */
  debounceMs: number;
  stats: Registry;
  log: Logger;
  /** Back-off between restarts of a failed informer (default 500 ms doubling to 30 s). */
  retry?: { initialMs: number; maxMs: number };
  /**
   * Watch length asked of the server (default random 300-600 s, as client-go), and how long past it a
   * watch that was not closed is taken as a dead connection and aborted (default 30 s).
   */
  watch?: { timeoutSeconds?: number; graceMs?: number };
  /**
   * Lists and watches the pods of this node (field selector spec.nodeName) and reports them, by uid, on every
   * change: their cgroups get the pods' workload identities (MeshTrafficPermission). Absent: no pod is read.
   */
  pods?: { nodeName: string; onChange: (pods: Map<string, PodIdentity>) => void };
}

/**
 * A Watch whose requests end by themselves. The informer keeps one watch open for ever; a connection
 * that died without a FIN or RST (a partitioned API server) would then hide every later change. Each
 * request asks the server to close it after `timeoutSeconds` (the informer then watches again from its
 * resourceVersion, no re-list) and asks for bookmarks, so that resourceVersion stays recent; one still
 * open `graceMs` after that is aborted, which the source handles as any failed watch.
 */
class BoundedWatch extends Watch {
  constructor(
    kc: KubeConfig,
    private readonly timeoutSeconds: () => number,
    private readonly graceMs: number,
    private readonly onStale: (path: string, seconds: number) => void,
  ) {
    super(kc);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const seconds = this.timeoutSeconds();
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    const controller = await super.watch(path, { ...queryParams, allowWatchBookmarks: true, timeoutSeconds: seconds }, callback, (err: unknown) => {
      ended = true;
      clearTimeout(timer);
      done(err);
    });
    if (!ended) {
      timer = setTimeout(() => {
        this.onStale(path, seconds);
        controller.abort();
      }, seconds * 1000 + this.graceMs);
      timer.unref();
    }
    return controller;
  }
}

type KindState = 'listing' | 'watching' | 'retrying';

/** Why a list or watch failed, as a bounded metric label. */
type ErrorReason = 'unauthorized' | 'forbidden' | 'not_found' | 'unreachable' | 'other';

interface KindWatch {
  spec: WatchedKind;
  path: string;
  informer: ListWatch<KubernetesObject>;
  state: KindState;
  /** Resolves once the first list was applied (or failed for a reason waiting cannot fix, or on stop). */
  whenSettled: Promise<void>;
  settle: () => void;
  lastListAt: string | null;
  lastError: { reason: ErrorReason; message: string; at: string } | null;
  failures: number;
  timer: NodeJS.Timeout | undefined;
  connected: Series;
  objects: Series;
  lists: Series;
}

/** Lists and watches Kuma resources in the Kubernetes API; see the file comment. */
export class KubernetesSource implements ResourceSource {
  readonly name = 'kubernetes';
  private readonly kc = new KubeConfig();
  private watches: KindWatch[] = [];
  private onChange: ((reason: string) => void) | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private pending: string[] = [];
  private stopped = false;
  /** Set once start() returns: events before that are in the first load anyway. */
  private started = false;
  /** Parsed documents by object, reused while its resourceVersion is unchanged. */
  private readonly parsed = new Map<string, { version: string; result: LoadResult }>();
  private readonly retry: { initialMs: number; maxMs: number };
  private podInformer: ListWatch<KubernetesObject> | undefined;

  constructor(private readonly opts: KubernetesSourceOptions) {
    this.retry = opts.retry ?? { initialMs: 500, maxMs: 30_000 };
  }

  /** Resolves once every kind has had its first list applied (or refused for good: 401/403/404). */
  async start(onChange: (reason: string) => void): Promise<void> {
    this.onChange = onChange;
    try {
      if (this.opts.kubeconfig !== undefined) this.kc.loadFromFile(this.opts.kubeconfig);
      else this.kc.loadFromCluster();
    } catch (err) {
      const where = this.opts.kubeconfig ?? 'the in-cluster service account';
      throw Object.assign(new Error(`cannot load the Kubernetes client configuration from ${where}: ${(err as Error).message}`), { code: 'MESHEXT_E_KUBECONFIG' });
    }
    const server = this.kc.getCurrentCluster()?.server;
    if (!server) throw Object.assign(new Error(`no current cluster in ${this.opts.kubeconfig ?? 'the in-cluster configuration'}`), { code: 'MESHEXT_E_KUBECONFIG' });
    const custom = this.kc.makeApiClient(CustomObjectsApi);
    const core = this.kc.makeApiClient(CoreV1Api);
    const ns = this.opts.systemNamespace;
    this.watches = WATCHED_KINDS.map((spec) => this.makeWatch(spec, custom, core, ns));
    this.opts.log.info({ server, systemNamespace: ns, kinds: this.watches.map((w) => w.path) }, 'listing and watching Kuma resources');
    for (const w of this.watches) void this.run(w);
    if (this.opts.pods) this.watchPods(core, this.opts.pods);
    await Promise.all(this.watches.map((w) => w.whenSettled));
    // What the first lists brought is in the first load; only later events ask for a reload.
    this.started = true;
  }

  private makeWatch(spec: WatchedKind, custom: CustomObjectsApi, core: CoreV1Api, ns: string): KindWatch {
    const base = spec.group ? `/apis/${spec.group}/${spec.version}` : `/api/${spec.version}`;
    const path = `${base}${spec.namespaced ? `/namespaces/${ns}` : ''}/${spec.plural}`;
    const labels = { source: this.name, kind: spec.kind };
    const stats = this.opts.stats;
    let settle!: () => void;
    const whenSettled = new Promise<void>((resolve) => (settle = resolve));
    const w: KindWatch = {
      spec,
      path,
      informer: undefined as unknown as ListWatch<KubernetesObject>,
      state: 'listing',
      whenSettled,
      settle,
      lastListAt: null,
      lastError: null,
      failures: 0,
      timer: undefined,
      connected: stats.gauge('meshext_source_connected', 'Whether a source kind is listed and watched (1) or failing (0)', labels),
      objects: stats.gauge('meshext_source_objects', 'Objects a source holds, by kind', labels),
      lists: stats.counter('meshext_source_lists_total', 'Complete lists of a source kind (the first, and re-lists after 410 Gone)', labels),
    };
    const list = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const out = (
        spec.group === ''
          ? await core.listNamespacedSecret({ namespace: ns, ...(spec.fieldSelector ? { fieldSelector: spec.fieldSelector } : {}) })
          : spec.namespaced
            ? await custom.listNamespacedCustomObject({ group: spec.group, version: spec.version, namespace: ns, plural: spec.plural })
            : await custom.listClusterCustomObject({ group: spec.group, version: spec.version, plural: spec.plural })
      ) as KubernetesListObject<KubernetesObject>;
      w.lists.inc();
      w.lastListAt = new Date().toISOString();
      // The informer applies the items as soon as this returns: settle after that.
      setImmediate(w.settle);
      return out;
    };
    const timeout = this.opts.watch?.timeoutSeconds;
    const watch = new BoundedWatch(
      this.kc,
      () => timeout ?? 300 + Math.floor(Math.random() * 300),
      this.opts.watch?.graceMs ?? 30_000,
      (p, seconds) => this.opts.log.warn({ kind: spec.kind, path: p, timeoutSeconds: seconds }, 'watch still open past its timeout: taking the connection as dead and watching again'),
    );
    w.informer = new ListWatch(path, watch, list, false, undefined, spec.fieldSelector);
    const changed = (verb: string) => (obj: KubernetesObject) => {
      w.objects.set(w.informer.list().length);
      this.changed(`${spec.kind} ${obj.metadata?.namespace ? `${obj.metadata.namespace}/` : ''}${obj.metadata?.name ?? '?'} ${verb}`);
    };
    w.informer.on('add', changed('added'));
    w.informer.on('update', changed('updated'));
    w.informer.on('delete', changed('deleted'));
    w.informer.on('error', (err: unknown) => this.failed(w, err));
    return w;
  }

  /**
   * The pods of this node, for workload identities. They hold no readiness back (a pod not known yet has no
   * identity, which the access rules treat as such); a failed list or watch is retried with the same back-off.
   */
  private watchPods(core: CoreV1Api, opts: NonNullable<KubernetesSourceOptions['pods']>): void {
    const fieldSelector = `spec.nodeName=${opts.nodeName}`;
    const watch = new BoundedWatch(this.kc, () => 300 + Math.floor(Math.random() * 300), this.opts.watch?.graceMs ?? 30_000, () => undefined);
    const list = async (): Promise<KubernetesListObject<KubernetesObject>> =>
      (await core.listPodForAllNamespaces({ fieldSelector })) as unknown as KubernetesListObject<KubernetesObject>;
    const informer = new ListWatch<KubernetesObject>('/api/v1/pods', watch, list, false, undefined, fieldSelector);
    const report = (): void => {
      const pods = new Map<string, PodIdentity>();
      for (const o of informer.list()) {
        const pod = o as KubernetesObject & { spec?: { serviceAccountName?: string } };
        const uid = pod.metadata?.uid;
        if (!uid || !pod.metadata?.namespace) continue;
        // The label only, as Kuma reads it: an annotation is free text the pod's owner sets (it may hold `/`), and
        // the identity resolver accepts the mesh only if it names a Mesh the agent knows.
        const mesh = pod.metadata.labels?.['kuma.io/mesh'] ?? 'default';
        pods.set(uid, { namespace: pod.metadata.namespace, serviceAccount: pod.spec?.serviceAccountName ?? 'default', mesh });
      }
      opts.onChange(pods);
    };
    let failures = 0;
    const run = async (): Promise<void> => {
      if (this.stopped) return;
      await informer.start();
      if (!this.stopped) report();
    };
    // Pod events come in bursts (every status change is an update): one report per burst.
    let timer: NodeJS.Timeout | undefined;
    const soon = (): void => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = undefined;
        if (!this.stopped) report();
      }, this.opts.debounceMs);
      timer.unref();
    };
    for (const ev of ['add', 'update', 'delete'] as const) informer.on(ev, soon);
    informer.on('error', (err: unknown) => {
      if (this.stopped) return;
      failures++;
      const delay = Math.min(this.retry.maxMs, this.retry.initialMs * 2 ** Math.min(failures - 1, 16));
      const { reason, message } = describeError(err);
      this.opts.log.warn({ path: '/api/v1/pods', fieldSelector, reason, error: message, retryInMs: delay }, `cannot list/watch the pods of this node${HINTS[reason] ?? ''}; their workload identities are kept as last known`);
      setTimeout(() => void run(), delay).unref();
    });
    this.podInformer = informer;
    void run();
  }

  /** Starts (or restarts) one informer; resolves when that attempt has listed and watches, or failed. */
  private async run(w: KindWatch): Promise<void> {
    if (this.stopped) return;
    w.timer = undefined;
    const failuresBefore = w.failures;
    const hadError = w.lastError !== null;
    await w.informer.start();
    if (this.stopped || w.failures !== failuresBefore) return;
    w.state = 'watching';
    w.settle();
    w.failures = 0;
    w.connected.set(1);
    if (hadError) this.opts.log.info({ kind: w.spec.kind, path: w.path }, 'Kubernetes API reachable again: listing and watching');
    w.lastError = null;
  }

  private failed(w: KindWatch, err: unknown): void {
    if (this.stopped) return;
    const { reason, message, status } = describeError(err);
    w.failures++;
    w.state = 'retrying';
    w.connected.set(0);
    this.opts.stats.counter('meshext_source_errors_total', 'Failed lists and watches of a source kind, by reason', { source: this.name, kind: w.spec.kind, reason }).inc();
    // Waiting does not fix RBAC or a missing CRD: that kind is served empty meanwhile, the rest goes on.
    if (status === 401 || status === 403 || status === 404) w.settle();
    const delay = Math.min(this.retry.maxMs, this.retry.initialMs * 2 ** Math.min(w.failures - 1, 16));
    const kept = w.informer.list().length;
    w.lastError = { reason, message, at: new Date().toISOString() };
    const fields = { kind: w.spec.kind, path: w.path, reason, error: message, retryInMs: delay, keptObjects: kept };
    const hint = HINTS[reason] ?? '';
    if (w.failures === 1 || status === 403 || status === 404) this.opts.log.warn(fields, `cannot list/watch ${w.spec.kind}${hint}; the last listed objects keep serving`);
    else this.opts.log.debug(fields, 'Kubernetes list/watch still failing');
    if (!w.timer) {
      w.timer = setTimeout(() => void this.run(w), delay);
      w.timer.unref();
    }
  }

  private changed(reason: string): void {
    if (this.stopped || !this.started) return;
    this.pending.push(reason);
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      const reasons = this.pending;
      this.pending = [];
      const shown = reasons.slice(0, 3).join(', ') + (reasons.length > 3 ? ` and ${reasons.length - 3} more` : '');
      this.onChange?.(`kubernetes: ${shown}`);
    }, this.opts.debounceMs);
    this.debounce.unref();
  }

  /** Every cached object as a loader document, each parsed alone. */
  async load(opts: LoadOptions): Promise<LoadResult> {
    const results: LoadResult[] = [];
    const seen = new Set<string>();
    const optsKey = `${opts.zone ?? ''}\0${opts.vipCidr ?? ''}`;
    for (const w of this.watches) {
      for (const obj of w.informer.list()) {
        const label = objectLabel(w, obj);
        seen.add(label);
        const version = `${obj.metadata?.resourceVersion ?? ''}\0${optsKey}`;
        const cached = this.parsed.get(label);
        if (cached && cached.version === version && version !== `\0${optsKey}`) {
          results.push(cached.result);
          continue;
        }
        const result = parseResourceText(JSON.stringify(toDocument(w.spec, obj)), label, opts);
        this.parsed.set(label, { version, result });
        results.push(result);
      }
    }
    for (const k of this.parsed.keys()) if (!seen.has(k)) this.parsed.delete(k);
    return mergeResults(results);
  }

  markLoaded(): void {}

  describe(): Record<string, unknown> {
    return {
      source: this.name,
      server: this.kc.getCurrentCluster()?.server ?? null,
      systemNamespace: this.opts.systemNamespace,
      kinds: this.watches.map((w) => ({
        kind: w.spec.kind,
        path: w.path,
        ...(w.spec.fieldSelector ? { fieldSelector: w.spec.fieldSelector } : {}),
        state: w.state,
        objects: w.informer.list().length,
        resourceVersion: w.informer.latestResourceVersion() || null,
        lastListAt: w.lastListAt,
        lastError: w.lastError,
      })),
    };
  }

  stop(): void {
    this.stopped = true;
    if (this.debounce) clearTimeout(this.debounce);
    for (const w of this.watches) {
      w.settle(); // a start still waiting for a first list gives up
      if (w.timer) clearTimeout(w.timer);
      void w.informer.stop();
    }
    void this.podInformer?.stop();
  }
}

const HINTS: Partial<Record<ErrorReason, string>> = {
  forbidden: ' (RBAC: the ServiceAccount needs list and watch on it, see deploy/kubernetes/meshext.yaml)',
  not_found: ' (is its CustomResourceDefinition installed? Kuma installs it)',
  unauthorized: ' (the credentials were refused)',
};

/** `kubernetes:<namespace>/<plural>/<name>`: names the object in errors where a file path would be. */
function objectLabel(w: KindWatch, obj: KubernetesObject): string {
  const ns = obj.metadata?.namespace;
  return `kubernetes:${ns ? `${ns}/` : ''}${w.spec.plural}/${obj.metadata?.name ?? ''}`;
}

/**
 * The object as a file would hold it. List items of built-in kinds carry no apiVersion/kind, so the
 * watched kind fills them in; a kind the object does state is kept, so an unexpected one is rejected.
 */
function toDocument(spec: WatchedKind, obj: KubernetesObject): Record<string, unknown> {
  // A plain copy: the client returns class instances (with Date fields) for built-in kinds.
  const doc = JSON.parse(JSON.stringify(obj)) as Record<string, unknown>;
  doc.apiVersion ??= spec.group ? `${spec.group}/${spec.version}` : spec.version;
  doc.kind ??= spec.kind;
  return doc;
}

/** Status code, bounded reason and a one-line message (the API server's own Status message if any). */
export function describeError(err: unknown): { status: number | undefined; reason: ErrorReason; message: string } {
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown; message?: string };
  const status = typeof e.code === 'number' ? e.code : typeof e.statusCode === 'number' ? e.statusCode : undefined;
  let message = e.message ?? String(err);
  if (status !== undefined) {
    let statusMessage: string | undefined;
    if (typeof e.body === 'string') {
      try {
        statusMessage = (JSON.parse(e.body) as { message?: string }).message;
      } catch {
        // not a Status object
      }
    }
    message = `HTTP ${status}${statusMessage ? `: ${statusMessage}` : e.message && !e.message.startsWith('HTTP-Code') ? `: ${e.message}` : ''}`;
  }
  const reason: ErrorReason =
    status === 401 ? 'unauthorized' : status === 403 ? 'forbidden' : status === 404 ? 'not_found' : status === undefined ? 'unreachable' : 'other';
  return { status, reason, message: message.split('\n')[0] ?? message };
}
