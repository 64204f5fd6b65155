// Sockets a restarting agent shares with its successor (SO_REUSEPORT): used by the addon's sharedSocket (Node's
// DNS TCP and admin servers) and by the engine's DNS UDP sessions.
#pragma once
#include <sys/socket.h>

namespace mx {

/**
 * A bound (and for SOCK_STREAM listening) socket with SO_REUSEPORT (for a fixed port; port 0 binds alone), or
 * a dup of the socket systemd passed for that address (inherited.h); `extraFlags` go to socket(2) (e.g.
 * SOCK_NONBLOCK). Returns the fd, or -errno with `failedStep` naming the call that failed.
 */
int OpenSharedSocket(int type, const sockaddr_storage& ss, socklen_t len, int backlog, int extraFlags, const char** failedStep);

}  // namespace mx
