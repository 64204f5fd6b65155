// The native engine: N I/O threads, each an epoll loop that owns the sessions placed on it.
//
// How a session kind plugs in (TcpSession in tcp_session.h is the reference implementation):
//  1. Derive from `Session`. Listeners are adopted from the JS thread (`Engine::Adopt`: assigns the id and a
//     loop round-robin); a client connection's session is made on its listener's loop thread, from the plan
//     its route key finds, and placed with `Engine::AdoptHere`. Everything after that runs on the loop thread.
//  2. `Start()` runs on the loop thread: register fds with `loop()->Watch(fd, watcher)`. A `Watcher` gets
//     edge-triggered EPOLLIN|EPOLLOUT|EPOLLRDHUP events for its fd for as long as it is watched; keep
//     per-fd "readable/writable" flags and clear them only on EAGAIN (that is what edge-triggering needs).
//     Closing a watched fd removes it from epoll; call `Unwatch` first only when the fd stays open.
//  3. Timers are coarse and cheap: `loop()->ArmTimer(this, deadlineMs)` (milliseconds of `Loop::NowMs()`,
//     CLOCK_MONOTONIC_COARSE). `OnTimer(now)` fires once per arm, at or after the deadline; keep the real
//     deadline in the session (e.g. last activity + idle) and re-arm from OnTimer rather than re-arming on
//     every byte. Re-arming earlier than a pending arm adds a second heap entry; stale ones just fire early.
//  4. Fairness: do at most a bounded amount of work per callback and call `loop()->Soon(this)`; `OnSoon()`
//     then runs after the current batch of epoll events.
//  5. Finish with `loop()->Retire(this)` (or `Retire(this, event)` to tell JS): the session is destroyed
//     after the current dispatch (so pending epoll events that still point at its watchers stay valid; guard
//     with your own closed flag).
//  6. `Close(reason, reset)` is called on the loop thread when JS closes the session (drain/force close) or
//     the engine stops; it must end the session synchronously (through Retire).
//  7. Upstreams come from a `Connector` (connector.h), which walks the plan's endpoints and hands over a
//     connected `Transport` (transport.h: plain, TLS, or a bridge around either). Events for JS (failures,
//     denials, counts) go through `loop()->Emit`; `Engine::PostTo(id, fn)` runs a JS-side command for one
//     session on its loop thread.
//  Shared per-thread resources: `loop()->pipes()` (splice pipes, take when needed, give back when empty)
//  and `loop()->scratch()` (one read buffer, valid only until you return to the loop).
// Events reach JS in batches through one unref'd ThreadSafeFunction: one JS call carries every event
// queued since the previous call, so a busy engine costs one JS call per loop wake-up, not one per event.
#pragma once
#include <napi.h>
#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../dns/state.h"
#include "fd.h"
#include "plan.h"

namespace mx::engine {

class Loop;
class Engine;

/**
 * One message for JS: `{kind, id, ...nums, ...strs}`. Keys must be string literals (static storage).
 * A `lazy` event only keeps JS's books (a session began, connected, ended): a loop holds such events back
 * for up to Loop::kLazyMs and hands them over with the next urgent one, so that a busy engine wakes the JS
 * thread about a hundred times a second rather than once per connection.
 */
struct Event {
  const char* kind = "";
  uint64_t id = 0;
  bool lazy = false;
  std::vector<std::pair<const char*, double>> nums;
  std::vector<std::pair<const char*, std::string>> strs;
  std::vector<std::pair<const char*, std::string>> bufs;  // bytes, as Buffers

  Event() = default;
  Event(const char* k, uint64_t i) : kind(k), id(i) {}
  Event& Num(const char* key, double v) {
    nums.emplace_back(key, v);
    return *this;
  }
  Event& Str(const char* key, std::string v) {
    strs.emplace_back(key, std::move(v));
    return *this;
  }
  Event& Buf(const char* key, std::string v) {
    bufs.emplace_back(key, std::move(v));
    return *this;
  }
  Event& Lazy() {
    lazy = true;
    return *this;
  }
};

/** Receives readiness for one fd (edge-triggered; see the header comment). */
class Watcher {
 public:
  virtual ~Watcher() = default;
  virtual void OnEvents(uint32_t events) = 0;
};

/** A unit of work owned by one loop: a proxied connection of some protocol. */
class Session {
 public:
  virtual ~Session() = default;
  uint64_t id() const { return id_; }
  Loop* loop() const { return loop_; }
  bool retired() const { return retired_; }

