// Header field rules shared by the bridges (see fields.h).
#include "fields.h"

#include "../http_common.h"

namespace mx::bridge {

using http::IEquals;

bool ConnectionSpecific(std::string_view name) { return http::ConnectionSpecific(name) || IEquals(name, "te"); }

bool OnlyChunked(const std::vector<h1::Field>& fields) {
  bool only = true;
  for (const h1::Field& f : fields) {
    if (!IEquals(f.name, "transfer-encoding")) continue;
    h1::ForEachListElement(f.value, [&](std::string_view el) { only &= IEquals(el, "chunked"); });
  }
  return only;
}

bool ListHasToken(std::string_view list, std::string_view token) {
  bool has = false;
  h1::ForEachListElement(list, [&](std::string_view el) {
    // Parameters (te: trailers;q=1 is unusual but legal) do not change the token.
    has |= IEquals(h1::TrimOws(el.substr(0, el.find(';'))), token);
  });
  return has;
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
