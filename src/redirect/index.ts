/**
 * Kernel-side redirect: loads bpf/redirect.bpf.o, keeps its cgroup links pinned and up to date,
 * writes the runtime config and hands the proxy each connection's original VIP:port.
 */
import { constants as osConstants } from 'node:os';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, statfsSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execFileSync } from 'node:child_process';
import ipaddr from 'ipaddr.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { native, bpfObjectPath, type NativeAddon, type LoadedProgram } from '../native/addon.js';
import {
  ACCESS_COUNTER_NAMES,
  COUNTER_NAMES,
  FLAGS,
  LAYOUT,
  LAYOUT_VERSION,
  VERDICT_CODES,
  decodeConfig,
  decodeDenial,
  decodeOrig,
  encodeAddr,
  encodeCgroupId,
  encodeConfig,
  encodePeerKey,
  encodeSvcAccess,
  encodeSvcKey,
  encodeVerdictKey,
  isStrictIp,
  u32,
  type AccessCounterName,
  type AccessVerdict,
  type ConfigFields,
  type DenialRecord,
} from './codec.js';
import { assertCgroup2Dir, findCgroup2Mount, placeSelf } from './cgroup.js';

export { findCgroup2Mount, placeSelf, ownCgroup2Path } from './cgroup.js';

export interface RedirectConfig {
  vipCidr: string;
  proxy: { address: string; port: number };
  dns?: { address: string; port: number; nameservers: string[] };
}
export interface RedirectOptions extends RedirectConfig {
  cgroupPath?: string;
  pinRoot?: string;
  exemptSelf?: boolean /* default true */;
  log?: Logger;
  /** Runs with the maps open and the config written, before any program is attached (e.g. to write access rules). */
  beforeAttach?: (r: Redirector) => void;
}

export interface BpfLinkListing { program: string; attachType: string; linkId: number; progId: number; cgroupId: string; cgroupPath: string | null; defunct: boolean }
export interface BpfMapListing { name: string; id: number; type: number; entries: number; maxEntries: number }
export interface BpfListing {
  pinRoot: string;
  layoutVersion: number;
  links: BpfLinkListing[];
  maps: BpfMapListing[];
  counters: Record<string, number>;
  config: Record<string, unknown> | null;
}

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/meshext';
const BPF_FS_MAGIC = 0xcafe4a11;
const HEARTBEAT_INTERVAL_MS = 1000;
/** How often stale mx_peer_orig entries are swept (the age rule itself is MX_ORIG_MAX_AGE_MS, in the engine). */
const SWEEP_INTERVAL_MS = 10_000;
const HEARTBEAT_MAX_AGE_MS = 3000;
const { ENOENT, ENOLINK, EPERM } = osConstants.errno;

/** Attach type numbers (enum bpf_attach_type) → names as bpftool prints them. */
export const ATTACH_TYPE_NAMES: Record<number, string> = {
  3: 'sock_ops',
  10: 'connect4',
  11: 'connect6',
  14: 'sendmsg4',
  15: 'sendmsg6',
  19: 'recvmsg4',
  20: 'recvmsg6',
  29: 'getpeername4',
  30: 'getpeername6',
  34: 'sock_release',
};

const MAP_NAMES = [
  'mx_config',
  'mx_nameservers',
  'mx_exempt_cg',
  'mx_cookie_orig',
  'mx_peer_orig',
  'mx_counters',
  'mx_cg_ident',
  'mx_svc_access',
  'mx_verdict',
  'mx_denials',
  'mx_access_cnt',
] as const;
type MapName = (typeof MAP_NAMES)[number];
/** Maps `bpf list` shows with their size as entries (arrays are always full). */
const ARRAY_MAPS = new Set(['mx_config', 'mx_counters', 'mx_access_cnt']);

/** One service's connect-time access rules as the kernel stores them (computed by src/access, never here). */
export interface ServiceAccess {
  vip: string;
  port: number;
  /** Stable service index (< MX_ACCESS_SVC_MAX): keys verdicts and counters. */
  svc: number;
  /** Verdict for an identity that has no entry in `verdicts`. */
  unlisted: AccessVerdict;
  /** Verdict for a socket whose cgroup has no identity. */
  noIdentity: AccessVerdict;
  /** identity index → verdict, only where it differs from `unlisted`. */
  verdicts: Map<number, AccessVerdict>;
  /** Who the index stands for (the service id): counters start from zero when it changes. */
  owner?: string;
}

/** How many entries the kernel's access maps hold (max_entries, read from the maps). */
export interface AccessCapacity {
  cgroups: number;
  services: number;
  verdicts: number;
}
/** What setAccess writes: cgroup ids → identity index (≥ 1), and the services under a MeshTrafficPermission. */
export interface AccessTable {
  cgroups: Map<bigint, number>;
  services: ServiceAccess[];
}

