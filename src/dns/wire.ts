/**
 * Strict, allocation-light parsing of incoming queries and assembly of the few response shapes the
 * resolver produces itself. Incoming bytes are hostile: every read is bounds-checked, counts are
 * checked against the remaining length before looping, and compression pointers are never followed
 * (skipping a name only needs to find its end), so loops and huge counts cost O(packet length).
 */

export const HEADER_LEN = 12;
export const TYPE_A = 1;
export const TYPE_AAAA = 28;
export const TYPE_OPT = 41;
export const CLASS_IN = 1;
export const CLASS_ANY = 255;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;
/** Extended rcode 16 = upper bits 1 in OPT + 0 in the header. */
export const EXT_RCODE_BADVERS_HIGH = 1;

const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const FLAG_CD = 0x0010;
const OPCODE_MASK = 0x7800;

/** Our advertised EDNS UDP payload size (DNS Flag Day 2020: avoids IP fragmentation). */
export const OUR_UDP_PAYLOAD = 1232;
/** RFC 1035 limit for UDP messages without EDNS. */
export const CLASSIC_UDP_LIMIT = 512;

export interface Edns {
  udpSize: number;
  version: number;
  dnssecOk: boolean;
}

/** A query that passed validation. Offsets point into the original buffer. */
export interface Query {
  id: number;
  flags: number;
  /** Owner name as written (ASCII letters keep their case), without trailing dot; '' for the root. */
  name: string;
  /** False when a label holds bytes a hostname never has (then it cannot be an owned name). */
  hostnameSafe: boolean;
  qtype: number;
  qclass: number;
  /** End offset of the question section (start is always 12). */
  questionEnd: number;
  edns?: Edns;
}

export type ParseResult =
  | { kind: 'query'; query: Query }
  /** The header is readable but the query is not acceptable: answer with this rcode. */
  | { kind: 'error'; id: number; flags: number; rcode: number; qtype?: number; edns?: Edns }
  /** Not worth (or not safe) answering. */
  | { kind: 'drop'; reason: string };

/** Returns the offset just past a (possibly compressed) name, or -1 when it runs off the buffer or is bad. */
export function skipName(buf: Buffer, off: number): number {
  let total = 0;
  for (;;) {
    if (off >= buf.length) return -1;
    const len = buf[off] ?? 0;
    if (len === 0) return off + 1;
    const top = len & 0xc0;
    if (top === 0xc0) return off + 2 <= buf.length ? off + 2 : -1;
    if (top !== 0) return -1;
    total += len + 1;
    if (total > 255) return -1;
    off += len + 1;
  }
}

/** Reads the question name (no compression allowed there: nothing precedes it to point at). */
function readQuestionName(buf: Buffer): { end: number; name: string; safe: boolean } | undefined {
  let off = HEADER_LEN;
  let total = 0;
  let name = '';
  let safe = true;
  for (;;) {
    if (off >= buf.length) return undefined;
    const len = buf[off] ?? 0;
    if (len === 0) return { end: off + 1, name, safe };
    if ((len & 0xc0) !== 0) return undefined;
    total += len + 1;
    if (total > 255 || off + 1 + len > buf.length) return undefined;
    for (let i = off + 1; i <= off + len; i++) {
      const c = buf[i] ?? 0;
      const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f;
      if (!ok) safe = false;
    }
    if (name.length) name += '.';
    name += buf.toString('latin1', off + 1, off + 1 + len);
    off += len + 1;
  }
}

