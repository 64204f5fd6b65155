// Upstream connection pool. Idle lists are guarded by a mutex because the JS thread shuts idle fds down
// when the service goes away; every close of a pooled fd happens under that mutex, so the JS thread never
// calls shutdown on an fd number that was closed and reused meanwhile.
#include "pool.h"

#include <sys/socket.h>

#include "session.h"

namespace mx::h1 {

UpstreamConn::UpstreamConn(engine::UniqueFd fd, std::string h, uint32_t endpoint, std::shared_ptr<Pool> pool)
    : host(std::move(h)), fd_(std::move(fd)), endpoint_(endpoint), pool_(std::move(pool)) {}

UpstreamConn::~UpstreamConn() { pool_->CountClosed(endpoint_, rx, tx); }

void UpstreamConn::Kill() {
  dead = true;
  fd_.Reset();
}

void UpstreamConn::OnEvents(uint32_t events) {
  if (dead) return;
  if (owner != nullptr) {
    owner->OnUpstreamEvents(this, events);
    return;
  }
  // Idle: a keep-alive connection has nothing to say; any event means it closed or misbehaves.
  Pool::Drop(this);
}

Pool::Pool(uint32_t engine, uint32_t endpoints, int64_t idle_ms)
    : ep_(new EpCount[endpoints ? endpoints : 1]),
      endpoints_(endpoints ? endpoints : 1),
      engine_(engine),
      idle_ms_(idle_ms > 0 ? idle_ms : kDefaultIdleMs) {}

void Pool::ShutdownExpired(int64_t now) {
  std::lock_guard<std::mutex> g(mu_);
  for (auto& [loop, l] : idle_)
    for (auto& c : l) {
      if (now - c->idle_since < idle_ms_) break;  // the rest of the list is fresher
      ::shutdown(c->fd(), SHUT_RDWR);
    }
}

void Pool::ReapIdle() {
  std::vector<std::unique_ptr<UpstreamConn>> victims;
  {
    std::lock_guard<std::mutex> g(mu_);
    closed_ = true;
    for (auto& [loop, l] : idle_) {
      for (auto& c : l) {
        c->Kill();
        victims.push_back(std::move(c));
      }
      l.clear();
    }
  }
  // Destroyed outside the lock: the last one may hold the last reference to this pool.
  std::shared_ptr<Pool> keep = shared_from_this();
  victims.clear();
}

std::unique_ptr<UpstreamConn> Pool::Take(unsigned loop, int64_t now, std::vector<std::unique_ptr<UpstreamConn>>& dead) {
  std::lock_guard<std::mutex> g(mu_);
  if (closed_) return nullptr;
  auto it = idle_.find(loop);
  if (it == idle_.end()) return nullptr;
  List& l = it->second;
  while (!l.empty()) {
    std::unique_ptr<UpstreamConn> c = std::move(l.front());
    l.pop_front();
    if (now - c->idle_since >= idle_ms_) {
      c->Kill();
      dead.push_back(std::move(c));
      continue;
    }
    return c;
  }
  return nullptr;
}

void Pool::Release(std::unique_ptr<UpstreamConn> c, int64_t now, std::vector<std::unique_ptr<UpstreamConn>>& dead) {
  std::lock_guard<std::mutex> g(mu_);
  c->owner = nullptr;
  c->idle_since = now;
  List& l = idle_[c->loop];
  if (closed_ || l.size() >= kMaxIdlePerLoop) {
    c->Kill();
    dead.push_back(std::move(c));
    return;
  }
  l.push_back(std::move(c));
  l.back()->pos_ = std::prev(l.end());
}

void Pool::Drop(UpstreamConn* c) {
  std::shared_ptr<Pool> keep = c->pool_;  // the connection's destructor may drop the last other reference
  std::unique_ptr<UpstreamConn> victim;
  {
    std::lock_guard<std::mutex> g(keep->mu_);
    List& l = keep->idle_[c->loop];
    victim = std::move(*c->pos_);
    l.erase(c->pos_);
    victim->Kill();
  }
}

void Pool::Sweep(unsigned loop, int64_t now) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = idle_.find(loop);
  if (it == idle_.end()) return;
  List& l = it->second;
  // The front is the least recently used; stop at the first one still fresh.
  while (!l.empty() && (closed_ || now - l.front()->idle_since >= idle_ms_)) {
    std::unique_ptr<UpstreamConn> c = std::move(l.front());
    l.pop_front();
    c->Kill();
    // Destroyed here: Sweep runs from a timer, never while epoll events for this fd are pending.
  }
}

void Pool::Close() {
  std::lock_guard<std::mutex> g(mu_);
  closed_ = true;
  for (auto& [loop, l] : idle_)
    for (auto& c : l) ::shutdown(c->fd(), SHUT_RDWR);
}

void Pool::CountStatus(int status) {
  int cls = status / 100;
  if (cls < 1) cls = 1;
  if (cls > 5) cls = 5;
  rq_[cls - 1].fetch_add(1, std::memory_order_relaxed);
}

void Pool::CountClosed(uint32_t endpoint, uint64_t rx, uint64_t tx) {
  EpCount& e = ep_[endpoint < endpoints_ ? endpoint : 0];
  e.closed.fetch_add(1, std::memory_order_relaxed);
  e.rx.fetch_add(rx, std::memory_order_relaxed);
  e.tx.fetch_add(tx, std::memory_order_relaxed);
}

std::vector<double> Pool::Stats() const {
  std::vector<double> out;
  out.reserve(6 + 3 * endpoints_);
  for (const auto& r : rq_) out.push_back(static_cast<double>(r.load(std::memory_order_relaxed)));
  out.push_back(static_cast<double>(retry_.load(std::memory_order_relaxed)));
  for (uint32_t i = 0; i < endpoints_; i++) {
    out.push_back(static_cast<double>(ep_[i].closed.load(std::memory_order_relaxed)));
    out.push_back(static_cast<double>(ep_[i].rx.load(std::memory_order_relaxed)));
    out.push_back(static_cast<double>(ep_[i].tx.load(std::memory_order_relaxed)));
  }
  return out;
}

}  // namespace mx::h1
