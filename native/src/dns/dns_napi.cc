// JS surface of the engine's DNS (declared in ../api.h, typed in src/native/addon.ts): UDP sessions, the owned-name
// table, the synchronous resolve the TypeScript TCP path uses, forwarded replies, and the wire helpers the
// forwarding path needs (SERVFAIL, fitting a reply to the client's limit).
#include <sys/socket.h>

#include <memory>
#include <string>

#include "../api.h"
#include "../engine/engine.h"
#include "../engine/sockaddr.h"
#include "../errors.h"
#include "../jsargs.h"
#include "../shared_socket.h"
#include "udp_session.h"

namespace mx {

engine::Engine* EngineOf(const Napi::CallbackInfo& info, size_t i);

namespace {

std::string BytesArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsBuffer()) ThrowArg(info.Env(), std::string(what) + " must be a Buffer");
  auto b = info[i].As<Napi::Buffer<uint8_t>>();
  return std::string(reinterpret_cast<const char*>(b.Data()), b.Length());
}

const uint8_t* U8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

bool UdpArg(const Napi::CallbackInfo& info, size_t i) {
  std::string t = ArgString(info, i, "transport");
  if (t != "udp" && t != "tcp") ThrowArg(info.Env(), "transport must be udp or tcp, got " + t);
  return t == "udp";
}

}  // namespace

// engineDnsListen(engine, address, port, deadlineMs) → {id, address, family, port}: a UDP socket (shared with a
// successor agent, SO_REUSEPORT) whose queries the engine answers or hands to JS as `dns-query` events; one JS has
// not answered within deadlineMs gets SERVFAIL from the engine.
Napi::Value EngineDnsListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine::Engine* e = EngineOf(info, 0);
  std::string address = ArgString(info, 1, "address");
  uint32_t port = ArgU32(info, 2, "port");
  uint32_t deadlineMs = ArgU32(info, 3, "deadlineMs");
  if (port > 65535) ThrowArg(env, "port must be 0..65535, got " + std::to_string(port));
  if (deadlineMs < 1) ThrowArg(env, "deadlineMs must be at least 1");
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!engine::IpSockaddr(address, static_cast<uint16_t>(port), &ss, &len)) ThrowArg(env, "listen address must be an IP literal, got " + address);
  const char* step = nullptr;
  int fd = OpenSharedSocket(SOCK_DGRAM, ss, len, 0, SOCK_NONBLOCK, &step);
  if (fd < 0) ThrowErrno(env, "MESHEXT_E_DNS_LISTEN", step, -fd);
  engine::UniqueFd owned(fd);
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen) != 0) ThrowErrno(env, "MESHEXT_E_DNS_LISTEN", "getsockname", errno);
  uint16_t boundPort = 0;
  std::string boundIp = engine::IpText(bound, &boundPort);
  uint64_t id = e->Adopt(std::make_unique<dns::UdpSession>(std::move(owned), &e->dns(), deadlineMs));
  if (id == 0) ThrowArg(env, "engine is stopping");
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, static_cast<double>(id)));
  o.Set("address", boundIp);
  o.Set("family", ss.ss_family == AF_INET6 ? "IPv6" : "IPv4");
  o.Set("port", Napi::Number::New(env, boundPort));
  return o;
}

// engineDnsTable(engine, names): replaces the owned-name table. names: [{name, a, aCount, aaaa, aaaaCount}] with
// lowercased names and pre-encoded answer sections (src/dns/records.ts).
Napi::Value EngineDnsTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine::Engine* e = EngineOf(info, 0);
  if (info.Length() < 2 || !info[1].IsArray()) ThrowArg(env, "names must be an array");
  Napi::Array arr = info[1].As<Napi::Array>();
  auto table = std::make_shared<dns::Table>();
  table->reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) {
    std::string where = "names[" + std::to_string(i) + "]";
    Napi::Object o = js::Obj(env, arr.Get(i), where);
    std::string name = js::Str(env, o, "name", where, false);
    auto buf = [&](const char* k) {
      Napi::Value v = o.Get(k);
      if (!v.IsBuffer()) ThrowArg(env, where + "." + k + " must be a Buffer");
      auto b = v.As<Napi::Buffer<uint8_t>>();
      return std::string(reinterpret_cast<const char*>(b.Data()), b.Length());
    };
    dns::OwnedName n;
    n.a = buf("a");
    n.aCount = static_cast<uint16_t>(js::U32(env, o, "aCount", where, 65535));
    n.aaaa = buf("aaaa");
    n.aaaaCount = static_cast<uint16_t>(js::U32(env, o, "aaaaCount", where, 65535));
    (*table)[name] = std::move(n);
  }
  e->dns().Replace(std::move(table));
  return env.Undefined();
}

