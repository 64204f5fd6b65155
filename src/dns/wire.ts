/**
 * Checks on upstream replies for the forwarder. Queries from clients are parsed, and the resolver's own answers
 * built, in one place: the engine (native/src/dns/wire.cc), which answers UDP itself and the TCP path through
 * Engine.dnsResolve, dnsServfail and dnsFitReply.
 */

export const HEADER_LEN = 12;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_REFUSED = 5;

const FLAG_QR = 0x8000;
const FLAG_TC = 0x0200;

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
