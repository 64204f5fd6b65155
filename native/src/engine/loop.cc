// One I/O thread of the engine: epoll dispatch, the command queue, coarse timers and session
// bookkeeping. Everything except Post() and Stats() runs on the loop's own thread.
#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include "engine.h"

namespace mx::engine {

namespace {
// The eventfd is registered with this sentinel instead of a Watcher.
Watcher* const kWakeTag = nullptr;
constexpr int kMaxEvents = 256;
// Pipes kept per loop for reuse; more are closed when returned (64 KiB of kernel memory each when full,
// nothing when empty, but each costs two fds).
constexpr size_t kPipesKept = 64;
}  // namespace

Pipe PipePool::Take() {
  if (!free_.empty()) {
    Pipe p = std::move(free_.back());
    free_.pop_back();
    inUse_++;
    return p;
  }
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return Pipe{};
  inUse_++;
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

void PipePool::Give(Pipe p) {
  inUse_--;
  if (free_.size() < keep_ && p.r.valid()) free_.push_back(std::move(p));
}

Loop::Loop(Engine* engine, unsigned index)
    : engine_(engine), index_(index), pipes_(kPipesKept), scratch_(new char[kScratchSize]) {}

Loop::~Loop() = default;

int64_t Loop::Clock() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int Loop::Init() {
  epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_.valid()) return errno;
  wake_.Reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_.valid()) return errno;
  struct epoll_event ev {};
  ev.events = EPOLLIN;
  ev.data.ptr = kWakeTag;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) != 0) return errno;
  reserve_.Reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!reserve_.valid()) return errno;
  now_ = Clock();
  return 0;
}

bool Loop::Post(std::function<void(Loop&)> fn) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (closed_) return false;
    bool wasEmpty = commands_.empty();
    commands_.push_back(std::move(fn));
    if (!wasEmpty) return true;  // a wake-up is already pending
  }
  uint64_t one = 1;
  // EAGAIN means the counter is saturated, i.e. a wake-up is pending anyway.
  while (::write(wake_.get(), &one, sizeof one) < 0 && errno == EINTR) {
  }
  return true;
}

int Loop::Watch(int fd, Watcher* w) {
  struct epoll_event ev {};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = w;
  return ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : errno;
}

void Loop::Unwatch(int fd) { ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }

void Loop::ArmTimer(Session* s, int64_t deadlineMs) { timers_.emplace(deadlineMs, s->id_); }

void Loop::Soon(Session* s) {
  if (s->soon_ || s->retired_) return;
  s->soon_ = true;
  soon_.push_back(s);
}

Session* Loop::Find(uint64_t id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() || it->second->retired_ ? nullptr : it->second.get();
}

void Loop::Place(std::unique_ptr<Session> s) {
  Session* raw = s.get();
  raw->loop_ = this;
  sessions_.emplace(raw->id_, std::move(s));
  if (raw->listener()) listeners_++;
  statSessions_.store(sessions_.size() - listeners_, std::memory_order_relaxed);
  raw->Start();
  if (!raw->retired_ && !raw->listener() && engine_->draining()) raw->DrainNew();
}

void Loop::Retire(Session* s, Event closed) {
  if (s->retired_) return;
  Retire(s);
  Emit(std::move(closed));
}

void Loop::Retire(Session* s) {
  if (s->retired_) return;
  s->retired_ = true;
  // A session waiting to run soon goes out of that list too: it is freed before the list is run again.
  if (s->soon_) {
    soon_.erase(std::remove(soon_.begin(), soon_.end(), s), soon_.end());
    s->soon_ = false;
  }
  auto it = sessions_.find(s->id_);
  if (it != sessions_.end()) {
    graveyard_.push_back(std::move(it->second));
    sessions_.erase(it);
    if (s->listener()) listeners_--;
  }
  statSessions_.store(sessions_.size() - listeners_, std::memory_order_relaxed);
}

namespace {
thread_local Loop* t_current = nullptr;
}  // namespace

Loop* Loop::Current() { return t_current; }

void Loop::Emit(Event e) {
  if (outbox_.empty()) outboxSince_ = now_;
  if (!e.lazy) outboxUrgent_ = true;
  outbox_.push_back(std::move(e));
}

void Loop::Flush(bool force) {
  if (outbox_.empty() || !(force || outboxUrgent_ || now_ - outboxSince_ >= kLazyMs)) return;
  outboxUrgent_ = false;
  engine_->EmitBatch(outbox_);
}

