#include "inherited.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <thread>

#include "engine/plan.h"
#include "engine/sockaddr.h"

namespace mx {

namespace {
std::mutex g_mu;
bool g_adopted = false;
std::vector<InheritedSocket> g_sockets;
constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START
constexpr size_t kMaxHeld = 64;

/** Registers an inet socket by what it is bound to; closes anything else. Caller holds g_mu. */
void Register(int fd) {
  int type = 0;
  socklen_t tl = sizeof type;
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) != 0 ||
      (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
    close(fd);
    return;
  }
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  uint16_t port = 0;
  std::string address = engine::IpText(ss, &port);
  g_sockets.push_back({fd, type, address, port});
}

/** The unix socket address of `path`; false (with `error`) when it does not fit in sun_path. */
bool UnixAddr(const std::string& path, sockaddr_storage* ss, socklen_t* len, std::string* error) {
  if (!path.empty() && engine::TargetSockaddr(path, 0, ss, len)) return true;
  *error = "unix socket path \"" + path + "\" is empty or longer than " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes";
  return false;
}
}  // namespace

const std::vector<InheritedSocket>& AdoptInheritedSockets() {
  std::lock_guard<std::mutex> g(g_mu);
  if (g_adopted) return g_sockets;
  g_adopted = true;
  const char* pid = getenv("LISTEN_PID");
  const char* fds = getenv("LISTEN_FDS");
  if (pid && fds && strtol(pid, nullptr, 10) == static_cast<long>(getpid())) {
    long n = strtol(fds, nullptr, 10);
    for (long i = 0; i < n && i < 64; i++) Register(kListenFdsStart + static_cast<int>(i));
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return g_sockets;
}

int AdoptHeldSockets(const std::string& path, std::string* error) {
  int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0) return (*error = strerror(errno)), -1;
  socklen_t len = 0;
  sockaddr_storage un{};
  if (!UnixAddr(path, &un, &len, error)) return close(c), -1;
  timeval tv{2, 0};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(c, reinterpret_cast<sockaddr*>(&un), len) != 0 || send(c, "G", 1, MSG_NOSIGNAL) != 1) {
    *error = std::string("connect: ") + strerror(errno);
    close(c);
    return -1;
  }
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxHeld)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  ssize_t n = recvmsg(c, &msg, MSG_CMSG_CLOEXEC);
  int err = errno;
  close(c);
  if (n <= 0) return (*error = n == 0 ? "the holder closed without sending" : std::string("recvmsg: ") + strerror(err)), -1;
  int count = 0;
  std::lock_guard<std::mutex> g(g_mu);
  for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const int* fds = reinterpret_cast<const int*>(CMSG_DATA(cm));
    for (size_t i = 0; i < k; i++) {
      Register(fds[i]);
      count++;
    }
  }
  return count;
}

bool ReleaseHeldSockets(const std::string& path, std::string* error) {
  int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c < 0) return (*error = strerror(errno)), false;
  socklen_t len = 0;
  sockaddr_storage un{};
  if (!UnixAddr(path, &un, &len, error)) return close(c), false;
  timeval tv{2, 0};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char done = 0;
  bool ok = connect(c, reinterpret_cast<sockaddr*>(&un), len) == 0 && send(c, "R", 1, MSG_NOSIGNAL) == 1 && recv(c, &done, 1, 0) == 1;
  if (!ok) *error = strerror(errno);
  close(c);
  return ok;
}

int ServeHeldSockets(const std::string& path, const std::vector<int>& fds, std::string* error) {
  if (fds.empty() || fds.size() > kMaxHeld) return (*error = "between 1 and 64 sockets can be held"), -1;
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0) return (*error = strerror(errno)), -1;
  socklen_t len = 0;
  sockaddr_storage un{};
  if (!UnixAddr(path, &un, &len, error)) return close(l), -1;
  unlink(path.c_str());
  if (bind(l, reinterpret_cast<sockaddr*>(&un), len) != 0 || listen(l, 16) != 0) {
    *error = std::string("bind/listen ") + path + ": " + strerror(errno);
    close(l);
    return -1;
  }
  chmod(path.c_str(), 0600);
  // Each agent that connects asks with one byte: 'G' gets every socket (its own copies: the holder keeps them
  // open across the agent's restarts); 'R' (an agent stopping for good, its pod going away) releases them: the
  // holder closes its copies and exits, so nothing keeps the ports' queues open and waiting connections move to
  // a successor. A detached thread: the holder process does nothing else.
  std::thread([l, fds] {
    for (;;) {
      int c = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      timeval tv{2, 0};
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      char ask = 0;
      if (recv(c, &ask, 1, 0) != 1) {
        close(c);
        continue;
      }
      if (ask == 'R') {
        for (int fd : fds) close(fd);
        send(c, "r", 1, MSG_NOSIGNAL);
        close(c);
        _exit(0);
      }
      if (ask != 'G') {
        close(c);
        continue;
      }
      char byte = 'm';
      iovec iov{&byte, 1};
      alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int) * kMaxHeld)] = {};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = ctrl;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* cm = CMSG_FIRSTHDR(&msg);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
      sendmsg(c, &msg, MSG_NOSIGNAL);
      close(c);
    }
  }).detach();
  return l;
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
