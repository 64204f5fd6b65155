/**
 * VIP allocation for MeshExternalServices, persisted so a service keeps its VIP across restarts.
 *
 * Choices (documented in docs/ipam.md):
 * - Addresses are handed out sequentially. Unlike Kuma (which starts at 242.0.0.0), the network address
 *   and, for IPv4 prefixes up to /30, the broadcast address are skipped: tools treat `x.0`/`x.255` as
 *   special. /31 and /32 (and IPv6 /127, /128) use every address.
 * - A released VIP leaves a tombstone. The same service coming back gets its old VIP again at any time.
 *   Another service gets it only when no never-used address is left and its quarantine (twice the DNS
 *   TTL, persisted as `until`) is over: clients holding the old DNS answer must not reach a different
 *   service. When the only addresses left are quarantined, allocation is refused (and logged), not forced.
 * - A VIP outside a changed CIDR is kept (as Kuma does) and the change is logged.
 * - A hand-edited or corrupt state file never stops the agent: bad entries are dropped with an error
 *   naming them, the original is kept next to it, and the rest of the state is used.
 * - A VIP Kuma's control plane assigned (`adopt`, from `status.vip.ip`) is taken as is, so nodes and
 *   sidecars agree; a service this node had given that address moves to a fresh one.
 * - State is re-read under a lock file before every change and written atomically (temp file + fsync +
 *   rename), so `meshext get` and the agent can share a state directory.
 */