/** Validates an incoming query (RFC 1035 + RFC 6891 OPT rules). */
export function parseQuery(buf: Buffer): ParseResult {
  if (buf.length < HEADER_LEN) return { kind: 'drop', reason: 'short' };
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  // Answering a response invites reflection loops between two servers (or a spoofed source): drop.
  if (flags & FLAG_QR) return { kind: 'drop', reason: 'response' };
  if ((flags & OPCODE_MASK) !== 0) return { kind: 'error', id, flags, rcode: RCODE_NOTIMP };
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  const ns = buf.readUInt16BE(8);
  const ar = buf.readUInt16BE(10);
  if (qd !== 1) return { kind: 'error', id, flags, rcode: RCODE_FORMERR };
  const q = readQuestionName(buf);
  if (!q || q.end + 4 > buf.length) return { kind: 'error', id, flags, rcode: RCODE_FORMERR };
  const qtype = buf.readUInt16BE(q.end);
  const qclass = buf.readUInt16BE(q.end + 2);
  const questionEnd = q.end + 4;
  // Every RR needs at least 11 bytes; refuse impossible counts before looping over them.
  if ((an + ns + ar) * 11 > buf.length - questionEnd) return { kind: 'error', id, flags, rcode: RCODE_FORMERR, qtype };
  let off = questionEnd;
  let edns: Edns | undefined;
  for (let i = 0; i < an + ns + ar; i++) {
    const nameStart = off;
    off = skipName(buf, off);
    if (off < 0 || off + 10 > buf.length) return { kind: 'error', id, flags, rcode: RCODE_FORMERR, qtype };
    const type = buf.readUInt16BE(off);
    const rdlen = buf.readUInt16BE(off + 8);
    if (off + 10 + rdlen > buf.length) return { kind: 'error', id, flags, rcode: RCODE_FORMERR, qtype };
    if (type === TYPE_OPT) {
      // RFC 6891 §6.1.1: one OPT, owner root, additional section only; otherwise FORMERR.
      if (edns || i < an + ns || off !== nameStart + 1) return { kind: 'error', id, flags, rcode: RCODE_FORMERR, qtype };
      edns = { udpSize: buf.readUInt16BE(off + 2), version: buf[off + 5] ?? 0, dnssecOk: ((buf.readUInt16BE(off + 6) >> 15) & 1) === 1 };
    }
    off += 10 + rdlen;
  }
  if (edns && edns.version !== 0) return { kind: 'error', id, flags, rcode: RCODE_NOERROR, qtype, edns };
  const query: Query = { id, flags, name: q.name, hostnameSafe: q.safe, qtype, qclass, questionEnd };
  if (edns) query.edns = edns;
  return { kind: 'query', query };
}

/** Largest UDP response this client accepts: 512 without EDNS, its advertised size (min 512) capped at ours. */
export function udpLimit(edns: Edns | undefined): number {
  if (!edns) return CLASSIC_UDP_LIMIT;
  return Math.min(Math.max(edns.udpSize, CLASSIC_UDP_LIMIT), OUR_UDP_PAYLOAD);
}

const OPT_LEN = 11;

function writeOpt(out: Buffer, off: number, edns: Edns, extRcodeHigh = 0): number {
  out[off] = 0;
  out.writeUInt16BE(TYPE_OPT, off + 1);
  out.writeUInt16BE(OUR_UDP_PAYLOAD, off + 3);
  out[off + 5] = extRcodeHigh;
  out[off + 6] = 0; // version 0: the only one we speak
  out.writeUInt16BE(edns.dnssecOk ? 0x8000 : 0, off + 7); // RFC 3225: DO is echoed
  out.writeUInt16BE(0, off + 9);
  return off + OPT_LEN;
}

function responseFlags(queryFlags: number, rcode: number, extra: number): number {
  // Keep opcode, RD and CD from the query; we recurse (by forwarding), so RA is set.
  return FLAG_QR | (queryFlags & (OPCODE_MASK | FLAG_RD | FLAG_CD)) | FLAG_RA | extra | (rcode & 0xf);
}

/**
 * An authoritative answer for an owned name: header, the client's question bytes (so the answer
 * echoes its case), pre-encoded answers, and an OPT when the client sent one. When it would not fit
 * in `limit`, the answers are dropped and TC is set so the client retries over TCP.
 */
