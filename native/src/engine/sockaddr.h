// IP socket addresses to and from text, for the engine's own connects, listeners and accepted connections.
#pragma once
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace mx::engine {

/**
 * Fills `ss` from an IPv4 or IPv6 literal and a port; false when `ip` is neither. An IPv6 zone
 * (`fe80::1%eth0` or `fe80::1%2`, as net.isIP accepts) becomes the scope id.
 */
inline bool IpSockaddr(const std::string& ip, uint16_t port, sockaddr_storage* ss, socklen_t* len) {
  *ss = sockaddr_storage{};
  if (ip.find(':') != std::string::npos) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
    size_t pct = ip.find('%');
    if (inet_pton(AF_INET6, ip.substr(0, pct).c_str(), &in6->sin6_addr) != 1) return false;
    if (pct != std::string::npos) {
      std::string zone = ip.substr(pct + 1);
      if (zone.empty()) return false;
      char* end = nullptr;
      unsigned long n = std::strtoul(zone.c_str(), &end, 10);
      unsigned idx = *end == '\0' ? static_cast<unsigned>(n) : if_nametoindex(zone.c_str());
      if (idx == 0) return false;
      in6->sin6_scope_id = idx;
    }
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    *len = sizeof *in6;
    return true;
  }
  auto* in = reinterpret_cast<sockaddr_in*>(ss);
  if (inet_pton(AF_INET, ip.c_str(), &in->sin_addr) != 1) return false;
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  *len = sizeof *in;
  return true;
}

/** The address of an AF_INET/AF_INET6 sockaddr as Node prints it (IPv4-mapped IPv6 stays "::ffff:a.b.c.d"); "" otherwise. */
inline std::string IpText(const sockaddr_storage& ss, uint16_t* port) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    *port = ntohs(in->sin_port);
    return inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf) ? buf : "";
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    *port = ntohs(in6->sin6_port);
    return inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf) ? buf : "";
  }
  *port = 0;
  return "";
}

}  // namespace mx::engine
