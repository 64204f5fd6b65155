// ProbeSession: see probe.h.
#include "probe.h"

#include <string.h>

#include <algorithm>

namespace mx::engine {

namespace {

/** Response bytes a check reads at most (a health endpoint answering more is answered by its status). */
constexpr size_t kMaxIn = 64 * 1024;
const char* const kGrpcNames[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

nghttp2_nv Nv(const std::string& k, const std::string& v) {
  return nghttp2_nv{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(k.data())), const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(v.data())), k.size(),
                    v.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

std::string GrpcHealthRequest(const std::string& service) {
  std::string msg;
  if (!service.empty()) {
    msg.push_back(0x0a);  // field 1, length-delimited
    PutVarint(msg, service.size());
    msg += service;
  }
  std::string frame(5, '\0');
  uint32_t n = static_cast<uint32_t>(msg.size());
  frame[1] = static_cast<char>(n >> 24);
  frame[2] = static_cast<char>(n >> 16);
  frame[3] = static_cast<char>(n >> 8);
  frame[4] = static_cast<char>(n);
  return frame + msg;
}

int GrpcHealthStatus(const std::string& frame) {
  if (frame.size() < 5 || frame[0] != 0) return -1;
  const auto* p = reinterpret_cast<const uint8_t*>(frame.data());
  size_t len = (size_t{p[1]} << 24) | (size_t{p[2]} << 16) | (size_t{p[3]} << 8) | p[4];
  if (frame.size() < 5 + len) return -1;
  size_t i = 5, end = 5 + len;
  int status = 0;
  // Walk the fields: field 1 (varint) is the status; others are skipped.
  while (i < end) {
    uint64_t key = 0;
    for (int shift = 0; i < end; shift += 7) {
      uint8_t b = p[i++];
      key |= uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80) || shift > 56) break;
    }
    uint64_t v = 0;
    switch (key & 7) {
      case 0:
        for (int shift = 0; i < end; shift += 7) {
          uint8_t b = p[i++];
          v |= uint64_t{b & 0x7fu} << shift;
          if (!(b & 0x80) || shift > 56) break;
        }
        if ((key >> 3) == 1) status = static_cast<int>(v);
        break;
      case 2:
        for (int shift = 0; i < end; shift += 7) {
          uint8_t b = p[i++];
          v |= uint64_t{b & 0x7fu} << shift;
          if (!(b & 0x80) || shift > 56) break;
        }
        if (v > end - i) return -1;
        i += v;
        break;
      case 1:
        i += 8;
        break;
      case 5:
        i += 4;
        break;
      default:
        return -1;
    }
  }
  return i == end ? status : -1;
}

ProbeSession::ProbeSession(ProbeSpec spec) : spec_(std::move(spec)), connector_(*this, *this) {
  connector_.ForProbe();
  io_.p = this;
}

ProbeSession::~ProbeSession() {
  if (h2_) nghttp2_session_del(h2_);
}

void ProbeSession::Start() {
  deadline_ = loop()->NowMs() + spec_.timeoutMs;
  loop()->ArmTimer(this, deadline_);
  plan_ = loop()->engine()->plans().Find("@" + spec_.service);
  if (!plan_) return Finish(false, 0, "the service is no longer configured");
  uint32_t index = 0;
  while (index < plan_->endpoints.size() && plan_->endpoints[index].label != spec_.endpoint) index++;
  if (index == plan_->endpoints.size()) return Finish(false, 0, "the endpoint is no longer configured");
  tls_ = plan_->tls != nullptr;
  bool h2 = spec_.kind == ProbeSpec::Kind::kGrpc || (spec_.kind == ProbeSpec::Kind::kHttp && spec_.http2);
  Connector::Alpn alpn = spec_.kind == ProbeSpec::Kind::kTcp ? Connector::Alpn::kNone : h2 ? Connector::Alpn::kH2 : Connector::Alpn::kHttp1;
  connector_.Start(plan_, {index}, alpn, std::string());
}

void ProbeSession::Close(const char* reason, bool /*reset*/) { Finish(false, 0, std::string("health check abandoned: ") + reason); }

void ProbeSession::OnTimer(int64_t nowMs) {
  if (done_) return;
  if (nowMs >= deadline_) return Finish(false, 0, "timed out after " + std::to_string(spec_.timeoutMs) + " ms");
  connector_.OnTimer(nowMs);
}

void ProbeSession::OnUpstreamFailed(const std::string& reason) { Finish(false, 0, reason); }

void ProbeSession::OnUpstream(std::unique_ptr<Transport> t, UpstreamLease /*lease*/, uint32_t /*endpoint*/, uint32_t /*target*/) {
  t_ = std::move(t);
  if (loop()->Watch(t_->fd(), &io_) != 0) return Finish(false, 0, "cannot watch the health check connection");
  switch (spec_.kind) {
    case ProbeSpec::Kind::kTcp:
      out_ = spec_.send;
      if (spec_.receive.empty() && out_.empty()) return Finish(true, 0, "");
      break;
    case ProbeSpec::Kind::kHttp:
      if (spec_.http2) {
        StartH2();
        break;
      }
      out_ = "GET " + spec_.path + " HTTP/1.1\r\nHost: " + spec_.authority + "\r\nUser-Agent: meshext-health-check\r\n";
      for (const auto& [k, v] : spec_.headers) out_ += k + ": " + v + "\r\n";
      out_ += "Connection: close\r\n\r\n";
      break;
    case ProbeSpec::Kind::kGrpc:
      StartH2();
      break;
  }
  Pump();
}

void ProbeSession::StartH2() {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_header_callback(cb, OnH2Header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, OnH2Data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, OnH2Close);
  int rv = nghttp2_session_client_new(&h2_, cb, this);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) return Finish(false, 0, std::string("HTTP/2: ") + nghttp2_strerror(rv));
  nghttp2_submit_settings(h2_, NGHTTP2_FLAG_NONE, nullptr, 0);
  const std::string scheme = tls_ ? "https" : "http";
  bool grpc = spec_.kind == ProbeSpec::Kind::kGrpc;
  const std::string method = grpc ? "POST" : "GET";
  const std::string path = grpc ? "/grpc.health.v1.Health/Check" : spec_.path;
  std::vector<nghttp2_nv> nva = {Nv(":method", method), Nv(":scheme", scheme), Nv(":path", path), Nv(":authority", spec_.authority)};
  static const std::string kUa = "user-agent", kUaV = "meshext-health-check", kCt = "content-type", kCtV = "application/grpc", kTe = "te", kTeV = "trailers";
  nva.push_back(Nv(kUa, kUaV));
  if (grpc) {
    nva.push_back(Nv(kCt, kCtV));
    nva.push_back(Nv(kTe, kTeV));
    body_ = GrpcHealthRequest(spec_.grpcService);
  } else {
    for (const auto& [k, v] : spec_.headers) nva.push_back(Nv(k, v));
  }
  nghttp2_data_provider prd{};
  prd.source.ptr = this;
  prd.read_callback = ReadH2Body;
  stream_ = nghttp2_submit_request(h2_, nullptr, nva.data(), nva.size(), grpc ? &prd : nullptr, this);
  if (stream_ < 0) Finish(false, 0, std::string("HTTP/2: ") + nghttp2_strerror(stream_));
}

