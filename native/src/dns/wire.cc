#include "wire.h"

#include <algorithm>

namespace mx::dns {

namespace {

constexpr size_t kHeader = 12;
constexpr uint16_t kTypeOpt = 41;
constexpr uint16_t kFlagQr = 0x8000, kFlagAa = 0x0400, kFlagTc = 0x0200, kFlagRd = 0x0100, kFlagRa = 0x0080,
                   kFlagCd = 0x0010, kOpcodeMask = 0x7800;
constexpr size_t kOptLen = 11;

uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
void Put16(std::string& s, size_t off, uint16_t v) {
  s[off] = static_cast<char>(v >> 8);
  s[off + 1] = static_cast<char>(v & 0xff);
}

/** Offset just past a (possibly compressed) name, or 0 when it runs off the buffer or is bad. */
size_t SkipName(const uint8_t* buf, size_t len, size_t off) {
  size_t total = 0;
  for (;;) {
    if (off >= len) return 0;
    uint8_t l = buf[off];
    if (l == 0) return off + 1;
    if ((l & 0xc0) == 0xc0) return off + 2 <= len ? off + 2 : 0;
    if ((l & 0xc0) != 0) return 0;
    total += l + 1u;
    if (total > 255) return 0;
    off += l + 1u;
  }
}

uint16_t ResponseFlags(uint16_t queryFlags, int rcode, uint16_t extra) {
  // Keep opcode, RD and CD from the query; we recurse (by forwarding), so RA is set.
  return static_cast<uint16_t>(kFlagQr | (queryFlags & (kOpcodeMask | kFlagRd | kFlagCd)) | kFlagRa | extra | (rcode & 0xf));
}

void AppendOpt(std::string& out, const Edns& e, uint8_t extRcodeHigh = 0) {
  const uint8_t opt[kOptLen] = {0, 0, kTypeOpt, kOurUdpPayload >> 8, kOurUdpPayload & 0xff, extRcodeHigh, 0,
                                static_cast<uint8_t>(e.dnssecOk ? 0x80 : 0), 0, 0, 0};  // RFC 3225: DO is echoed
  out.append(reinterpret_cast<const char*>(opt), kOptLen);
}

/** Header + the question bytes of `query` + `answers` (+ OPT), TC and no answers when over `limit`. */
std::string WithQuestion(const uint8_t* query, const Parsed& q, int rcode, uint16_t extraFlags, const std::string& answers,
                         uint16_t count, size_t limit) {
  size_t qlen = q.questionEnd - kHeader;
  size_t optLen = q.edns.present ? kOptLen : 0;
  if (kHeader + qlen + answers.size() + optLen > limit) {
    extraFlags |= kFlagTc;
    count = 0;
  }
  std::string out(kHeader, '\0');
  Put16(out, 0, q.id);
  Put16(out, 2, ResponseFlags(q.flags, rcode, extraFlags));
  Put16(out, 4, 1);
  Put16(out, 6, count);
  Put16(out, 10, optLen ? 1 : 0);
  out.append(reinterpret_cast<const char*>(query) + kHeader, qlen);
  if (count) out.append(answers);
  if (q.edns.present) AppendOpt(out, q.edns);
  return out;
}

/** A header-only error (FORMERR, NOTIMP, BADVERS), plus OPT if the client had EDNS. */
std::string HeaderOnly(const Parsed& p, int rcode, uint8_t extRcodeHigh) {
  std::string out(kHeader, '\0');
  Put16(out, 0, p.id);
  Put16(out, 2, ResponseFlags(p.flags, rcode, 0));
  Put16(out, 10, p.edns.present ? 1 : 0);
  if (p.edns.present) AppendOpt(out, p.edns, extRcodeHigh);
  return out;
}

Parsed Error(Parsed p, int rcode) {
  p.kind = Parsed::kError;
  p.rcode = rcode;
  return p;
}

}  // namespace

Parsed ParseQuery(const uint8_t* buf, size_t len) {
  Parsed p;
  if (len < kHeader) return p;  // drop: short
  p.id = Get16(buf);
  p.flags = Get16(buf + 2);
  // Answering a response invites reflection loops between two servers (or a spoofed source): drop.
  if (p.flags & kFlagQr) return p;
  if (p.flags & kOpcodeMask) return Error(p, kRcodeNotImp);
  uint16_t qd = Get16(buf + 4), an = Get16(buf + 6), ns = Get16(buf + 8), ar = Get16(buf + 10);
  if (qd != 1) return Error(p, kRcodeFormErr);
  // The question name: no compression there (nothing precedes it to point at).
  size_t off = kHeader, total = 0;
  bool safe = true;
  for (;;) {
    if (off >= len) return Error(p, kRcodeFormErr);
    uint8_t l = buf[off];
    if (l == 0) break;
    if ((l & 0xc0) != 0) return Error(p, kRcodeFormErr);
    total += l + 1u;
    if (total > 255 || off + 1 + l > len) return Error(p, kRcodeFormErr);
    if (!p.name.empty()) p.name.push_back('.');
    for (size_t i = off + 1; i <= off + l; i++) {
      uint8_t c = buf[i];
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (!ok) safe = false;
      p.name.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c | 0x20 : c));
    }
    off += l + 1u;
  }
  size_t nameEnd = off + 1;
  if (nameEnd + 4 > len) return Error(p, kRcodeFormErr);
  p.hostnameSafe = safe;
  p.qtype = Get16(buf + nameEnd);
  p.qclass = Get16(buf + nameEnd + 2);
  p.questionEnd = nameEnd + 4;
  // Every RR needs at least 11 bytes; refuse impossible counts before looping over them.
  size_t rrs = size_t{an} + ns + ar;
  if (rrs * 11 > len - p.questionEnd) return Error(p, kRcodeFormErr);
  off = p.questionEnd;
  for (size_t i = 0; i < rrs; i++) {
    size_t nameStart = off;
    off = SkipName(buf, len, off);
    if (off == 0 || off + 10 > len) return Error(p, kRcodeFormErr);
    uint16_t type = Get16(buf + off);
    uint16_t rdlen = Get16(buf + off + 8);
    if (off + 10 + rdlen > len) return Error(p, kRcodeFormErr);
    if (type == kTypeOpt) {
      // RFC 6891 §6.1.1: one OPT, owner root, additional section only; otherwise FORMERR.
      if (p.edns.present || i < size_t{an} + ns || off != nameStart + 1) return Error(p, kRcodeFormErr);
      p.edns.present = true;
      p.edns.udpSize = Get16(buf + off + 2);
      p.edns.version = buf[off + 5];
      p.edns.dnssecOk = (buf[off + 6] & 0x80) != 0;
    }
    off += 10 + rdlen;
  }
  // An EDNS version we do not speak: BADVERS (extended rcode 16), answered with our OPT saying version 0.
  if (p.edns.present && p.edns.version != 0) return Error(p, kRcodeNoError);
  p.kind = Parsed::kQuery;
  return p;
}

