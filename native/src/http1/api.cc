// JS surface of the HTTP/1.1 session (declared in ../api.h, typed in src/redirect/native.ts). JS thread
// only. Pools are addressed by integer handles, like engines, so a stale handle is an error, not a crash.
#include <cstring>
#include <memory>
#include <string>

#include "../api.h"
#include "../errors.h"
#include "../handles.h"
#include "../engine/engine.h"
#include "../engine/handover.h"
#include "session.h"

namespace mx {

namespace {

HandleTable<std::shared_ptr<h1::Pool>> g_pools("pool", "does not exist (an HTTP/1 pool handle)");

std::shared_ptr<h1::Pool> PoolArg(const Napi::CallbackInfo& info, size_t i) { return g_pools.Arg(info, i); }

// Session ids are shared by every session kind; a command meant for an HTTP/1 session ignores others.
h1::Http1Session* AsHttp1(engine::Session& s) {
  return std::strcmp(s.kind(), "http1") == 0 ? static_cast<h1::Http1Session*>(&s) : nullptr;
}

}  // namespace

// h1PoolCreate(engine, endpoints, idleTimeoutMs) → pool handle; the pool's connections live on that
// engine's loops.
Napi::Value H1PoolCreate(const Napi::CallbackInfo& info) {
  engine::EngineArg(info, 0);
  uint32_t engine = ArgU32(info, 0, "engine");
  uint32_t endpoints = ArgU32(info, 1, "endpoints");
  uint32_t idleMs = ArgU32(info, 2, "idleTimeoutMs");
  return Napi::Number::New(info.Env(), g_pools.Add(std::make_shared<h1::Pool>(engine, endpoints, idleMs)));
}

// h1PoolsSweep(): idle upstream connections past their pool's idle timeout are shut down (their loops
// then free them). Called periodically by JS; loops also sweep from their sessions' timers.
Napi::Value H1PoolsSweep(const Napi::CallbackInfo& info) {
  int64_t now = engine::Loop::Clock();  // the loops' clock (Loop::NowMs)
  for (auto& [h, p] : g_pools) p->ShutdownExpired(now);
  return info.Env().Undefined();
}

// h1PoolsReap(engine): after engineStop(engine), frees the idle connections of that engine's pools.
Napi::Value H1PoolsReap(const Napi::CallbackInfo& info) {
  uint32_t engine = ArgU32(info, 0, "engine");
  for (auto& [h, p] : g_pools)
    if (p->engine() == engine) p->ReapIdle();
  return info.Env().Undefined();
}

// h1PoolClose(pool): no more reuse; idle upstream connections are shut down. The handle stays readable
// (stats) until h1PoolFree.
Napi::Value H1PoolClose(const Napi::CallbackInfo& info) {
  PoolArg(info, 0)->Close();
  return info.Env().Undefined();
}

Napi::Value H1PoolFree(const Napi::CallbackInfo& info) {
  std::shared_ptr<h1::Pool> p = PoolArg(info, 0);
  p->Close();
  g_pools.Erase(ArgU32(info, 0, "pool"));
  return info.Env().Undefined();
}

// h1PoolStats(pool) → [rq 1xx..5xx, retries, then per endpoint: closed, rx, tx]
Napi::Value H1PoolStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<double> s = PoolArg(info, 0)->Stats();
  Napi::Array a = Napi::Array::New(env, s.size());
  for (size_t i = 0; i < s.size(); i++) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, s[i]));
  return a;
}

// h1Serve(engine, clientFd, initial|null, pool, idleTimeoutMs) → session id
Napi::Value H1Serve(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine::Engine* e = engine::EngineArg(info, 0);
  int fd = ArgFd(info, 1, "clientFd");
  std::string initial = engine::OptionalBytes(info, 2, "initial");
  std::shared_ptr<h1::Pool> pool = PoolArg(info, 3);
  uint32_t idleMs = ArgU32(info, 4, "idleTimeoutMs");
  engine::UniqueFd c = engine::DupSocket(env, fd, "client");
  uint64_t id = engine::AdoptOrThrow(env, e, std::make_unique<h1::Http1Session>(std::move(c), std::move(initial), std::move(pool), idleMs));
  return Napi::Number::New(env, static_cast<double>(id));
}

// h1Upstream(engine, id, upstreamFd, hostOverride, endpointIndex, pool) → whether the session will see it.
// When it will not (session gone), the connection is closed and counted closed all the same.
Napi::Value H1Upstream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine::Engine* e = engine::EngineArg(info, 0);
  uint64_t id = engine::SessionIdArg(info, 1);
  int fd = ArgFd(info, 2, "upstreamFd");
  std::string host = ArgString(info, 3, "hostOverride");
  uint32_t endpoint = ArgU32(info, 4, "endpointIndex");
  std::shared_ptr<h1::Pool> pool = PoolArg(info, 5);
  auto conn = std::make_shared<std::unique_ptr<h1::UpstreamConn>>(
      std::make_unique<h1::UpstreamConn>(engine::DupSocket(env, fd, "upstream"), std::move(host), endpoint, std::move(pool)));
  bool ok = e->PostTo(id, [conn](engine::Session& s) {
    if (auto* h = AsHttp1(s)) h->OnUpstream(std::move(*conn));
  });
  return Napi::Boolean::New(env, ok);
}

// h1UpstreamFailed(engine, id, reason): the pending request gets `503 upstream unavailable: <reason>`.
Napi::Value H1UpstreamFailed(const Napi::CallbackInfo& info) {
  engine::Engine* e = engine::EngineArg(info, 0);
  uint64_t id = engine::SessionIdArg(info, 1);
  std::string reason = ArgString(info, 2, "reason");
  bool ok = e->PostTo(id, [reason](engine::Session& s) {
    if (auto* h = AsHttp1(s)) h->OnUpstreamFailed(reason);
  });
  return Napi::Boolean::New(info.Env(), ok);
}

// h1Drain(engine, id): finish the exchange in flight with Connection: close; close now when idle.
Napi::Value H1Drain(const Napi::CallbackInfo& info) {
  engine::Engine* e = engine::EngineArg(info, 0);
  uint64_t id = engine::SessionIdArg(info, 1);
  bool ok = e->PostTo(id, [](engine::Session& s) {
    if (auto* h = AsHttp1(s)) h->Drain();
  });
  return Napi::Boolean::New(info.Env(), ok);
}

}  // namespace mx
