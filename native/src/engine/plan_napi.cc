// engineInstall's argument read into a PlanSet (JS thread). The shape is TypeScript's (src/engine/engine.ts,
// EnginePlan), checked strictly so a caller bug names the field; a plan the engine cannot carry out (TLS
// settings OpenSSL refuses) is not a caller bug: it is installed failing closed with that error, and the error
// comes back to TypeScript with the service it belongs to.
#include "plan_napi.h"

#include <fcntl.h>

#include <algorithm>
#include <map>

#include "../errors.h"
#include "../jsargs.h"
#include "../tls/tls_napi.h"

namespace mx::engine {

namespace {

Protocol ProtocolFrom(Napi::Env env, const std::string& s, const std::string& where) {
  if (s == "tcp") return Protocol::kTcp;
  if (s == "http") return Protocol::kHttp;
  if (s == "http2") return Protocol::kHttp2;
  if (s == "grpc") return Protocol::kGrpc;
  ThrowArg(env, where + ".protocol must be tcp, http, http2 or grpc, got " + s);
}

int64_t Ms(Napi::Env env, const Napi::Object& o, const char* k, const std::string& where) {
  return static_cast<int64_t>(js::U32(env, o, k, where, 0x7fffffffu));
}

/** Envoy's retry_on names, as src/snapshot/plan.ts writes them. */
const std::map<std::string, uint32_t>& RetryOnNames() {
  static const std::map<std::string, uint32_t> names = {
      {"5xx", PlanRetry::k5xx},
      {"gateway-error", PlanRetry::kGatewayError},
      {"reset", PlanRetry::kReset},
      {"connect-failure", PlanRetry::kConnectFailure},
      {"retriable-4xx", PlanRetry::kRetriable4xx},
      {"refused-stream", PlanRetry::kRefusedStream},
      {"envoy-ratelimited", PlanRetry::kEnvoyRateLimited},
      {"retriable-status-codes", PlanRetry::kRetriableStatusCodes},
      {"cancelled", PlanRetry::kGrpcCancelled},
      {"deadline-exceeded", PlanRetry::kGrpcDeadlineExceeded},
      {"internal", PlanRetry::kGrpcInternal},
      {"resource-exhausted", PlanRetry::kGrpcResourceExhausted},
      {"unavailable", PlanRetry::kGrpcUnavailable},
  };
  return names;
}

std::shared_ptr<const PlanRetry> RetryFrom(Napi::Env env, const Napi::Value& v, const std::string& w) {
  Napi::Object o = js::Obj(env, v, w);
  auto r = std::make_shared<PlanRetry>();
  r->connectAttempts = js::U32(env, o, "connectAttempts", w, 0xffffffffu);
  r->numRetries = js::U32(env, o, "numRetries", w, 0xffffffffu);
  r->perTryMs = Ms(env, o, "perTryMs", w);
  r->backOffBaseMs = Ms(env, o, "backOffBaseMs", w);
  r->backOffMaxMs = Ms(env, o, "backOffMaxMs", w);
  Napi::Array on = js::Arr(env, o, "on", w);
  for (uint32_t i = 0; i < on.Length(); i++) {
    Napi::Value x = on.Get(i);
    std::string name = x.IsString() ? x.As<Napi::String>().Utf8Value() : std::string();
    auto it = RetryOnNames().find(name);
    if (it == RetryOnNames().end()) ThrowArg(env, w + ".on[" + std::to_string(i) + "] must be a retry condition, got " + (x.IsString() ? name : js::What(x)));
    r->on |= it->second;
  }
  Napi::Array st = js::Arr(env, o, "statuses", w);
  for (uint32_t i = 0; i < st.Length(); i++) {
    Napi::Value x = st.Get(i);
    if (!x.IsNumber() || x.As<Napi::Number>().Int32Value() < 100 || x.As<Napi::Number>().Int32Value() > 599) ThrowArg(env, w + ".statuses[" + std::to_string(i) + "] must be an HTTP status, got " + js::What(x));
    r->statuses.push_back(x.As<Napi::Number>().Int32Value());
  }
  Napi::Array ms = js::Arr(env, o, "methods", w);
  for (uint32_t i = 0; i < ms.Length(); i++) {
    Napi::Value x = ms.Get(i);
    if (!x.IsString()) ThrowArg(env, w + ".methods[" + std::to_string(i) + "] must be a string, got " + js::What(x));
    r->methods.push_back(x.As<Napi::String>().Utf8Value());
  }
  Napi::Array hs = js::Arr(env, o, "requestHeaders", w);
  for (uint32_t i = 0; i < hs.Length(); i++) {
    std::string hw = w + ".requestHeaders[" + std::to_string(i) + "]";
    Napi::Object h = js::Obj(env, hs.Get(i), hw);
    PlanRetry::HeaderMatch m;
    m.name = js::Str(env, h, "name", hw, false);
    std::string type = js::Str(env, h, "type", hw, false);
    if (type == "Exact") m.type = PlanRetry::HeaderMatch::Type::kExact;
    else if (type == "Prefix") m.type = PlanRetry::HeaderMatch::Type::kPrefix;
    else if (type == "Present") m.type = PlanRetry::HeaderMatch::Type::kPresent;
    else if (type == "Absent") m.type = PlanRetry::HeaderMatch::Type::kAbsent;
    else ThrowArg(env, hw + ".type must be Exact, Prefix, Present or Absent, got " + type);
    m.value = js::Str(env, h, "value", hw, true);
    r->requestHeaders.push_back(std::move(m));
  }
  return r;
}

/** A format's tokens: {text} or {op, name?, alt?, max?} (src/snapshot/accesslog.ts PlanLogToken). */
std::vector<LogToken> TokensFrom(Napi::Env env, const Napi::Object& o, const char* k, const std::string& where) {
  std::vector<LogToken> out;
  Napi::Array ts = js::Arr(env, o, k, where);
  for (uint32_t i = 0; i < ts.Length(); i++) {
    std::string tw = where + "." + k + "[" + std::to_string(i) + "]";
    Napi::Object t = js::Obj(env, ts.Get(i), tw);
    LogToken tok;
    if (t.Get("op").IsUndefined()) {
      tok.text = js::Str(env, t, "text", tw, false);
    } else {
      std::string op = js::Str(env, t, "op", tw, false);
      if (!LogOpFrom(op, &tok.op)) ThrowArg(env, tw + ".op " + op + " is not an operator the engine fills");
      tok.name = js::Str(env, t, "name", tw, true);
      tok.alt = js::Str(env, t, "alt", tw, true);
      if (!t.Get("max").IsUndefined()) tok.max = js::U32(env, t, "max", tw, 0xffffffffu);
      if ((tok.op == LogOp::kReq || tok.op == LogOp::kResp) && tok.name.empty()) ThrowArg(env, tw + ".name must name a header for " + op);
    }
    out.push_back(std::move(tok));
  }
  return out;
}

/** The plan's `accessLog`; a backend whose file cannot be opened is left out and reported for the service. */
std::shared_ptr<const PlanAccessLog> AccessLogFrom(Napi::Env env, const Napi::Value& v, const std::string& where, const std::string& service, PlanTable& table,
                                                   std::vector<InstallError>* errors) {
  Napi::Object o = js::Obj(env, v, where);
  auto log = std::make_shared<PlanAccessLog>();
  Napi::Array bs = js::Arr(env, o, "backends", where);
  for (uint32_t i = 0; i < bs.Length(); i++) {
    std::string bw = where + ".backends[" + std::to_string(i) + "]";
    Napi::Object b = js::Obj(env, bs.Get(i), bw);
    LogBackend backend;
    std::string path = js::Str(env, b, "path", bw, false);
    backend.json = js::Bool(env, b, "json", bw);
    backend.omitEmpty = js::Bool(env, b, "omitEmptyValues", bw);
    if (backend.json) {
      Napi::Array fs = js::Arr(env, b, "fields", bw);
      for (uint32_t j = 0; j < fs.Length(); j++) {
        std::string fw = bw + ".fields[" + std::to_string(j) + "]";
        Napi::Object f = js::Obj(env, fs.Get(j), fw);
        backend.fields.emplace_back(JsonEscaped(js::Str(env, f, "key", fw, false)), TokensFrom(env, f, "tokens", fw));
      }
    } else {
      backend.plain = TokensFrom(env, b, "plain", bw);
    }
    std::string err;
    backend.sink = table.logs().SinkFor(path, &err);
    // The service keeps serving; only this backend is missing (or, for a file open already, keeps its old file).
    if (!err.empty()) errors->push_back({service, "MESHEXT_E_ACCESS_LOG", "access log backend " + path + ": " + err});
    if (backend.sink) log->backends.push_back(std::move(backend));
  }
  return log;
}

/** Reads one plan; its TLS context comes from `table` (reused by id) or is built here. */
std::shared_ptr<Plan> PlanFrom(Napi::Env env, const Napi::Value& v, const std::string& where, PlanTable& table,
                               std::vector<std::string>* keys, std::vector<InstallError>* errors) {
  Napi::Object o = js::Obj(env, v, where);
  auto p = std::make_shared<Plan>();
  p->service = js::Str(env, o, "service", where, false);
  if (p->service.empty()) ThrowArg(env, where + ".service must not be empty");
  p->protocol = ProtocolFrom(env, js::Str(env, o, "protocol", where, false), where);
  Napi::Array ks = js::Arr(env, o, "keys", where);
  for (uint32_t i = 0; i < ks.Length(); i++) {
    Napi::Value k = ks.Get(i);
    if (!k.IsString()) ThrowArg(env, where + ".keys[" + std::to_string(i) + "] must be a string, got " + js::What(k));
    keys->push_back(k.As<Napi::String>().Utf8Value());
  }
  Napi::Object t = js::Obj(env, o.Get("timeouts"), where + ".timeouts");
  std::string tw = where + ".timeouts";
  p->connectTimeoutMs = Ms(env, t, "connectMs", tw);
  p->tcpIdleMs = Ms(env, t, "tcpIdleMs", tw);
  p->httpIdleMs = Ms(env, t, "httpIdleMs", tw);
  p->httpHeaderMs = Ms(env, t, "httpHeaderMs", tw);
  p->upstreamIdleMs = Ms(env, t, "upstreamIdleMs", tw);
  p->requestTimeoutMs = Ms(env, t, "requestMs", tw);
  p->maxStreamMs = Ms(env, t, "maxStreamMs", tw);
  p->streamIdleMs = Ms(env, t, "streamIdleMs", tw);
  p->maxConnMs = Ms(env, t, "maxConnectionMs", tw);
  if (!o.Get("retry").IsUndefined()) p->retry = RetryFrom(env, o.Get("retry"), where + ".retry");
  if (!o.Get("limits").IsUndefined()) {
    std::string lw = where + ".limits";
    Napi::Object l = js::Obj(env, o.Get("limits"), lw);
    p->limits.maxConnections = js::U32(env, l, "maxConnections", lw, 0xffffffffu);
    p->limits.maxPendingRequests = js::U32(env, l, "maxPendingRequests", lw, 0xffffffffu);
    p->limits.maxRequests = js::U32(env, l, "maxRequests", lw, 0xffffffffu);
  }
  p->error = js::Str(env, o, "error", where, true);
  if (!o.Get("accessLog").IsUndefined()) p->accessLog = AccessLogFrom(env, o.Get("accessLog"), where + ".accessLog", p->service, table, errors);
  // Outlier detection is applied by TypeScript; the engine only needs to know that it wants the statuses.
  p->reportStatuses = !o.Get("outlierDetection").IsUndefined();
  p->countResponses = o.Get("countResponses").ToBoolean().Value();
  if (!o.Get("deny").IsUndefined()) {
    std::string dw = where + ".deny";
    Napi::Object d = js::Obj(env, o.Get("deny"), dw);
    p->denied = true;
    p->deny.status = static_cast<int>(js::U32(env, d, "status", dw, 599));
    p->deny.grpcStatus = static_cast<int>(js::U32(env, d, "grpcStatus", dw, 16));
    p->deny.message = js::Str(env, d, "message", dw, false);
  }
  p->state = table.StateFor(p->service);
  std::string endpointsKey;
  Napi::Array eps = js::Arr(env, o, "endpoints", where);
  std::map<uint32_t, std::vector<uint32_t>> byPriority;
  for (uint32_t i = 0; i < eps.Length(); i++) {
    std::string ew = where + ".endpoints[" + std::to_string(i) + "]";
    Napi::Object e = js::Obj(env, eps.Get(i), ew);
    PlanEndpoint ep;
    ep.label = js::Str(env, e, "label", ew, false);
    ep.priority = js::U32(env, e, "priority", ew, 0xffffffffu);
    ep.host = js::Str(env, e, "host", ew, true);
    ep.unavailable = js::Str(env, e, "unavailable", ew, true);
    Napi::Array ts = js::Arr(env, e, "targets", ew);
    endpointsKey += ep.label + "=";
    for (uint32_t j = 0; j < ts.Length(); j++) {
      std::string xw = ew + ".targets[" + std::to_string(j) + "]";
      Napi::Object x = js::Obj(env, ts.Get(j), xw);
      PlanTarget target;
      target.address = js::Str(env, x, "address", xw, false);
      target.port = static_cast<uint16_t>(js::U32(env, x, "port", xw, 65535));
      // One that does not parse now (an IPv6 zone naming an interface not there yet) is parsed again per
      // attempt; each attempt then fails alone (EINVAL) while it does not, never the install.
      if (!TargetSockaddr(target.address, target.port, &target.sa, &target.saLen)) target.saLen = 0;
      target.tls.session_key = js::Str(env, x, "sessionKey", xw, true);
      target.tls.dialled_ip = js::Str(env, x, "dialledIp", xw, true);
      endpointsKey += target.address + ":" + std::to_string(target.port) + ",";
      ep.targets.push_back(std::move(target));
    }
    endpointsKey += ";";
    byPriority[ep.priority].push_back(i);
    p->endpoints.push_back(std::move(ep));
  }
  for (auto& [prio, members] : byPriority) p->groups.push_back(std::move(members));
  if (!o.Get("tls").IsUndefined()) {
    std::string lw = where + ".tls";
    Napi::Object l = js::Obj(env, o.Get("tls"), lw);
    p->tlsId = js::Str(env, l, "id", lw, false);
    p->tls = table.ContextFor(p->tlsId);
    if (!p->tls) {
      std::string err;
      p->tls = tls::ClientContext::Create(tls::ConfigFromJs(env, l, lw), &err);
      if (p->tls) {
        table.RememberContext(p->tlsId, p->tls);
      } else if (p->error.empty()) {
        // OpenSSL's words name the step that failed, never the key material.
        p->error = "TLS settings rejected: " + err;
        errors->push_back({p->service, "MESHEXT_E_TLS_CONFIG", p->error});
      }
    }
  }
  // Plans of one service (a Dataplane's outbounds may have a plan of their own) share idle upstream connections
  // only when those connections would live by the same rules: an upstream connection keeps the idle timeout and
  // age limit of the plan that opened it.
  p->poolKey = p->service + "|" + p->tlsId + "|" + std::to_string(p->upstreamIdleMs) + "|" + std::to_string(p->maxConnMs) + "|" + endpointsKey;
  for (PlanEndpoint& ep : p->endpoints)
    for (PlanTarget& t : ep.targets) t.h1PoolKey = p->H1PoolKey(t, ep.host);
  return p;
}

}  // namespace

std::shared_ptr<PlanSet> PlanSetFromJs(Napi::Env env, const Napi::Value& v, PlanTable& table, std::vector<InstallError>* errors) {
  Napi::Object o = js::Obj(env, v, "install");
  auto set = std::make_shared<PlanSet>();
  std::string source = js::Str(env, o, "source", "install", false);
  if (source == "local") {
    set->source = OrigDstSource::kLocal;
  } else if (source == "map") {
    set->source = OrigDstSource::kMap;
    int fd = static_cast<int>(js::U32(env, o, "mapFd", "install", 0x7fffffffu));
    auto map = std::make_shared<UniqueFd>(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!map->valid()) ThrowErrno(env, "MESHEXT_E_ENGINE", "fcntl(F_DUPFD_CLOEXEC)", errno, "mapFd");
    set->map = std::move(map);
  } else {
    ThrowArg(env, "install.source must be local or map, got " + source);
  }
  // Where access log files may be: set before the plans open their sinks (absent: /dev/stdout and /dev/stderr only).
  std::string logDir = js::Str(env, o, "accessLogDir", "install", true);
  if (!logDir.empty() && logDir.front() != '/') ThrowArg(env, "install.accessLogDir must be an absolute path, got " + logDir);
  while (logDir.size() > 1 && logDir.back() == '/') logDir.pop_back();
  table.logs().SetDir(logDir);
  Napi::Array plans = js::Arr(env, o, "plans", "install");
  // Parse everything before touching any service state, so a caller bug leaves the engine as it was.
  // A service may have several plans (each for its own keys: a Dataplane's outbounds with policies of their own);
  // they share its state, counters and endpoints.
  std::vector<std::pair<std::shared_ptr<Plan>, std::vector<std::string>>> parsed;
  for (uint32_t i = 0; i < plans.Length(); i++) {
    std::string w = "install.plans[" + std::to_string(i) + "]";
    std::vector<std::string> keys;
    std::shared_ptr<Plan> p = PlanFrom(env, plans.Get(i), w, table, &keys, errors);
    parsed.emplace_back(std::move(p), std::move(keys));
  }
  // Endpoint health and counts follow the endpoint's label from one plan version to the next, and are one per
  // label across the plans of a service.
  std::unordered_map<ServiceState*, std::unordered_map<std::string, std::shared_ptr<EndpointState>>> next;
  for (auto& [p, keys] : parsed) {
    auto& eps = next[p->state.get()];
    for (PlanEndpoint& ep : p->endpoints) {
      auto& slot = eps[ep.label];
      if (!slot) {
        auto old = p->state->endpoints.find(ep.label);
        slot = old != p->state->endpoints.end() ? old->second : std::make_shared<EndpointState>(ep.label);
      }
      ep.state = slot;
    }
  }
  for (auto& [state, eps] : next) state->endpoints.swap(eps);
  for (auto& [p, keys] : parsed) {
    std::shared_ptr<const Plan> cp = p;
    set->plans.push_back(cp);
    for (const std::string& k : keys) {
      auto [at, added] = set->byKey.emplace(k, cp);
      if (!added) errors->push_back({p->service, "MESHEXT_E_KEY_CONFLICT", "key " + k + " is routed to service " + at->second->service + " already; ignored for this one"});
    }
  }
  return set;
}

}  // namespace mx::engine
