// Test-only exports of native TLS (built into the test addon only): contexts made straight from options, their
// session caches, and a self-contained one-shot exchange (tlsProbe) that drives a ClientConn with poll(2), so
// tests can check verification, resumption and ALPN without an engine.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "../errors.h"
#include "../jsargs.h"
#include "../tls/client_conn.h"
#include "../tls/client_context.h"
#include "../tls/tls_napi.h"
#include "testing.h"

namespace mx::tls {
namespace {

struct Holder {
  std::shared_ptr<ClientContext> ctx;
};

std::string OptStr(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

std::string OptBytes(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  if (!v.IsBuffer()) return std::string();
  auto b = v.As<Napi::Buffer<char>>();
  return std::string(b.Data(), b.Length());
}

Napi::Object FailureToJs(Napi::Env env, const Failure& f) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("stage", f.stage);
  o.Set("code", f.code);
  o.Set("message", f.message);
  return o;
}

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Handshake, send `send`, close our side with close_notify, read until the peer closes: the same
// ClientConn the relay drives from epoll, here driven by poll on a worker thread.
class ProbeWorker : public Napi::AsyncWorker {
 public:
  ProbeWorker(Napi::Env env, std::shared_ptr<ClientContext> ctx, int fd, ConnParams params, std::string send, int timeout_ms)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), conn_(std::move(ctx), fd, std::move(params)),
        fd_(fd), send_(std::move(send)), timeout_ms_(timeout_ms) {}
  ~ProbeWorker() override { close(fd_); }
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    const int64_t deadline = NowMs() + timeout_ms_;
    Io io;
    while ((io = conn_.Handshake()) == Io::kWantRead || io == Io::kWantWrite)
      if (!Wait(io, deadline)) return TimedOut(true);
    if (io != Io::kOk) return;
    handshake_ok_ = true;
    size_t off = 0;
    while (off < send_.size()) {
      size_t n = 0;
      io = conn_.Write(send_.data() + off, send_.size() - off, &n);
      off += n;
      if (io == Io::kError) return;
      if ((io == Io::kWantRead || io == Io::kWantWrite) && !Wait(io, deadline)) return TimedOut(false);
    }
    while ((io = conn_.ShutdownWrite()) == Io::kWantRead || io == Io::kWantWrite)
      if (!Wait(io, deadline)) return TimedOut(false);
    char buf[16384];
    for (;;) {
      size_t n = 0;
      io = conn_.Read(buf, sizeof buf, &n);
      if (io == Io::kOk) received_.append(buf, n);
      else if (io == Io::kEof || io == Io::kError) return;
      else if (!Wait(io, deadline)) return TimedOut(false);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("ok", handshake_ok_);
    r.Set("resumed", conn_.resumed());
    r.Set("protocol", handshake_ok_ ? conn_.protocol() : "");
    r.Set("alpn", conn_.alpn());
    r.Set("received", Napi::Buffer<char>::Copy(env, received_.data(), received_.size()));
    r.Set("timedOut", timed_out_);
    if (!conn_.failure().stage.empty()) r.Set("failure", FailureToJs(env, conn_.failure()));
    deferred_.Resolve(r);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  bool Wait(Io io, int64_t deadline) {
    for (;;) {
      int64_t left = deadline - NowMs();
      if (left <= 0) return false;
      pollfd p{fd_, static_cast<short>(io == Io::kWantWrite ? POLLOUT : POLLIN), 0};
      int r = poll(&p, 1, static_cast<int>(left));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return false;
    }
  }
  void TimedOut(bool in_handshake) {
    timed_out_ = true;
    if (in_handshake)
      conn_.Abort({"timeout", "MESHEXT_E_CONNECT_TIMEOUT", "TLS handshake timed out after " + std::to_string(timeout_ms_) + " ms"});
  }

  Napi::Promise::Deferred deferred_;
  ClientConn conn_;
  int fd_;
  std::string send_;
  int timeout_ms_;
  bool handshake_ok_ = false;
  bool timed_out_ = false;
  std::string received_;
};

std::shared_ptr<ClientContext> ContextFromValue(const Napi::Value& v) {
  if (!v.IsExternal()) ThrowArg(v.Env(), "expected a TLS context handle from tlsContextCreate");
  auto* h = v.As<Napi::External<Holder>>().Data();
  if (!h || !h->ctx) ThrowArg(v.Env(), "expected a TLS context handle from tlsContextCreate");
  return h->ctx;
}

}  // namespace
}  // namespace mx::tls

namespace mx::testing {

// tlsContextCreate(opts) → handle; throws Error{code: MESHEXT_E_TLS_CONFIG} with OpenSSL's text.
Napi::Value TlsContextCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowArg(env, "tlsContextCreate: expected an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  tls::ClientConfig c = tls::ConfigFromJs(env, o, "tls");
  std::string err;
  auto ctx = tls::ClientContext::Create(std::move(c), &err);
  if (!ctx) {
    Napi::Error e = Napi::Error::New(env, err);
    e.Set("code", Napi::String::New(env, "MESHEXT_E_TLS_CONFIG"));
    throw e;
  }
  return Napi::External<tls::Holder>::New(env, new tls::Holder{std::move(ctx)},
                                          [](Napi::Env, tls::Holder* h) { delete h; });
}

// tlsSessionCount(handle, key) → sessions cached for that endpoint key.
Napi::Value TlsSessionCount(const Napi::CallbackInfo& info) {
  auto ctx = tls::ContextFromValue(info[0]);
  return Napi::Number::New(info.Env(), static_cast<double>(ctx->sessions().Size(ArgString(info, 1, "key"))));
}

// tlsProbe(handle, fd, {sessionKey, dialledIp, alpn, timeoutMs, send}) → Promise<result>. The fd is
// duplicated here, so the caller may destroy its socket right away.
Napi::Value TlsProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto ctx = tls::ContextFromValue(info[0]);
  int fd = ArgFd(info, 1, "fd");
  if (info.Length() < 3 || !info[2].IsObject()) ThrowArg(env, "tlsProbe: expected an options object");
  Napi::Object o = info[2].As<Napi::Object>();
  tls::ConnParams p{tls::OptStr(o, "sessionKey"), tls::OptStr(o, "dialledIp"), tls::AlpnWire(env, o.Get("alpn"))};
  Napi::Value t = o.Get("timeoutMs");
  int timeout = t.IsNumber() ? t.As<Napi::Number>().Int32Value() : 5000;
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) ThrowErrno(env, "MESHEXT_E_TLS_FD", "fcntl(F_DUPFD_CLOEXEC)", errno);
  int fl = fcntl(dup, F_GETFL);
  if (fl < 0 || fcntl(dup, F_SETFL, fl | O_NONBLOCK) < 0) {
    int e = errno;
    close(dup);
    ThrowErrno(env, "MESHEXT_E_TLS_FD", "fcntl(O_NONBLOCK)", e);
  }
  auto* w = new tls::ProbeWorker(env, std::move(ctx), dup, std::move(p), tls::OptBytes(o, "send"), timeout);
  Napi::Promise promise = w->Promise();
  w->Queue();
  return promise;
}

}  // namespace mx::testing
