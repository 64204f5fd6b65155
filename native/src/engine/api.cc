// JS surface of the engine (declared in ../api.h, typed in src/redirect/native.ts). Runs on the JS
// thread only: engines are addressed by small integer handles so a stale handle is an error, not a crash.
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <string>

#include "../api.h"
#include "../errors.h"
#include "../handles.h"
#include "engine.h"
#include "handover.h"
#include "listener.h"
#include "routes.h"
#include "sockaddr.h"
#include "tcp_session.h"
#include "../tls/tls_napi.h"
#include "../tls/tls_transport.h"

namespace mx {

using engine::Engine;

namespace {
HandleTable<Engine*> g_engines("engine", "is not running");
}  // namespace

namespace engine {

Engine* EngineArg(const Napi::CallbackInfo& info, size_t i) { return g_engines.Arg(info, i); }

uint64_t AdoptOrThrow(Napi::Env env, Engine* e, std::unique_ptr<Session> s) {
  uint64_t id = e->Adopt(std::move(s));
  if (id == 0) ThrowArg(env, "engine is stopping");
  return id;
}

uint64_t SessionIdArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber())
    ThrowArg(info.Env(), "id must be a number, got " + (info.Length() <= i ? std::string("nothing") : info[i].ToString().Utf8Value()));
  return static_cast<uint64_t>(info[i].As<Napi::Number>().Int64Value());
}

UniqueFd DupSocket(Napi::Env env, int fd, const char* what) {
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) ThrowErrno(env, "MESHEXT_E_ENGINE", "getsockopt", errno, what);
  if (type != SOCK_STREAM) ThrowArg(env, std::string(what) + " fd " + std::to_string(fd) + " is not a stream socket");
  UniqueFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!dup.valid()) ThrowErrno(env, "MESHEXT_E_ENGINE", "fcntl(F_DUPFD_CLOEXEC)", errno, what);
  int fl = ::fcntl(dup.get(), F_GETFL);
  if (fl < 0 || ::fcntl(dup.get(), F_SETFL, fl | O_NONBLOCK) != 0) ThrowErrno(env, "MESHEXT_E_ENGINE", "fcntl(O_NONBLOCK)", errno, what);
  return dup;
}

std::string OptionalBytes(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return {};
  Napi::Buffer<uint8_t> b = ArgBuffer(info, i, name);
  return std::string(reinterpret_cast<const char*>(b.Data()), b.Length());
}

}  // namespace engine

using engine::EngineArg;

Napi::Value EngineStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t threads = ArgU32(info, 0, "threads");
  if (threads < 1 || threads > 64) ThrowArg(env, "threads must be 1..64, got " + std::to_string(threads));
  if (info.Length() < 2 || !info[1].IsFunction()) ThrowArg(env, "onEvents must be a function");
  Engine* e = Engine::Create(env, threads, info[1].As<Napi::Function>());
  return Napi::Number::New(env, g_engines.Add(e));
}

Napi::Value EngineStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  g_engines.Erase(ArgU32(info, 0, "engine"));
  std::vector<engine::Event> rest = e->Stop();
  return Engine::BatchToJs(env, rest);
}

Napi::Value EngineTcpClient(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int clientFd = ArgFd(info, 1, "clientFd");
  // `owned`: an fd from an `accepted` event, which the engine takes as is (no dup). It is the engine's from
  // here on, also when this call throws: the UniqueFd (or the session holding it) closes it.
  bool owned = info.Length() > 5 && info[5].ToBoolean().Value();
  engine::UniqueFd ownedFd(owned ? clientFd : -1);
  Engine* e = EngineArg(info, 0);
  std::string toUpstream = engine::OptionalBytes(info, 2, "toUpstream");
  uint32_t idleMs = ArgU32(info, 3, "idleTimeoutMs");
  bool splice = info.Length() <= 4 || info[4].IsUndefined() || info[4].ToBoolean().Value();
  engine::UniqueFd c = owned ? std::move(ownedFd) : engine::DupSocket(env, clientFd, "client");
  auto session = std::make_unique<engine::TcpSession>(std::make_unique<engine::PlainTransport>(std::move(c)), std::move(toUpstream), idleMs, splice);
  return Napi::Number::New(env, static_cast<double>(engine::AdoptOrThrow(env, e, std::move(session))));
}


