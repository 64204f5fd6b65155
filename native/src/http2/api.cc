// JS surface of the HTTP/2 session kind (declared in ../api.h, typed in src/redirect/native.ts). JS thread
// only; the session itself runs on an engine loop, reached through Engine::Adopt / PostTo.
#include <cstring>
#include <memory>
#include <string>

#include "../api.h"
#include "../errors.h"
#include "../handles.h"
#include "../engine/handover.h"
#include "session.h"

namespace mx {

namespace {

// Counter sets by handle; sessions hold their own reference, so freeing a handle never races a loop thread.
HandleTable<std::shared_ptr<h2::H2Counters>> g_counters("counters", "does not exist (an HTTP/2 counter set handle)");

std::shared_ptr<h2::H2Counters> CountersArg(const Napi::CallbackInfo& info, size_t i) { return g_counters.Arg(info, i); }

/**
 * An upstream socket on its way to a session. If the session is gone when the command runs (or the id names
 * another kind), the socket is closed and reported like any upstream close, so JS's accounting still ends.
 */
struct PendingUpstream {
  engine::Engine* engine = nullptr;
  uint64_t session = 0;
  uint32_t token = 0;
  std::unique_ptr<engine::Transport> t;
  ~PendingUpstream() {
    if (!t) return;
    t.reset();
    engine->Emit(h2::UpstreamClosed(session, token, 0, 0));
  }
};

/** The session as an Http2Session, or null when the id names another kind (a caller bug, not a crash). */
h2::Http2Session* AsH2(engine::Session& s) {
  return std::strcmp(s.kind(), "http2") == 0 ? static_cast<h2::Http2Session*>(&s) : nullptr;
}

}  // namespace

Napi::Value RelayH2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine::Engine* e = engine::EngineArg(info, 0);
  int clientFd = ArgFd(info, 1, "clientFd");
  std::string initial = engine::OptionalBytes(info, 2, "initial");
  h2::RelayOptions opts;
  opts.grpc = info.Length() > 3 && info[3].ToBoolean().Value();
  std::shared_ptr<h2::H2Counters> counters = CountersArg(info, 4);
  // The counter set is per service runtime, so it also names the pool of parked upstream connections.
  uint32_t poolKey = ArgU32(info, 4, "counters");
  engine::UniqueFd c = engine::DupSocket(env, clientFd, "client");
  auto session = std::make_unique<h2::Http2Session>(std::make_unique<engine::PlainTransport>(std::move(c)), std::move(initial), opts, std::move(counters), poolKey);
  return Napi::Number::New(env, static_cast<double>(engine::AdoptOrThrow(env, e, std::move(session))));
}

Napi::Value RelayH2Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine::Engine* e = engine::EngineArg(info, 0);
  uint64_t id = engine::SessionIdArg(info, 1);
  uint32_t token = ArgU32(info, 2, "token");
  int fd = ArgFd(info, 3, "upstreamFd");
  std::string authority = info.Length() > 4 && info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : std::string();
  std::string initial = engine::OptionalBytes(info, 5, "initial");
  // std::function needs a copyable callable: the socket rides in a shared_ptr.
  auto p = std::make_shared<PendingUpstream>();
  p->t = std::make_unique<engine::PlainTransport>(engine::DupSocket(env, fd, "upstream"));
  p->engine = e;
  p->session = id;
  p->token = token;
  bool ok = e->PostTo(id, [p, authority, initial](engine::Session& s) {
    if (h2::Http2Session* h = AsH2(s)) h->Attach(std::move(p->t), p->token, authority, initial);
  });
  return Napi::Boolean::New(env, ok);
}

Napi::Value RelayH2Unavailable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine::Engine* e = engine::EngineArg(info, 0);
  uint64_t id = engine::SessionIdArg(info, 1);
  std::string reason = ArgString(info, 2, "reason");
  bool ok = e->PostTo(id, [reason](engine::Session& s) {
    if (h2::Http2Session* h = AsH2(s)) h->Unavailable(reason);
  });
  return Napi::Boolean::New(env, ok);
}

Napi::Value RelayH2Drain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine::Engine* e = engine::EngineArg(info, 0);
  uint64_t id = engine::SessionIdArg(info, 1);
  bool ok = e->PostTo(id, [](engine::Session& s) {
    if (h2::Http2Session* h = AsH2(s)) h->Drain();
  });
  return Napi::Boolean::New(env, ok);
}

Napi::Value H2CountersNew(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), g_counters.Add(std::make_shared<h2::H2Counters>()));
}

Napi::Value H2CountersRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<h2::H2Counters> c = CountersArg(info, 0);
  Napi::Array a = Napi::Array::New(env, 7);
  for (uint32_t i = 0; i < 6; i++) a.Set(i, Napi::Number::New(env, static_cast<double>(c->byClass[i].load(std::memory_order_relaxed))));
  a.Set(6u, Napi::Number::New(env, static_cast<double>(c->retries.load(std::memory_order_relaxed))));
  return a;
}

Napi::Value H2CountersFree(const Napi::CallbackInfo& info) {
  g_counters.Erase(ArgU32(info, 0, "counters"));
  return info.Env().Undefined();
}

}  // namespace mx
