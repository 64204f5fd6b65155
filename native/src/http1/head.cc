// Message heads: line scanning, request/status line, field syntax, and the framing decisions of RFC 9112
// §6.3 that make request smuggling impossible through this proxy (anything ambiguous is rejected).
#include <cstring>

#include "codec.h"

namespace mx::h1 {
namespace {

constexpr bool IsOws(char c) { return c == ' ' || c == '\t'; }


bool Fail(Error& err, int status, const char* why) {
  err.status = status;
  err.reason = why;
  return false;
}

// Splits off the next CRLF-terminated line (the scanner already guaranteed CRLF endings).
std::string_view NextLine(std::string_view& rest) {
  size_t nl = rest.find("\r\n");
  std::string_view line = rest.substr(0, nl);
  rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 2);
  return line;
}

// "HTTP/1.x" → minor, or -1 for another major version, -2 for garbage.
int ParseVersion(std::string_view v) {
  if (v.size() != 8 || v.compare(0, 5, "HTTP/") != 0 || v[6] != '.') return -2;
  if (v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9') return -2;
  if (v[5] != '1') return -1;
  return v[7] == '0' ? 0 : 1;  // 1.2+ is answered as the highest minor we speak (RFC 9110 §6.2)
}

// Field lines and the framing-relevant fields; `bad` is the status for a malformed head.
bool ParseFields(std::string_view rest, Head& h, Error& err, int bad) {
  int cl_count = 0;
  bool has_te = false, te_chunked_last = false, te_error = false;
  int chunked_seen = 0, host_count = 0;
  bool upgrade_field = false, conn_upgrade = false, conn_close = false, conn_keep = false;
  while (!rest.empty()) {
    std::string_view line = NextLine(rest);
    if (line.empty()) break;
    if (IsOws(line.front())) return Fail(err, bad, "obsolete line folding in header field");
    size_t colon = 0;
    while (colon < line.size() && IsTchar(static_cast<unsigned char>(line[colon]))) colon++;
    if (colon == line.size() || line[colon] != ':') return Fail(err, bad, "invalid character in header field name");
    if (colon == 0) return Fail(err, bad, "empty header field name");
    std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    for (char c : value)
      if (!IsFieldChar(static_cast<unsigned char>(c))) return Fail(err, bad, "invalid character in header field value");
    value = TrimOws(value);
    if (h.fields.size() >= kMaxFields) return Fail(err, h.kind == Kind::Request ? 431 : 502, "too many header fields");
    h.fields.push_back({name, value});

    if (IEquals(name, "content-length")) {
      bool bad_cl = false;
      int before = cl_count;
      ForEachListElement(value, [&](std::string_view el) {
        uint64_t n = 0;
        if (el.size() > 18) bad_cl = true;
        for (char c : el) {
          if (c < '0' || c > '9') bad_cl = true;
          n = n * 10 + static_cast<uint64_t>(c - '0');
        }
        if (bad_cl) return;
        if (cl_count > 0 && n != h.content_length) bad_cl = true;
        h.content_length = n;
        cl_count++;
      });
      if (bad_cl) return Fail(err, bad, "invalid or conflicting Content-Length");
      if (cl_count == before) return Fail(err, bad, "empty Content-Length");
    } else if (IEquals(name, "transfer-encoding")) {
      has_te = true;
      ForEachListElement(value, [&](std::string_view el) {
        size_t semi = el.find(';');
        std::string_view coding = TrimOws(el.substr(0, semi));
        for (char c : coding)
          if (!IsTchar(static_cast<unsigned char>(c))) te_error = true;
        te_chunked_last = IEquals(coding, "chunked");
        if (te_chunked_last) {
          chunked_seen++;
          if (semi != std::string_view::npos) te_error = true;  // chunked takes no parameters
        }
      });
    } else if (IEquals(name, "connection")) {
      ForEachListElement(value, [&](std::string_view el) {
        h.connection_tokens.push_back(el);
        if (IEquals(el, "close")) conn_close = true;
        else if (IEquals(el, "keep-alive")) conn_keep = true;
        else if (IEquals(el, "upgrade")) conn_upgrade = true;
      });
    } else if (IEquals(name, "host")) {
      host_count++;
      h.host = value;
    } else if (IEquals(name, "upgrade")) {
      upgrade_field = true;
    } else if (IEquals(name, "expect")) {
      if (IEquals(value, "100-continue")) h.expect_continue = true;
    }
  }

  if (has_te && (te_error || chunked_seen > 1 || (chunked_seen == 1 && !te_chunked_last && h.kind == Kind::Request)))
    return Fail(err, bad, "invalid Transfer-Encoding");
  if (has_te && cl_count > 0) return Fail(err, bad, "both Transfer-Encoding and Content-Length");
  if (has_te && h.minor == 0) return Fail(err, bad, "Transfer-Encoding in an HTTP/1.0 message");

  h.keep_alive = h.minor == 1 ? !conn_close : (conn_keep && !conn_close);
  h.has_host = host_count > 0;
  if (h.kind == Kind::Request) {
    if (host_count > 1) return Fail(err, 400, "more than one Host header field");
    if (h.minor == 1 && host_count == 0) return Fail(err, 400, "missing Host header field");
    for (char c : h.host) {
      unsigned char u = static_cast<unsigned char>(c);
      bool ok = IsTchar(u) || c == ':' || c == '[' || c == ']' || c == '@' || c == '(' || c == ')' || c == ',' ||
                c == ';' || c == '=';
      if (!ok) return Fail(err, 400, "invalid Host header field");
    }
    h.upgrade = upgrade_field && conn_upgrade;
    if (has_te) {
      if (!te_chunked_last) return Fail(err, 400, "Transfer-Encoding without chunked as the final coding");
      h.framing = Framing::Chunked;
    } else if (cl_count > 0) {
      h.framing = h.content_length > 0 ? Framing::Length : Framing::None;
    } else {
      h.framing = Framing::None;
    }
  } else {
    // Responses: the caller applies the request-dependent rules (HEAD, CONNECT) afterwards.
    if (has_te) h.framing = te_chunked_last ? Framing::Chunked : Framing::Close;
    else if (cl_count > 0) h.framing = h.content_length > 0 ? Framing::Length : Framing::None;
    else h.framing = Framing::Close;
  }
  return true;
}

}  // namespace

Status HeadScanner::Scan(const char* buf, size_t len, Error& err) {
  const int too_big = kind_ == Kind::Request ? 431 : 502;
  const int bad = kind_ == Kind::Request ? 400 : 502;
  while (true) {
    const void* found = pos_ < len ? std::memchr(buf + pos_, '\n', len - pos_) : nullptr;
    if (!found) {
      pos_ = len;
      if (len > kMaxHeadBytes) {
        Fail(err, too_big, "message head larger than 64 KiB");
        return Status::Failed;
      }
      return Status::Partial;
    }
    size_t nl = static_cast<size_t>(static_cast<const char*>(found) - buf);
    if (nl == line_ || buf[nl - 1] != '\r') {
      Fail(err, bad, "bare LF in message head");
      return Status::Failed;
    }
    if (std::memchr(buf + line_, '\r', nl - 1 - line_) != nullptr) {
      Fail(err, bad, "bare CR in message head");
      return Status::Failed;
    }
    bool empty = nl - 1 == line_;
    line_ = pos_ = nl + 1;
    if (line_ > kMaxHeadBytes) {
      Fail(err, too_big, "message head larger than 64 KiB");
      return Status::Failed;
    }
    if (!empty) {
      leading_ = false;
      continue;
    }
    // RFC 9112 §2.2: a server ignores empty lines before the request line (some clients send a CRLF
    // after a POST body).
    if (leading_ && kind_ == Kind::Request) continue;
    if (leading_) {
      Fail(err, bad, "empty line instead of a status line");
      return Status::Failed;
    }
    end_ = nl + 1;
    return Status::Done;
  }
}

// Resets a head for reuse, keeping the vectors' storage (no allocation per message).
void ResetHead(Head& h, Kind kind, size_t length) {
  std::vector<Field> fields = std::move(h.fields);
  std::vector<std::string_view> tokens = std::move(h.connection_tokens);
  fields.clear();
  tokens.clear();
  h = Head{};
  h.fields = std::move(fields);
  h.connection_tokens = std::move(tokens);
  h.kind = kind;
  h.length = length;
}

bool ParseRequest(std::string_view head, Head& h, Error& err) {
  ResetHead(h, Kind::Request, head.size());
  while (head.size() >= 2 && head[0] == '\r' && head[1] == '\n') head.remove_prefix(2);
  std::string_view rest = head;
  std::string_view line = NextLine(rest);
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return Fail(err, 400, "malformed request line");
  h.method = line.substr(0, sp1);
  for (char c : h.method)
    if (!IsTchar(static_cast<unsigned char>(c))) return Fail(err, 400, "invalid character in method");
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return Fail(err, 400, "malformed request line");
  h.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  for (char c : h.target) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return Fail(err, 400, "invalid character in request target");
  }
  int minor = ParseVersion(line.substr(sp2 + 1));
  if (minor == -1) return Fail(err, 505, "HTTP version not supported");
  if (minor < 0) return Fail(err, 400, "malformed HTTP version");
  h.minor = minor;
  return ParseFields(rest, h, err, 400);
}

