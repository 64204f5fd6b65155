// JS surface of the relay engine (declared in ../api.h, typed in src/redirect/native.ts). Runs on the JS
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
#include "sockaddr.h"
#include "tcp_session.h"
#include "../tls/tls_transport.h"

namespace mx {

using relay::Engine;

namespace {
HandleTable<Engine*> g_engines("engine", "is not running");
}  // namespace

namespace relay {

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

using relay::EngineArg;

Napi::Value RelayStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t threads = ArgU32(info, 0, "threads");
  if (threads < 1 || threads > 64) ThrowArg(env, "threads must be 1..64, got " + std::to_string(threads));
  if (info.Length() < 2 || !info[1].IsFunction()) ThrowArg(env, "onEvents must be a function");
  Engine* e = Engine::Create(env, threads, info[1].As<Napi::Function>());
  return Napi::Number::New(env, g_engines.Add(e));
}

Napi::Value RelayStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  g_engines.Erase(ArgU32(info, 0, "engine"));
  std::vector<relay::Event> rest = e->Stop();
  return Engine::BatchToJs(env, rest);
}

Napi::Value RelayTcpClient(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int clientFd = ArgFd(info, 1, "clientFd");
  // `owned`: an fd from an `accepted` event, which the engine takes as is (no dup). It is the engine's from
  // here on, also when this call throws: the UniqueFd (or the session holding it) closes it.
  bool owned = info.Length() > 5 && info[5].ToBoolean().Value();
  relay::UniqueFd ownedFd(owned ? clientFd : -1);
  Engine* e = EngineArg(info, 0);
  std::string toUpstream = relay::OptionalBytes(info, 2, "toUpstream");
  uint32_t idleMs = ArgU32(info, 3, "idleTimeoutMs");
  bool splice = info.Length() <= 4 || info[4].IsUndefined() || info[4].ToBoolean().Value();
  relay::UniqueFd c = owned ? std::move(ownedFd) : relay::DupSocket(env, clientFd, "client");
  auto session = std::make_unique<relay::TcpSession>(std::make_unique<relay::PlainTransport>(std::move(c)), std::move(toUpstream), idleMs, splice);
  return Napi::Number::New(env, static_cast<double>(relay::AdoptOrThrow(env, e, std::move(session))));
}

namespace {

/** A non-blocking stream socket with connect(2) started towards ip:port (port > 0) or a unix path (port 0). */
relay::UniqueFd StartConnect(const std::string& address, uint32_t port, int* err) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family;
  if (port == 0) {
    auto* un = reinterpret_cast<sockaddr_un*>(&ss);
    if (address.empty() || address.size() >= sizeof un->sun_path) return (*err = ENAMETOOLONG), relay::UniqueFd();
    un->sun_family = family = AF_UNIX;
    memcpy(un->sun_path, address.data(), address.size());
    // An abstract name (leading NUL) is as long as given; a path carries its terminating NUL.
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size() + (address[0] == '\0' ? 0 : 1));
  } else {
    if (!relay::IpSockaddr(address, static_cast<uint16_t>(port), &ss, &len)) return (*err = EINVAL), relay::UniqueFd();
    family = ss.ss_family;
  }
  relay::UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return (*err = errno), relay::UniqueFd();
  if (family != AF_UNIX) {
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  int r;
  do r = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len);
  while (r != 0 && errno == EINTR);
  if (r != 0 && errno != EINPROGRESS) return (*err = errno), relay::UniqueFd();
  *err = 0;
  return fd;
}

}  // namespace

Napi::Value RelayTcpConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  uint64_t id = relay::SessionIdArg(info, 1);
  std::string address = ArgString(info, 2, "address");
  uint32_t port = ArgU32(info, 3, "port");
  if (port > 65535) ThrowArg(env, "port must be 0..65535, got " + std::to_string(port));
  uint32_t timeoutMs = ArgU32(info, 4, "timeoutMs");
  int err = 0;
  relay::UniqueFd fd = StartConnect(address, port, &err);
  if (!fd.valid()) return Napi::String::New(env, strerrorname_np(err) ? strerrorname_np(err) : "EIO");
  // Built here, on the JS thread, so a bad TLS option throws to the caller.
  std::unique_ptr<relay::Transport> up = info.Length() > 5 && info[5].IsObject()
                                             ? tls::MakeTlsTransport(info[5].As<Napi::Object>(), std::move(fd))
                                             : std::make_unique<relay::PlainTransport>(std::move(fd));
  auto carried = std::make_shared<std::unique_ptr<relay::Transport>>(std::move(up));
  bool posted = e->PostTo(id, [carried, timeoutMs](relay::Session& s) {
    if (auto* tcp = dynamic_cast<relay::TcpSession*>(&s)) tcp->Connect(std::move(*carried), timeoutMs);
  });
  return Napi::String::New(env, posted ? "" : "ESRCH");
}

Napi::Value RelayListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  std::string address = ArgString(info, 1, "address");
  uint32_t port = ArgU32(info, 2, "port");
  uint32_t backlog = ArgU32(info, 3, "backlog");
  if (port > 65535) ThrowArg(env, "port must be 0..65535, got " + std::to_string(port));
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!relay::IpSockaddr(address, static_cast<uint16_t>(port), &ss, &len)) ThrowArg(env, "listen address must be an IP literal, got " + address);
  relay::UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) ThrowErrno(env, "MESHEXT_E_LISTEN", "socket", errno);
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) ThrowErrno(env, "MESHEXT_E_LISTEN", "bind", errno);
  if (::listen(fd.get(), static_cast<int>(backlog)) != 0) ThrowErrno(env, "MESHEXT_E_LISTEN", "listen", errno);
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &blen) != 0) ThrowErrno(env, "MESHEXT_E_LISTEN", "getsockname", errno);
  uint16_t boundPort = 0;
  std::string boundIp = relay::IpText(bound, &boundPort);
  uint64_t id = relay::AdoptOrThrow(env, e, std::make_unique<relay::ListenerSession>(std::move(fd)));
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, static_cast<double>(id)));
  o.Set("address", Napi::String::New(env, boundIp));
  o.Set("family", Napi::String::New(env, ss.ss_family == AF_INET6 ? "IPv6" : "IPv4"));
  o.Set("port", Napi::Number::New(env, boundPort));
  return o;
}

Napi::Value RelayClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  uint64_t id = relay::SessionIdArg(info, 1);
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
