// DNS wire format for the resolver's own answers: strict parsing of incoming queries and assembly of the few
// response shapes the resolver produces itself (local answers, errors, SERVFAIL, truncation). Incoming bytes
// are hostile: every read is bounds-checked, counts are checked against the remaining length before looping,
// and compression pointers are never followed, so any query costs O(its length).
// Which names and addresses are answered is TypeScript's (src/dns/records.ts compiles the answer bytes); the
// engine (udp_session.h) and the TypeScript TCP path both answer through Resolve() here.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

namespace mx::dns {

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeAAAA = 28;
constexpr uint16_t kClassIn = 1;
constexpr uint16_t kClassAny = 255;
constexpr int kRcodeNoError = 0, kRcodeFormErr = 1, kRcodeServFail = 2, kRcodeNxDomain = 3, kRcodeNotImp = 4;
/** Our advertised EDNS UDP payload size (DNS Flag Day 2020: avoids IP fragmentation). */
constexpr uint16_t kOurUdpPayload = 1232;
/** RFC 1035 limit for UDP messages without EDNS. */
constexpr uint16_t kClassicUdpLimit = 512;

struct Edns {
  bool present = false;
  uint16_t udpSize = 0;
  uint8_t version = 0;
  bool dnssecOk = false;
};

/** What parsing a query found. */
struct Parsed {
  enum Kind { kQuery, kError, kDrop } kind = kDrop;
  uint16_t id = 0;
  uint16_t flags = 0;
  int rcode = 0;             // kError: the rcode to answer with
  int qtype = -1;            // -1: not read
  uint16_t qclass = 0;
  size_t questionEnd = 0;    // end of the question section (it starts at 12)
  std::string name;          // lowercased owner name without trailing dot ("" for the root)
  bool hostnameSafe = false; // every label is letters, digits, '-' or '_' (else never an owned name)
  Edns edns;
};

Parsed ParseQuery(const uint8_t* buf, size_t len);

/** Largest UDP response this client accepts: 512 without EDNS, its advertised size (min 512) capped at ours. */
size_t UdpLimit(const Edns& e);

/** One owned name: its A and AAAA answer sections, pre-encoded (owner name a pointer to the question). */
struct OwnedName {
  std::string a;
  uint16_t aCount = 0;
  std::string aaaa;
  uint16_t aaaaCount = 0;
};
using Table = std::unordered_map<std::string, OwnedName>;

/**
 * Outcomes, as meshext_dns_queries_total names them (the engine counts its own; TS the forwarded ones). kStalled: a
 * forwarded query JS did not answer in time (or too many waiting), answered SERVFAIL by the engine.
 */
enum Outcome : uint8_t { kAnswered = 0, kFormErr = 1, kDropped = 2, kStalled = 3, kOutcomes = 4 };

/** What to do with one query. */
struct Resolution {
  enum Kind { kReply, kForward, kDrop } kind = kDrop;
  std::string reply;  // kReply
  Parsed q;           // kForward: the parsed query (id, qtype, questionEnd, edns)
  size_t limit = 0;   // the client's size limit (UDP: UdpLimit; TCP: 65535)
  Outcome outcome = kDropped;  // kReply/kDrop: how to count it
};

/** Answers an owned name (or a malformed query) at once; anything else is for the forwarder. */
Resolution Resolve(const Table* table, const uint8_t* buf, size_t len, bool udp);

/** SERVFAIL keeping the question (stub resolvers match it); "" when the query cannot be parsed. */
std::string Servfail(const uint8_t* query, size_t len);
/**
 * Cuts an upstream reply too big for the client's limit to header + question (+ our OPT when the client used
 * EDNS) with TC set, so the client retries over TCP. Returns the reply unchanged when it fits.
 */
std::string FitReply(const uint8_t* reply, size_t replyLen, const uint8_t* query, size_t queryLen, bool udp);

}  // namespace mx::dns