Napi::Value EngineTcpConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  uint64_t id = engine::SessionIdArg(info, 1);
  std::string address = ArgString(info, 2, "address");
  uint32_t port = ArgU32(info, 3, "port");
  if (port > 65535) ThrowArg(env, "port must be 0..65535, got " + std::to_string(port));
  uint32_t timeoutMs = ArgU32(info, 4, "timeoutMs");
  int err = 0;
  engine::UniqueFd fd = engine::StartConnect(address, port, &err);
  if (!fd.valid()) return Napi::String::New(env, strerrorname_np(err) ? strerrorname_np(err) : "EIO");
  // Built here, on the JS thread, so a bad TLS option throws to the caller.
  std::unique_ptr<engine::Transport> up = info.Length() > 5 && info[5].IsObject()
                                             ? tls::MakeTlsTransport(info[5].As<Napi::Object>(), std::move(fd))
                                             : std::make_unique<engine::PlainTransport>(std::move(fd));
  auto carried = std::make_shared<std::unique_ptr<engine::Transport>>(std::move(up));
  bool posted = e->PostTo(id, [carried, timeoutMs](engine::Session& s) {
    if (auto* tcp = dynamic_cast<engine::TcpSession*>(&s)) tcp->Connect(std::move(*carried), timeoutMs);
  });
  return Napi::String::New(env, posted ? "" : "ESRCH");
}

namespace {

std::string What(const Napi::Value& v) { return v.IsUndefined() ? std::string("nothing") : v.ToString().Utf8Value(); }

uint32_t U32Field(Napi::Env env, const Napi::Object& o, const char* k, const std::string& where, uint32_t max) {
  Napi::Value v = o.Get(k);
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= max) || d != static_cast<double>(static_cast<uint32_t>(d)))
    ThrowArg(env, where + "." + k + " must be an integer 0.." + std::to_string(max) + ", got " + What(v));
  return static_cast<uint32_t>(d);
}

std::string StrField(Napi::Env env, const Napi::Object& o, const char* k, const std::string& where, bool optional) {
  Napi::Value v = o.Get(k);
  if (v.IsString()) return v.As<Napi::String>().Utf8Value();
  if (optional && v.IsUndefined()) return {};
  ThrowArg(env, where + "." + k + " must be a string, got " + What(v));
}

Napi::Object ObjField(Napi::Env env, const Napi::Value& v, const std::string& where) {
  if (!v.IsObject() || v.IsArray()) ThrowArg(env, where + " must be an object, got " + What(v));
  return v.As<Napi::Object>();
}

Napi::Array ArrField(Napi::Env env, const Napi::Object& o, const char* k, const std::string& where) {
  Napi::Value v = o.Get(k);
  if (!v.IsArray()) ThrowArg(env, where + "." + k + " must be an array, got " + What(v));
  return v.As<Napi::Array>();
}

std::shared_ptr<engine::Route> RouteFrom(Napi::Env env, const Napi::Value& v, const std::string& where, std::vector<std::pair<std::string, uint32_t>>* keys) {
  Napi::Object o = ObjField(env, v, where);
  auto r = std::make_shared<engine::Route>();
  r->id = U32Field(env, o, "id", where, 0xffffffffu);
  r->connectTimeoutMs = U32Field(env, o, "connectTimeoutMs", where, 0x7fffffffu);
  r->idleTimeoutMs = U32Field(env, o, "idleTimeoutMs", where, 0x7fffffffu);
  Napi::Array ks = ArrField(env, o, "keys", where);
  for (uint32_t i = 0; i < ks.Length(); i++) {
    Napi::Value k = ks.Get(i);
    if (!k.IsString()) ThrowArg(env, where + ".keys[" + std::to_string(i) + "] must be a string, got " + What(k));
    keys->emplace_back(k.As<Napi::String>().Utf8Value(), r->id);
  }
  Napi::Value tlsv = o.Get("tls");
  if (!tlsv.IsUndefined()) {
    Napi::Object t = ObjField(env, tlsv, where + ".tls");
    r->tls = tls::ContextFromValue(t.Get("context"));
    r->handshakeTimeoutMs = U32Field(env, t, "handshakeTimeoutMs", where + ".tls", 0x7fffffffu);
  }
  Napi::Array ts = ArrField(env, o, "targets", where);
  if (ts.Length() == 0) ThrowArg(env, where + ".targets must not be empty");
  for (uint32_t i = 0; i < ts.Length(); i++) {
    std::string tw = where + ".targets[" + std::to_string(i) + "]";
    Napi::Object t = ObjField(env, ts.Get(i), tw);
    auto target = std::make_unique<engine::RouteTarget>();
    target->address = StrField(env, t, "address", tw, false);
    target->port = static_cast<uint16_t>(U32Field(env, t, "port", tw, 65535));
    target->tls.session_key = StrField(env, t, "sessionKey", tw, true);
    target->tls.dialled_ip = StrField(env, t, "dialledIp", tw, true);
    r->targets.push_back(std::move(target));
  }
  return r;
}

}  // namespace

