// JS surface of the engine (declared in ../api.h, typed in src/native/addon.ts). Runs on the JS
// thread only: engines are addressed by small integer handles so a stale handle is an error, not a crash.
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <string>
#include <unordered_set>
#include <vector>

#include "../api.h"
#include "../errors.h"
#include "../handles.h"
#include "../jsargs.h"
#include "../shared_socket.h"
#include "../http1/pool.h"
#include "../http2/session.h"
#include "engine.h"
#include "listener.h"
#include "plan_napi.h"
#include "probe.h"
#include "sockaddr.h"

namespace mx {

using engine::Engine;

namespace {

HandleTable<Engine*> g_engines("engine", "is not running");

Engine* EngineArg(const Napi::CallbackInfo& info, size_t i) { return g_engines.Arg(info, i); }

uint64_t SessionIdArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber())
    ThrowArg(info.Env(), "id must be a number, got " + (info.Length() <= i ? std::string("nothing") : info[i].ToString().Utf8Value()));
  return static_cast<uint64_t>(info[i].As<Napi::Number>().Int64Value());
}

/** A histogram as {counts (per bucket, +Inf last), sumMs}. */
Napi::Object HistogramToJs(Napi::Env env, const engine::LatencyHistogram& h) {
  Napi::Array c = Napi::Array::New(env, engine::kHistogramFinite + 1);
  for (uint32_t k = 0; k <= engine::kHistogramFinite; k++) c.Set(k, Napi::Number::New(env, static_cast<double>(h.counts[k].load(std::memory_order_relaxed))));
  Napi::Object o = Napi::Object::New(env);
  o.Set("counts", c);
  o.Set("sumMs", Napi::Number::New(env, static_cast<double>(h.sumUs.load(std::memory_order_relaxed)) / 1000.0));
  return o;
}

/** The engine's counters as JS (engineCounters, and engineStop's final reading). */
Napi::Object CountersToJs(Napi::Env env, Engine& e) {
  std::vector<std::shared_ptr<engine::ServiceState>> states = e.plans().LiveStates();
  Napi::Array services = Napi::Array::New(env, states.size());
  for (size_t i = 0; i < states.size(); i++) {
    const engine::ServiceState& st = *states[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("service", st.id);
    Napi::Array c = Napi::Array::New(env, engine::ServiceStats::kCount);
    for (uint32_t k = 0; k < engine::ServiceStats::kCount; k++) c.Set(k, Napi::Number::New(env, static_cast<double>(st.stats.v[k].load(std::memory_order_relaxed))));
    o.Set("counters", c);
    o.Set("rqTime", HistogramToJs(env, st.rqTime));
    o.Set("connectTime", HistogramToJs(env, st.connectTime));
    Napi::Array eps = Napi::Array::New(env, st.endpoints.size());
    uint32_t j = 0;
    for (const auto& [label, ep] : st.endpoints) {
      Napi::Object x = Napi::Object::New(env);
      x.Set("label", label);
      x.Set("active", Napi::Number::New(env, static_cast<double>(ep->active.load(std::memory_order_relaxed))));
      x.Set("total", Napi::Number::New(env, static_cast<double>(ep->total.load(std::memory_order_relaxed))));
      x.Set("responses", Napi::Number::New(env, static_cast<double>(ep->responses.load(std::memory_order_relaxed))));
      x.Set("failedResponses", Napi::Number::New(env, static_cast<double>(ep->failedResponses.load(std::memory_order_relaxed))));
      eps.Set(j++, x);
    }
    o.Set("endpoints", eps);
    services.Set(static_cast<uint32_t>(i), o);
  }
  engine::GlobalStats& g = e.plans().global();
  Napi::Object out = Napi::Object::New(env);
  out.Set("services", services);
  Napi::Array bounds = Napi::Array::New(env, engine::kHistogramFinite);
  for (uint32_t k = 0; k < engine::kHistogramFinite; k++) bounds.Set(k, Napi::Number::New(env, static_cast<double>(engine::kHistogramBoundsUs[k]) / 1000.0));
  out.Set("histogramBoundsMs", bounds);
  auto failures = e.plans().logs().WriteFailures();
  Napi::Array files = Napi::Array::New(env, failures.size());
  for (size_t i = 0; i < failures.size(); i++) {
    Napi::Object f = Napi::Object::New(env);
    f.Set("path", failures[i].first);
    f.Set("writeFailed", Napi::Number::New(env, static_cast<double>(failures[i].second)));
    files.Set(static_cast<uint32_t>(i), f);
  }
  out.Set("accessLogFiles", files);
  out.Set("accepted", Napi::Number::New(env, static_cast<double>(g.accepted.load(std::memory_order_relaxed))));
  out.Set("noRoute", Napi::Number::New(env, static_cast<double>(g.noRoute.load(std::memory_order_relaxed))));
  out.Set("origDstFound", Napi::Number::New(env, static_cast<double>(g.origDstFound.load(std::memory_order_relaxed))));
  out.Set("origDstMissing", Napi::Number::New(env, static_cast<double>(g.origDstMissing.load(std::memory_order_relaxed))));
  out.Set("origDstStale", Napi::Number::New(env, static_cast<double>(g.origDstStale.load(std::memory_order_relaxed))));
  out.Set("downstreamLive", Napi::Number::New(env, static_cast<double>(g.downstreamLive.load(std::memory_order_relaxed))));
  out.Set("overflowCap", Napi::Number::New(env, static_cast<double>(g.overflowCap.load(std::memory_order_relaxed))));
  out.Set("overflowFd", Napi::Number::New(env, static_cast<double>(g.overflowFd.load(std::memory_order_relaxed))));
  return out;
}

}  // namespace