size_t UdpLimit(const Edns& e) {
  if (!e.present) return kClassicUdpLimit;
  return std::min<size_t>(std::max<size_t>(e.udpSize, kClassicUdpLimit), kOurUdpPayload);
}

Resolution Resolve(const Table* table, const uint8_t* buf, size_t len, bool udp) {
  Resolution r;
  Parsed p = ParseQuery(buf, len);
  if (p.kind == Parsed::kDrop) return r;
  if (p.kind == Parsed::kError) {
    bool badvers = p.rcode == kRcodeNoError && p.edns.present;
    r.kind = Resolution::kReply;
    r.outcome = kFormErr;
    r.reply = HeaderOnly(p, p.rcode, badvers ? 1 : 0);
    r.q = std::move(p);
    return r;
  }
  r.limit = udp ? UdpLimit(p.edns) : 65535;
  const OwnedName* owned = nullptr;
  if (table && p.hostnameSafe && (p.qclass == kClassIn || p.qclass == kClassAny)) {
    auto it = table->find(p.name);
    if (it != table->end()) owned = &it->second;
  }
  if (!owned) {
    r.kind = Resolution::kForward;
    r.q = std::move(p);
    return r;
  }
  static const std::string kNone;
  r.kind = Resolution::kReply;
  r.outcome = kAnswered;
  if (p.qtype == kTypeA) r.reply = WithQuestion(buf, p, kRcodeNoError, kFlagAa, owned->a, owned->aCount, r.limit);
  else if (p.qtype == kTypeAAAA) r.reply = WithQuestion(buf, p, kRcodeNoError, kFlagAa, owned->aaaa, owned->aaaaCount, r.limit);
  else r.reply = WithQuestion(buf, p, kRcodeNoError, kFlagAa, kNone, 0, r.limit);  // NODATA
  r.q = std::move(p);
  return r;
}

std::string Servfail(const uint8_t* query, size_t len) {
  Parsed p = ParseQuery(query, len);
  if (p.kind != Parsed::kQuery) return std::string();
  static const std::string kNone;
  return WithQuestion(query, p, kRcodeServFail, 0, kNone, 0, 65535);
}

std::string FitReply(const uint8_t* reply, size_t replyLen, const uint8_t* query, size_t queryLen, bool udp) {
  Parsed q = ParseQuery(query, queryLen);
  size_t limit = q.kind == Parsed::kQuery && udp ? UdpLimit(q.edns) : 65535;
  if (q.kind != Parsed::kQuery || replyLen <= limit || replyLen < q.questionEnd) return std::string(reinterpret_cast<const char*>(reply), replyLen);
  std::string out(reinterpret_cast<const char*>(reply), q.questionEnd);
  Put16(out, 2, static_cast<uint16_t>(Get16(reply + 2) | kFlagTc));
  Put16(out, 6, 0);
  Put16(out, 8, 0);
  Put16(out, 10, q.edns.present ? 1 : 0);
  if (q.edns.present) AppendOpt(out, q.edns);
  return out;
}

}  // namespace mx::dns
