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

/** A dup of the adopted socket of `type` bound to exactly `ss` (address and port), or -1 when there is none. */
int TakeInheritedSocket(int type, const sockaddr_storage& ss);

}  // namespace mx