void Loop::Drain() {
  uint64_t n;
  while (::read(wake_.get(), &n, sizeof n) < 0 && errno == EINTR) {
  }
  std::vector<std::function<void(Loop&)>> cmds;
  {
    std::lock_guard<std::mutex> g(mu_);
    cmds.swap(commands_);
  }
  for (auto& c : cmds) c(*this);
}

void Loop::FireTimers() {
  while (!timers_.empty() && timers_.top().first <= now_) {
    uint64_t id = timers_.top().second;
    timers_.pop();
    if (Session* s = Find(id)) s->OnTimer(now_);
  }
}

void Loop::RunSoon() {
  std::vector<Session*> batch;
  batch.swap(soon_);
  for (Session* s : batch) {
    s->soon_ = false;
    if (!s->retired_) s->OnSoon();
  }
}

void Loop::ScheduleUpkeep(Upkeep* u, int64_t at) {
  for (auto& e : upkeep_) {
    if (e.second != u) continue;
    if (e.first == 0 || at < e.first) e.first = at;
    return;
  }
  upkeep_.emplace_back(at, u);
}

void Loop::RunUpkeep() {
  for (auto& e : upkeep_) {
    if (e.first == 0 || e.first > now_) continue;
    e.first = e.second->Run(now_);
  }
}

void Loop::Bury() {
  graveyard_.clear();
  deferred_.clear();
  // Timer entries of closed sessions would otherwise stay until their deadline (an hour for idle
  // timeouts), growing with the connection rate: rebuild the heap once they outnumber the live ones.
  if (timers_.size() > 2 * sessions_.size() + 1024) {
    std::vector<TimerEntry> live;
    live.reserve(sessions_.size());
    while (!timers_.empty()) {
      if (sessions_.count(timers_.top().second) != 0) live.push_back(timers_.top());
      timers_.pop();
    }
    timers_ = decltype(timers_)(std::greater<TimerEntry>(), std::move(live));
  }
}

void Loop::CloseAll(const char* reason) {
  std::vector<Session*> all;
  all.reserve(sessions_.size());
  for (auto& kv : sessions_) all.push_back(kv.second.get());
  for (Session* s : all)
    if (!s->retired_) s->Close(reason, false);
  Bury();
}

void Loop::Run() {
  t_current = this;
  struct epoll_event evs[kMaxEvents];
  while (!stopping_) {
    int timeout = -1;
    if (!soon_.empty()) {
      timeout = 0;
    } else {
      // Wake for the next timer, or for lazy events that have waited long enough.
      int64_t at = INT64_MAX;
      if (!timers_.empty()) at = timers_.top().first;
      if (!outbox_.empty()) at = std::min(at, outboxSince_ + kLazyMs);
      for (const auto& e : upkeep_)
        if (e.first != 0) at = std::min(at, e.first);
      if (at != INT64_MAX) {
        int64_t d = at - Clock();
        timeout = d <= 0 ? 0 : static_cast<int>(d > 60000 ? 60000 : d);
      }
    }
    int n = ::epoll_wait(epoll_.get(), evs, kMaxEvents, timeout);
    now_ = Clock();
    statWakeups_.fetch_add(1, std::memory_order_relaxed);
    if (n < 0 && errno != EINTR) break;  // only EBADF/EINVAL, i.e. a bug; stop rather than spin
    for (int i = 0; i < n; i++) {
      auto* w = static_cast<Watcher*>(evs[i].data.ptr);
      if (w == kWakeTag) {
        Drain();
      } else {
        w->OnEvents(evs[i].events);
      }
    }
    RunSoon();
    FireTimers();
    RunUpkeep();
    Bury();
    Flush(false);
    statPipesPooled_.store(pipes_.pooled(), std::memory_order_relaxed);
    statPipesInUse_.store(pipes_.inUse(), std::memory_order_relaxed);
    statTimers_.store(timers_.size(), std::memory_order_relaxed);
  }
  // Refuse new commands, run the ones already queued (their sessions get closed below), close the rest.
  {
    std::lock_guard<std::mutex> g(mu_);
    closed_ = true;
  }
  Drain();
  CloseAll("engine-stop");
  Flush(true);
  statSessions_.store(0, std::memory_order_relaxed);
  t_current = nullptr;
}

LoopStats Loop::Stats() const {
  LoopStats s;
  s.sessions = statSessions_.load(std::memory_order_relaxed);
  s.pipesPooled = statPipesPooled_.load(std::memory_order_relaxed);
  s.pipesInUse = statPipesInUse_.load(std::memory_order_relaxed);
  s.wakeups = statWakeups_.load(std::memory_order_relaxed);
  s.timers = statTimers_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace mx::engine
