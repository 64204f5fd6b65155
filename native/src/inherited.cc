#include "inherited.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <mutex>

#include "engine/sockaddr.h"

namespace mx {

namespace {
std::mutex g_mu;
bool g_adopted = false;
std::vector<InheritedSocket> g_sockets;
constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START
}  // namespace

const std::vector<InheritedSocket>& AdoptInheritedSockets() {
  std::lock_guard<std::mutex> g(g_mu);
  if (g_adopted) return g_sockets;
  g_adopted = true;
  const char* pid = getenv("LISTEN_PID");
  const char* fds = getenv("LISTEN_FDS");
  if (pid && fds && strtol(pid, nullptr, 10) == static_cast<long>(getpid())) {
    long n = strtol(fds, nullptr, 10);
    for (long i = 0; i < n && i < 64; i++) {
      int fd = kListenFdsStart + static_cast<int>(i);
      int type = 0;
      socklen_t tl = sizeof type;
      sockaddr_storage ss{};
      socklen_t sl = sizeof ss;
      if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) != 0) continue;
      if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) continue;
      fcntl(fd, F_SETFD, FD_CLOEXEC);
      uint16_t port = 0;
      std::string address = engine::IpText(ss, &port);
      g_sockets.push_back({fd, type, address, port});
    }
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return g_sockets;
}

int TakeInheritedSocket(int type, const sockaddr_storage& ss) {
  uint16_t port = 0;
  std::string address = engine::IpText(ss, &port);
  std::lock_guard<std::mutex> g(g_mu);
  for (const InheritedSocket& s : g_sockets) {
    if (s.type != type || s.port != port || s.address != address) continue;
    // Each taker gets its own descriptor; the adopted one (and systemd's) stay, so a listener closed and opened
    // again (a reload, a restart of the resolver) takes the same socket again.
    return fcntl(s.fd, F_DUPFD_CLOEXEC, 0);
  }
  return -1;
}

}  // namespace mx