/** Number of possible CPUs (the per-CPU value count of a per-CPU map), as libbpf counts them. */
function possibleCpus(file = '/sys/devices/system/cpu/possible'): number {
  let max = 0;
  for (const part of readFileSync(file, 'utf8').trim().split(',')) {
    const [a, b] = part.split('-').map(Number);
    max = Math.max(max, (b ?? a ?? 0) + 1);
  }
  return max;
}

/** An mx_svc_access value (hex) made to refuse everyone: the unlisted and no-identity verdicts deny. */
function closedSvcValue(hex: string): string {
  const f = LAYOUT.mx_svc_access.fields;
  const b = Buffer.from(hex, 'hex');
  b.writeUInt8(VERDICT_CODES.denyDefault, f.unlisted);
  b.writeUInt8(VERDICT_CODES.denyNoIdentity, f.no_identity);
  return b.toString('hex');
}

function fail(code: string, message: string, extra: Record<string, unknown> = {}): never {
  throw Object.assign(new Error(message), { code, ...extra });
}

function isErrno(err: unknown, errno: number): boolean {
  return (err as { errno?: number }).errno === errno;
}

function checkPort(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) fail('MESHEXT_E_BPF_ARG', `${field}: expected a port 1-65535, got ${JSON.stringify(v)}`);
  return v;
}

function checkIp(field: string, v: unknown): string {
  if (typeof v !== 'string' || !isStrictIp(v)) fail('MESHEXT_E_BPF_ARG', `${field}: expected an IP address, got ${JSON.stringify(v)}`);
  return v;
}

function isV4(addr: string): boolean {
  const a = ipaddr.parse(addr);
  return a.kind() === 'ipv4' || (a as ipaddr.IPv6).isIPv4MappedAddress();
}

/** Validates a full config; every message names the field and the bad value. */
function validateConfig(cfg: RedirectConfig): { net: string; prefix: number } {
  if (typeof cfg.vipCidr !== 'string') fail('MESHEXT_E_BPF_ARG', `vipCidr: expected an IPv4 CIDR, got ${JSON.stringify(cfg.vipCidr)}`);
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    parsed = ipaddr.parseCIDR(cfg.vipCidr);
  } catch {
    return fail('MESHEXT_E_BPF_ARG', `vipCidr: expected an IPv4 CIDR such as 242.0.0.0/8, got "${cfg.vipCidr}"`);
  }
  if (parsed[0].kind() !== 'ipv4') fail('MESHEXT_E_BPF_ARG', `vipCidr: only IPv4 VIP CIDRs are supported, got "${cfg.vipCidr}"`);
  if (parsed[1] < 1) fail('MESHEXT_E_BPF_ARG', `vipCidr: prefix /0 would capture all IPv4 traffic, got "${cfg.vipCidr}"`);
  if (!cfg.proxy) fail('MESHEXT_E_BPF_ARG', 'proxy: required');
  checkIp('proxy.address', cfg.proxy.address);
  checkPort('proxy.port', cfg.proxy.port);
  if (cfg.dns) {
    checkIp('dns.address', cfg.dns.address);
    checkPort('dns.port', cfg.dns.port);
    if (!Array.isArray(cfg.dns.nameservers)) fail('MESHEXT_E_BPF_ARG', 'dns.nameservers: expected an array of IP addresses');
    cfg.dns.nameservers.forEach((n, i) => checkIp(`dns.nameservers[${i}]`, n));
  }
  const net = ipaddr.IPv4.networkAddressFromCIDR(cfg.vipCidr).toString();
  return { net, prefix: parsed[1] };
}

/**
 * Mounts bpffs at `mountPoint` when `pinRoot` lies under it and no bpffs is there yet, as systemd's
 * sys-fs-bpf.mount or a DaemonSet init container would; returns true when it mounted one.
 */