// engineDnsResolve(engine, query, transport) → {reply} | {forward: true} | null (drop): what the engine's UDP
// sessions do with a query, for the TypeScript TCP path (one implementation of the answers for both).
Napi::Value EngineDnsResolve(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine::Engine* e = EngineOf(info, 0);
  std::string q = BytesArg(info, 1, "query");
  bool udp = UdpArg(info, 2);
  std::shared_ptr<const dns::Table> table = e->dns().Current();
  dns::Resolution r = dns::Resolve(table.get(), U8(q), q.size(), udp);
  if (r.kind == dns::Resolution::kForward) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("forward", true);
    o.Set("qtype", r.q.qtype);
    o.Set("questionEnd", Napi::Number::New(env, static_cast<double>(r.q.questionEnd)));
    return o;
  }
  e->dns().Count(r.q.qtype, r.outcome);
  if (r.kind == dns::Resolution::kDrop) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("reply", Napi::Buffer<char>::Copy(env, r.reply.data(), r.reply.size()));
  return o;
}

// engineDnsSend(engine, sessionId, token, reply) → false when the UDP session is gone: JS's reply to the forwarded
// query `token` of a `dns-query` event.
Napi::Value EngineDnsSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine::Engine* e = EngineOf(info, 0);
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber()) ThrowArg(env, "id and token must be numbers");
  uint64_t id = static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value());
  uint64_t token = static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value());
  std::string bytes = BytesArg(info, 3, "reply");
  bool posted = e->PostTo(id, [token, bytes = std::move(bytes)](engine::Session& s) {
    if (auto* u = dynamic_cast<dns::UdpSession*>(&s)) u->Reply(token, bytes);  // any other session: nothing
  });
  return Napi::Boolean::New(env, posted);
}

// engineDnsCounts(engine) → [[qtype (-1: unreadable), outcome ('answered'|'formerr'|'dropped'|'stalled'), count]].
Napi::Value EngineDnsCounts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  engine::Engine* e = EngineOf(info, 0);
  static const char* kNames[dns::kOutcomes] = {"answered", "formerr", "dropped", "stalled"};
  auto counts = e->dns().Counts();
  Napi::Array out = Napi::Array::New(env, counts.size());
  uint32_t i = 0;
  for (const auto& [qtype, outcome, n] : counts) {
    Napi::Array row = Napi::Array::New(env, 3);
    row.Set(0u, Napi::Number::New(env, qtype));
    row.Set(1u, kNames[outcome]);
    row.Set(2u, Napi::Number::New(env, static_cast<double>(n)));
    out.Set(i++, row);
  }
  return out;
}

// dnsServfail(query) → Buffer | null: SERVFAIL keeping the question; null when the query does not parse.
Napi::Value DnsServfail(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string q = BytesArg(info, 0, "query");
  std::string r = dns::Servfail(U8(q), q.size());
  if (r.empty()) return env.Null();
  return Napi::Buffer<char>::Copy(env, r.data(), r.size());
}

// dnsFitReply(reply, query, transport) → Buffer: the reply, or header + question with TC when it is too big
// for the client (UDP: 512 or its EDNS size, at most 1232).
Napi::Value DnsFitReply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string reply = BytesArg(info, 0, "reply");
  std::string q = BytesArg(info, 1, "query");
  bool udp = UdpArg(info, 2);
  std::string r = dns::FitReply(U8(reply), reply.size(), U8(q), q.size(), udp);
  return Napi::Buffer<char>::Copy(env, r.data(), r.size());
}

}  // namespace mx
