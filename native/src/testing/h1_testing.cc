// Test-only exports (test addon only): the HTTP/1.1 codec as plain functions for the unit tests (test/unit/http1-codec.test.ts): the same code the
// session runs, driven with byte sequences split however a test likes.
#include <string>

#include "../errors.h"
#include "../http1/codec.h"
#include "testing.h"

namespace mx::testing {
namespace {

const char* FramingName(h1::Framing f) {
  switch (f) {
    case h1::Framing::None: return "none";
    case h1::Framing::Length: return "length";
    case h1::Framing::Chunked: return "chunked";
    case h1::Framing::Close: return "close";
    case h1::Framing::Tunnel: return "tunnel";
  }
  return "?";
}

h1::Framing FramingFrom(Napi::Env env, const std::string& s) {
  if (s == "none") return h1::Framing::None;
  if (s == "length") return h1::Framing::Length;
  if (s == "chunked") return h1::Framing::Chunked;
  if (s == "close") return h1::Framing::Close;
  if (s == "tunnel") return h1::Framing::Tunnel;
  ThrowArg(env, "unknown framing " + s);
}

Napi::String Str(Napi::Env env, std::string_view v) { return Napi::String::New(env, v.data(), v.size()); }

// Scans chunks through HeadScanner as they would arrive, then parses; `method` selects response parsing.
bool ParseChunks(const Napi::CallbackInfo& info, std::string& buf, h1::Head& h, h1::Error& err, h1::Status& st) {
  std::string kind = ArgString(info, 0, "kind");
  if (kind != "request" && kind != "response") ThrowArg(info.Env(), "kind must be request or response");
  bool req = kind == "request";
  if (info.Length() < 2 || !info[1].IsArray()) ThrowArg(info.Env(), "expected Buffer[] for chunks");
  Napi::Array chunks = info[1].As<Napi::Array>();
  h1::HeadScanner sc(req ? h1::Kind::Request : h1::Kind::Response);
  st = h1::Status::Partial;
  for (uint32_t i = 0; i < chunks.Length() && st == h1::Status::Partial; i++) {
    Napi::Value v = chunks.Get(i);
    if (!v.IsBuffer()) ThrowArg(info.Env(), "expected Buffer[] for chunks");
    auto b = v.As<Napi::Buffer<char>>();
    buf.append(b.Data(), b.Length());
    st = sc.Scan(buf.data(), buf.size(), err);
  }
  if (st != h1::Status::Done) return false;
  std::string_view head(buf.data(), sc.end());
  bool ok = req ? h1::ParseRequest(head, h, err) : h1::ParseResponse(head, ArgString(info, 2, "method"), h, err);
  if (!ok) st = h1::Status::Failed;
  return ok;
}

}  // namespace

// h1ParseHead(kind, chunks, method?) → {state:'partial'} | {state:'error', status, reason} | {state:'done', ...}
Napi::Value H1ParseHead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string buf;
  h1::Head h;
  h1::Error err;
  h1::Status st;
  bool ok = ParseChunks(info, buf, h, err, st);
  Napi::Object o = Napi::Object::New(env);
  if (st == h1::Status::Partial) {
    o.Set("state", "partial");
    return o;
  }
  if (!ok) {
    o.Set("state", "error");
    o.Set("status", err.status);
    o.Set("reason", err.reason);
    return o;
  }
  o.Set("state", "done");
  o.Set("length", static_cast<double>(h.length));
  if (h.kind == h1::Kind::Request) {
    o.Set("method", Str(env, h.method));
    o.Set("target", Str(env, h.target));
  } else {
    o.Set("status", h.status);
    o.Set("reason", Str(env, h.reason));
  }
  o.Set("minor", h.minor);
  Napi::Array fields = Napi::Array::New(env, h.fields.size());
  for (size_t i = 0; i < h.fields.size(); i++) {
    Napi::Array f = Napi::Array::New(env, 2);
    f.Set(0u, Str(env, h.fields[i].name));
    f.Set(1u, Str(env, h.fields[i].value));
    fields.Set(static_cast<uint32_t>(i), f);
  }
  o.Set("fields", fields);
  o.Set("framing", FramingName(h.framing));
  o.Set("contentLength", static_cast<double>(h.content_length));
  o.Set("keepAlive", h.keep_alive);
  o.Set("upgrade", h.upgrade);
  o.Set("expectContinue", h.expect_continue);
  if (h.has_host) o.Set("host", Str(env, h.host));
  return o;
}

// h1BodyScan(framing, length, chunks) → {consumed: number[], done, error?}
Napi::Value H1BodyScan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  h1::BodyTracker t;
  if (info.Length() < 2 || !info[1].IsNumber()) ThrowArg(env, "expected number for length");
  t.Start(FramingFrom(env, ArgString(info, 0, "framing")), static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()));
  if (info.Length() < 3 || !info[2].IsArray()) ThrowArg(env, "expected Buffer[] for chunks");
  Napi::Array chunks = info[2].As<Napi::Array>();
  Napi::Array consumed = Napi::Array::New(env, chunks.Length());
  for (uint32_t i = 0; i < chunks.Length(); i++) {
    Napi::Value v = chunks.Get(i);
    if (!v.IsBuffer()) ThrowArg(env, "expected Buffer[] for chunks");
    auto b = v.As<Napi::Buffer<char>>();
    consumed.Set(i, static_cast<double>(t.Consume(b.Data(), b.Length())));
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("consumed", consumed);
  o.Set("done", t.done());
  if (t.failed()) o.Set("error", t.error());
  return o;
}

// h1Rewrite(requestHead, hostOverride, responseHead?, close?) → {request, response?, clientKeepAlive?, upstreamReusable?}
Napi::Value H1Rewrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto rb = ArgBuffer(info, 0, "requestHead");
  std::string_view rs(reinterpret_cast<const char*>(rb.Data()), rb.Length());
  h1::Head req, resp;
  h1::Error err;
  if (!h1::ParseRequest(rs, req, err)) ThrowArg(env, "request head does not parse: " + err.reason);
  Napi::Object o = Napi::Object::New(env);
  std::string out;
  h1::WriteRequestHead(req, ArgString(info, 1, "hostOverride"), out);
  o.Set("request", out);
  if (info.Length() > 2 && info[2].IsBuffer()) {
    auto pb = info[2].As<Napi::Buffer<char>>();
    std::string_view ps(pb.Data(), pb.Length());
    if (!h1::ParseResponse(ps, req.method, resp, err)) ThrowArg(env, "response head does not parse: " + err.reason);
    bool close = info.Length() > 3 && info[3].ToBoolean().Value();
    bool keep = h1::ClientKeepAlive(req, resp) && !close;
    out.clear();
    h1::WriteResponseHead(resp, req, !keep, out);
    o.Set("response", out);
    o.Set("clientKeepAlive", keep);
    o.Set("upstreamReusable", h1::UpstreamReusable(resp));
  }
  return o;
}

// h1LocalResponse(status, body, close) → the bytes the session writes for a local reply.
Napi::Value H1LocalResponse(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), h1::LocalResponse(static_cast<int>(ArgU32(info, 0, "status")),
                                                         ArgString(info, 1, "body"), info[2].ToBoolean().Value()));
}

}  // namespace mx::testing