import { copyFile, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { DNS_TTL_SECONDS } from '../dns/ttl.js';
import { type Cidr, addrToBig, fromBig, parseCidr, effectiveVipCidr } from './cidr.js';
import { type State, type Tombstone, checkState, emptyState, pruneCidrs } from './state.js';

export const STATE_FILE = 'ipam.json';
const LOCK_FILE = 'ipam.lock';

export class IpamError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

/** Default state directory: `MESHEXT_STATE_DIR`, else /var/lib/meshext. */
export function defaultStateDir(): string {
  return process.env.MESHEXT_STATE_DIR ?? '/var/lib/meshext';
}

/**
 * How long a released VIP is kept from other services: twice the DNS TTL, so an answer a client got just
 * before the release, and a caching resolver in between, have both expired.
 */
export function vipQuarantineMs(dnsTtlSeconds: number): number {
  return 2 * dnsTtlSeconds * 1000;
}

export interface IpamOptions {
  stateDir: string;
  /** VIP CIDR; else KUMA_IPAM_MESH_EXTERNAL_SERVICE_CIDR, else 242.0.0.0/8. */
  cidr?: string;
  /** Quarantine of a released VIP; default `vipQuarantineMs(DNS_TTL_SECONDS)`. */
  quarantineMs?: number;
  log?: Logger;
  /** Clock in ms since the epoch (tests inject one). */
  now?: () => number;
}

/** What the range holds: addresses in use, released ones (not in use), and never-used ones left. */
interface Census {
  used: Set<bigint>;
  released: Set<bigint>;
  free: bigint;
  /** Each service's tombstone (when its VIP is in range and not in use). */
  own: Map<string, Tombstone>;
  /** Tombstones whose VIP was handed out again by this assign. */
  taken: Set<Tombstone>;
}

type Picked = { vip: string; how: 'new' | 'own' | 'reused'; previous?: Tombstone } | { error: string };

export class Ipam {
  private state: State;
  private readonly range: Cidr;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly quarantineMs: number;
  /** Services refused a VIP by the last assign (logged once when they start waiting). */
  private waiting = new Set<string>();
  /** In-process serialisation; the lock file covers other processes. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly dir: string, range: Cidr, opts: IpamOptions) {
    this.range = range;
    this.state = emptyState(range);
    this.log = (opts.log ?? silentLogger()).child({ component: 'ipam' });
    this.now = opts.now ?? Date.now;
    this.quarantineMs = opts.quarantineMs ?? vipQuarantineMs(DNS_TTL_SECONDS);
  }

  /** The CIDR VIPs are allocated from (canonical form). */
  get cidr(): string {
    return this.range.text;
  }

  /** Opens (creating) the state directory and reads the state; validates the CIDR (option, else env, else 242.0.0.0/8). */
  static async open(opts: IpamOptions): Promise<Ipam> {
    const range = parseCidr(effectiveVipCidr(opts.cidr));
    if (!Number.isInteger(opts.quarantineMs ?? 0) || (opts.quarantineMs ?? 0) < 0) {
      throw new IpamError(`VIP quarantine ${String(opts.quarantineMs)} ms must be a whole number of ms, 0 or more`, 'MESHEXT_E_IPAM_OPTION');
    }
    try {
      await mkdir(opts.stateDir, { recursive: true, mode: 0o750 });
    } catch (e) {
      throw new IpamError(`cannot create state directory ${opts.stateDir}: ${(e as Error).message} (set --state-dir or MESHEXT_STATE_DIR)`, 'MESHEXT_E_STATE_DIR');
    }
    const ipam = new Ipam(opts.stateDir, range, opts);
    await ipam.locked(async () => {
      ipam.state = await ipam.read();
    });
    return ipam;
  }

  /** VIPs currently held, id → vip (a copy). */
  allocations(): Map<string, string> {
    return new Map(Object.entries(this.state.allocations).map(([id, a]) => [id, a.vip]));
  }

  /** Services the last `assign` could not give a VIP. */
  waitingServices(): string[] {
    return [...this.waiting];
  }

  /**
   * Milliseconds until a service without a VIP could get one: 0 when an address is free now, the time
   * left of the earliest quarantine when only quarantined ones are, undefined when only a release can help.
   */
  msUntilAvailable(): number | undefined {
    const c = this.census(this.state);
    if (c.free > 0n) return 0;
    let best: number | undefined;
    for (const t of this.state.tombstones) {
      const v = addrToBig(t.vip, this.range.family);
      if (v === undefined || c.used.has(v) || !this.inRange(t.vip)) continue;
      const left = Math.max(0, Date.parse(t.until) - this.now());
      best = best === undefined ? left : Math.min(best, left);
    }
    return best;
  }

  /** Assigns VIPs to ids (`mesh/name`), keeping existing ones; persists before returning. */
  async assign(ids: string[]): Promise<Map<string, { vip: string } | { error: string }>> {
    return this.locked(async () => {
      const st = await this.read();
      const out = new Map<string, { vip: string } | { error: string }>();
      const waiting = new Set<string>();
      const census = this.census(st);
      let changed = false;
      for (const id of ids) {
        const have = st.allocations[id];
        if (have) {
          out.set(id, { vip: have.vip });
          continue;
        }
        const got = this.pick(st, id, census);
        if ('error' in got) {
          out.set(id, { error: got.error });
          waiting.add(id);
          // Once per wait, not on every reload while it lasts.
          if (!this.waiting.has(id)) this.log.error({ service: id, cidr: this.range.text, reason: got.error }, 'could not allocate a VIP; the service is not served until an address is free');
          continue;
        }
        st.allocations[id] = { vip: got.vip, allocatedAt: new Date(this.now()).toISOString() };
        changed = true;
        if (got.how === 'own') this.log.info({ service: id, vip: got.vip }, 'VIP allocated: the service gets back the VIP it had');
        else if (got.how === 'reused') this.log.info({ service: id, vip: got.vip, previousOwner: got.previous?.id, releasedAt: got.previous?.releasedAt, quarantineEnded: got.previous?.until }, 'VIP allocated: reusing a released VIP after its quarantine');
        else this.log.info({ service: id, vip: got.vip }, 'VIP allocated');
        out.set(id, { vip: got.vip });
      }
      this.waiting = waiting;
      if (census.taken.size) st.tombstones = st.tombstones.filter((t) => !census.taken.has(t));
      if (changed) await this.write(st);
      this.state = st;
      return out;
    });
  }

  /** Releases ids: their VIPs are quarantined, then reused for another service only when nothing else is free. */
  async release(ids: string[]): Promise<void> {
    await this.locked(async () => {
      const st = await this.read();
      const now = this.now();
      const until = new Date(now + this.quarantineMs).toISOString();
      const fresh: Tombstone[] = [];
      for (const id of new Set(ids)) {
        const a = st.allocations[id];
        if (!a) continue;
        delete st.allocations[id];
        fresh.push({ id, vip: a.vip, releasedAt: new Date(now).toISOString(), until });
        this.log.info({ service: id, vip: a.vip, quarantinedUntil: until }, 'VIP released; no other service gets it before its quarantine ends');
      }
      if (fresh.length) {
        // A service keeps one tombstone: its latest release.
        const gone = new Set(fresh.map((t) => t.id));
        st.tombstones = [...st.tombstones.filter((t) => !gone.has(t.id)), ...fresh];
        await this.write(st);
      }
      this.state = st;
    });
  }

  /**
   * Records VIPs another allocator (Kuma's control plane, `status.vip.ip`) assigned, id → vip, before
   * `assign` runs. The claimed address wins over one this node picked for a different service (that
   * service gets a fresh VIP from `assign`); a service's own previous VIP is released (quarantined as by `release`). When two
   * ids claim one address, the one already holding it (else the first) keeps it and the other is
   * reported in `conflicts` and left to `assign`.
   */
  async adopt(claims: Map<string, string>): Promise<{ moved: string[]; conflicts: Array<{ id: string; vip: string; holder: string }> }> {
    if (claims.size === 0) return { moved: [], conflicts: [] };
    return this.locked(async () => {
      const st = await this.read();
      const moved: string[] = [];
      const conflicts: Array<{ id: string; vip: string; holder: string }> = [];
      const holderOf = (vip: bigint): string | undefined =>
        Object.entries(st.allocations).find(([, a]) => addrToBig(a.vip, this.range.family) === vip)?.[0];
      let changed = false;
      const now = this.now();
      // Ids already holding their claim go first, so a second claimant never takes the address from them.
      const ordered = [...claims].sort(([a, va], [b, vb]) => Number(st.allocations[b]?.vip === vb) - Number(st.allocations[a]?.vip === va));
      const granted = new Set<bigint>();
      for (const [id, vip] of ordered) {
        const big = addrToBig(vip, this.range.family);
        if (big === undefined) continue;
        if (st.allocations[id]?.vip === vip) {
          granted.add(big);
          continue;
        }
        const holder = holderOf(big);
        if (granted.has(big) && holder !== undefined) {
          conflicts.push({ id, vip, holder });
          this.log.warn({ service: id, vip, holder }, 'two services claim the same Kuma VIP; the node assigns one of its own to the second');
          continue;
        }
        if (holder !== undefined) {
          delete st.allocations[holder];
          moved.push(holder);
          this.log.warn({ service: holder, vip, claimedBy: id }, 'VIP taken over by a service Kuma assigned it to; this service gets another one');
        }
        const own = st.allocations[id];
        if (own) {
          const released: Tombstone = { id, vip: own.vip, releasedAt: new Date(now).toISOString(), until: new Date(now + this.quarantineMs).toISOString() };
          st.tombstones = [...st.tombstones.filter((t) => t.id !== id), released];
        }
        st.tombstones = st.tombstones.filter((t) => addrToBig(t.vip, this.range.family) !== big);
        st.allocations[id] = { vip, allocatedAt: new Date(now).toISOString() };
        granted.add(big);
        changed = true;
        this.log.info({ service: id, vip, previous: own?.vip }, "VIP adopted from Kuma's status");
      }
      if (changed) await this.write(st);
      this.state = st;
      return { moved, conflicts };
    });
  }

  private first(): bigint {
    return this.range.size > 2n ? this.range.network + 1n : this.range.network;
  }

  private last(): bigint {
    const end = this.range.network + this.range.size - 1n;
    return this.range.family === 4 && this.range.size > 2n ? end - 1n : end;
  }

  private inRange(vip: string): boolean {
    const v = addrToBig(vip, this.range.family);
    return v !== undefined && v >= this.first() && v <= this.last();
  }

  /** Addresses held, addresses released, and how many in the range were never handed out. */
  private census(st: State): Census {
    const used = new Set<bigint>();
    for (const a of Object.values(st.allocations)) {
      const v = addrToBig(a.vip, this.range.family);
      if (v !== undefined) used.add(v);
    }
    const released = new Set<bigint>();
    for (const t of st.tombstones) {
      const v = addrToBig(t.vip, this.range.family);
      if (v !== undefined && !used.has(v)) released.add(v);
    }
    const first = this.first();
    const last = this.last();
    let occupied = 0n;
    for (const v of [...used, ...released]) if (v >= first && v <= last) occupied++;
    const own = new Map<string, Tombstone>();
    for (const t of st.tombstones) {
      const v = addrToBig(t.vip, this.range.family);
      if (v !== undefined && !used.has(v) && v >= first && v <= last && !own.has(t.id)) own.set(t.id, t);
    }
    return { used, released, free: last - first + 1n - occupied, own, taken: new Set() };
  }

  /** Picks a VIP for id and records it in `c` (computed once per assign, so assigning n services is O(n)). */
  private pick(st: State, id: string, c: Census): Picked {
    const big = (vip: string): bigint => addrToBig(vip, this.range.family) as bigint;
    // The same service coming back gets its old address, quarantined or not: its clients' answers are right.
    const own = c.own.get(id);
    if (own && !c.used.has(big(own.vip))) {
      c.taken.add(own);
      c.used.add(big(own.vip));
      c.released.delete(big(own.vip));
      return { vip: own.vip, how: 'own' };
    }
    const first = this.first();
    const last = this.last();
    if (c.free > 0n) {
      let cur = st.next !== undefined ? (addrToBig(st.next, this.range.family) ?? first) : first;
      if (cur < first || cur > last) cur = first;
      for (let n = 0n; n <= last - first; n++) {
        if (!c.used.has(cur) && !c.released.has(cur)) {
          st.next = fromBig(cur === last ? first : cur + 1n, this.range.family);
          c.used.add(cur);
          c.free--;
          return { vip: fromBig(cur, this.range.family), how: 'new' };
        }
        cur = cur === last ? first : cur + 1n;
      }
    }
    // Only released addresses are left: the oldest whose quarantine is over.
    const now = this.now();
    const candidates = st.tombstones
      .filter((t) => this.inRange(t.vip) && !c.used.has(big(t.vip)))
      .sort((a, b) => Date.parse(a.releasedAt) - Date.parse(b.releasedAt));
    const ready = candidates.find((t) => Date.parse(t.until) <= now);
    if (ready) {
      c.taken.add(ready);
      c.used.add(big(ready.vip));
      c.released.delete(big(ready.vip));
      return { vip: ready.vip, how: 'reused', previous: ready };
    }
    if (!candidates.length) return { error: `No addresses left in ${this.range.text}` };
    const soonest = new Date(candidates.reduce((m, t) => Math.min(m, Date.parse(t.until)), Infinity)).toISOString();
    return {
      error: `No addresses left in ${this.range.text}: ${candidates.length} released VIP(s) are quarantined (first until ${soonest}) so that clients holding their old DNS answers cannot reach this service`,
    };
  }

  /** Reads and checks the state file under the lock; repairs (and says so) rather than refusing to start. */
  private async read(): Promise<State> {
    const path = join(this.dir, STATE_FILE);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return emptyState(this.range);
      throw new IpamError(`cannot read IPAM state ${path}: ${(e as Error).message}`, 'MESHEXT_E_IPAM_STATE');
    }
    const now = this.now();
    let raw: unknown;
    let dirty = false;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      raw = undefined;
      const kept = await this.keepAside(path, now);
      this.log.error(
        { code: 'MESHEXT_E_IPAM_STATE', file: path, keptAs: kept, err: (e as Error).message },
        `IPAM state ${path} is not valid JSON; starting from an empty state, every service gets a new VIP (the unreadable file is kept as ${kept})`,
      );
      dirty = true;
    }
    let st = emptyState(this.range);
    if (raw !== undefined) {
      const checked = checkState(raw, this.range, { now, quarantineMs: this.quarantineMs });
      st = checked.state;
      if (checked.problems.length) {
        const kept = await this.keepAside(path, now);
        for (const p of checked.problems) {
          this.log.error({ code: 'MESHEXT_E_IPAM_STATE', file: path, entry: p.entry, value: p.value, keptAs: kept }, `IPAM state ${path}: ${p.entry} ${JSON.stringify(p.value) ?? 'missing'} ${p.message}`);
        }
        dirty = true;
      }
    }
    if (st.cidr !== this.range.text) {
      const outside = Object.values(st.allocations).filter((a) => !this.inRange(a.vip)).length;
      this.log.warn({ previous: st.cidr, cidr: this.range.text, keptOutside: outside }, 'VIP CIDR changed; existing VIPs are kept, new ones come from the new CIDR');
      st.previousCidrs = [...new Set([...(st.previousCidrs ?? []), st.cidr])].filter((c) => c !== this.range.text);
      st.cidr = this.range.text;
      delete st.next;
      dirty = true;
    }
    if (dirty) await this.write(st);
    return st;
  }

  /** Copies a state file that is about to be rewritten, so a hand edit is never lost. */
  private async keepAside(path: string, now: number): Promise<string> {
    const kept = `${path}.bad-${new Date(now).toISOString().replace(/[:.]/g, '-')}`;
    await copyFile(path, kept);
    return kept;
  }

  private async write(st: State): Promise<void> {
    pruneCidrs(st);
    const path = join(this.dir, STATE_FILE);
    const tmp = `${path}.tmp-${process.pid}`;
    const fh = await open(tmp, 'w', 0o640);
    try {
      await fh.writeFile(JSON.stringify(st, null, 2) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    const dh = await open(this.dir, 'r');
    try {
      await dh.sync();
    } catch {
      // some filesystems refuse fsync on directories; the rename is still atomic
    } finally {
      await dh.close();
    }
  }

  /** Serialises read-modify-write across processes with an O_EXCL lock file holding our pid. */
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(() => this.fileLocked(fn));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async fileLocked<T>(fn: () => Promise<T>): Promise<T> {
    const lock = join(this.dir, LOCK_FILE);
    for (let attempt = 0; ; attempt++) {
      try {
        await writeFile(lock, String(process.pid), { flag: 'wx' });
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new IpamError(`cannot lock ${lock}: ${(e as Error).message}`, 'MESHEXT_E_STATE_DIR');
        const holder = Number((await readFile(lock, 'utf8').catch(() => '')).trim());
        if (!holder || !alive(holder) || holder === process.pid) {
          await rm(lock, { force: true }); // stale: its owner is gone
          continue;
        }
        if (attempt > 200) throw new IpamError(`IPAM state is locked by pid ${holder} (${lock})`, 'MESHEXT_E_IPAM_LOCKED');
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    try {
      return await fn();
    } finally {
      await rm(lock, { force: true });
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