export function ensureBpffs(pinRoot: string, mountPoint = '/sys/fs/bpf'): boolean {
  if (!(pinRoot === mountPoint || pinRoot.startsWith(mountPoint + '/'))) return false;
  if (!existsSync(mountPoint) || statfsSync(mountPoint).type === BPF_FS_MAGIC) return false;
  try {
    execFileSync('mount', ['-t', 'bpf', 'bpf', mountPoint], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
    fail('MESHEXT_E_BPF_NO_BPFFS', `cannot mount bpffs at ${mountPoint}: ${stderr || (err as Error).message}`, { path: mountPoint });
  }
  return true;
}

/** Throws unless `dir` (or its nearest existing ancestor) is on a bpffs. */
function assertOnBpffs(dir: string): void {
  let p = dir;
  while (!existsSync(p)) p = dirname(p);
  if (statfsSync(p).type !== BPF_FS_MAGIC) {
    fail('MESHEXT_E_BPF_NO_BPFFS', `pin root ${dir} is not on a bpf filesystem (${p} is not bpffs); mount one first: mount -t bpf bpf /sys/fs/bpf`, { path: dir });
  }
}

function pinDirs(pinRoot: string): { base: string; maps: string; links: string } {
  const base = join(pinRoot, `v${LAYOUT_VERSION}`);
  return { base, maps: join(base, 'maps'), links: join(base, 'links') };
}

/** The layout version directories (`v<N>`) under a pin root. */
function layoutDirs(pinRoot: string): string[] {
  return existsSync(pinRoot) ? readdirSync(pinRoot).filter((v) => /^v\d+$/.test(v)) : [];
}

/** Detaches the links and unpins the maps of one layout version directory, then removes it. */
function removeLayout(addon: NativeAddon, pinRoot: string, v: string): { links: number; maps: number } {
  const res = { links: 0, maps: 0 };
  const linksDir = join(pinRoot, v, 'links');
  const mapsDir = join(pinRoot, v, 'maps');
  for (const name of existsSync(linksDir) ? readdirSync(linksDir) : []) {
    detachPinnedLink(addon, join(linksDir, name));
    res.links++;
  }
  for (const name of existsSync(mapsDir) ? readdirSync(mapsDir) : []) {
    unlinkSync(join(mapsDir, name));
    res.maps++;
  }
  for (const d of [linksDir, mapsDir, join(pinRoot, v)]) if (existsSync(d)) rmdirSync(d);
  return res;
}

/**
 * After an upgrade that changed the map layout, the previous agent's links (another `v<N>`) would still redirect
 * into maps nobody reads: once this version's links are attached, the others are detached and unpinned.
 */
function retireOtherLayouts(addon: NativeAddon, pinRoot: string, log: Logger): void {
  for (const v of layoutDirs(pinRoot)) {
    if (v === `v${LAYOUT_VERSION}`) continue;
    const n = removeLayout(addon, pinRoot, v);
    log.warn({ pinRoot, layout: v, current: `v${LAYOUT_VERSION}`, ...n }, 'retired the pinned programs and maps of another layout version');
  }
}

/** Finds the directory of a cgroup id under the cgroup2 mount (bounded walk; null when gone). */
function cgroupPathById(addon: NativeAddon, id: bigint, root: string, maxDirs = 20000): string | null {
  const queue = [root];
  let seen = 0;
  while (queue.length > 0 && seen < maxDirs) {
    const dir = queue.shift() as string;
    seen++;
    try {
      if (addon.cgroupId(dir) === id) return dir;
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) queue.push(join(dir, e.name));
    } catch {
      /* raced with rmdir */
    }
  }
  return null;
}

export type LinkAction = 'created' | 'updated' | 'recreated';

/** Attaches every program through a pinned link, updating pinned links in place. */
function reconcileLinks(addon: NativeAddon, programs: LoadedProgram[], linksDir: string, cgroupPath: string, log: Logger): Record<string, { action: LinkAction; linkId: number }> {
  const target = addon.cgroupId(cgroupPath);
  const out: Record<string, { action: LinkAction; linkId: number }> = {};
  const wanted = new Set(programs.map((p) => p.name));
  for (const prog of programs) {
    const pin = join(linksDir, prog.name);
    let fd: number | undefined;
    let action: LinkAction = 'created';
    try {
      fd = addon.objGet(pin);
    } catch (err) {
      if (!isErrno(err, ENOENT)) throw err;
    }
    if (fd !== undefined) {
      const info = addon.linkInfo(fd);
      if (info.cgroupId === target && info.attachType === prog.attachType) {
        try {
          addon.linkUpdate(fd, prog.fd);
          action = 'updated';
        } catch (err) {
          if (!isErrno(err, ENOLINK)) {
            addon.closeFd(fd);
            throw err;
          }
          log.warn({ program: prog.name, pin }, 'pinned link severed (cgroup removed); recreating');
          addon.closeFd(fd);
          unlinkSync(pin);
          fd = undefined;
          action = 'recreated';
        }
      } else {
        // Pinned for another cgroup (or defunct: cgroup id 0): never leave a hook where it is not wanted.
        if (info.cgroupId && info.cgroupId !== 0n) {
          try {
            addon.linkDetach(fd);
          } catch {
            /* already severed */
          }
        }
        addon.closeFd(fd);
        unlinkSync(pin);
        fd = undefined;
        action = 'recreated';
      }
    }
    if (fd === undefined) {
      const attachName = ATTACH_TYPE_NAMES[prog.attachType] ?? String(prog.attachType);
      try {
        fd = addon.linkCreate(prog.fd, cgroupPath, prog.attachType);
      } catch (err) {
        if (isErrno(err, EPERM)) {
          fail(
            'MESHEXT_E_BPF_ATTACH_CONFLICT',
            `cannot attach ${prog.name} to cgroup ${cgroupPath} (${attachName}): EPERM — another program is attached there exclusively (non-multi), or this process lacks CAP_BPF+CAP_NET_ADMIN; inspect with: bpftool cgroup show ${cgroupPath}`,
            { errno: EPERM, syscall: 'bpf_link_create', cgroupPath, attachType: attachName, program: prog.name },
          );
        }
        throw err;
      }
      try {
        addon.objPin(fd, pin);
      } catch (err) {
        addon.linkDetach(fd);
        addon.closeFd(fd);
        throw err;
      }
    }
    out[prog.name] = { action, linkId: addon.linkInfo(fd).id };
    addon.closeFd(fd);
  }
  // Programs dropped from the object must not stay attached.
  for (const name of readdirSync(linksDir)) {
    if (wanted.has(name)) continue;
    detachPinnedLink(addon, join(linksDir, name));
    log.info({ program: name }, 'detached link of a program no longer in the object');
  }
  return out;
}

