// HTTP/1.1 message codec (RFC 9112) for the native proxy session: finds and validates message heads,
// decides body framing, tracks bodies whose bytes pass through unchanged, and rewrites heads for the
// next hop. No I/O and no allocation per byte; views point into the caller's buffer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../http_common.h"
#include "chunked.h"

namespace mx::h1 {

/** RFC 9110 §5.6.2 tchar (method, field names, transfer codings). */
constexpr bool IsTchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '!' || c == '#' ||
         c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' || c == '+' || c == '-' || c == '.' ||
         c == '^' || c == '_' || c == '`' || c == '|' || c == '~';
}

/** field-vchar / SP / HTAB, obs-text allowed as RFC 9110 §5.5 asks of recipients (field values, chunk extensions, trailers). */
constexpr bool IsFieldChar(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

// Bounds on what a peer may make us hold before the body starts.
constexpr size_t kMaxHeadBytes = 64 * 1024;
constexpr size_t kMaxFields = 100;
constexpr size_t kMaxTrailerBytes = 64 * 1024;
// Chunked coding: a chunk-size line with a 4 KiB extension is already absurd; 15 hex digits keep the size
// below 2^60, far from overflow.
constexpr size_t kMaxChunkExtBytes = 4096;
constexpr int kMaxChunkSizeDigits = 15;

enum class Kind { Request, Response };

// How a message body is delimited (RFC 9112 §6.3).
enum class Framing {
  None,     // no body (GET without framing headers, HEAD/1xx/204/304 responses)
  Length,   // Content-Length bytes
  Chunked,  // Transfer-Encoding with chunked as the final coding
  Close,    // response read until the upstream closes
  Tunnel,   // after 101 Switching Protocols or a 2xx to CONNECT: opaque bytes both ways
};

struct Field {
  std::string_view name;
  std::string_view value;
};

// A parse failure: the status to answer with (400/431/501/505 for requests; 502 for responses) and why.
struct Error {
  int status = 0;
  std::string reason;
};

// A validated message head. Views point into the buffer given to Parse*; keep it alive while used.
struct Head {
  Kind kind = Kind::Request;
  size_t length = 0;  // bytes of the head including the final CRLF (and skipped leading CRLFs)
  std::string_view method, target;  // requests
  int status = 0;                   // responses
  std::string_view reason;          // responses
  int minor = 1;                    // HTTP/1.<minor>
  std::vector<Field> fields;

  Framing framing = Framing::None;
  uint64_t content_length = 0;
  bool keep_alive = true;       // the sender allows another message on this connection
  bool upgrade = false;         // request: Connection: upgrade + Upgrade; response: 101
  bool expect_continue = false; // request carries Expect: 100-continue
  bool has_host = false;
  std::string_view host;
  std::vector<std::string_view> connection_tokens;  // lower-cased by comparison, views as sent
};

enum class Status { Partial, Done, Failed };

// Finds the end of a head across calls, rejecting bare LF/CR line ends and oversized heads early.
class HeadScanner {
 public:
  explicit HeadScanner(Kind kind) : kind_(kind) {}
  // Scans buf[0..len) (which extends what was scanned before); Done when the head is complete.
  Status Scan(const char* buf, size_t len, Error& err);
  // Head length once Scan returned Done.
  size_t end() const { return end_; }
  void Reset() { pos_ = line_ = end_ = 0; leading_ = true; }

 private:
  Kind kind_;
  size_t pos_ = 0, line_ = 0, end_ = 0;
  bool leading_ = true;
};

// Parses a complete request head (as found by HeadScanner) and applies the framing rules.
bool ParseRequest(std::string_view head, Head& out, Error& err);
// Parses a complete response head to a request with `method`; `client_minor` unused for framing.
bool ParseResponse(std::string_view head, std::string_view method, Head& out, Error& err);

// Tracks one message body whose bytes are forwarded unchanged: says how many of the next bytes belong
// to it and when it has ended. Chunk sizes, extensions and trailers are validated on the way.
class BodyTracker {
 public:
  void Start(Framing f, uint64_t length);
  // How many bytes of p[0..n) belong to the body (< n only when the body ended). Sets failed() on a
  // malformed chunked stream; the bytes up to the fault are not counted.
  size_t Consume(const char* p, size_t n);
  bool done() const { return done_; }
  bool failed() const { return failed_; }
  const char* error() const { return error_; }
  Framing framing() const { return framing_; }
  // Close-delimited bodies end when the peer closes; the caller tells us.
  void EndOfStream() {
    if (framing_ == Framing::Close) done_ = true;
  }

 private:
  bool Fail(const char* why);
  Framing framing_ = Framing::None;
  uint64_t remaining_ = 0;
  bool done_ = true, failed_ = false;
  const char* error_ = nullptr;
  // The one chunked parser (the bridges decode with it too), here only counting: the bytes pass unchanged.
  ChunkedDecoder chunked_;
};

// Whether a header name is hop-by-hop (RFC 9110 §7.6.1 plus the legacy ones proxies drop).
bool IsHopByHop(std::string_view lower_or_mixed_name);

using http::IEquals;

/** Optional whitespace (RFC 9110 §5.6.3) trimmed from both ends. */
inline std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

/** Calls fn(element) for each non-empty, trimmed element of a comma-separated list (RFC 9110 §5.6.1). */
template <typename Fn>
void ForEachListElement(std::string_view v, Fn fn) {
  while (true) {
    size_t comma = v.find(',');
    std::string_view el = TrimOws(v.substr(0, comma));
    if (!el.empty()) fn(el);
    if (comma == std::string_view::npos) return;
    v.remove_prefix(comma + 1);
  }
}

/** Whether the head's Connection field names `name` (such a field is hop-by-hop). */
inline bool NamedInConnection(const std::vector<std::string_view>& connection_tokens, std::string_view name) {
  for (std::string_view t : connection_tokens)
    if (IEquals(t, name)) return true;
  return false;
}

/** Appends `name: value\r\n`. */
inline void AppendField(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

// Serialises the head to send upstream: the client's request line (its version; an absolute-form target in
// origin form), Host (host_override when non-empty, else an absolute-form target's authority, else the
// client's), end-to-end fields, the message's own framing headers, Upgrade for upgrade requests, and a
// Connection field asking the upstream to keep the connection.
void WriteRequestHead(const Head& req, std::string_view host_override, std::string& out);
// Splits an absolute-form request target (`http://host:port/path?q`) into its authority and the rest (path
// and query, possibly empty); false for any other form.
bool SplitAbsoluteForm(std::string_view target, std::string_view* authority, std::string_view* path);

// Serialises the response head for the client: end-to-end fields plus the response's own framing headers,
// Upgrade on a 101, and `Connection: close` when close is set (or keep-alive for an HTTP/1.0 client).
void WriteResponseHead(const Head& resp, const Head& req, bool close, std::string& out);

// Whether the client connection may carry another request after this exchange.
bool ClientKeepAlive(const Head& req, const Head& resp);
// Whether the upstream connection may carry another request after this exchange.
bool UpstreamReusable(const Head& resp);

// A complete local response (used for 400/502/503 and the like).
std::string LocalResponse(int status, std::string_view body, bool close, bool overloaded = false);

}  // namespace mx::h1
