// The engine: loop threads, session placement, and the batched event channel to JS.
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <string>

#include "../errors.h"
#include "crash.h"
#include "engine.h"

namespace mx::engine {

Engine* Engine::Create(Napi::Env env, unsigned threads, Napi::Function onEvents) {
  auto* e = new Engine();
  for (unsigned i = 0; i < threads; i++) {
    auto loop = std::make_unique<Loop>(e, i);
    if (int err = loop->Init()) {
      delete e;  // no thread started yet; loops close their fds
      ThrowErrno(env, "MESHEXT_E_ENGINE", "epoll_create1/eventfd", err);
    }
    e->loops_.push_back(std::move(loop));
  }
  e->tsfn_ = Tsfn::New(env, onEvents, "meshext-engine-events", 0, 1, e, &Engine::Finalize);
  // The engine's connections keep their own JS handles (listeners, timers) where liveness matters; the
  // event channel alone must not hold the process open.
  e->tsfn_.Unref(env);
  InstallCrashReport();
  for (size_t i = 0; i < e->loops_.size(); i++) {
    Loop* lp = e->loops_[i].get();
    e->threads_.emplace_back([lp, i] {
      // Named so that top -H, perf and /proc/<pid>/task/*/comm tell the engine's threads apart (15 chars max).
      char name[16];
      snprintf(name, sizeof name, "mx-engine-%zu", i);
      pthread_setname_np(pthread_self(), name);
      MarkCrashReportThread();
      lp->Run();
    });
  }
  return e;
}

uint64_t Engine::Adopt(std::unique_ptr<Session> s) {
  if (stopped_) return 0;
  uint64_t id = nextId_.fetch_add(1, std::memory_order_relaxed);
  s->id_ = id;
  Loop* loop = loops_[id % loops_.size()].get();
  // std::function needs a copyable callable: carry the session as a raw pointer and re-own it inside.
  Session* raw = s.release();
  bool ok = loop->Post([raw](Loop& l) { l.Place(std::unique_ptr<Session>(raw)); });
  if (!ok) {
    delete raw;
    return 0;
  }
  return id;
}

uint64_t Engine::AdoptHere(Loop* loop, std::unique_ptr<Session> s) {
  // PostTo finds a session's loop from its id (id % loops), so take the next id that maps to this loop.
  uint64_t id;
  do id = nextId_.fetch_add(1, std::memory_order_relaxed);
  while (id % loops_.size() != loop->index());
  s->id_ = id;
  loop->Place(std::move(s));
  return id;
}

unsigned Engine::Flush(uint64_t token) {
  if (stopped_) return 0;
  unsigned n = 0;
  for (auto& l : loops_)
    if (l->Post([token](Loop& loop) { loop.Emit(Event("flushed", token)); })) n++;
  return n;
}

bool Engine::DrainAll(bool force) {
  if (stopped_) return false;
  if (!force) draining_.store(true, std::memory_order_relaxed);
  for (auto& l : loops_)
    l->Post([force](Loop& loop) {
      std::vector<uint64_t> ids;
      for (auto& kv : loop.sessions_) ids.push_back(kv.first);
      for (uint64_t id : ids) {
        Session* s = loop.Find(id);
        if (s == nullptr || s->listener()) continue;
        if (force) s->Close("drain-timeout", false);
        else s->Drain();
      }
    });
  return true;
}

void Engine::PostAll(std::function<void(Loop&)> fn) {
  if (stopped_) return;
  for (auto& l : loops_) l->Post(fn);
}

bool Engine::PostTo(uint64_t id, std::function<void(Session&)> fn) {
  if (stopped_ || id == 0) return false;
  Loop* loop = loops_[id % loops_.size()].get();
  return loop->Post([id, fn = std::move(fn)](Loop& l) {
    if (Session* s = l.Find(id)) fn(*s);
  });
}

void Engine::EmitBatch(std::vector<Event>& batch) {
  bool schedule = false;
  {
    std::lock_guard<std::mutex> g(evMu_);
    if (events_.empty()) {
      events_.swap(batch);
    } else {
      for (Event& ev : batch) events_.push_back(std::move(ev));
    }
    batch.clear();
    if (!scheduled_ && !released_) {
      scheduled_ = true;
      schedule = true;
    }
  }
  if (schedule && tsfn_.NonBlockingCall() != napi_ok) {
    // The queue is unbounded, so this only fails once the function is closing; Stop() hands the events over.
    std::lock_guard<std::mutex> g(evMu_);
    scheduled_ = false;
  }
}

void Engine::Deliver(Napi::Env env, Napi::Function fn, Engine* self, void* /*unused*/) {
  std::vector<Event> batch;
  {
    std::lock_guard<std::mutex> g(self->evMu_);
    batch.swap(self->events_);
    self->scheduled_ = false;
  }
  if (env == nullptr || batch.empty()) return;  // environment tearing down, or Stop() took them
  Napi::HandleScope scope(env);
  Napi::Array arr = BatchToJs(env, batch);
  // An exception thrown by the JS handler surfaces as an uncaught exception, like any callback's.
  fn.Call({arr});
}

Napi::Array Engine::BatchToJs(Napi::Env env, const std::vector<Event>& batch) {
  // Property names and kinds are string literals: make each JS string once per batch, not once per use
  // (V8 would internalize the same text again for every property of every event).
  std::vector<std::pair<const char*, Napi::Value>> names;
  auto name = [&](const char* s) -> Napi::Value {
    for (const auto& kv : names)
      if (kv.first == s) return kv.second;
    names.emplace_back(s, Napi::String::New(env, s));
    return names.back().second;
  };
  Napi::Array arr = Napi::Array::New(env, batch.size());
  for (size_t i = 0; i < batch.size(); i++) {
    const Event& e = batch[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set(name("kind"), name(e.kind));
    o.Set(name("id"), Napi::Number::New(env, static_cast<double>(e.id)));
    for (const auto& kv : e.nums) o.Set(name(kv.first), Napi::Number::New(env, kv.second));
    for (const auto& kv : e.strs) o.Set(name(kv.first), Napi::String::New(env, kv.second));
    for (const auto& kv : e.bufs) o.Set(name(kv.first), Napi::Buffer<char>::Copy(env, kv.second.data(), kv.second.size()));
    arr.Set(static_cast<uint32_t>(i), o);
  }
  return arr;
}

void Engine::JoinAll() {
  for (auto& l : loops_) l->Post([](Loop& lp) { lp.stopping_ = true; });
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

std::vector<Event> Engine::Stop() {
  std::vector<Event> rest;
  if (stopped_) return rest;
  stopped_ = true;
  JoinAll();
  plans_.logs().Stop();  // every loop is done: what they logged is written now
  {
    std::lock_guard<std::mutex> g(evMu_);
    rest.swap(events_);
    released_ = true;
  }
  tsfn_.Release();  // the finalizer deletes the engine once queued calls have run
  return rest;
}

void Engine::Abandon() {
  if (stopped_) return;
  stopped_ = true;
  JoinAll();
  plans_.logs().Stop();
  std::lock_guard<std::mutex> g(evMu_);
  events_.clear();
  released_ = true;
}

void Engine::Finalize(Napi::Env /*env*/, void* /*data*/, Engine* self) {
  // Reached after Stop() (threads already joined) or at environment teardown with the engine still running.
  self->Abandon();
  delete self;
}

std::vector<LoopStats> Engine::Stats() const {
  std::vector<LoopStats> out;
  for (const auto& l : loops_) out.push_back(l->Stats());
  return out;
}

}  // namespace mx::engine