  /** Runs on the loop thread once the session is placed; registers watchers. */
  virtual void Start() = 0;
  /** Ends the session now (JS close or engine stop); must Retire it. `reset` asks for RST instead of FIN. */
  virtual void Close(const char* reason, bool reset) = 0;
  virtual void OnTimer(int64_t /*nowMs*/) {}
  virtual void OnSoon() {}
  /** Graceful shutdown (engineDrain): finish the exchanges in flight, then close; default: nothing to do. */
  virtual void Drain() {}
  /**
   * The session started while the engine drains (an agent that keeps accepting until it exits): HTTP/1.x
   * serves one request and closes. Default: nothing (an HTTP/2 GOAWAY before the first stream would only send
   * the client to another connection of ours).
   */
  virtual void DrainNew() {}
  /** Session-kind figures for engineStats() (e.g. open sessions by kind); default contributes nothing. */
  virtual const char* kind() const = 0;
  /** A listening socket (counted apart: engineStats().sessions are connections). */
  virtual bool listener() const { return false; }

 private:
  friend class Loop;
  friend class Engine;
  uint64_t id_ = 0;
  Loop* loop_ = nullptr;
  bool retired_ = false;
  bool soon_ = false;
};

/** A loop-wide housekeeping task (see Loop::ScheduleUpkeep); lives as long as the loop thread. */
class Upkeep {
 public:
  virtual ~Upkeep() = default;
  /** Runs on the loop thread; returns when to run again (0: only when scheduled anew). */
  virtual int64_t Run(int64_t nowMs) = 0;
};

/** A non-blocking pipe used by splice(2); pooled per loop so idle sessions hold none. */
struct Pipe {
  UniqueFd r, w;
};

class PipePool {
 public:
  explicit PipePool(size_t keep) : keep_(keep) {}
  /** A pooled or new pipe; an invalid Pipe (r < 0) when pipe2 fails (caller falls back to copying). */
  Pipe Take();
  /** Returns an empty pipe; pipes that may hold bytes must be dropped instead. */
  void Give(Pipe p);
  size_t pooled() const { return free_.size(); }
  size_t inUse() const { return inUse_; }
  void Drop() { inUse_--; }

 private:
  size_t keep_;
  size_t inUse_ = 0;
  std::vector<Pipe> free_;
};

struct LoopStats {
  uint64_t sessions = 0;
  uint64_t pipesPooled = 0;
  uint64_t pipesInUse = 0;
  uint64_t wakeups = 0;
  uint64_t timers = 0;
};

/** One I/O thread: epoll, command queue (eventfd), coarse timers, its sessions. */
class Loop {
 public:
  static constexpr size_t kScratchSize = 64 * 1024;
  /** How long lazy events may wait for an urgent one before they go to JS anyway. */
  static constexpr int64_t kLazyMs = 10;

  Loop(Engine* engine, unsigned index);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  /** Creates epoll and eventfd; returns errno on failure (0 on success). */
  int Init();
  void Run();
  /** Thread-safe: queues `fn` to run on this loop's thread. Returns false when the loop has stopped. */
  bool Post(std::function<void(Loop&)> fn);

  // Loop-thread only from here on.
  int Watch(int fd, Watcher* w);
  void Unwatch(int fd);
  void ArmTimer(Session* s, int64_t deadlineMs);
  void Soon(Session* s);
  void Retire(Session* s, Event closed);
  /** Retire without telling JS (connections: their books are the service counters). */
  void Retire(Session* s);
  /** Frees `w` once the current epoll batch is over (its events may still name it). */
  void Defer(std::unique_ptr<Watcher> w) { deferred_.push_back(std::move(w)); }
  /**
   * Loop-wide housekeeping (idle connection pools): `u->Upkeep(now)` runs once NowMs() reaches `at`, then
   * again whenever it asks (by returning the next time, 0 for never).
   */
  void ScheduleUpkeep(class Upkeep* u, int64_t at);
  /**
   * Queues an event for JS; the loop hands its events over at the end of an iteration (one wake-up of JS for
   * all) that queued an urgent one, or once the oldest lazy one has waited kLazyMs.
   */
  void Emit(Event e);
  /** The loop running on this thread, or null. */
  static Loop* Current();
  int64_t NowMs() const { return now_; }
  /** CLOCK_MONOTONIC_COARSE in ms: the clock of NowMs() and of timer deadlines, usable from any thread. */
  static int64_t Clock();
  PipePool& pipes() { return pipes_; }
  /** A descriptor held back (on /dev/null) so that at the fd limit the loop can still take and refuse connections. */
  UniqueFd& reserve() { return reserve_; }
  char* scratch() { return scratch_.get(); }
  Engine* engine() const { return engine_; }
  unsigned index() const { return index_; }
  Session* Find(uint64_t id);

  /** Called by Engine::Adopt's posted command. */
  void Place(std::unique_ptr<Session> s);
  /** Snapshot of counters; thread-safe (atomics). */
  LoopStats Stats() const;

 private:
  void Drain();
  /** Hands the outbox to the engine when it is due (see Emit), or whatever it holds when `force`. */
  void Flush(bool force);
  void FireTimers();
  void RunSoon();
  void RunUpkeep();
  void Bury();
  void CloseAll(const char* reason);

  Engine* engine_;
  unsigned index_;
  UniqueFd epoll_;
  UniqueFd wake_;
  bool stopping_ = false;
  int64_t now_ = 0;