bool ParseResponse(std::string_view head, std::string_view method, Head& h, Error& err) {
  ResetHead(h, Kind::Response, head.size());
  std::string_view rest = head;
  std::string_view line = NextLine(rest);
  int minor = ParseVersion(line.substr(0, 8));
  if (minor < 0 || line.size() < 12 || line[8] != ' ') return Fail(err, 502, "malformed status line");
  h.minor = minor;
  int st = 0;
  for (size_t i = 9; i < 12; i++) {
    if (line[i] < '0' || line[i] > '9') return Fail(err, 502, "malformed status code");
    st = st * 10 + (line[i] - '0');
  }
  if (st < 100) return Fail(err, 502, "malformed status code");
  h.status = st;
  if (line.size() > 12) {
    if (line[12] != ' ') return Fail(err, 502, "malformed status line");
    h.reason = line.substr(13);
    for (char c : h.reason)
      if (!IsFieldChar(static_cast<unsigned char>(c))) return Fail(err, 502, "invalid character in reason phrase");
  }
  if (!ParseFields(rest, h, err, 502)) return false;
  // RFC 9112 §6.3 items 1 and 2: these never have content, whatever their fields say.
  if (IEquals(method, "HEAD") || (st >= 100 && st < 200) || st == 204 || st == 304) h.framing = Framing::None;
  if (st == 101) {
    h.framing = Framing::Tunnel;
    h.upgrade = true;
  } else if (IEquals(method, "CONNECT") && st >= 200 && st < 300) {
    h.framing = Framing::Tunnel;
  }
  if (h.framing == Framing::Close) h.keep_alive = false;
  return true;
}

}  // namespace mx::h1