ssize_t ProbeSession::ReadH2Body(nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags, nghttp2_data_source*, void* ud) {
  auto* p = static_cast<ProbeSession*>(ud);
  size_t n = std::min(len, p->body_.size() - p->bodyOff_);
  memcpy(buf, p->body_.data() + p->bodyOff_, n);
  p->bodyOff_ += n;
  if (p->bodyOff_ == p->body_.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int ProbeSession::OnH2Header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t nlen, const uint8_t* value, size_t vlen, uint8_t, void* ud) {
  auto* p = static_cast<ProbeSession*>(ud);
  if (f->hd.stream_id != p->stream_) return 0;
  std::string_view k(reinterpret_cast<const char*>(name), nlen), v(reinterpret_cast<const char*>(value), vlen);
  if (k == ":status") p->status_ = atoi(std::string(v).c_str());
  else if (k == "grpc-status") p->grpcStatus_ = atoi(std::string(v).c_str());
  return 0;
}

int ProbeSession::OnH2Data(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len, void* ud) {
  auto* p = static_cast<ProbeSession*>(ud);
  if (id == p->stream_ && p->in_.size() + len <= kMaxIn) p->in_.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int ProbeSession::OnH2Close(nghttp2_session*, int32_t id, uint32_t code, void* ud) {
  auto* p = static_cast<ProbeSession*>(ud);
  if (id != p->stream_ || p->done_) return 0;
  if (code != NGHTTP2_NO_ERROR && p->status_ == 0) {
    p->Finish(false, 0, std::string("upstream reset the health check stream (") + nghttp2_http2_strerror(code) + ")");
    return 0;
  }
  p->H2Done();
  return 0;
}

void ProbeSession::H2Done() {
  if (spec_.kind == ProbeSpec::Kind::kHttp) {
    bool ok = std::find(spec_.expectedStatuses.begin(), spec_.expectedStatuses.end(), static_cast<uint32_t>(status_)) != spec_.expectedStatuses.end();
    return Finish(ok, status_, ok ? "" : "HTTP status " + std::to_string(status_) + " is not an expected status");
  }
  if (status_ != 200) return Finish(false, status_, "gRPC health check answered HTTP status " + std::to_string(status_));
  if (grpcStatus_ != 0) return Finish(false, status_, "gRPC health check failed with grpc-status " + std::to_string(grpcStatus_));
  int serving = GrpcHealthStatus(in_);
  if (serving == 1) return Finish(true, status_, "");
  if (serving < 0) return Finish(false, status_, "gRPC health check answered a malformed HealthCheckResponse");
  return Finish(false, status_, std::string("gRPC health check status ") + (serving < 4 ? kGrpcNames[serving] : std::to_string(serving).c_str()));
}

void ProbeSession::OnIo(uint32_t /*events*/) {
  if (!done_) Pump();
}

bool ProbeSession::Pump() {
  // Layered transports (TLS) may need the opposite readiness: every event retries both directions.
  for (int round = 0; round < 64 && !done_; round++) {
    bool progress = false;
    if (h2_) {
      const uint8_t* d = nullptr;
      for (ssize_t n; (n = nghttp2_session_mem_send(h2_, &d)) > 0;) out_.append(reinterpret_cast<const char*>(d), static_cast<size_t>(n));
    }
    while (!out_.empty()) {
      ssize_t n = t_->Write(out_.data(), out_.size());
      if (n == -EAGAIN) break;
      if (n < 0) {
        Finish(false, status_, std::string("health check connection failed: ") + strerror(static_cast<int>(-n)));
        return false;
      }
      out_.erase(0, static_cast<size_t>(n));
      progress = true;
    }
    if (spec_.kind == ProbeSpec::Kind::kTcp && spec_.receive.empty() && out_.empty()) {
      Finish(true, 0, "");
      return false;
    }
    char* buf = loop()->scratch();
    ssize_t n = t_->Read(buf, Loop::kScratchSize);
    if (n > 0) {
      Received(buf, static_cast<size_t>(n));
      progress = true;
    } else if (n == 0 || (n < 0 && n != -EAGAIN)) {
      if (done_) return false;
      if (h2_ && status_ != 0 && spec_.kind == ProbeSpec::Kind::kHttp) {
        H2Done();
        return false;
      }
      std::string why = n == 0 ? "upstream closed the health check connection" : std::string("health check connection failed: ") + strerror(static_cast<int>(-n));
      if (spec_.kind == ProbeSpec::Kind::kTcp) why += " before the expected bytes arrived";
      Finish(false, status_, why);
      return false;
    }
    if (!progress) break;
  }
  return !done_;
}

void ProbeSession::Received(const char* data, size_t n) {
  if (h2_) {
    ssize_t rv = nghttp2_session_mem_recv(h2_, reinterpret_cast<const uint8_t*>(data), n);
    if (rv < 0 && !done_) Finish(false, status_, std::string("upstream sent invalid HTTP/2: ") + nghttp2_strerror(static_cast<int>(rv)));
    return;
  }
  if (in_.size() + n > kMaxIn) in_.erase(0, in_.size() + n - kMaxIn);
  in_.append(data, n);
  if (spec_.kind == ProbeSpec::Kind::kTcp) {
    // Each block must be found, in order, not necessarily adjacent (Envoy's fuzzy match).
    while (matched_ < spec_.receive.size()) {
      size_t at = in_.find(spec_.receive[matched_]);
      if (at == std::string::npos) return;
      in_.erase(0, at + spec_.receive[matched_].size());
      matched_++;
    }
    return Finish(true, 0, "");
  }
  size_t eol = in_.find("\r\n");
  if (eol == std::string::npos) {
    if (in_.size() > 8192) Finish(false, 0, "upstream sent no HTTP status line");
    return;
  }
  // "HTTP/1.1 200 OK"
  if (eol < 12 || in_.compare(0, 7, "HTTP/1.") != 0 || in_[8] != ' ') return Finish(false, 0, "upstream sent an invalid HTTP status line");
  int status = atoi(in_.substr(9, 3).c_str());
  bool ok = std::find(spec_.expectedStatuses.begin(), spec_.expectedStatuses.end(), static_cast<uint32_t>(status)) != spec_.expectedStatuses.end();
  Finish(ok, status, ok ? "" : "HTTP status " + std::to_string(status) + " is not an expected status");
}

void ProbeSession::Finish(bool ok, int status, const std::string& reason) {
  if (done_) return;
  done_ = true;
  connector_.Cancel();
  if (t_) {
    t_->Reset();
    t_.reset();  // closing the socket also removes it from epoll
  }
  loop()->Emit(Event("probe-result", id())
                   .Str("service", spec_.service)
                   .Str("endpoint", spec_.endpoint)
                   .Num("token", spec_.token)
                   .Num("ok", ok ? 1 : 0)
                   .Num("status", status)
                   .Str("reason", reason));
  loop()->Retire(this);
}

}  // namespace mx::engine
