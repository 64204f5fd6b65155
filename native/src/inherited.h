// Listening sockets handed over by a service manager (systemd socket activation, the sd_listen_fds protocol):
// they stay open in systemd while the agent restarts or crashes, so connections and queries wait in their queues
// instead of being refused. OpenSharedSocket takes one (a dup) when it matches the address asked for.
#pragma once
#include <sys/socket.h>

#include <string>
#include <vector>

namespace mx {

struct InheritedSocket {
  int fd;
  int type;  // SOCK_STREAM / SOCK_DGRAM
  std::string address;
  uint16_t port;
};

/**
 * Adopts the sockets of LISTEN_FDS when LISTEN_PID is this process (once; later calls return the same list), and
 * unsets the variables so children do not take them too.
 */
const std::vector<InheritedSocket>& AdoptInheritedSockets();

/**
 * Adopts the sockets a holder process (ServeHeldSockets, `meshext hold-sockets`) passes over the unix socket at
 * `path` (SCM_RIGHTS): the same role as systemd's, for a Kubernetes pod, where a sidecar container outlives the
 * agent container's restarts. Returns how many, or -1 with `error`.
 */
int AdoptHeldSockets(const std::string& path, std::string* error);

/** Asks the holder at `path` to close its sockets and exit (this agent stops for good); false with `error`. */
bool ReleaseHeldSockets(const std::string& path, std::string* error);

/**
 * Serves `fds` to every client of a unix socket at `path` from a detached thread; returns the listening fd, or
 * -1 with `error`.
 */
int ServeHeldSockets(const std::string& path, const std::vector<int>& fds, std::string* error);

/** A dup of the adopted socket of `type` bound to exactly `ss` (address and port), or -1 when there is none. */
int TakeInheritedSocket(int type, const sockaddr_storage& ss);

}  // namespace mx
