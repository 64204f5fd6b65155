// Header field rules shared by the bridges (see fields.h).
#include "fields.h"

#include "../http_common.h"

namespace mx::bridge {

using http::IEquals;

bool ConnectionSpecific(std::string_view name) { return http::ConnectionSpecific(name) || IEquals(name, "te"); }

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

}  // namespace mx::bridge