export function buildLocalAnswer(query: Buffer, q: Query, answers: Buffer, count: number, limit: number): Buffer {
  const qlen = q.questionEnd - HEADER_LEN;
  const optLen = q.edns ? OPT_LEN : 0;
  let size = HEADER_LEN + qlen + answers.length + optLen;
  let tc = 0;
  if (size > limit) {
    tc = FLAG_TC;
    count = 0;
    size = HEADER_LEN + qlen + optLen;
  }
  const out = Buffer.allocUnsafe(size);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(responseFlags(q.flags, RCODE_NOERROR, FLAG_AA | tc), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(count, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(optLen ? 1 : 0, 10);
  query.copy(out, HEADER_LEN, HEADER_LEN, q.questionEnd);
  let off = HEADER_LEN + qlen;
  if (count) off += answers.copy(out, off);
  if (q.edns) writeOpt(out, off, q.edns);
  return out;
}

/** A header-only error response (FORMERR, NOTIMP, BADVERS, overload SERVFAIL...), plus OPT if the client had EDNS. */
export function buildError(id: number, queryFlags: number, rcode: number, edns?: Edns, extRcodeHigh = 0): Buffer {
  const out = Buffer.allocUnsafe(HEADER_LEN + (edns ? OPT_LEN : 0));
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(responseFlags(queryFlags, rcode, 0), 2);
  out.writeUInt32BE(0, 4);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(edns ? 1 : 0, 10);
  if (edns) writeOpt(out, HEADER_LEN, edns, extRcodeHigh);
  return out;
}

/** SERVFAIL for a parsed query, keeping its question so stub resolvers can match it. */
export function buildServfail(query: Buffer, q: Query): Buffer {
  const qlen = q.questionEnd - HEADER_LEN;
  const optLen = q.edns ? OPT_LEN : 0;
  const out = Buffer.allocUnsafe(HEADER_LEN + qlen + optLen);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(responseFlags(q.flags, RCODE_SERVFAIL, 0), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(optLen ? 1 : 0, 10);
  query.copy(out, HEADER_LEN, HEADER_LEN, q.questionEnd);
  if (q.edns) writeOpt(out, HEADER_LEN + qlen, q.edns);
  return out;
}

/**
 * Checks an upstream reply against what we sent: a response, same id, exactly one question equal to
 * ours (names compared case-insensitively, as resolvers may randomise case). Anything else is ignored.
 */
export function replyMatches(reply: Buffer, sent: Buffer, sentQuestionEnd: number): boolean {
  if (reply.length < sentQuestionEnd) return false;
  if (reply.readUInt16BE(0) !== sent.readUInt16BE(0)) return false;
  if ((reply.readUInt16BE(2) & FLAG_QR) === 0) return false;
  if (reply.readUInt16BE(4) !== 1) return false;
  for (let i = HEADER_LEN; i < sentQuestionEnd; i++) {
    let a = reply[i] ?? 0;
    let b = sent[i] ?? 0;
    if (a >= 0x41 && a <= 0x5a) a |= 0x20;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (a !== b) return false;
  }
  return true;
}

export function replyRcode(reply: Buffer): number {
  return reply.readUInt16BE(2) & 0xf;
}

export function replyTruncated(reply: Buffer): boolean {
  return (reply.readUInt16BE(2) & FLAG_TC) !== 0;
}

/**
 * Cuts an upstream reply that is too big for the client's UDP limit down to header + question (+ our OPT
 * when the client used EDNS) with TC set, so the client retries over TCP.
 */
export function truncateReply(reply: Buffer, questionEnd: number, edns: Edns | undefined): Buffer {
  const optLen = edns ? OPT_LEN : 0;
  const out = Buffer.allocUnsafe(questionEnd + optLen);
  reply.copy(out, 0, 0, questionEnd);
  out.writeUInt16BE(out.readUInt16BE(2) | FLAG_TC, 2);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(optLen ? 1 : 0, 10);
  if (edns) writeOpt(out, questionEnd, edns);
  return out;
}
