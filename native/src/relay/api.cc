// JS surface of the relay engine (declared in ../api.h, typed in src/redirect/native.ts). Runs on the JS
// thread only: engines are addressed by small integer handles so a stale handle is an error, not a crash.
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <string>
#include <unordered_map>

#include "../api.h"
#include "../errors.h"
#include "engine.h"
#include "handover.h"
#include "tcp_session.h"
#include "../tls/tls_transport.h"

namespace mx {

using relay::Engine;

namespace {
std::unordered_map<uint32_t, Engine*> g_engines;
uint32_t g_nextHandle = 1;
}  // namespace

namespace relay {

Engine* EngineArg(const Napi::CallbackInfo& info, size_t i) {
  uint32_t h = ArgU32(info, i, "engine");
  auto it = g_engines.find(h);
  if (it == g_engines.end()) ThrowArg(info.Env(), "engine " + std::to_string(h) + " is not running");
  return it->second;
}

UniqueFd DupSocket(Napi::Env env, int fd, const char* what) {
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) ThrowErrno(env, "MESHEXT_E_RELAY", "getsockopt", errno, what);
  if (type != SOCK_STREAM) ThrowArg(env, std::string(what) + " fd " + std::to_string(fd) + " is not a stream socket");
  UniqueFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!dup.valid()) ThrowErrno(env, "MESHEXT_E_RELAY", "fcntl(F_DUPFD_CLOEXEC)", errno, what);
  int fl = ::fcntl(dup.get(), F_GETFL);
  if (fl < 0 || ::fcntl(dup.get(), F_SETFL, fl | O_NONBLOCK) != 0) ThrowErrno(env, "MESHEXT_E_RELAY", "fcntl(O_NONBLOCK)", errno, what);
  return dup;
}

std::string OptionalBytes(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return {};
  Napi::Buffer<uint8_t> b = ArgBuffer(info, i, name);
  return std::string(reinterpret_cast<const char*>(b.Data()), b.Length());
}

}  // namespace relay

namespace {

using relay::EngineArg;

Napi::Array EventsToJs(Napi::Env env, const std::vector<relay::Event>& evs) {
  Napi::Array arr = Napi::Array::New(env, evs.size());
  for (size_t i = 0; i < evs.size(); i++) arr.Set(static_cast<uint32_t>(i), Engine::ToJs(env, evs[i]));
  return arr;
}

}  // namespace


Napi::Value RelayStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t threads = ArgU32(info, 0, "threads");
  if (threads < 1 || threads > 64) ThrowArg(env, "threads must be 1..64, got " + std::to_string(threads));
  if (info.Length() < 2 || !info[1].IsFunction()) ThrowArg(env, "onEvents must be a function");
  Engine* e = Engine::Create(env, threads, info[1].As<Napi::Function>());
  uint32_t h = g_nextHandle++;
  g_engines[h] = e;
  return Napi::Number::New(env, h);
}

Napi::Value RelayStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  g_engines.erase(ArgU32(info, 0, "engine"));
  std::vector<relay::Event> rest = e->Stop();
  return EventsToJs(env, rest);
}

Napi::Value RelayTcp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  int clientFd = ArgFd(info, 1, "clientFd");
  int upstreamFd = ArgFd(info, 2, "upstreamFd");
  std::string toUpstream = relay::OptionalBytes(info, 3, "toUpstream");
  std::string toClient = relay::OptionalBytes(info, 4, "toClient");
  uint32_t idleMs = ArgU32(info, 5, "idleTimeoutMs");
  bool splice = info.Length() <= 6 || info[6].IsUndefined() || info[6].ToBoolean().Value();
  relay::UniqueFd c = relay::DupSocket(env, clientFd, "client");
  relay::UniqueFd u = relay::DupSocket(env, upstreamFd, "upstream");
  // Optional 8th argument: originate TLS on the upstream side (native/src/tls).
  std::unique_ptr<relay::Transport> up = info.Length() > 7 && info[7].IsObject()
                                             ? tls::MakeTlsTransport(info[7].As<Napi::Object>(), std::move(u))
                                             : std::make_unique<relay::PlainTransport>(std::move(u));
  auto session = std::make_unique<relay::TcpSession>(std::make_unique<relay::PlainTransport>(std::move(c)), std::move(up),
                                                     std::move(toUpstream), std::move(toClient), idleMs, splice);
  uint64_t id = e->Adopt(std::move(session));
  if (id == 0) ThrowArg(env, "engine is stopping");
  return Napi::Number::New(env, static_cast<double>(id));
}

Napi::Value RelayClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  if (info.Length() < 2 || !info[1].IsNumber()) ThrowArg(env, "id must be a number");
  uint64_t id = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
  bool reset = info.Length() > 2 && info[2].ToBoolean().Value();
  bool ok = e->PostTo(id, [reset](relay::Session& s) { s.Close(reset ? "reset" : "closed", reset); });
  return Napi::Boolean::New(env, ok);
}

Napi::Value RelayRef(const Napi::CallbackInfo& info) {
  Engine* e = EngineArg(info, 0);
  e->SetRef(info.Env(), info.Length() > 1 && info[1].ToBoolean().Value());
  return info.Env().Undefined();
}

Napi::Value RelayStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  Napi::Object o = Napi::Object::New(env);
  uint64_t sessions = 0, pooled = 0, inUse = 0, wakeups = 0, timers = 0;
  for (const auto& s : e->Stats()) {
    sessions += s.sessions;
    pooled += s.pipesPooled;
    inUse += s.pipesInUse;
    wakeups += s.wakeups;
    timers += s.timers;
  }
  o.Set("threads", Napi::Number::New(env, e->threads()));
  o.Set("sessions", Napi::Number::New(env, static_cast<double>(sessions)));
  o.Set("pipesPooled", Napi::Number::New(env, static_cast<double>(pooled)));
  o.Set("pipesInUse", Napi::Number::New(env, static_cast<double>(inUse)));
  o.Set("wakeups", Napi::Number::New(env, static_cast<double>(wakeups)));
  o.Set("timers", Napi::Number::New(env, static_cast<double>(timers)));
  return o;
}

}  // namespace mx
