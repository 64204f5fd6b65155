/**
 * VIP allocation for MeshExternalServices, persisted so a service keeps its VIP across restarts.
 *
 * Choices (documented in docs/ipam.md):
 * - Addresses are handed out sequentially. Unlike Kuma (which starts at 242.0.0.0), the network address
 *   and, for IPv4 prefixes up to /30, the broadcast address are skipped: tools treat `x.0`/`x.255` as
 *   special. /31 and /32 (and IPv6 /127, /128) use every address.
 * - A released service leaves a tombstone: its VIP is not handed to another service (clients may still
 *   cache the DNS answer). The same service coming back gets its old VIP again. Tombstoned VIPs are
 *   reused only when the range is otherwise exhausted, oldest tombstone first.
 * - A VIP outside a changed CIDR is kept (as Kuma does) and logged.
 * - State is re-read under a lock file before every change and written atomically (temp file + fsync +
 *   rename), so `meshext get` and the agent can share a state directory.
 */
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { type Cidr, addrToBig, fromBig, parseCidr, effectiveVipCidr } from './cidr.js';

export const STATE_FILE = 'ipam.json';
const LOCK_FILE = 'ipam.lock';

interface State {
  version: 1;
  cidr: string;
  /** Next candidate address (text). */
  next?: string;
  allocations: Record<string, { vip: string; allocatedAt: string }>;
  tombstones: Array<{ id: string; vip: string; releasedAt: string }>;
}

export class IpamError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

/** Default state directory: `MESHEXT_STATE_DIR`, else /var/lib/meshext. */
export function defaultStateDir(): string {
  return process.env.MESHEXT_STATE_DIR ?? '/var/lib/meshext';
}

export class Ipam {
  private state: State;
  private readonly range: Cidr;
  /** In-process serialisation; the lock file covers other processes. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly dir: string, range: Cidr, state: State, private readonly log: Logger) {
    this.range = range;
    this.state = state;
  }

  /** The CIDR VIPs are allocated from (canonical form). */
  get cidr(): string {
    return this.range.text;
  }

  /** Opens (creating) the state directory; validates the CIDR (option, else env, else 242.0.0.0/8). */
  static async open(opts: { stateDir: string; cidr?: string; log?: Logger }): Promise<Ipam> {
    const log = (opts.log ?? silentLogger()).child({ component: 'ipam' });
    const range = parseCidr(effectiveVipCidr(opts.cidr));
    try {
      await mkdir(opts.stateDir, { recursive: true, mode: 0o750 });
    } catch (e) {
      throw new IpamError(`cannot create state directory ${opts.stateDir}: ${(e as Error).message} (set --state-dir or MESHEXT_STATE_DIR)`, 'MESHEXT_E_STATE_DIR');
    }
    const ipam = new Ipam(opts.stateDir, range, emptyState(range), log);
    ipam.state = await ipam.read();
    return ipam;
  }

  /** VIPs currently held, id → vip (a copy). */
  allocations(): Map<string, string> {
    return new Map(Object.entries(this.state.allocations).map(([id, a]) => [id, a.vip]));
  }

  /** Assigns VIPs to ids (`mesh/name`), keeping existing ones; persists before returning. */
  async assign(ids: string[]): Promise<Map<string, { vip: string } | { error: string }>> {
    return this.locked(async () => {
      const st = await this.read();
      const out = new Map<string, { vip: string } | { error: string }>();
      let changed = false;
      const used = new Set<bigint>();
      for (const a of Object.values(st.allocations)) {
        const v = addrToBig(a.vip, this.range.family);
        if (v !== undefined) used.add(v);
      }
      const tomb = new Set<bigint>();
      for (const t of st.tombstones) {
        const v = addrToBig(t.vip, this.range.family);
        if (v !== undefined) tomb.add(v);
      }
      for (const id of ids) {
        const have = st.allocations[id];
        if (have) {
          if (!this.inRange(have.vip)) this.log.warn({ id, vip: have.vip, cidr: this.range.text }, 'VIP is outside the configured CIDR; keeping it');
          out.set(id, { vip: have.vip });
          continue;
        }
        const vip = this.pick(st, id, used, tomb);
        if (vip === undefined) {
          out.set(id, { error: `No addresses left in ${this.range.text}` });
          this.log.error({ id, cidr: this.range.text }, 'could not allocate vip: No addresses left');
          continue;
        }
        const big = addrToBig(vip, this.range.family) as bigint;
        used.add(big);
        tomb.delete(big);
        st.allocations[id] = { vip, allocatedAt: new Date().toISOString() };
        changed = true;
        this.log.info({ id, vip }, 'VIP allocated');
        out.set(id, { vip });
      }
      if (changed) await this.write(st);
      this.state = st;
      return out;
    });
  }