Engine* EngineOf(const Napi::CallbackInfo& info, size_t i) { return EngineArg(info, i); }

Napi::Value EngineStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t threads = ArgU32(info, 0, "threads");
  if (threads < 1 || threads > 64) ThrowArg(env, "threads must be 1..64, got " + std::to_string(threads));
  if (info.Length() < 2 || !info[1].IsFunction()) ThrowArg(env, "onEvents must be a function");
  // maxConnections: client connections served at once (0: no cap); over it, new ones are reset.
  uint32_t maxConnections = info.Length() > 2 && !info[2].IsUndefined() ? ArgU32(info, 2, "maxConnections") : 0;
  Engine* e = Engine::Create(env, threads, info[1].As<Napi::Function>());
  e->plans().global().maxDownstream.store(maxConnections, std::memory_order_relaxed);
  return Napi::Number::New(env, g_engines.Add(e));
}

// engineStop(engine) → {events, counters}: closes everything and joins the threads, then hands over the events
// not delivered yet and the final counts (idle pooled connections were closed, and counted, on the way out).
Napi::Value EngineStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  g_engines.Erase(ArgU32(info, 0, "engine"));
  std::vector<engine::Event> rest = e->Stop();
  Napi::Object out = Napi::Object::New(env);
  out.Set("events", Engine::BatchToJs(env, rest));
  out.Set("counters", CountersToJs(env, *e));
  return out;
}

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
  // A new agent binds the same port while the old one still serves (a restart without an outage): the kernel
  // spreads new connections over both, and when the old listener closes, the connections waiting in its queue
  // move to the new one (net.ipv4.tcp_migrate_req, set by the agent). Only sockets of the same user that all
  // ask for it share a port; a port held otherwise still fails with EADDRINUSE.
  const char* step = nullptr;
  int rawFd = OpenSharedSocket(SOCK_STREAM, ss, len, static_cast<int>(backlog), SOCK_NONBLOCK, &step);
  if (rawFd < 0) ThrowErrno(env, "MESHEXT_E_LISTEN", step, -rawFd);
  engine::UniqueFd fd(rawFd);
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &blen) != 0) ThrowErrno(env, "MESHEXT_E_LISTEN", "getsockname", errno);
  uint16_t boundPort = 0;
  std::string boundIp = engine::IpText(bound, &boundPort);
  // The plan key of every connection (an outbound listener), or "" to route by original destination.
  std::string routeKey;
  if (info.Length() > 4 && !info[4].IsUndefined()) routeKey = ArgString(info, 4, "routeKey");
  uint64_t id = e->Adopt(std::make_unique<engine::ListenerSession>(std::move(fd), std::move(routeKey)));
  if (id == 0) ThrowArg(env, "engine is stopping");
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, static_cast<double>(id)));
  o.Set("address", Napi::String::New(env, boundIp));
  o.Set("family", Napi::String::New(env, ss.ss_family == AF_INET6 ? "IPv6" : "IPv4"));
  o.Set("port", Napi::Number::New(env, boundPort));
  return o;
}


