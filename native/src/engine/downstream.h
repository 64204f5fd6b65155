// A client connection on its way into a session: the socket, what was already read from it, the plan it was
// routed to (and by which key), and its place in the service's books.
#pragma once
#include <memory>
#include <string>
#include <utility>

#include "fd.h"
#include "plan.h"

namespace mx::engine {

/**
 * Counts one client connection of a service, and of the engine (`live`, the count the connection cap reads):
 * total and active from construction, no longer active when destroyed.
 */
class DownstreamLease {
 public:
  DownstreamLease() = default;
  DownstreamLease(std::shared_ptr<ServiceState> s, std::atomic<int64_t>* live) : s_(std::move(s)), live_(live) {
    s_->stats.Add(ServiceStats::kDownstreamCxTotal);
    s_->stats.Add(ServiceStats::kDownstreamCxActive);
    live_->fetch_add(1, std::memory_order_relaxed);
  }
  DownstreamLease(DownstreamLease&& o) noexcept : s_(std::move(o.s_)), live_(o.live_) { o.live_ = nullptr; }
  DownstreamLease& operator=(DownstreamLease&& o) noexcept {
    if (this != &o) {
      Release();
      s_ = std::move(o.s_);
      live_ = o.live_;
      o.live_ = nullptr;
    }
    return *this;
  }
  ~DownstreamLease() { Release(); }

 private:
  void Release() {
    if (s_) s_->stats.Add(ServiceStats::kDownstreamCxActive, -1);
    if (live_) live_->fetch_add(-1, std::memory_order_relaxed);
    s_.reset();
    live_ = nullptr;
  }
  std::shared_ptr<ServiceState> s_;
  std::atomic<int64_t>* live_ = nullptr;
};

struct Downstream {
  UniqueFd fd;
  /** Bytes already read from the client (by the protocol sniffer). */
  std::string initial;
  std::shared_ptr<const Plan> plan;
  /** The key the connection was routed by: HTTP sessions look the plan up again by it for each request. */
  std::string key;
  DownstreamLease lease;
  /** "ip:port" of the client, for logs. */
  std::string client;
};

}  // namespace mx::engine
