// Header field rules shared by the bridges (see fields.h).
#include "fields.h"

#include "../http_common.h"

namespace mx::bridge {

using http::IEquals;

bool ConnectionSpecific(std::string_view name) {
  static constexpr std::string_view kNames[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                                "upgrade", "host", "http2-settings", "te"};
  for (std::string_view n : kNames)
    if (IEquals(name, n)) return true;
  return false;
}

bool OnlyChunked(const std::vector<h1::Field>& fields) {
  for (const h1::Field& f : fields) {
    if (!IEquals(f.name, "transfer-encoding")) continue;
    std::string_view list = f.value;
    while (!list.empty()) {
      size_t comma = list.find(',');
      std::string_view el = list.substr(0, comma);
      while (!el.empty() && (el.front() == ' ' || el.front() == '\t')) el.remove_prefix(1);
      while (!el.empty() && (el.back() == ' ' || el.back() == '\t')) el.remove_suffix(1);
      if (!el.empty() && !IEquals(el, "chunked")) return false;
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  return true;
}

bool ListHasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view el = list.substr(0, comma);
    while (!el.empty() && (el.front() == ' ' || el.front() == '\t')) el.remove_prefix(1);
    size_t semi = el.find(';');  // parameters (te: trailers;q=1 is unusual but legal)
    if (semi != std::string_view::npos) el = el.substr(0, semi);
    while (!el.empty() && (el.back() == ' ' || el.back() == '\t')) el.remove_suffix(1);
    if (IEquals(el, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool TrailerAllowed(std::string_view name) {
  if (name.empty() || name[0] == ':' || ConnectionSpecific(name)) return false;
  // Framing would contradict the message it ends (RFC 9110 §6.5.1); the rest crosses as the relay lets it.
  return !IEquals(name, "content-length");
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 102: return "Processing";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    case 511: return "Network Authentication Required";
    default: return "";
  }
}

std::vector<nghttp2_nv> ToNv(const h1::FieldList& fields) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(fields.size());
  for (const auto& [k, v] : fields) {
    nv.push_back(nghttp2_nv{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(k.data())),
                            const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(v.data())), k.size(), v.size(),
                            NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

}  // namespace mx::bridge