  /** Releases ids: their VIPs become tombstones, not reused for another service while space remains. */
  async release(ids: string[]): Promise<void> {
    await this.locked(async () => {
      const st = await this.read();
      let changed = false;
      for (const id of ids) {
        const a = st.allocations[id];
        if (!a) continue;
        delete st.allocations[id];
        st.tombstones = st.tombstones.filter((t) => t.id !== id);
        st.tombstones.push({ id, vip: a.vip, releasedAt: new Date().toISOString() });
        changed = true;
        this.log.info({ id, vip: a.vip }, 'VIP released (tombstoned)');
      }
      if (changed) await this.write(st);
      this.state = st;
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

  private pick(st: State, id: string, used: Set<bigint>, tomb: Set<bigint>): string | undefined {
    // The same service coming back gets its old address.
    const own = st.tombstones.find((t) => t.id === id);
    if (own) {
      const v = addrToBig(own.vip, this.range.family);
      if (v !== undefined && !used.has(v) && this.inRange(own.vip)) {
        st.tombstones = st.tombstones.filter((t) => t !== own);
        return own.vip;
      }
    }
    const first = this.first();
    const last = this.last();
    const total = last - first + 1n;
    let occupied = 0n;
    for (const v of used) if (v >= first && v <= last) occupied++;
    for (const v of tomb) if (v >= first && v <= last && !used.has(v)) occupied++;
    if (occupied < total) {
      let cur = st.next !== undefined ? (addrToBig(st.next, this.range.family) ?? first) : first;
      if (cur < first || cur > last) cur = first;
      for (let n = 0n; n < total; n++) {
        if (!used.has(cur) && !tomb.has(cur)) {
          st.next = fromBig(cur === last ? first : cur + 1n, this.range.family);
          return fromBig(cur, this.range.family);
        }
        cur = cur === last ? first : cur + 1n;
      }
    }
    // Exhausted: reuse the oldest tombstone inside the range.
    const idx = st.tombstones.findIndex((t) => this.inRange(t.vip) && !used.has(addrToBig(t.vip, this.range.family) as bigint));
    if (idx < 0) return undefined;
    const [t] = st.tombstones.splice(idx, 1);
    this.log.warn({ id, vip: t?.vip, previousOwner: t?.id }, 'CIDR exhausted: reusing the oldest released VIP');
    return t?.vip;
  }

  private async read(): Promise<State> {
    const path = join(this.dir, STATE_FILE);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return emptyState(this.range);
      throw new IpamError(`cannot read IPAM state ${path}: ${(e as Error).message}`, 'MESHEXT_E_IPAM_STATE');
    }
    let st: State;
    try {
      st = JSON.parse(text) as State;
      if (st.version !== 1 || typeof st.allocations !== 'object' || !Array.isArray(st.tombstones)) throw new Error('unexpected layout');
    } catch (e) {
      // Refuse rather than start over: handing out VIPs afresh would move every service.
      throw new IpamError(`IPAM state ${path} is corrupt (${(e as Error).message}); fix or remove it (all VIPs would be reassigned)`, 'MESHEXT_E_IPAM_STATE');
    }
    if (st.cidr !== this.range.text) {
      this.log.warn({ previous: st.cidr, cidr: this.range.text }, 'VIP CIDR changed; existing VIPs are kept');
      st.cidr = this.range.text;
      delete st.next;
    }
    return st;
  }

  private async write(st: State): Promise<void> {
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

function emptyState(range: Cidr): State {
  return { version: 1, cidr: range.text, allocations: {}, tombstones: [] };
}