function detachPinnedLink(addon: NativeAddon, pin: string): void {
  const fd = addon.objGet(pin);
  try {
    addon.linkDetach(fd);
  } catch (err) {
    if (!isErrno(err, ENOLINK)) throw err;
  } finally {
    addon.closeFd(fd);
  }
  unlinkSync(pin);
}

/** Owns the pinned maps of one meshext pin root; see the module comment. */
export class Redirector {
  private readonly fds = new Map<MapName, number>();
  private cfg: RedirectConfig;
  private nameservers = new Set<string>();
  /** What setAccess last wrote, as hex keys → hex values; null until the first call reads the kernel's maps. */
  private access: { cg: Map<string, string>; svc: Map<string, string>; verdict: Map<string, string> } | null = null;
  private accessOn = false;
  private capacity: AccessCapacity | undefined;
  /** Possible CPUs (per-CPU map value count): read once, not on every scrape. */
  private readonly ncpu = possibleCpus();
  /** Service indexes setAccess last wrote (their counters are this agent's). */
  /** Service index → owner whose counters the index holds. */
  private accessSvcs = new Map<number, string | undefined>();
  private heartbeatNs = 0n;
  private readonly netnsCookie: bigint;
  private timer: NodeJS.Timeout | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly addon: NativeAddon,
    readonly pinRoot: string,
    readonly cgroupPath: string,
    cfg: RedirectConfig,
    readonly links: Record<string, { action: LinkAction; linkId: number }>,
    private readonly log: Logger,
  ) {
    this.cfg = cfg;
    this.netnsCookie = addon.netnsCookie();
  }

  /** Whether this kernel and process can run the redirect (addon loadable, privileges, helpers). */
  static probe(): { ok: boolean; reason?: string } {
    try {
      const r = native().probe();
      if (!r.ok) return { ok: false, reason: r.reason ?? 'unknown' };
      findCgroup2Mount();
      bpfObjectPath();
      return { ok: true };
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
  }

  /** Loads programs, reconciles pinned links (update in place), writes config, exempts self. */
  static async start(opts: RedirectOptions): Promise<Redirector> {
    const log = (opts.log ?? silentLogger()).child({ component: 'redirect' });
    validateConfig(opts);
    const addon = native();
    const pinRoot = opts.pinRoot ?? DEFAULT_PIN_ROOT;
    const cgroupPath = opts.cgroupPath ?? findCgroup2Mount();
    assertCgroup2Dir(cgroupPath);
    assertOnBpffs(pinRoot);
    const dirs = pinDirs(pinRoot);
    mkdirSync(dirs.maps, { recursive: true });
    mkdirSync(dirs.links, { recursive: true });

    let obj;
    try {
      obj = addon.loadObject(bpfObjectPath(), dirs.maps);
    } catch (err) {
      const e = err as { code?: string; program?: string; log?: string; message: string };
      if (e.log) {
        log.error({ program: e.program, verifierLog: e.log }, 'BPF load failed');
        // The tail of the verifier log says why; keep it in the message for CLI users.
        e.message += `${e.program ? ` (program ${e.program})` : ''}\n${e.log.trim().split('\n').slice(-15).join('\n')}`;
      }
      throw err;
    }
    let r: Redirector | undefined;
    try {
      const fds = new Map<MapName, number>();
      for (const m of MAP_NAMES) fds.set(m, addon.objGet(join(dirs.maps, m)));
      // Config and exemption first, so the links never run with a stale view of this agent.
      r = new Redirector(addon, pinRoot, cgroupPath, opts, {}, log);
      for (const [k, v] of fds) r.fds.set(k, v);
      // Access rules a previous agent left stay enforced until this one writes its own (setAccess).
      r.accessOn = addon.mapCount(r.fd('mx_svc_access'), LAYOUT.mx_svc_key.size) > 0;
      r.syncNameservers(opts.dns?.nameservers ?? [], true);
      if (opts.exemptSelf ?? true) r.exemptSelf();
      r.writeConfig();
      opts.beforeAttach?.(r);
      const links = reconcileLinks(addon, obj.programs, dirs.links, cgroupPath, log);
      Object.assign(r.links, links);
      log.info({ cgroupPath, pinRoot, links }, 'redirect programs attached');
      retireOtherLayouts(addon, pinRoot, log);
    } catch (err) {
      r?.close();
      throw err;
    } finally {
      addon.closeObject(obj.handle);
    }
    if (opts.dns) r.startHeartbeat();
    r.startSweeper();
    return r;
  }

  /** Registers a cgroup (by path) whose sockets are never redirected. */
  exemptCgroup(path: string): bigint {
    const id = this.addon.cgroupId(path);
    this.addon.mapUpdate(this.fd('mx_exempt_cg'), encodeCgroupId(id), u32(1), 0);
    return id;
  }

  /** Puts this process in its own cgroup if it sits in the root, and exempts that cgroup. */
  exemptSelf(): { path: string; id: bigint; moved: boolean } {
    const placed = placeSelf();
    const id = this.exemptCgroup(placed.path);
    this.log.info({ cgroup: placed.path, cgroupId: id.toString(), moved: placed.moved }, 'agent cgroup exempt from redirect');
    return { ...placed, id };
  }

  /** mx_peer_orig's fd, for a proxy engine that takes original destinations itself (as takeOriginalDst does). */
  peerOrigMapFd(): number {
    return this.fd('mx_peer_orig');
  }

  /**
   * Takes (lookup-and-delete) the original destination of an accepted connection, by the rule the engine's
   * transparent listener uses: null when there is none or when the entry is stale (older than MX_ORIG_MAX_AGE_MS).
   */
  takeOriginalDst(peer: { address: string; port: number }, localPort: number): { address: string; port: number } | null {
    const key = encodePeerKey(peer.address, peer.port, localPort);
    const v = this.addon.origDstTake(this.fd('mx_peer_orig'), key);
    if (!v || !('orig' in v)) return null;
    const o = decodeOrig(v.orig);
    return { address: o.address, port: o.port };
  }

  /**
   * Removes original destinations nobody took in time (MX_ORIG_MAX_AGE_MS): those of connections that waited in
   * the accept queue of an agent that stopped. Runs at start and every SWEEP_INTERVAL_MS.
   */
  sweepStaleOrigins(): number {
    const n = this.addon.origDstSweep(this.fd('mx_peer_orig'));
    if (n > 0) this.log.info({ removed: n }, 'stale original destinations removed');
    return n;
  }

  /** Rewrites the runtime config; programs see it on their next hook run. */
  updateConfig(cfg: Partial<RedirectConfig>): void {
    const next: RedirectConfig = { ...this.cfg, ...cfg };
    validateConfig(next);
    this.cfg = next;
    this.syncNameservers(next.dns?.nameservers ?? [], false);
    this.writeConfig();
    if (next.dns) this.startHeartbeat();
    else this.stopHeartbeat();
  }

  /**
   * Makes the kernel's access maps equal to `table`. Verdicts go in first, then the cgroup → identity entries that
   * lead to them, then the service entries; removals run the other way (service, cgroup, verdict). A connect thus
   * never meets an identity index whose verdicts are not written yet (it would get the service's unlisted verdict:
   * fail open under a deny-list, EPERM under an allow-list).
   * The first call also removes entries a previous agent left.
   */
  setAccess(table: AccessTable): { written: number; removed: number } {
    const want = { cg: new Map<string, string>(), svc: new Map<string, string>(), verdict: new Map<string, string>() };
    for (const [id, ident] of table.cgroups) {
      if (!Number.isInteger(ident) || ident < 1 || ident > 0xffffffff) fail('MESHEXT_E_BPF_ARG', `cgroup ${id}: identity index must be 1..2^32-1, got ${ident}`);
      want.cg.set(encodeCgroupId(id).toString('hex'), u32(ident).toString('hex'));
    }
    for (const s of table.services) {
      if (!Number.isInteger(s.svc) || s.svc < 0 || s.svc >= FLAGS.MX_ACCESS_SVC_MAX) fail('MESHEXT_E_BPF_ARG', `service ${s.vip}:${s.port}: index must be 0..${FLAGS.MX_ACCESS_SVC_MAX - 1}, got ${s.svc}`);
      checkIp('vip', s.vip);
      if (!isV4(s.vip)) fail('MESHEXT_E_BPF_ARG', `service VIP must be IPv4, got "${s.vip}"`);
      checkPort('port', s.port);
      want.svc.set(encodeSvcKey(s.vip, s.port).toString('hex'), encodeSvcAccess(s.svc, s.unlisted, s.noIdentity).toString('hex'));
      for (const [ident, v] of s.verdicts) want.verdict.set(encodeVerdictKey(s.svc, ident).toString('hex'), u32(VERDICT_CODES[v]).toString('hex'));
    }
    const fds = { cg: this.fd('mx_cg_ident'), svc: this.fd('mx_svc_access'), verdict: this.fd('mx_verdict') };
    const keySize = { cg: 8, svc: LAYOUT.mx_svc_key.size, verdict: LAYOUT.mx_verdict_key.size };
    // Checked before any write: a write failing part-way (E2BIG) would leave a mix of two tables.
    const cap = this.accessCapacity();
    const capOf = { cg: cap.cgroups, svc: cap.services, verdict: cap.verdicts };
    for (const m of ['cg', 'svc', 'verdict'] as const) {
      if (want[m].size > capOf[m]) fail('MESHEXT_E_BPF_MAP_FULL', `access table has ${want[m].size} ${m} entries; the kernel map holds ${capOf[m]}`);
    }
    const have =
      this.access ??
      (Object.fromEntries(
        (['cg', 'svc', 'verdict'] as const).map((m) => [m, new Map(this.addon.mapKeys(fds[m], keySize[m]).map((k) => [k.toString('hex'), '']))]),
      ) as { cg: Map<string, string>; svc: Map<string, string>; verdict: Map<string, string> });
    let written = 0;
    let removed = 0;
    const put = (m: 'cg' | 'svc' | 'verdict', entries: Map<string, string> = want[m]): void => {
      for (const [k, v] of entries) {
        if (have[m].get(k) === v) continue;
        this.addon.mapUpdate(fds[m], Buffer.from(k, 'hex'), Buffer.from(v, 'hex'), 0);
        have[m].set(k, v);
        written++;
      }
    };
    const drop = (m: 'cg' | 'svc' | 'verdict'): void => {
      for (const k of [...have[m].keys()]) {
        if (want[m].has(k)) continue;
        if (this.addon.mapDelete(fds[m], Buffer.from(k, 'hex'))) removed++;
        have[m].delete(k);
      }
    };
    const union = (m: 'cg' | 'svc' | 'verdict'): number => want[m].size + [...have[m].keys()].filter((k) => !want[m].has(k)).length;
    try {
      // Counters and denial records are keyed by service index: an index new to this agent, or one that now
      // stands for another service, starts from zero; a previous agent's records (whose indexes meant other
      // services) are dropped.
      if (this.access === null) for (const k of this.addon.mapKeys(this.fd('mx_denials'), LAYOUT.mx_denial_key.size)) this.addon.mapDelete(this.fd('mx_denials'), k);
      const ncpu = this.ncpu;
      for (const s of table.services) {
        if (this.accessSvcs.has(s.svc) && this.accessSvcs.get(s.svc) === s.owner) continue;
        for (let slot = 0; slot < FLAGS.MX_ACNT_MAX; slot++) this.addon.mapUpdate(this.fd('mx_access_cnt'), u32(s.svc * FLAGS.MX_ACNT_MAX + slot), Buffer.alloc(8 * ncpu), 0);
      }
      this.accessSvcs = new Map(table.services.map((s) => [s.svc, s.owner]));
      if (union('verdict') > cap.verdicts || union('cg') > cap.cgroups || union('svc') > cap.services) {
        // Old and new entries together do not fit (a restart's leftovers, a big change): every service refuses
        // everyone while the stale entries go, then the new table goes in in the usual order. Fail closed, briefly.
        const closed = new Map([...want.svc].map(([k, v]) => [k, closedSvcValue(v)]));
        put('svc', closed);
        drop('svc');
        drop('cg');
        drop('verdict');
      }
      put('verdict');
      put('cg');
      put('svc');
      this.access = want;
    } catch (err) {
      // What the kernel holds is not known any more: the next call reads it back.
      this.access = null;
      throw err;
    }
    const on = want.svc.size > 0;
    if (on !== this.accessOn) {
      this.accessOn = on;
      this.writeConfig();
    }
    try {
      drop('svc');
      drop('cg');
      drop('verdict');
    } catch (err) {
      this.access = null;
      throw err;
    }
    return { written, removed };
  }

  /** max_entries of the access maps (read once: a map's size never changes while it is pinned). */
  accessCapacity(): AccessCapacity {
    this.capacity ??= {
      cgroups: this.addon.mapInfo(this.fd('mx_cg_ident')).maxEntries,
      services: Math.min(this.addon.mapInfo(this.fd('mx_svc_access')).maxEntries, FLAGS.MX_ACCESS_SVC_MAX),
      verdicts: this.addon.mapInfo(this.fd('mx_verdict')).maxEntries,
    };
    return this.capacity;
  }

  /**
   * The cgroup → identity index entries in mx_cg_ident (a previous agent's, after a restart): the indexer keeps
   * these numbers, so a restart changes no key and no connect meets an index without its verdicts.
   */
  identityIndexes(): Map<bigint, number> {
    const fd = this.fd('mx_cg_ident');
    const out = new Map<bigint, number>();
    for (const k of this.addon.mapKeys(fd, 8)) {
      const v = this.addon.mapLookup(fd, k, 4);
      if (v) out.set(k.readBigUInt64LE(0), v.readUInt32LE(0));
    }
    return out;
  }

  /**
   * Per-service access counters (mx_access_cnt) summed over CPUs, for the given service indexes. One native call
   * sums the array up to the highest index asked (a scrape would otherwise make services x 5 map lookups).
   */
  accessCounters(svcs: number[]): Map<number, Record<AccessCounterName, number>> {
    const out = new Map<number, Record<AccessCounterName, number>>();
    if (svcs.length === 0) return out;
    const top = Math.max(...svcs);
    const sums = this.addon.percpuSumU64(this.fd('mx_access_cnt'), (top + 1) * FLAGS.MX_ACNT_MAX);
    for (const svc of svcs) {
      const rec = {} as Record<AccessCounterName, number>;
      ACCESS_COUNTER_NAMES.forEach((name, slot) => {
        rec[name] = Number(sums[svc * FLAGS.MX_ACNT_MAX + slot] ?? 0n);
      });
      out.set(svc, rec);
    }
    return out;
  }

  /** Takes (reads and removes) the denials the connect hooks recorded since the last call. */
  takeDenials(): DenialRecord[] {
    const fd = this.fd('mx_denials');
    const out: DenialRecord[] = [];
    for (const k of this.addon.mapKeys(fd, LAYOUT.mx_denial_key.size)) {
      const v = this.addon.mapLookup(fd, k, LAYOUT.mx_denial.size);
      this.addon.mapDelete(fd, k);
      if (v) out.push(decodeDenial(k, v));
    }
    return out;
  }

  /** Marks the resolver alive for other network namespaces (they cannot see its socket). */
  heartbeat(): void {
    this.heartbeatNs = process.hrtime.bigint(); // CLOCK_MONOTONIC, as bpf_ktime_get_ns
    this.writeConfig();
  }

  /** Kernel counters summed over CPUs. */
  counters(): Record<string, number> {
    const vals = this.addon.percpuSumU64(this.fd('mx_counters'), COUNTER_NAMES.length);
    return Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, Number(vals[i] ?? 0n)]));
  }

  /** What `meshext bpf list` prints. */
  describe(): BpfListing {
    return Redirector.list({ pinRoot: this.pinRoot });
  }

  /** Releases fds; the pinned links stay attached so redirects survive a restart. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopHeartbeat();
    if (this.sweeper) clearInterval(this.sweeper);
    for (const fd of this.fds.values()) this.addon.closeFd(fd);
    this.fds.clear();
  }

  /** Reads pinned links, maps, counters and config of a pin root (no agent needed). */
  static list(opts: { pinRoot?: string } = {}): BpfListing {
    const addon = native();
    const pinRoot = opts.pinRoot ?? DEFAULT_PIN_ROOT;
    const dirs = pinDirs(pinRoot);
    const out: BpfListing = { pinRoot, layoutVersion: LAYOUT_VERSION, links: [], maps: [], counters: {}, config: null };
    let cg2: string | undefined;
    try {
      cg2 = findCgroup2Mount();
    } catch {
      cg2 = undefined;
    }
    for (const name of existsSync(dirs.links) ? readdirSync(dirs.links).sort() : []) {
      const fd = addon.objGet(join(dirs.links, name));
      try {
        const li = addon.linkInfo(fd);
        const cgId = li.cgroupId ?? 0n;
        out.links.push({
          program: addon.progInfoById(li.progId)?.name ?? name,
          attachType: ATTACH_TYPE_NAMES[li.attachType ?? -1] ?? String(li.attachType),
          linkId: li.id,
          progId: li.progId,
          cgroupId: cgId.toString(),
          cgroupPath: cgId && cg2 ? cgroupPathById(addon, cgId, cg2) : null,
          defunct: cgId === 0n,
        });
      } finally {
        addon.closeFd(fd);
      }
    }
    for (const name of existsSync(dirs.maps) ? readdirSync(dirs.maps).sort() : []) {
      const fd = addon.objGet(join(dirs.maps, name));
      try {
        const mi = addon.mapInfo(fd);
        const isArray = ARRAY_MAPS.has(name);
        out.maps.push({ name, id: mi.id, type: mi.type, entries: isArray ? mi.maxEntries : addon.mapCount(fd, mi.keySize), maxEntries: mi.maxEntries });
        if (name === 'mx_counters') {
          const vals = addon.percpuSumU64(fd, Math.min(mi.maxEntries, COUNTER_NAMES.length));
          COUNTER_NAMES.forEach((n, i) => (out.counters[n] = Number(vals[i] ?? 0n)));
        }
        if (name === 'mx_config') {
          const v = addon.mapLookup(fd, u32(0), LAYOUT.mx_config.size);
          if (v) {
            const c = decodeConfig(v);
            out.config = {
              vipCidr: `${c.vipNet}/${c.vipPrefix}`,
              proxy: `${c.proxyAddress}:${c.proxyPort}`,
              dns: c.flags & FLAGS.MX_F_REDIRECT_DNS ? `${c.dnsAddress}:${c.dnsPort}` : null,
              flags: c.flags,
            };
          }
        }
      } finally {
        addon.closeFd(fd);
      }
    }
    return out;
  }

  /** Detaches and unpins every link and map under the pin root (all layout versions); nothing else. */
  static async cleanup(opts: { pinRoot?: string } = {}): Promise<{ links: number; maps: number }> {
    const pinRoot = opts.pinRoot ?? DEFAULT_PIN_ROOT;
    const res = { links: 0, maps: 0 };
    if (!existsSync(pinRoot)) return res;
    const addon = native();
    for (const v of layoutDirs(pinRoot)) {
      const n = removeLayout(addon, pinRoot, v);
      res.links += n.links;
      res.maps += n.maps;
    }
    if (readdirSync(pinRoot).length === 0) rmdirSync(pinRoot);
    return res;
  }

  private fd(name: MapName): number {
    const fd = this.fds.get(name);
    if (fd === undefined) fail('MESHEXT_E_BPF_CLOSED', `redirector for ${this.pinRoot} is closed`);
    return fd;
  }

  private writeConfig(): void {
    const { net, prefix } = validateConfig(this.cfg);
    const dns = this.cfg.dns;
    let flags = FLAGS.MX_F_REDIRECT_TCP | FLAGS.MX_F_EXEMPT_CGROUPS;
    if (dns) flags |= FLAGS.MX_F_REDIRECT_DNS | FLAGS.MX_F_DNS_HEARTBEAT;
    if (this.accessOn) flags |= FLAGS.MX_F_ACCESS;
    if (!isV4(this.cfg.proxy.address)) this.log.warn({ proxy: this.cfg.proxy.address }, 'IPv6 proxy address: IPv4 sockets to VIPs cannot be redirected');
    const fields: ConfigFields = {
      vipNet: net,
      vipPrefix: prefix,
      proxyAddress: this.cfg.proxy.address,
      proxyPort: this.cfg.proxy.port,
      dnsAddress: dns?.address ?? '0.0.0.0',
      dnsPort: dns?.port ?? 0,
      flags,
      heartbeatMaxAgeMs: HEARTBEAT_MAX_AGE_MS,
      heartbeatNs: this.heartbeatNs,
      agentNetnsCookie: this.netnsCookie,
    };
    this.addon.mapUpdate(this.fd('mx_config'), u32(0), encodeConfig(fields), 0);
  }

  private syncNameservers(list: string[], fromKernel: boolean): void {
    const fd = this.fd('mx_nameservers');
    const want = new Map(list.map((a) => [encodeAddr(a).toString('hex'), a]));
    const have = fromKernel ? this.addon.mapKeys(fd, 16).map((k) => k.toString('hex')) : [...this.nameservers];
    for (const k of have) if (!want.has(k)) this.addon.mapDelete(fd, Buffer.from(k, 'hex'));
    for (const k of want.keys()) this.addon.mapUpdate(fd, Buffer.from(k, 'hex'), u32(1), 0);
    this.nameservers = new Set(want.keys());
  }

  private startHeartbeat(): void {
    this.heartbeat();
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (!this.closed) this.heartbeat();
    }, HEARTBEAT_INTERVAL_MS);
    this.timer.unref();
  }

  private startSweeper(): void {
    this.sweepStaleOrigins();
    this.sweeper = setInterval(() => {
      if (!this.closed) this.sweepStaleOrigins();
    }, SWEEP_INTERVAL_MS);
    this.sweeper.unref();
  }

  private stopHeartbeat(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
