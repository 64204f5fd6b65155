// Upstream keep-alive connections of one service (one pool per ServiceRuntime): idle connections wait
// per I/O loop (a connection's fd is registered with one loop's epoll, so only sessions on that loop may
// take it), least recently used first, bounded in number and in idle time. The pool also carries the
// service's request counters, read by TypeScript at scrape time.
#pragma once
#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "../engine/engine.h"

namespace mx::h1 {

class Pool;
class Http1Session;

/** One upstream connection: owned by a session while it carries an exchange, else idle in its pool. */
class UpstreamConn : public engine::Watcher {
 public:
  UpstreamConn(engine::UniqueFd fd, std::string host, uint32_t endpoint, std::shared_ptr<Pool> pool);
  ~UpstreamConn() override;
  UpstreamConn(const UpstreamConn&) = delete;
  UpstreamConn& operator=(const UpstreamConn&) = delete;

  void OnEvents(uint32_t events) override;
  int fd() const { return fd_.get(); }
  /** Closes the fd now (leaves epoll); the object may still receive events queued in this dispatch. */
  void Kill();

  const std::string host;  // Host sent upstream ("" = the client's)
  uint64_t rx = 0, tx = 0;
  bool readable = false, rdhup = false, writable = true, eof = false, dead = false;
  int err = 0;                     // errno of a failed read/write
  Http1Session* owner = nullptr;   // null while idle in the pool
  int64_t idle_since = 0;
  unsigned loop = 0;

 private:
  friend class Pool;
  engine::UniqueFd fd_;
  uint32_t endpoint_;
  std::shared_ptr<Pool> pool_;  // keeps the counters alive until the last connection is gone
  std::list<std::unique_ptr<UpstreamConn>>::iterator pos_;
};

class Pool : public std::enable_shared_from_this<Pool> {
 public:
  static constexpr size_t kMaxIdlePerLoop = 128;
  static constexpr int64_t kDefaultIdleMs = 60'000;

  Pool(uint32_t engine, uint32_t endpoints, int64_t idle_ms);
  uint32_t engine() const { return engine_; }
  /** JS thread, after the engine's loops have stopped: frees every idle connection (their epolls are gone). */
  void ReapIdle();

  /** Loop thread: the least recently used idle connection of this loop, or null. Expired ones go to `dead`. */
  std::unique_ptr<UpstreamConn> Take(unsigned loop, int64_t now, std::vector<std::unique_ptr<UpstreamConn>>& dead);
  /** Loop thread: parks a reusable connection (closed instead when the pool is closed or full). */
  void Release(std::unique_ptr<UpstreamConn> c, int64_t now, std::vector<std::unique_ptr<UpstreamConn>>& dead);
  /** Loop thread, from the connection's own event while idle: the upstream closed it or sent junk. */
  static void Drop(UpstreamConn* c);
  /** Loop thread, outside event dispatch: closes connections idle for longer than the idle timeout. */
  void Sweep(unsigned loop, int64_t now);
  /**
   * Any thread: shuts down (without closing) connections idle for longer than the idle timeout, so their
   * loops free them on the resulting event even when no session of this pool runs a timer there.
   */
  void ShutdownExpired(int64_t now);
  /** JS thread: no more reuse; idle connections are shut down (their loops then free them). */
  void Close();

  void CountStatus(int status);
  void CountRetry() { retry_.fetch_add(1, std::memory_order_relaxed); }
  void CountClosed(uint32_t endpoint, uint64_t rx, uint64_t tx);
  /** [rq 1xx..5xx, retries, then per endpoint: closed, rx, tx]. */
  std::vector<double> Stats() const;

 private:
  using List = std::list<std::unique_ptr<UpstreamConn>>;
  mutable std::mutex mu_;
  std::unordered_map<unsigned, List> idle_;
  bool closed_ = false;
  std::atomic<uint64_t> rq_[5] = {};
  std::atomic<uint64_t> retry_{0};
  struct EpCount {
    std::atomic<uint64_t> closed{0}, rx{0}, tx{0};
  };
  std::unique_ptr<EpCount[]> ep_;
  uint32_t endpoints_;
  uint32_t engine_;
  int64_t idle_ms_;
};

}  // namespace mx::h1
