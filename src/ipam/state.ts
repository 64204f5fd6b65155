/**
 * The IPAM state file's layout and its checks. The file is meant to be written by meshext only, but people
 * edit it by hand; every entry that could misroute traffic is dropped with a problem naming it, and the
 * rest of the state is kept.
 */
import ipaddr from 'ipaddr.js';
import { type Cidr, addrToBig, cidrContains, fromBig, parseCidr } from './cidr.js';

export interface Allocation {
  vip: string;
  allocatedAt: string;
}

/** A released VIP: kept for its service, and for nobody else until `until` (ISO time) has passed. */
export interface Tombstone {
  id: string;
  vip: string;
  releasedAt: string;
  until: string;
}

export interface State {
  version: 1;
  cidr: string;
  /** CIDRs of earlier configurations that kept VIPs still come from (a CIDR change keeps existing VIPs). */
  previousCidrs?: string[];
  /** Next candidate address (text). */
  next?: string;
  allocations: Record<string, Allocation>;
  tombstones: Tombstone[];
}

/** One thing wrong in the state file: where (`allocations["m/a"].vip`), the value found, and what was done. */
export interface StateProblem {
  entry: string;
  value: unknown;
  message: string;
}

export function emptyState(range: Cidr): State {
  return { version: 1, cidr: range.text, allocations: {}, tombstones: [] };
}

/** Address ranges a VIP may never be in, whatever the CIDR says: traffic to them never reaches the proxy. */
const FORBIDDEN_RANGES: Record<string, string> = {
  loopback: 'a loopback address (127.0.0.0/8, ::1)',
  unspecified: 'the unspecified address',
  multicast: 'a multicast address',
  broadcast: 'the broadcast address',
};

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const timeOf = (v: unknown): number | undefined => (typeof v === 'string' && Number.isFinite(Date.parse(v)) ? Date.parse(v) : undefined);

/**
 * Checks parsed state-file content against the configured range. Returns the state to use (every valid
 * entry kept) and one problem per entry that was dropped or repaired. `now` and `quarantineMs` date a
 * tombstone whose times are unreadable: it is quarantined from now, never freed early.
 */