// engineInstall(engine, {source: "local" | "map", mapFd?, plans: EnginePlan[]}) → {errors: [{service, error}]}:
// replaces every plan at once (plan_napi.cc), then has each loop let go of pooled upstream connections whose
// plans are gone.
Napi::Value EngineInstall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  std::vector<engine::InstallError> errors;
  std::shared_ptr<engine::PlanSet> set = engine::PlanSetFromJs(env, info.Length() > 1 ? info[1] : env.Undefined(), e->plans(), &errors);
  auto h1Keys = std::make_shared<std::unordered_set<std::string>>();
  auto h2Keys = std::make_shared<std::unordered_set<std::string>>();
  for (const auto& p : set->plans) {
    h2Keys->insert(p->poolKey);
    for (const auto& ep : p->endpoints)
      for (const auto& t : ep.targets) h1Keys->insert(t.h1PoolKey);
  }
  e->plans().Replace(std::move(set));
  e->PostAll([h1Keys, h2Keys](engine::Loop& loop) {
    h1::Pool::Of(&loop).Retain(*h1Keys);
    h2::Http2Session::RetainIdle(*h2Keys);
  });
  Napi::Object out = Napi::Object::New(env);
  Napi::Array errs = Napi::Array::New(env, errors.size());
  for (size_t i = 0; i < errors.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("service", errors[i].service);
    o.Set("code", errors[i].code);
    o.Set("error", errors[i].error);
    errs.Set(static_cast<uint32_t>(i), o);
  }
  out.Set("errors", errs);
  return out;
}