Napi::Value EngineListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  std::string address = ArgString(info, 1, "address");
  uint32_t port = ArgU32(info, 2, "port");
  uint32_t backlog = ArgU32(info, 3, "backlog");
  if (port > 65535) ThrowArg(env, "port must be 0..65535, got " + std::to_string(port));
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!engine::IpSockaddr(address, static_cast<uint16_t>(port), &ss, &len)) ThrowArg(env, "listen address must be an IP literal, got " + address);
  engine::UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) ThrowErrno(env, "MESHEXT_E_LISTEN", "socket", errno);
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) ThrowErrno(env, "MESHEXT_E_LISTEN", "bind", errno);
  if (::listen(fd.get(), static_cast<int>(backlog)) != 0) ThrowErrno(env, "MESHEXT_E_LISTEN", "listen", errno);
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &blen) != 0) ThrowErrno(env, "MESHEXT_E_LISTEN", "getsockname", errno);
  uint16_t boundPort = 0;
  std::string boundIp = engine::IpText(bound, &boundPort);
  // Optional {routeKey?, transparent?}: how the listener finds routes (routes.h) for its connections.
  std::string routeKey;
  bool transparent = false;
  if (info.Length() > 4 && !info[4].IsUndefined()) {
    Napi::Object o = ObjField(env, info[4], "routing");
    routeKey = StrField(env, o, "routeKey", "routing", true);
    transparent = o.Get("transparent").ToBoolean().Value();
  }
  uint64_t id = engine::AdoptOrThrow(env, e, std::make_unique<engine::ListenerSession>(std::move(fd), std::move(routeKey), transparent));
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, static_cast<double>(id)));
  o.Set("address", Napi::String::New(env, boundIp));
  o.Set("family", Napi::String::New(env, ss.ss_family == AF_INET6 ? "IPv6" : "IPv4"));
  o.Set("port", Napi::Number::New(env, boundPort));
  return o;
}


// engineRoutes(engine, {source: "none" | "local" | "map", mapFd?, routes: [{id, keys, targets, tls?, connectTimeoutMs,
// idleTimeoutMs}]}) → [{id, routed}] for the routes that are gone (see RouteTable::Replace).
Napi::Value EngineRoutes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  Napi::Object o = ObjField(env, info.Length() > 1 ? info[1] : env.Undefined(), "table");
  std::string source = StrField(env, o, "source", "table", false);
  engine::OrigDstSource src;
  if (source == "none") src = engine::OrigDstSource::kNone;
  else if (source == "local") src = engine::OrigDstSource::kLocal;
  else if (source == "map") src = engine::OrigDstSource::kMap;
  else ThrowArg(env, "table.source must be none, local or map, got " + source);
  engine::UniqueFd map;
  if (src == engine::OrigDstSource::kMap) {
    int fd = static_cast<int>(U32Field(env, o, "mapFd", "table", 0x7fffffffu));
    map = engine::UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!map.valid()) ThrowErrno(env, "MESHEXT_E_ENGINE", "fcntl(F_DUPFD_CLOEXEC)", errno, "mapFd");
  }
  Napi::Array rs = ArrField(env, o, "routes", "table");
  std::vector<std::shared_ptr<engine::Route>> routes;
  std::vector<std::pair<std::string, uint32_t>> keys;
  for (uint32_t i = 0; i < rs.Length(); i++) routes.push_back(RouteFrom(env, rs.Get(i), "table.routes[" + std::to_string(i) + "]", &keys));
  auto gone = e->routes().Replace(std::move(routes), std::move(keys), src, std::move(map));
  Napi::Array out = Napi::Array::New(env, gone.size());
  for (size_t i = 0; i < gone.size(); i++) {
    Napi::Object g = Napi::Object::New(env);
    g.Set("id", Napi::Number::New(env, gone[i].first));
    g.Set("routed", Napi::Number::New(env, static_cast<double>(gone[i].second)));
    out.Set(static_cast<uint32_t>(i), g);
  }
  return out;
}

// engineRouteHealth(engine, route, target, downForMs) → false when the route or target is not installed.
Napi::Value EngineRouteHealth(const Napi::CallbackInfo& info) {
  Engine* e = EngineArg(info, 0);
  uint32_t route = ArgU32(info, 1, "route");
  uint32_t target = ArgU32(info, 2, "target");
  uint32_t downFor = ArgU32(info, 3, "downForMs");
  return Napi::Boolean::New(info.Env(), e->routes().SetHealth(route, target, downFor));
}

Napi::Value EngineClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  uint64_t id = engine::SessionIdArg(info, 1);
  bool reset = info.Length() > 2 && info[2].ToBoolean().Value();
  bool ok = e->PostTo(id, [reset](engine::Session& s) { s.Close(reset ? "reset" : "closed", reset); });
  return Napi::Boolean::New(env, ok);
}

// engineFlush(engine, token) → how many `flushed` {id: token} events will follow: one per loop, each after every
// event that loop emitted before it (lazy ones included), so JS knows when it has seen all of them.
Napi::Value EngineFlush(const Napi::CallbackInfo& info) {
  Engine* e = EngineArg(info, 0);
  uint64_t token = engine::SessionIdArg(info, 1);
  return Napi::Number::New(info.Env(), e->Flush(token));
}

Napi::Value EngineRef(const Napi::CallbackInfo& info) {
  Engine* e = EngineArg(info, 0);
  e->SetRef(info.Env(), info.Length() > 1 && info[1].ToBoolean().Value());
  return info.Env().Undefined();
}

Napi::Value EngineStats(const Napi::CallbackInfo& info) {
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
