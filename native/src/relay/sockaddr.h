// IP socket addresses to and from text, for the engine's own connects, listeners and accepted connections.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace mx::relay {

/** Fills `ss` from an IPv4 or IPv6 literal and a port; false when `ip` is neither. */
inline bool IpSockaddr(const std::string& ip, uint16_t port, sockaddr_storage* ss, socklen_t* len) {
  *ss = sockaddr_storage{};
  if (ip.find(':') != std::string::npos) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
    if (inet_pton(AF_INET6, ip.c_str(), &in6->sin6_addr) != 1) return false;
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

}  // namespace mx::relay