// engineReopenLogs(engine) → [{path, error}]: reopens every access log file (logrotate's postrotate, SIGUSR1);
// a path that cannot be opened keeps its old file and is reported.
Napi::Value EngineReopenLogs(const Napi::CallbackInfo& info) {
  Engine* e = EngineArg(info, 0);
  auto errors = e->plans().logs().Reopen();
  Napi::Array out = Napi::Array::New(info.Env(), errors.size());
  for (size_t i = 0; i < errors.size(); i++) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("path", errors[i].first);
    o.Set("error", errors[i].second);
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

// engineHealth(engine, service, endpointLabel, downForMs) → false when no such service or endpoint is known.
Napi::Value EngineHealth(const Napi::CallbackInfo& info) {
  Engine* e = EngineArg(info, 0);
  std::string service = ArgString(info, 1, "service");
  std::string label = ArgString(info, 2, "endpoint");
  uint32_t downFor = ArgU32(info, 3, "downForMs");
  return Napi::Boolean::New(info.Env(), e->plans().SetHealth(service, label, downFor));
}

// engineProbe(engine, {service, endpoint, token, kind: "tcp" | "http" | "grpc", timeoutMs, http2, path, authority,
// headers: [[name, value]], expectedStatuses, grpcService, send, receive}) → false when the engine is stopping:
// one active health check of one endpoint with the service's current plan; its `probe-result` event follows.
Napi::Value EngineProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  const std::string w = "probe";
  Napi::Object o = js::Obj(env, info.Length() > 1 ? info[1] : env.Undefined(), w);
  engine::ProbeSpec p;
  p.service = js::Str(env, o, "service", w, false);
  p.endpoint = js::Str(env, o, "endpoint", w, false);
  p.token = js::U32(env, o, "token", w, 0xffffffffu);
  std::string kind = js::Str(env, o, "kind", w, false);
  if (kind == "tcp") p.kind = engine::ProbeSpec::Kind::kTcp;
  else if (kind == "http") p.kind = engine::ProbeSpec::Kind::kHttp;
  else if (kind == "grpc") p.kind = engine::ProbeSpec::Kind::kGrpc;
  else ThrowArg(env, "probe.kind must be tcp, http or grpc, got " + kind);
  p.timeoutMs = js::U32(env, o, "timeoutMs", w, 0x7fffffffu);
  p.http2 = js::Bool(env, o, "http2", w);
  p.path = js::Str(env, o, "path", w, false);
  p.authority = js::Str(env, o, "authority", w, false);
  p.grpcService = js::Str(env, o, "grpcService", w, false);
  p.send = js::Bytes(env, o, "send", w);
  Napi::Array hs = js::Arr(env, o, "headers", w);
  for (uint32_t i = 0; i < hs.Length(); i++) {
    std::string hw = w + ".headers[" + std::to_string(i) + "]";
    Napi::Value h = hs.Get(i);
    if (!h.IsArray() || h.As<Napi::Array>().Length() != 2 || !h.As<Napi::Array>().Get(0u).IsString() || !h.As<Napi::Array>().Get(1u).IsString())
      ThrowArg(env, hw + " must be [name, value] strings, got " + js::What(h));
    p.headers.emplace_back(h.As<Napi::Array>().Get(0u).As<Napi::String>().Utf8Value(), h.As<Napi::Array>().Get(1u).As<Napi::String>().Utf8Value());
  }
  Napi::Array st = js::Arr(env, o, "expectedStatuses", w);
  for (uint32_t i = 0; i < st.Length(); i++) {
    Napi::Value v = st.Get(i);
    if (!v.IsNumber()) ThrowArg(env, w + ".expectedStatuses[" + std::to_string(i) + "] must be a number, got " + js::What(v));
    p.expectedStatuses.push_back(v.As<Napi::Number>().Uint32Value());
  }
  Napi::Array rs = js::Arr(env, o, "receive", w);
  for (uint32_t i = 0; i < rs.Length(); i++) {
    Napi::Value v = rs.Get(i);
    if (!v.IsBuffer()) ThrowArg(env, w + ".receive[" + std::to_string(i) + "] must be a Buffer, got " + js::What(v));
    auto b = v.As<Napi::Buffer<char>>();
    p.receive.emplace_back(b.Data(), b.Length());
  }
  return Napi::Boolean::New(env, e->Adopt(std::make_unique<engine::ProbeSession>(std::move(p))) != 0);
}

// engineCounters(engine) → {services: [{service, counters, endpoints: [{label, active, total}]}], accepted, noRoute,
// origDstFound, origDstMissing}: every service still referenced (installed, or held by a connection).
Napi::Value EngineCounters(const Napi::CallbackInfo& info) { return CountersToJs(info.Env(), *EngineArg(info, 0)); }

// engineDrain(engine, force): every connection finishes what is in flight and closes (HTTP: Connection: close /
// GOAWAY; TCP carries on until either side closes); with `force`, every connection closes now. Listeners are
// closed by JS (engineClose).
Napi::Value EngineDrain(const Napi::CallbackInfo& info) {
  bool force = info.Length() > 1 && info[1].ToBoolean().Value();
  return Napi::Boolean::New(info.Env(), EngineArg(info, 0)->DrainAll(force));
}

// engineClose(engine, listenerId): stops listening; the connections it accepted are not affected.
Napi::Value EngineClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine* e = EngineArg(info, 0);
  uint64_t id = SessionIdArg(info, 1);
  bool ok = e->PostTo(id, [](engine::Session& s) {
    if (s.listener()) s.Close("closed", false);
  });
  return Napi::Boolean::New(env, ok);
}

// engineFlush(engine, token) → how many `flushed` {id: token} events will follow: one per loop, each after every
// event that loop emitted before it (lazy ones included), so JS knows when it has seen all of them.
Napi::Value EngineFlush(const Napi::CallbackInfo& info) {
  Engine* e = EngineArg(info, 0);
  uint64_t token = SessionIdArg(info, 1);
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