  std::mutex mu_;
  std::vector<std::function<void(Loop&)>> commands_;
  bool closed_ = false;  // guarded by mu_: no more commands accepted

  std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions_;
  size_t listeners_ = 0;  // sessions_ that are listeners
  std::vector<std::unique_ptr<Session>> graveyard_;
  std::vector<std::unique_ptr<Watcher>> deferred_;
  std::vector<std::pair<int64_t, class Upkeep*>> upkeep_;  // when, who (few entries)
  std::vector<Session*> soon_;
  std::vector<Event> outbox_;  // events not handed to the engine yet
  bool outboxUrgent_ = false;  // outbox_ holds an event that is not lazy
  int64_t outboxSince_ = 0;    // NowMs() when outbox_ got its first event
  using TimerEntry = std::pair<int64_t, uint64_t>;  // deadline, session id
  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<TimerEntry>> timers_;
  PipePool pipes_;
  UniqueFd reserve_;
  std::unique_ptr<char[]> scratch_;

  std::atomic<uint64_t> statSessions_{0};
  std::atomic<uint64_t> statPipesPooled_{0};
  std::atomic<uint64_t> statPipesInUse_{0};
  std::atomic<uint64_t> statWakeups_{0};
  std::atomic<uint64_t> statTimers_{0};

  friend class Engine;
};

/**
 * Owns the loops and the event channel. Created and stopped on the JS thread; `sink` is called on the JS
 * thread with batches of events. Lifetime: after Stop() the engine is deleted by the TSFN finalizer, so a
 * queued batch never sees a dead engine.
 */
class Engine {
 public:
  using Sink = std::function<void(std::vector<Event>&)>;

  /** Starts `threads` loops; throws a JS error (via env) when a loop cannot be created. */
  static Engine* Create(Napi::Env env, unsigned threads, Napi::Function onEvents);

  /** Places a session on a loop (round-robin); returns its id, or 0 when the engine is stopping. */
  uint64_t Adopt(std::unique_ptr<Session> s);
  /** Loop thread: places a session on `loop` itself (it starts now) and returns its id. */
  uint64_t AdoptHere(Loop* loop, std::unique_ptr<Session> s);
  /** The plans TS installed (engineInstall); listeners and HTTP sessions consult them. */
  PlanTable& plans() { return plans_; }
  /** The DNS table UDP sessions answer from, and their counts. */
  dns::State& dns() { return dns_; }
  /** Has every connection of every loop Drain() (or Close() when `force`); false when the engine is stopping. */
  bool DrainAll(bool force);
  /** Runs `fn` on every loop (e.g. to drop pooled connections of plans that are gone). */
  void PostAll(std::function<void(Loop&)> fn);
  /** Has every loop emit an urgent `flushed` {id: token} behind the events it emitted so far; returns how many will come. */
  unsigned Flush(uint64_t token);
  /** Runs fn on the session's loop if the session is still open; false when the engine is stopping. */
  bool PostTo(uint64_t id, std::function<void(Session&)> fn);
  /** Thread-safe: queues `batch` (emptied) for JS and schedules one delivery. */
  void EmitBatch(std::vector<Event>& batch);
  /**
   * Closes every session (reason "engine-stop"), joins the threads and returns the events not yet delivered
   * (so the caller can account for them synchronously). Releases the TSFN; the engine deletes itself later.
   */
  std::vector<Event> Stop();
  /** Whether the event channel keeps the JS event loop alive (like an open socket does); JS thread only. */
  void SetRef(Napi::Env env, bool ref) {
    if (stopped_) return;
    if (ref) tsfn_.Ref(env);
    else tsfn_.Unref(env);
  }
  /** Joins threads without touching JS (environment teardown). */
  void Abandon();

  unsigned threads() const { return static_cast<unsigned>(loops_.size()); }
  std::vector<LoopStats> Stats() const;
  bool stopped() const { return stopped_; }
  /** Any thread: engineDrain was asked for (not forced); sessions that start from now on are told (DrainNew). */
  bool draining() const { return draining_.load(std::memory_order_relaxed); }

  /** Converts a batch of events to JS objects (used by the TSFN callback and Stop's return value). */
  static Napi::Array BatchToJs(Napi::Env env, const std::vector<Event>& batch);

 private:
  Engine() = default;
  ~Engine() = default;
  static void Deliver(Napi::Env env, Napi::Function fn, Engine* self, void* unused);
  static void Finalize(Napi::Env env, void* data, Engine* self);
  void JoinAll();

  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> nextId_{1};
  bool stopped_ = false;
  std::atomic<bool> draining_{false};
  PlanTable plans_;
  dns::State dns_;

  std::mutex evMu_;
  std::vector<Event> events_;
  bool scheduled_ = false;
  bool released_ = false;  // guarded by evMu_: TSFN released, deliver nothing more

  using Tsfn = Napi::TypedThreadSafeFunction<Engine, void, Engine::Deliver>;
  Tsfn tsfn_;

  friend class Loop;
};

}  // namespace mx::engine