export function checkState(raw: unknown, range: Cidr, opts: { now: number; quarantineMs: number }): { state: State; problems: StateProblem[] } {
  const problems: StateProblem[] = [];
  const state = emptyState(range);
  if (!isRecord(raw)) {
    problems.push({ entry: '(top level)', value: raw, message: 'must be an object {version, cidr, allocations, tombstones}; nothing kept' });
    return { state, problems };
  }
  if (raw.version !== 1) problems.push({ entry: 'version', value: raw.version, message: 'must be 1; keeping the entries that are valid' });

  // VIPs may come from the CIDR recorded in the file or an earlier one (kept across a CIDR change).
  const allowed: Cidr[] = [range];
  const recorded = typeof raw.cidr === 'string' ? tryCidr(raw.cidr) : undefined;
  if (recorded === undefined) problems.push({ entry: 'cidr', value: raw.cidr, message: `is not a CIDR; assuming ${range.text}` });
  else {
    state.cidr = recorded.text;
    if (recorded.family === range.family) allowed.push(recorded);
  }
  if (raw.previousCidrs !== undefined) {
    const prev = Array.isArray(raw.previousCidrs) ? raw.previousCidrs : [];
    if (!Array.isArray(raw.previousCidrs)) problems.push({ entry: 'previousCidrs', value: raw.previousCidrs, message: 'must be a list of CIDRs; ignored' });
    prev.forEach((p, i) => {
      const c = typeof p === 'string' ? tryCidr(p) : undefined;
      if (c === undefined) problems.push({ entry: `previousCidrs[${i}]`, value: p, message: 'is not a CIDR; ignored' });
      else if (c.family === range.family) {
        allowed.push(c);
        state.previousCidrs = [...(state.previousCidrs ?? []), c.text];
      }
    });
  }
  /** The VIP in canonical form, or what is wrong with it. */
  const checkVip = (vip: unknown): { vip: string } | { bad: string } => {
    const big = typeof vip === 'string' ? addrToBig(vip, range.family) : undefined;
    if (big === undefined) return { bad: `is not an IPv${range.family} address` };
    const text = fromBig(big, range.family);
    // A range the operator configured is what the allocator hands out, loopback included (a node-local test
    // setup): only addresses a file or an earlier CIDR brings in are held to the forbidden ranges.
    const kind = FORBIDDEN_RANGES[ipaddr.parse(text).range()];
    const configured = big >= range.network && big < range.network + range.size;
    if (kind && !configured) return { bad: `is ${kind}` };
    if (!allowed.some((c) => big >= c.network && big < c.network + c.size)) return { bad: `is outside the VIP CIDR ${[...new Set(allowed.map((c) => c.text))].join(', ')}` };
    return { vip: text };
  };

  if (typeof raw.next === 'string' && addrToBig(raw.next, range.family) !== undefined) state.next = raw.next;

  if (!isRecord(raw.allocations)) {
    problems.push({ entry: 'allocations', value: raw.allocations, message: 'must be an object of "mesh/name": {vip, allocatedAt}; no allocation kept, services get new VIPs' });
  } else {
    // When two services claim one VIP, the one that got it first keeps it.
    const entries = Object.entries(raw.allocations)
      .map(([id, a]) => ({ id, a, at: isRecord(a) ? (timeOf(a.allocatedAt) ?? Infinity) : Infinity }))
      .sort((x, y) => (x.at !== y.at ? (x.at < y.at ? -1 : 1) : x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
    const holder = new Map<bigint, string>();
    for (const { id, a } of entries) {
      const entry = `allocations[${JSON.stringify(id)}]`;
      if (!isRecord(a)) {
        problems.push({ entry, value: a, message: `must be {vip, allocatedAt}; entry dropped, ${id} gets a new VIP` });
        continue;
      }
      const checked = checkVip(a.vip);
      if ('bad' in checked) {
        problems.push({ entry: `${entry}.vip`, value: a.vip, message: `${checked.bad}; entry dropped, ${id} gets a new VIP` });
        continue;
      }
      const { vip } = checked;
      const big = addrToBig(vip, range.family) as bigint;
      const other = holder.get(big);
      if (other !== undefined) {
        problems.push({ entry: `${entry}.vip`, value: vip, message: `is also the VIP of ${other}, which holds it since earlier; entry dropped, ${id} gets a new VIP` });
        continue;
      }
      holder.set(big, id);
      state.allocations[id] = { vip, allocatedAt: typeof a.allocatedAt === 'string' ? a.allocatedAt : new Date(opts.now).toISOString() };
    }
  }

  if (!Array.isArray(raw.tombstones)) {
    problems.push({ entry: 'tombstones', value: raw.tombstones, message: 'must be a list of {id, vip, releasedAt, until}; released VIPs are forgotten' });
  } else {
    raw.tombstones.forEach((t, i) => {
      const entry = `tombstones[${i}]`;
      if (!isRecord(t) || typeof t.id !== 'string') {
        problems.push({ entry, value: t, message: 'must be {id, vip, releasedAt, until}; entry dropped' });
        return;
      }
      const checked = checkVip(t.vip);
      if ('bad' in checked) {
        problems.push({ entry: `${entry}.vip`, value: t.vip, message: `${checked.bad}; entry dropped` });
        return;
      }
      const released = timeOf(t.releasedAt);
      // Files written before the quarantine existed have no `until`: quarantine from the release time.
      let until = t.until === undefined && released !== undefined ? released + opts.quarantineMs : timeOf(t.until);
      if (released === undefined || until === undefined) {
        until = opts.now + opts.quarantineMs;
        problems.push({ entry: `${entry} (${t.id})`, value: released === undefined ? t.releasedAt : t.until, message: `has no readable ${released === undefined ? 'releasedAt' : 'until'} time; ${checked.vip} is quarantined from now` });
      }
      state.tombstones.push({ id: t.id, vip: checked.vip, releasedAt: new Date(released ?? opts.now).toISOString(), until: new Date(until).toISOString() });
    });
  }
  return { state, problems };
}

function tryCidr(text: string): Cidr | undefined {
  try {
    return parseCidr(text);
  } catch {
    return undefined;
  }
}

/** Drops earlier CIDRs that no VIP comes from any more. */
export function pruneCidrs(st: State): void {
  if (!st.previousCidrs) return;
  const vips = [...Object.values(st.allocations).map((a) => a.vip), ...st.tombstones.map((t) => t.vip)];
  const keep = st.previousCidrs.filter((p) => {
    const c = tryCidr(p);
    return c !== undefined && vips.some((v) => cidrContains(c, v));
  });
  if (keep.length) st.previousCidrs = keep;
  else delete st.previousCidrs;
}
