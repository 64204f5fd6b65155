// Engine-side routing of accepted TCP connections. TypeScript owns policy and pushes what it decided: for
// each plain-TCP service the engine may serve alone, a route with its upstream targets (in endpoint order),
// the native TLS context and the timeouts, under the keys that reach it (`@<serviceId>` for an outbound
// listener, `<vip>:<port>` for the transparent listener). A listener that finds a route for a new connection
// starts the session and the connect to the route's next target itself, then tells JS in one `routed` event
// {session, route, target, address, port, peer, peerPort, local, localPort}; JS accounts for it and owns failover from
// there (a `connect-failed` event comes back to it as for any session). Connections without a route go to JS
// in an `accepted` event as before.
//
// The transparent listener learns a connection's original destination from the BPF map mx_peer_orig
// (lookup-and-delete, as JS did) when TS gave the map, and then passes it on in `accepted` events as
// {dst, dstPort} ("" when the map had no entry) so that nothing looks it up twice.
#pragma once
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../tls/client_conn.h"
#include "../tls/client_context.h"
#include "fd.h"
#include "transport.h"

namespace mx::engine {

/** One upstream address of a route: ip:port, or a unix socket path (port 0). */
struct RouteTarget {
  std::string address;
  uint16_t port = 0;
  /** Session key and expected name for TLS origination (unused without a context). */
  tls::ConnParams tls;
  /** Loop::Clock() ms until which the endpoint is backed off (JS reports its passive health). */
  std::atomic<int64_t> downUntilMs{0};
};

struct Route {
  uint32_t id = 0;
  std::vector<std::unique_ptr<RouteTarget>> targets;
  std::shared_ptr<tls::ClientContext> tls;  // null: plain upstream
  int64_t handshakeTimeoutMs = 0;
  int64_t connectTimeoutMs = 0;
  int64_t idleTimeoutMs = 0;
  std::atomic<uint32_t> next{0};
  uint64_t routed = 0;  // connections routed here; guarded by the table's mutex

  /** The target of a new connection, as TS's EndpointSet.order() would put first: healthy targets round-robin, else the back-off that ends first. */
  size_t Pick(int64_t nowMs);
  /** The upstream transport for `target` around a socket whose connect has started. */
  std::unique_ptr<Transport> Upstream(size_t target, UniqueFd fd) const;
};

/** Where the transparent listener takes a connection's original destination from. */
enum class OrigDstSource {
  kNone,   // TS recovers it (a callback the engine cannot run): no transparent routing in the engine
  kLocal,  // the connection's local address (the connection was made to the VIP itself)
  kMap,    // mx_peer_orig, keyed by the client's address and port and the listener's port
};

class RouteTable {
 public:
  /**
   * JS thread: installs a new set of routes. A route whose id was already installed takes the new content
   * and keeps its round-robin position, count and per-target health; the ids of routes that are gone come
   * back with how many connections they routed in all, which no later accept can change.
   */
  std::vector<std::pair<uint32_t, uint64_t>> Replace(std::vector<std::shared_ptr<Route>> routes,
                                                     std::vector<std::pair<std::string, uint32_t>> keys,
                                                     OrigDstSource source, UniqueFd map);
  /** Any thread: the route for `key`, counted as used; null when there is none. */
  std::shared_ptr<Route> Take(const std::string& key);
  /** JS thread: marks a target backed off for `downForMs` (0: healthy). False when the route or target is unknown. */
  bool SetHealth(uint32_t route, size_t target, int64_t downForMs);
  /**
   * Loop thread: the original destination of a connection accepted on `localPort` from `peer`; false when
   * the source is kNone. `dst` is "" when the map holds no entry for it.
   */
  bool OriginalDst(const sockaddr_storage& peer, const sockaddr_storage& local, std::string* dst, uint16_t* dstPort);

 private:
  std::mutex mu_;
  std::unordered_map<uint32_t, std::shared_ptr<Route>> byId_;
  std::unordered_map<std::string, std::shared_ptr<Route>> byKey_;
  OrigDstSource source_ = OrigDstSource::kNone;
  std::shared_ptr<UniqueFd> map_;
};

/**
 * A non-blocking stream socket with connect(2) started towards ip:port (port > 0) or a unix path (port 0);
 * invalid with `*err` set when it could not be started.
 */
UniqueFd StartConnect(const std::string& address, uint32_t port, int* err);

}  // namespace mx::engine
