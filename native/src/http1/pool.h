// Upstream keep-alive connections of HTTP/1 sessions. An idle connection waits in its loop's pool under the
// key of what it is connected to (Plan::H1PoolKey: service, TLS identity, address, upstream protocol), so a
// request reuses only a connection to the endpoint the balancer chose for it, made with the same TLS settings;
// most recently used first, bounded in number per key and in idle time (the plan's upstream idle timeout).
// Pools are per loop thread (a connection's fd is registered with one loop's epoll): no locks.
#pragma once
#include <algorithm>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "../engine/connector.h"
#include "../engine/engine.h"
#include "../engine/transport.h"

namespace mx::h1 {

class Http1Session;

/** One upstream connection: owned by a session while it carries an exchange, else idle in its loop's pool. */
class UpstreamConn : public engine::Watcher {
 public:
  /** `expires`: loop clock ms after which it takes no new request (the plan's max connection duration; 0: never). */
  UpstreamConn(std::unique_ptr<engine::Transport> t, engine::UpstreamLease lease, std::string key, std::string host, int64_t idleMs, int64_t expires);
  ~UpstreamConn() override;
  UpstreamConn(const UpstreamConn&) = delete;
  UpstreamConn& operator=(const UpstreamConn&) = delete;

  void OnEvents(uint32_t events) override;
  int fd() const { return t_ ? t_->fd() : -1; }
  engine::Transport& t() { return *t_; }
  const engine::UpstreamLease& lease() const { return lease_; }
  /** Closes the connection now (leaves epoll); the object may still receive events queued in this dispatch. */
  void Kill();

  const std::string key;   // its pool key
  const std::string host;  // Host sent upstream ("" = the client's)
  const int64_t idleMs;
  const int64_t expires;
  /** Whether it may carry another request at `nowMs` (counts a connection retired by its max duration). */
  bool Reusable(int64_t nowMs) const;
  /** When, idle since `idle_since`, it is no longer reused. */
  int64_t IdleDeadline() const { return expires != 0 ? std::min(idle_since + idleMs, expires) : idle_since + idleMs; }
  uint64_t rx = 0, tx = 0;
  std::string address;  // what it is connected to, as the access log's %UPSTREAM_HOST% prints it
  bool readable = true, rdhup = false, writable = true, eof = false, dead = false;
  int err = 0;                    // errno of a failed read/write
  Http1Session* owner = nullptr;  // null while idle in the pool
  int64_t idle_since = 0;

 private:
  friend class Pool;
  std::unique_ptr<engine::Transport> t_;
  engine::UpstreamLease lease_;
  std::list<std::unique_ptr<UpstreamConn>>::iterator pos_;
};

/** The idle upstream connections of one loop thread. */
class Pool final : public engine::Upkeep {
 public:
  static constexpr size_t kMaxIdlePerKey = 128;

  /** This loop thread's pool. */
  static Pool& Of(engine::Loop* loop);

  /** The most recently used idle connection under `key` (the warmest), or null. */
  std::unique_ptr<UpstreamConn> Take(const std::string& key);
  /** Parks a reusable connection (closed instead when the key holds too many). */
  void Release(std::unique_ptr<UpstreamConn> c);
  /** From the connection's own event while idle: the upstream closed it or sent junk. */
  void Drop(UpstreamConn* c);
  /** Closes idle connections whose key is not in `live` (their plans are gone). */
  void Retain(const std::unordered_set<std::string>& live);
  /** Closes connections idle past their idle timeout; returns when to look again. */
  int64_t Run(int64_t nowMs) override;
  size_t idle() const;

 private:
  explicit Pool(engine::Loop* loop) : loop_(loop) {}
  using List = std::list<std::unique_ptr<UpstreamConn>>;
  void Dispose(std::unique_ptr<UpstreamConn> c);
  engine::Loop* loop_;
  std::unordered_map<std::string, List> idle_;
};

}  // namespace mx::h1
