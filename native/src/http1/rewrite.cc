// Heads for the next hop (DESIGN decision 7): hop-by-hop
// fields and those named in Connection go, Host is rewritten for DNS endpoints, and the message keeps its
// own framing fields because its body bytes are forwarded unchanged.
#include <cstdio>

#include "codec.h"

namespace mx::h1 {
namespace {

// Whether a field of `h` goes to the next hop.
bool Forwarded(const Head& h, std::string_view name) {
  // Framing fields describe the bytes we pass through; they must travel with them.
  if (IEquals(name, "transfer-encoding") || IEquals(name, "content-length")) return true;
  if (IEquals(name, "upgrade")) return h.upgrade;
  return !IsHopByHop(name) && !NamedInConnection(h.connection_tokens, name);
}

const char* StatusText(int status) {
  const char* r = http::ReasonPhrase(status);
  return *r ? r : "Error";
}

}  // namespace

bool IsHopByHop(std::string_view n) {
  static constexpr std::string_view kHop[] = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                                              "proxy-authorization", "te", "trailer", "transfer-encoding",
                                              "upgrade", "http2-settings"};
  for (std::string_view h : kHop)
    if (IEquals(n, h)) return true;
  return false;
}

bool SplitAbsoluteForm(std::string_view target, std::string_view* authority, std::string_view* path) {
  size_t colon = target.find("://");
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view scheme = target.substr(0, colon);
  if (!IEquals(scheme, "http") && !IEquals(scheme, "https")) return false;
  std::string_view rest = target.substr(colon + 3);
  size_t end = rest.find_first_of("/?#");
  *authority = rest.substr(0, end);
  *path = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  // userinfo@ is not part of the authority a server sees (RFC 9110 §4.2.4 forbids it in http URIs).
  if (size_t at = authority->rfind('@'); at != std::string_view::npos) authority->remove_prefix(at + 1);
  return !authority->empty();
}

void WriteRequestHead(const Head& req, std::string_view host_override, std::string& out) {
  out.append(req.method);
  out.push_back(' ');
  // An absolute-form target (a client that thinks it talks to a forward proxy) goes upstream in origin form:
  // the upstream is an origin server, and the Host rule below must decide the authority, not the client.
  std::string_view authority, path;
  bool absolute = SplitAbsoluteForm(req.target, &authority, &path);
  if (!absolute) out.append(req.target);
  else if (path.empty() || path[0] != '/') out.append("/").append(path);
  else out.append(path);
  out.append(req.minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  // The Host rule: a DNS endpoint's name; else the client's, where an absolute-form target's authority
  // replaces its Host field (RFC 9112 §3.2.2).
  if (!host_override.empty()) AppendField(out, "Host", host_override);
  else if (absolute) AppendField(out, "Host", authority);
  else if (req.has_host) AppendField(out, "Host", req.host);
  for (const Field& f : req.fields) {
    if (IEquals(f.name, "host") || !Forwarded(req, f.name)) continue;
    AppendField(out, f.name, f.value);
  }
  // The upstream connection is pooled whatever the client's own preference; an HTTP/1.0 request keeps
  // its version (so the upstream never answers it with chunked coding) and asks for keep-alive.
  if (req.upgrade) out.append("Connection: upgrade\r\n");
  else if (req.minor == 0) out.append("Connection: keep-alive\r\n");
  out.append("\r\n");
}

void WriteResponseHead(const Head& resp, const Head& req, bool close, std::string& out) {
  char line[32];
  std::snprintf(line, sizeof line, "HTTP/1.1 %03d ", resp.status);
  out.append(line);
  out.append(resp.reason);
  out.append("\r\n");
  for (const Field& f : resp.fields)
    if (Forwarded(resp, f.name)) AppendField(out, f.name, f.value);
  if (resp.status == 101) out.append("Connection: upgrade\r\n");
  else if (resp.status >= 200 && close) out.append("Connection: close\r\n");
  else if (resp.status >= 200 && req.minor == 0) out.append("Connection: keep-alive\r\n");
  out.append("\r\n");
}

bool ClientKeepAlive(const Head& req, const Head& resp) {
  if (!req.keep_alive || resp.framing == Framing::Close) return false;
  // An HTTP/1.0 client cannot read chunked coding, so it learns the end from the close.
  return !(req.minor == 0 && resp.framing == Framing::Chunked);
}

bool UpstreamReusable(const Head& resp) {
  return resp.keep_alive && resp.framing != Framing::Close && resp.framing != Framing::Tunnel;
}

std::string LocalResponse(int status, std::string_view body, bool close, bool overloaded) {
  std::string out;
  char line[64];
  std::snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, StatusText(status));
  out.append(line);
  out.append("Content-Type: text/plain; charset=utf-8\r\n");
  std::snprintf(line, sizeof line, "Content-Length: %zu\r\n", body.size() + 1);
  out.append(line);
  if (close) out.append("Connection: close\r\n");
  // As Envoy marks a 503 of its circuit breakers, so clients and dashboards can tell overload from failure.
  if (overloaded) out.append("x-envoy-overloaded: true\r\n");
  out.append("\r\n");
  out.append(body);
  out.push_back('\n');
  return out;
}

}  // namespace mx::h1
