// Small HTTP facts both the HTTP/1.1 session and the HTTP/2 relay need (header-only: the HTTP/2 relay's
// test binary links neither the addon nor the HTTP/1 codec).
#pragma once
#include <cstddef>
#include <string_view>

namespace mx::http {

/** Case-insensitive ASCII equality. */
inline bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

/** RFC 9110 §9.2.2 idempotent methods: safe to send again when the first try surely did not run. */
inline bool IdempotentMethod(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "PUT" || m == "DELETE" || m == "TRACE";
}

}  // namespace mx::http
