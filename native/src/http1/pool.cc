// Pool and UpstreamConn: see pool.h.
#include "pool.h"

#include <cerrno>

#include "session.h"

namespace mx::h1 {

UpstreamConn::UpstreamConn(std::unique_ptr<engine::Transport> t, engine::UpstreamLease lease, std::string k, std::string h, int64_t idle, int64_t exp)
    : key(std::move(k)), host(std::move(h)), idleMs(idle), expires(exp), t_(std::move(t)), lease_(std::move(lease)) {}

bool UpstreamConn::Reusable(int64_t nowMs) const {
  if (expires == 0 || nowMs < expires) return true;
  lease_.Count(engine::ServiceStats::kUpstreamCxMaxDuration);
  return false;
}

UpstreamConn::~UpstreamConn() { Kill(); }

void UpstreamConn::Kill() {
  dead = true;
  if (!t_) return;
  engine::CloseUpstream(engine::Loop::Current(), 0, *t_, lease_, rx, tx);
  t_.reset();  // closing the fd also removes it from epoll
}

void UpstreamConn::OnEvents(uint32_t events) {
  if (dead) return;
  if (owner != nullptr) {
    owner->OnUpstreamEvents(this, events);
    return;
  }
  engine::Loop* l = engine::Loop::Current();
  if (l == nullptr) return;
  if (t_->holdsBytes()) {
    // A bridged (HTTP/2) connection talks while idle (PING, SETTINGS, WINDOW_UPDATE): the bridge answers,
    // and only bytes for the session, its end, or an error mean it is done.
    t_->Flush();
    char probe[1];
    if (t_->Read(probe, sizeof probe) == -EAGAIN) return;
  }
  // Idle: a keep-alive connection has nothing to say; any event means it closed or misbehaves.
  Pool::Of(l).Drop(this);
}

Pool& Pool::Of(engine::Loop* loop) {
  // One pool per loop thread; it lives as long as the thread (a loop runs on one thread for its whole life).
  thread_local std::unique_ptr<Pool> pool;
  if (!pool || pool->loop_ != loop) pool.reset(new Pool(loop));
  return *pool;
}

std::unique_ptr<UpstreamConn> Pool::Take(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  List& l = it->second;
  int64_t now = loop_->NowMs();
  while (!l.empty()) {
    // Most recently used first: the warmest connection, the least likely to have been closed by the upstream.
    std::unique_ptr<UpstreamConn> c = std::move(l.back());
    l.pop_back();
    if (now >= c->IdleDeadline()) {
      if (now - c->idle_since < c->idleMs) c->Reusable(now);  // counted: retired by its age, not idleness
      Dispose(std::move(c));
      continue;
    }
    if (l.empty()) idle_.erase(it);
    return c;
  }
  idle_.erase(it);
  return nullptr;
}

void Pool::Release(std::unique_ptr<UpstreamConn> c) {
  c->owner = nullptr;
  c->idle_since = loop_->NowMs();
  if (!c->Reusable(c->idle_since)) {
    // Past its max connection duration: the request it carried was its last.
    Dispose(std::move(c));
    return;
  }
  List& l = idle_[c->key];
  if (l.size() >= kMaxIdlePerKey) {
    Dispose(std::move(l.front()));
    l.pop_front();
  }
  int64_t at = c->IdleDeadline();
  l.push_back(std::move(c));
  l.back()->pos_ = std::prev(l.end());
  loop_->ScheduleUpkeep(this, at);
}

void Pool::Drop(UpstreamConn* c) {
  auto it = idle_.find(c->key);
  if (it == idle_.end()) return;
  std::unique_ptr<UpstreamConn> victim = std::move(*c->pos_);
  it->second.erase(c->pos_);
  if (it->second.empty()) idle_.erase(it);
  Dispose(std::move(victim));
}

void Pool::Dispose(std::unique_ptr<UpstreamConn> c) {
  if (!c) return;
  c->Kill();
  // Events of the current epoll batch may still name it.
  loop_->Defer(std::move(c));
}

void Pool::Retain(const std::unordered_set<std::string>& live) {
  for (auto it = idle_.begin(); it != idle_.end();) {
    if (live.count(it->first) != 0) {
      ++it;
      continue;
    }
    for (auto& c : it->second) Dispose(std::move(c));
    it = idle_.erase(it);
  }
}

int64_t Pool::Run(int64_t nowMs) {
  int64_t next = 0;
  for (auto it = idle_.begin(); it != idle_.end();) {
    List& l = it->second;
    // Idle deadlines follow use (the front is the least recently used) but max durations do not: every entry
    // is looked at (at most kMaxIdlePerKey per key).
    for (auto c = l.begin(); c != l.end();) {
      int64_t at = (*c)->IdleDeadline();
      if (nowMs < at) {
        if (next == 0 || at < next) next = at;
        ++c;
        continue;
      }
      if (nowMs - (*c)->idle_since < (*c)->idleMs) (*c)->Reusable(nowMs);  // counted: retired by its age
      Dispose(std::move(*c));
      c = l.erase(c);
    }
    if (l.empty()) {
      it = idle_.erase(it);
      continue;
    }
    ++it;
  }
  return next;
}

size_t Pool::idle() const {
  size_t n = 0;
  for (const auto& [k, l] : idle_) n += l.size();
  return n;
}

}  // namespace mx::h1
