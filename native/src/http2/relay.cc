// HTTP/2 stream relay over nghttp2 (see relay.h for the model).
#include "relay.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "../engine/access_log.h"
#include "../engine/histogram.h"
#include "../http_common.h"
#include "nv.h"

namespace mx::h2 {

namespace {

/** A FIFO of bytes read from the front; compacts lazily so appends stay amortised O(1). */
class ByteQueue {
 public:
  void Append(const uint8_t* p, size_t n) { buf_.append(reinterpret_cast<const char*>(p), n); }
  void Append(const std::string& s) { buf_.append(s); }
  size_t Size() const { return buf_.size() - off_; }
  size_t Take(uint8_t* dst, size_t max) {
    size_t n = std::min(max, Size());
    std::memcpy(dst, buf_.data() + off_, n);
    off_ += n;
    if (off_ == buf_.size()) {
      buf_.clear();
      off_ = 0;
    } else if (off_ > 65536 && off_ * 2 > buf_.size()) {
      buf_.erase(0, off_);
      off_ = 0;
    }
    return n;
  }
  void Clear() {
    buf_.clear();
    off_ = 0;
  }

 private:
  std::string buf_;
  size_t off_ = 0;
};

using http::ConnectionSpecific;
using http::IEquals;

/** gRPC's grpc-message encoding: percent-encode '%' and bytes outside printable ASCII. */
std::string GrpcMessage(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char b : text) {
    if (b >= 0x20 && b <= 0x7e && b != 0x25) {
      out.push_back(static_cast<char>(b));
    } else {
      out.push_back('%');
      out.push_back(hex[b >> 4]);
      out.push_back(hex[b & 15]);
    }
  }
  return out;
}

/** Whether the request's method may be sent again (as the HTTP/1 session decides). */
bool Idempotent(const Headers& req) {
  for (const auto& [k, v] : req)
    if (k == ":method") return http::IdempotentMethod(v);
  return false;
}

Headers FilterTrailers(const Headers& in) {
  Headers out;
  for (const auto& [k, v] : in) {
    if (!k.empty() && k[0] == ':') continue;
    if (ConnectionSpecific(k) || (k == "te" && !IEquals(v, "trailers"))) continue;
    out.emplace_back(k, v);
  }
  return out;
}


}  // namespace

namespace {
// Header and trailer fields a peer may send on one stream (HPACK-decoded size as RFC 7541 counts it, each
// block up to what HTTP/1 accepts for a head): nghttp2 does not enforce the limit it advertises, and a small
// frame of indexed fields can decode to megabytes.
constexpr size_t kMaxFieldBytes = 2 * 64 * 1024;
constexpr uint32_t kMaxHeaderList = 64 * 1024;
constexpr size_t FieldSize(size_t namelen, size_t valuelen) { return namelen + valuelen + 32; }
}  // namespace

struct Relay::Stream {
  int32_t id = 0;
  Headers req;
  bool req_done = false;  // request header block complete
  bool req_end = false;   // client sent END_STREAM
  size_t req_field_bytes = 0;   // request headers and trailers so far
  size_t resp_field_bytes = 0;  // response headers and trailers so far
  Headers req_trailers;
  ByteQueue req_body;
  bool req_sent_any = false;  // some request body went upstream: no longer safe to replay
  bool replayed = false;      // already sent again after its connection was lost

  Upstream* conn = nullptr;  // connection the request went to (kept while response bytes are owed to it)
  int32_t up_id = -1;
  bool up_active = false;  // counts against the connection's concurrency
  bool up_opened = false;  // HEADERS left (nghttp2 allows frames on the stream from then on)
  bool up_deferred = false;
  bool waiting = false;
  uint32_t group = 0;  // RelayHost::Route: only upstream connections of this group carry it
  int64_t begun = 0;   // host NowMs when its HEADERS began (the header deadline runs until req_done)
  int64_t start_us = 0;  // engine::MonoUs() then: the origin of its request time
  uint64_t req_bytes = 0, resp_bytes = 0;  // body bytes from and to the client (access log)
  uint32_t log_flags = 0;  // engine::LogFlag bits
  uint32_t last_up = 0;    // the upstream connection that last carried it
  std::string failure;     // why an upstream failure answered it locally

  Headers resp;
  bool resp_done = false;
  bool resp_submitted = false;
  bool resp_end = false;
  Headers resp_trailers;
  ByteQueue resp_body;
  bool down_deferred = false;
  bool down_closed = false;

  // Retries (limits.retry): the request body already sent on the attempt under way is kept in req_kept while
  // held, so another attempt can send it again; replay_off is how much of it the current attempt has resent.
  bool held = false;
  std::string req_kept;
  size_t replay_off = 0;
  uint32_t attempt = 0;          // retries made
  std::vector<uint32_t> tried;   // groups of the attempts made
  int64_t retry_at = 0;          // when its back-off ends (0: none)
  int64_t try_deadline = 0;      // per-try timeout of the attempt under way (0: not running)

  StreamLimits limits;          // from its plan, at admission
  std::shared_ptr<const engine::Plan> plan;  // RelayHost::StreamPlan at admission (its access log)
  int64_t deadline = 0;         // route timeout, once the request is complete (0: not running)
  int64_t stream_deadline = 0;  // max stream duration, once the request went upstream (0: not running)
  int64_t active_at = 0;        // last frame of the stream either way (with a stream idle timeout)
};

struct Relay::Upstream {
  uint32_t id = 0;
  nghttp2_session* sess = nullptr;
  std::string authority;
  std::string scheme = "http";
  uint32_t assumed = 0;  // concurrency assumed until SETTINGS arrive (0: the relay's)
  uint32_t group = 0;
  Relay* relay = nullptr;
  size_t active = 0;
  bool settings_seen = false;
  bool goaway = false;
  bool fatal = false;
  bool retired = false;  // no new streams: past its max connection duration
  std::unordered_set<Stream*> refs;  // streams whose conn == this

  ~Upstream() {
    if (sess) nghttp2_session_del(sess);
  }
  bool HasRoom(uint32_t assumed) const {
    if (goaway || fatal || retired || !nghttp2_session_check_request_allowed(sess)) return false;
    // Before the peer's SETTINGS, nghttp2 would report "unlimited"; assume what the previous connection said.
    uint32_t limit = settings_seen ? nghttp2_session_get_remote_settings(sess, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) : assumed;
    return active < limit;
  }
  uint32_t Assumed(uint32_t relayWide) const { return this->assumed != 0 ? this->assumed : relayWide;
  }
};

Relay::SessionSetup::~SessionSetup() {
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
}

// nghttp2 copies callbacks and options into each session, so one immutable set per side serves every
// connection on every thread (built once, on first use).
Relay::SessionSetup::SessionSetup(void (*fill)(nghttp2_session_callbacks*)) {
  if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0) return;
  fill(cb);
  nghttp2_option_set_no_auto_window_update(opt, 1);
}

const Relay::SessionSetup& Relay::ClientSide() {
  static const SessionSetup setup([](nghttp2_session_callbacks* cb) {
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, OnBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(cb, OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, OnFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, OnDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, OnStreamClose);
  });
  return setup;
}

const Relay::SessionSetup& Relay::UpstreamSide() {
  static const SessionSetup setup([](nghttp2_session_callbacks* cb) {
    nghttp2_session_callbacks_set_on_header_callback(cb, UpOnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, UpOnFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, UpOnDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, UpOnStreamClose);
    nghttp2_session_callbacks_set_before_frame_send_callback(cb, UpBeforeFrameSend);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, UpOnFrameNotSend);
  });
  return setup;
}

Relay::Relay(RelayHost& host, const RelayOptions& opts) : host_(host), opts_(opts) {
  const SessionSetup& setup = ClientSide();
  int rv = setup.cb && setup.opt ? nghttp2_session_server_new2(&down_, setup.cb, this, setup.opt) : NGHTTP2_ERR_NOMEM;
  if (rv != 0) {
    down_ = nullptr;
    fatal_ = true;
    return;
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, opts_.max_client_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, opts_.stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxHeaderList},
  };
  nghttp2_submit_settings(down_, NGHTTP2_FLAG_NONE, iv, 3);
  if (opts_.connection_window > 65535) nghttp2_session_set_local_window_size(down_, NGHTTP2_FLAG_NONE, 0, static_cast<int32_t>(opts_.connection_window));
}

Relay::~Relay() {
  // Upstream sessions go first: deleting a session runs no callbacks, so streams need no detaching.
  ups_.clear();
  if (down_) nghttp2_session_del(down_);
}

// ---------------------------------------------------------------------------------------------------
// Client side (server session)

int Relay::OnBeginHeaders(nghttp2_session* sess, const nghttp2_frame* f, void* ud) {
  auto* r = static_cast<Relay*>(ud);
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto s = std::make_unique<Stream>();
  s->id = f->hd.stream_id;
  s->begun = r->host_.NowMs();
  s->start_us = engine::MonoUs();
  nghttp2_session_set_stream_user_data(sess, s->id, s.get());
  r->streams_[s->id] = std::move(s);
  return 0;
}

int Relay::OnHeader(nghttp2_session* sess, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
                    const uint8_t* value, size_t valuelen, uint8_t, void*) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(sess, f->hd.stream_id));
  if (!s) return 0;
  if ((s->req_field_bytes += FieldSize(namelen, valuelen)) > kMaxFieldBytes) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  auto& dst = s->req_done ? s->req_trailers : s->req;
  dst.emplace_back(std::string(reinterpret_cast<const char*>(name), namelen), std::string(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int Relay::OnFrameRecv(nghttp2_session* sess, const nghttp2_frame* f, void* ud) {
  auto* r = static_cast<Relay*>(ud);
  if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(sess, f->hd.stream_id));
  if (!s) return 0;
  bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (f->hd.type == NGHTTP2_HEADERS && !s->req_done) {
    s->req_done = true;
    s->req_end = end;
    LocalAnswer answer;
    std::string_view method, path;
    for (const auto& [k, v] : s->req) {
      if (k == ":method") method = v;
      else if (k == ":path") path = v;
    }
    bool admitted = r->host_.Admit(&answer, method, path);
    s->plan = r->host_.StreamPlan();
    if (!admitted) {
      r->Answer(s, answer);
      return 0;
    }
    s->group = r->host_.Route();
    s->limits = r->host_.Limits();
    const engine::PlanRetry* rp = s->limits.retry.get();
    s->held = rp != nullptr && rp->enabled() && rp->Eligible(method, [s](std::string_view name) -> std::optional<std::string_view> {
                for (const auto& [k, v] : s->req)
                  if (k == name) return std::string_view(v);
                return std::nullopt;
              });
    if (s->limits.streamIdleMs > 0) {
      r->Touch(s);
      r->host_.ArmTimer(s->limits.streamIdleMs);
    }
    if (end) r->StartRequestTimer(s);
    s->waiting = true;
    r->waiting_.push_back(s);
    r->Dispatch();
    return 0;
  }
  r->Touch(s);
  if (end) {
    s->req_end = true;
    r->StartRequestTimer(s);
    r->ResumeUpstreamData(s);
  }
  return 0;
}

int Relay::OnDataChunk(nghttp2_session* sess, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* ud) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(sess, stream_id));
  // Nobody will forward these bytes (stream gone, answered locally, or the upstream already finished it):
  // acknowledge them now so the client's windows do not shrink for good.
  if (!s || (!s->up_active && !s->waiting && s->retry_at == 0)) {
    nghttp2_session_consume(sess, stream_id, len);
    return 0;
  }
  s->req_body.Append(data, len);
  s->req_bytes += len;
  static_cast<Relay*>(ud)->Touch(s);
  static_cast<Relay*>(ud)->ResumeUpstreamData(s);
  return 0;
}

int Relay::OnStreamClose(nghttp2_session* sess, int32_t stream_id, uint32_t code, void* ud) {
  auto* r = static_cast<Relay*>(ud);
  auto it = r->streams_.find(stream_id);
  if (it == r->streams_.end()) return 0;
  Stream* s = it->second.get();
  s->down_closed = true;
  if (code != NGHTTP2_NO_ERROR && !s->log_flags) s->log_flags |= engine::kFlagDownstreamConnectionTermination;
  r->ReportEnd(s);
  if (s->waiting) {
    r->waiting_.erase(std::remove(r->waiting_.begin(), r->waiting_.end(), s), r->waiting_.end());
    s->waiting = false;
  }
  r->ReleaseRequestBody(s);
  r->ReleaseResponseBody(s);
  if (s->conn) r->Detach(s);
  nghttp2_session_set_stream_user_data(sess, stream_id, nullptr);
  r->streams_.erase(it);
  return 0;
}

void Relay::ReportEnd(Stream* s) {
  StreamEnd end;
  end.req = &s->req;
  end.resp = &s->resp;
  end.reqBytes = s->req_bytes;
  end.respBytes = s->resp_bytes;
  end.startUs = s->start_us;
  end.flags = s->log_flags;
  end.upstream = s->last_up;
  end.failure = &s->failure;
  end.plan = s->plan.get();
  host_.StreamClosed(end);
}

ssize_t Relay::ReadResponse(nghttp2_session* sess, int32_t stream_id, uint8_t* buf, size_t len, uint32_t* flags,
                            nghttp2_data_source*, void*) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(sess, stream_id));
  if (!s) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t n = s->resp_body.Take(buf, len);
  s->resp_bytes += n;
  if (n > 0 && s->conn) {
    // The client took these bytes: now the upstream may send more.
    nghttp2_session_consume(s->conn->sess, s->up_id, n);
  }
  bool ended = s->resp_body.Size() == 0 && s->resp_end;
  return DataReadResult(sess, stream_id, n, ended, ended ? FilterTrailers(s->resp_trailers) : Headers(), flags, &s->down_deferred);
}

bool Relay::RecvClient(const uint8_t* data, size_t len) {
  if (fatal_ || !down_) return false;
  ssize_t rv = nghttp2_session_mem_recv(down_, data, len);
  if (rv < 0) {
    fatal_ = true;
    return false;
  }
  return true;
}

bool Relay::SendClient(std::string& out, size_t limit) {
  if (!down_) return false;
  while (out.size() < limit) {
    const uint8_t* p = nullptr;
    ssize_t n = nghttp2_session_mem_send(down_, &p);
    if (n < 0) {
      fatal_ = true;
      return false;
    }
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }
  return true;
}

bool Relay::ClientAlive() const {
  if (!down_ || fatal_) return false;
  return nghttp2_session_want_read(down_) || nghttp2_session_want_write(down_);
}

void Relay::ClientLost() {
  // Cancel every upstream stream; the client streams vanish with the session, which runs no close callback:
  // each open one is reported here, as ended by the client's connection (Envoy's DC).
  for (auto& [id, s] : streams_) {
    if (!s->down_closed) {
      s->down_closed = true;
      s->log_flags |= engine::kFlagDownstreamConnectionTermination;
      ReportEnd(s.get());
    }
    s->waiting = false;
    if (s->conn) Detach(s.get());
  }
  waiting_.clear();
  fatal_ = true;
}

void Relay::Drain() {
  if (!down_ || fatal_) return;
  nghttp2_submit_goaway(down_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(down_), NGHTTP2_NO_ERROR, nullptr, 0);
}

// ---------------------------------------------------------------------------------------------------
// Upstream side (client sessions)

uint32_t Relay::AttachUpstream(const std::string& authority, const std::string& scheme, uint32_t assumedStreams, uint32_t group) {
  Answered(group);
  auto u = std::make_unique<Upstream>();
  u->id = next_up_id_++;
  u->group = group;
  u->authority = authority;
  u->scheme = scheme;
  u->assumed = assumedStreams;
  u->relay = this;
  const SessionSetup& setup = UpstreamSide();
  int rv = setup.cb && setup.opt ? nghttp2_session_client_new2(&u->sess, setup.cb, u.get(), setup.opt) : NGHTTP2_ERR_NOMEM;
  uint32_t id = u->id;
  if (rv != 0) {
    u->sess = nullptr;
    UpstreamUnavailable("cannot create an HTTP/2 session", group);
    return 0;
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, opts_.stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxHeaderList},
  };
  nghttp2_submit_settings(u->sess, NGHTTP2_FLAG_NONE, iv, 3);
  if (opts_.connection_window > 65535) nghttp2_session_set_local_window_size(u->sess, NGHTTP2_FLAG_NONE, 0, static_cast<int32_t>(opts_.connection_window));
  ups_[id] = std::move(u);
  Dispatch();
  return id;
}

void Relay::UpstreamDeleter::operator()(Upstream* u) const { delete u; }

Relay::UpstreamHandle Relay::ReleaseIdleUpstream(uint32_t id) {
  auto it = ups_.find(id);
  if (it == ups_.end()) return nullptr;
  Upstream* u = it->second.get();
  if (u->active != 0 || !u->refs.empty() || u->goaway || u->fatal || u->retired || !u->settings_seen || !nghttp2_session_check_request_allowed(u->sess) ||
      !nghttp2_session_want_read(u->sess)) {
    return nullptr;
  }
  UpstreamHandle h(it->second.release());
  ups_.erase(it);
  h->relay = nullptr;
  return h;
}

uint32_t Relay::AdoptUpstream(UpstreamHandle h, uint32_t group) {
  Answered(group);
  Upstream* u = h.release();
  u->id = next_up_id_++;
  u->group = group;
  u->relay = this;
  ups_[u->id] = std::unique_ptr<Upstream>(u);
  return u->id;
}

void Relay::UpstreamUnavailable(const std::string& reason, uint32_t group, bool overloaded) {
  Answered(group);
  std::deque<Stream*> failed;
  std::deque<Stream*> keep;
  for (Stream* s : waiting_) (s->group == group ? failed : keep).push_back(s);
  waiting_.swap(keep);
  bool again = false;
  for (Stream* s : failed) {
    s->waiting = false;
    if (s->limits.retry && !overloaded && RetryStream(s, s->limits.retry->RetryReset(true, false), true)) {
      again = again || s->waiting;
      continue;
    }
    // Refused by the plan's own limits: an overflow (UO), not a failure of the endpoint (UF).
    s->log_flags |= overloaded ? engine::kFlagUpstreamOverflow : engine::kFlagUpstreamConnectFailure;
    s->failure = reason;
    LocalAnswer a;
    a.message = "upstream unavailable: " + reason;
    a.overloaded = overloaded;
    Answer(s, a);
  }
  if (again) Dispatch();
}

void Relay::Answered(uint32_t group) { requested_.erase(std::remove(requested_.begin(), requested_.end(), group), requested_.end()); }

int64_t Relay::OldestOpenHeaders() const {
  int64_t oldest = 0;
  for (const auto& [id, s] : streams_)
    if (!s->req_done && s->begun > 0 && (oldest == 0 || s->begun < oldest)) oldest = s->begun;
  return oldest;
}

size_t Relay::BufferedBytes() const {
  size_t n = 0;
  for (const auto& [id, s] : streams_) n += s->req_body.Size() + s->resp_body.Size();
  return n;
}

bool Relay::RecvUpstream(uint32_t id, const uint8_t* data, size_t len) {
  auto it = ups_.find(id);
  if (it == ups_.end()) return false;
  ssize_t rv = nghttp2_session_mem_recv(it->second->sess, data, len);
  if (rv < 0) {
    it->second->fatal = true;
    return false;
  }
  return true;
}

bool Relay::SendUpstream(uint32_t id, std::string& out, size_t limit) {
  auto it = ups_.find(id);
  if (it == ups_.end()) return false;
  while (out.size() < limit) {
    const uint8_t* p = nullptr;
    ssize_t n = nghttp2_session_mem_send(it->second->sess, &p);
    if (n < 0) {
      it->second->fatal = true;
      return false;
    }
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }
  return true;
}

bool Relay::UpstreamAlive(uint32_t id) const {
  auto it = ups_.find(id);
  if (it == ups_.end()) return false;
  const Upstream& u = *it->second;
  if (u.fatal) return false;
  if (u.retired && u.active == 0 && u.refs.empty() && !nghttp2_session_want_write(u.sess)) return false;
  return nghttp2_session_want_read(u.sess) || nghttp2_session_want_write(u.sess);
}

void Relay::RetireUpstream(uint32_t id) {
  auto it = ups_.find(id);
  if (it != ups_.end()) it->second->retired = true;
  Dispatch();  // waiting streams go to another connection, or ask for one
}

std::vector<uint32_t> Relay::UpstreamIds() const {
  std::vector<uint32_t> ids;
  ids.reserve(ups_.size());
  for (const auto& [id, u] : ups_) ids.push_back(id);
  return ids;
}

void Relay::UpstreamLost(uint32_t id, const std::string& reason) {
  auto it = ups_.find(id);
  if (it == ups_.end()) return;
  Upstream* u = it->second.get();
  u->fatal = true;
  std::vector<Stream*> refs(u->refs.begin(), u->refs.end());
  for (Stream* s : refs) {
    bool active = s->up_active;
    // A finished response still being written to the client keeps its bytes; only its window
    // accounting on this connection ends here.
    if (active) ReleaseResponseBody(s);
    s->conn = nullptr;
    s->up_active = false;
    u->refs.erase(s);
    if (!active) continue;
    if (!s->resp_done && !s->req_sent_any && !s->replayed && !s->down_closed && Idempotent(s->req)) {
      // The connection died (typically an idle one the upstream had just closed) before any answer: send an
      // idempotent request once more on another connection, as the HTTP/1.1 path does.
      s->replayed = true;
      host_.CountRetry();
      s->up_id = -1;
      s->up_opened = false;
      s->waiting = true;
      waiting_.push_front(s);
      continue;
    }
    if (!s->resp_done) host_.UpstreamFailure(id, reason);
    if (!s->resp_submitted && s->limits.retry && RetryStream(s, s->limits.retry->RetryReset(false, false), false)) continue;
    UpstreamFailedStream(s, NGHTTP2_INTERNAL_ERROR, reason);
  }
  ups_.erase(it);
  Dispatch();
}

int Relay::UpOnHeader(nghttp2_session* sess, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
                      const uint8_t* value, size_t valuelen, uint8_t, void*) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(sess, f->hd.stream_id));
  if (!s) return 0;
  if ((s->resp_field_bytes += FieldSize(namelen, valuelen)) > kMaxFieldBytes) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  auto& dst = s->resp_done ? s->resp_trailers : s->resp;
  dst.emplace_back(std::string(reinterpret_cast<const char*>(name), namelen), std::string(reinterpret_cast<const char*>(value), valuelen));
  return 0;
}

int Relay::UpOnFrameRecv(nghttp2_session* sess, const nghttp2_frame* f, void* ud) {
  auto* u = static_cast<Upstream*>(ud);
  Relay* r = u->relay;
  if (f->hd.type == NGHTTP2_GOAWAY) {
    // Streams above last_stream_id are closed by nghttp2 with REFUSED_STREAM (and replayed); the rest finish.
    u->goaway = true;
    r->Dispatch();
    return 0;
  }
  if (f->hd.type == NGHTTP2_SETTINGS) {
    if ((f->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
      u->settings_seen = true;
      // A connection that said what it can take beforehand (a bridge) does not speak for the others.
      if (u->assumed == 0) r->assumed_limit_ = std::max<uint32_t>(1, std::min<uint32_t>(nghttp2_session_get_remote_settings(sess, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 1024));
    }
    r->Dispatch();  // the peer may have raised its concurrency limit
    return 0;
  }
  if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(sess, f->hd.stream_id));
  if (!s) return 0;
  bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  r->Touch(s);
  if (f->hd.type == NGHTTP2_HEADERS && !s->resp_done) {
    int status = 0;
    for (const auto& [k, v] : s->resp) {
      if (k == ":status") status = std::atoi(v.c_str());
    }
    if (status >= 100 && status < 200) {
      s->resp.clear();  // interim responses are not relayed; the final one follows
      return 0;
    }
    // Outlier detection sees every upstream answer, a retried one included (as Envoy's).
    if (s->conn) r->host_.UpstreamStatus(s->conn->id, status);
    if (const engine::PlanRetry* rp = s->limits.retry.get()) {
      // Nothing of this response went to the client yet: a status (or trailers-only grpc-status) the policy
      // retries sends the request again instead.
      int grpc = -1;
      bool limited = false;
      if (rp->ReadsHeaders())
        for (const auto& [k, v] : s->resp) {
          if (k == "grpc-status") grpc = std::atoi(v.c_str());
          else if (k == "x-envoy-ratelimited") limited = true;
        }
      if (rp->RetryStatus(status, grpc, limited)) {
        if (r->RetryStream(s, true, false)) {
          r->Dispatch();
          return 0;
        }
      } else if (s->attempt > 0) {
        r->host_.CountRetryOutcome(RetryOutcome::kSuccess);
      }
      // No retry once a response goes to the client: what was held for one is let go (unless a replay is
      // still sending it), so a long upload or a gRPC stream does not keep 64 KiB for nothing.
      if (s->replay_off == s->req_kept.size()) {
        s->held = false;
        std::string().swap(s->req_kept);
        s->replay_off = 0;
      }
    }
    s->resp_done = true;
    s->resp_end = end;
    r->host_.CountResponse(status);
    if (end) r->host_.CountRequestTime(engine::MonoUs() - s->start_us);
    r->SubmitResponse(s, end);
    return 0;
  }
  if (end) {
    s->resp_end = true;
    r->host_.CountRequestTime(engine::MonoUs() - s->start_us);
    r->ResumeClientData(s);
  }
  return 0;
}

int Relay::UpOnDataChunk(nghttp2_session* sess, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* ud) {
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(sess, stream_id));
  if (!s || s->down_closed) {
    nghttp2_session_consume(sess, stream_id, len);
    return 0;
  }
  s->resp_body.Append(data, len);
  static_cast<Upstream*>(ud)->relay->Touch(s);
  static_cast<Upstream*>(ud)->relay->ResumeClientData(s);
  return 0;
}

int Relay::UpOnStreamClose(nghttp2_session* sess, int32_t stream_id, uint32_t code, void* ud) {
  auto* u = static_cast<Upstream*>(ud);
  Relay* r = u->relay;
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(sess, stream_id));
  if (!s || s->conn != u || s->up_id != stream_id) {
    // A stream we already let go of; its slot is free now.
    return 0;
  }
  if (s->up_active) {
    s->up_active = false;
    u->active--;
  }
  if (code == NGHTTP2_NO_ERROR && s->resp_end) {
    // Normal end (END_STREAM seen; an RST_STREAM(NO_ERROR) before it is an abort like any other).
    // Response bytes still buffered are acknowledged to this connection as the client takes them.
    if (s->resp_body.Size() == 0) {
      s->conn = nullptr;
      u->refs.erase(s);
    }
    if (!s->req_end || s->req_body.Size() > 0) r->ReleaseRequestBody(s);
  } else {
    r->ReleaseResponseBody(s);
    s->conn = nullptr;
    u->refs.erase(s);
    if (code == NGHTTP2_REFUSED_STREAM && !s->resp_done && !s->req_sent_any && !s->down_closed) {
      // The upstream did not process it (GOAWAY or REFUSED_STREAM): safe to replay elsewhere.
      r->host_.CountRetry();
      s->up_id = -1;
      s->up_opened = false;
      s->waiting = true;
      r->waiting_.push_front(s);
    } else {
      // Outlier detection counts the failed attempt whether or not the policy retries it (as Envoy's).
      if (!s->resp_done) r->host_.UpstreamFailure(u->id, "upstream reset the stream (code " + std::to_string(code) + ")");
      if (s->resp_submitted || s->down_closed || !s->limits.retry ||
          !r->RetryStream(s, s->limits.retry->RetryReset(false, code == NGHTTP2_REFUSED_STREAM), false)) {
        r->UpstreamFailedStream(s, code == NGHTTP2_NO_ERROR ? static_cast<uint32_t>(NGHTTP2_INTERNAL_ERROR) : code, "upstream reset the stream (code " + std::to_string(code) + ")");
      }
    }
  }
  r->Dispatch();
  return 0;
}

int Relay::UpBeforeFrameSend(nghttp2_session* sess, const nghttp2_frame* f, void*) {
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(sess, f->hd.stream_id));
  if (!s) return NGHTTP2_ERR_CANCEL;  // the client gave up before the request left
  s->up_opened = true;
  return 0;
}

int Relay::UpOnFrameNotSend(nghttp2_session* sess, const nghttp2_frame* f, int, void* ud) {
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto* u = static_cast<Upstream*>(ud);
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(sess, f->hd.stream_id));
  if (!s || s->conn != u || s->up_id != f->hd.stream_id) return 0;
  // Never sent (typically: GOAWAY arrived first), so it is safe to replay.
  if (s->up_active) {
    s->up_active = false;
    u->active--;
  }
  s->conn = nullptr;
  u->refs.erase(s);
  s->up_id = -1;
  s->up_opened = false;
  if (!s->down_closed) {
    u->relay->host_.CountRetry();
    s->waiting = true;
    u->relay->waiting_.push_front(s);
  }
  u->relay->Dispatch();
  return 0;
}

ssize_t Relay::ReadRequest(nghttp2_session* sess, int32_t stream_id, uint8_t* buf, size_t len, uint32_t* flags,
                           nghttp2_data_source*, void* ud) {
  auto* u = static_cast<Upstream*>(ud);
  Relay* r = u->relay;
  auto* s = static_cast<Stream*>(nghttp2_session_get_stream_user_data(sess, stream_id));
  if (!s || s->conn != u) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t n = 0;
  if (s->replay_off < s->req_kept.size()) {
    // Another attempt: what the attempts before sent goes again first (acknowledged to the client already).
    n = std::min(len, s->req_kept.size() - s->replay_off);
    std::memcpy(buf, s->req_kept.data() + s->replay_off, n);
    s->replay_off += n;
  } else {
    n = s->req_body.Take(buf, len);
    if (n > 0) {
      if (s->held) {
        if (s->req_kept.size() + n > engine::PlanRetry::kBufferBytes) {
          // Too large to hold: streamed from here on, and never sent again.
          s->held = false;
          std::string().swap(s->req_kept);
          r->host_.CountRetryOutcome(RetryOutcome::kBufferOverflow);
        } else {
          s->req_kept.append(reinterpret_cast<const char*>(buf), n);
        }
        s->replay_off = s->req_kept.size();
      }
      s->req_sent_any = true;
      nghttp2_session_consume(r->down_, s->id, n);
    }
  }
  bool ended = s->replay_off == s->req_kept.size() && s->req_body.Size() == 0 && s->req_end;
  return DataReadResult(sess, stream_id, n, ended, ended ? FilterTrailers(s->req_trailers) : Headers(), flags, &s->up_deferred);
}

// ---------------------------------------------------------------------------------------------------
// Glue

void Relay::Dispatch() {
  // In arrival order, each stream to the least busy connection of its group with room; a group with none is
  // asked for once. Submit and NeedUpstream may re-enter (local replies, a synchronous attach) and change the
  // queue, so the walk starts over after either.
  for (bool again = true; again;) {
    again = false;
    for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
      Stream* s = *it;
      Upstream* best = nullptr;
      for (auto& [id, u] : ups_) {
        if (u->group == s->group && u->HasRoom(u->Assumed(assumed_limit_)) && (!best || u->active < best->active)) best = u.get();
      }
      if (best) {
        waiting_.erase(it);
        s->waiting = false;
        Submit(s, best);
        again = true;
        break;
      }
      if (std::find(requested_.begin(), requested_.end(), s->group) == requested_.end()) {
        requested_.push_back(s->group);
        host_.NeedUpstream(s->group);
        again = true;
        break;
      }
    }
  }
}

bool Relay::Submit(Stream* s, Upstream* u) {
  Headers h;
  h.reserve(s->req.size() + 1);
  std::string authority;
  const std::string* host = nullptr;
  for (const auto& [k, v] : s->req) {
    if (k == ":authority") authority = v;
    else if (k == "host") host = &v;
  }
  if (authority.empty() && host) authority = *host;
  if (!u->authority.empty()) authority = u->authority;
  bool have_authority = false;
  for (const auto& [k, v] : s->req) {
    if (k == ":scheme") {
      h.emplace_back(k, u->scheme);  // the upstream hop's own scheme, whatever the client's was
    } else if (k == ":authority") {
      h.emplace_back(k, authority);
      have_authority = true;
    } else if (!k.empty() && k[0] == ':') {
      h.emplace_back(k, v);
    }
  }
  if (!have_authority && !authority.empty()) h.emplace_back(":authority", authority);
  for (const auto& [k, v] : s->req) {
    if (k.empty() || k[0] == ':' || ConnectionSpecific(k)) continue;
    if (k == "te" && !IEquals(v, "trailers")) continue;
    h.emplace_back(k, v);
  }
  auto nv = ToNv(h);
  bool body = !(s->req_end && s->req_body.Size() == 0 && s->req_kept.empty() && s->req_trailers.empty());
  s->replay_off = 0;
  nghttp2_data_provider prd;
  prd.source.ptr = s;
  prd.read_callback = ReadRequest;
  int32_t id = nghttp2_submit_request(u->sess, nullptr, nv.data(), nv.size(), body ? &prd : nullptr, s);
  if (id < 0) {
    LocalReply(s, std::string("upstream unavailable: ") + nghttp2_strerror(id));
    return false;
  }
  s->conn = u;
  s->up_id = id;
  // Each upstream stream (a replay is a new one) gets the whole max stream duration, as Envoy's per upstream request.
  s->stream_deadline = s->limits.maxStreamMs > 0 ? host_.ArmTimer(s->limits.maxStreamMs) : 0;
  s->up_active = true;
  s->last_up = u->id;
  s->up_opened = false;
  s->up_deferred = false;
  u->active++;
  u->refs.insert(s);
  s->try_deadline = 0;
  StartTry(s);
  return true;
}

void Relay::Detach(Stream* s) {
  Upstream* u = s->conn;
  if (!u) return;
  if (s->up_active) {
    s->up_active = false;
    u->active--;
    if (s->up_opened) nghttp2_submit_rst_stream(u->sess, NGHTTP2_FLAG_NONE, s->up_id, NGHTTP2_CANCEL);
  }
  ReleaseResponseBody(s);
  nghttp2_session_set_stream_user_data(u->sess, s->up_id, nullptr);
  u->refs.erase(s);
  s->conn = nullptr;
}

void Relay::UpstreamFailedStream(Stream* s, uint32_t code, const std::string& why) {
  if (s->down_closed) return;
  s->log_flags |= engine::kFlagUpstreamConnectionTermination;
  if (!s->resp_submitted) {
    LocalReply(s, why);
    return;
  }
  nghttp2_submit_rst_stream(down_, NGHTTP2_FLAG_NONE, s->id, code);
}

void Relay::Touch(Stream* s) {
  if (s->limits.streamIdleMs > 0) s->active_at = host_.NowMs();
}

void Relay::StartRequestTimer(Stream* s) {
  if (s->conn) StartTry(s);
  if (s->limits.requestMs <= 0 || s->deadline != 0 || s->resp_end) return;
  s->deadline = host_.ArmTimer(s->limits.requestMs);
}

void Relay::StartTry(Stream* s) {
  const engine::PlanRetry* rp = s->limits.retry.get();
  if (rp == nullptr || rp->perTryMs <= 0 || s->try_deadline != 0 || !s->req_end || s->resp_end) return;
  s->try_deadline = host_.ArmTimer(rp->perTryMs);
}

bool Relay::RetryStream(Stream* s, bool retriable, bool connectFailed) {
  const engine::PlanRetry* rp = s->limits.retry.get();
  if (!retriable || rp == nullptr || !rp->enabled() || s->resp_submitted || s->down_closed) return false;
  // A request no upstream received is safe to send whatever its method while all of it is still here; one that
  // went out is sent again only when it is held whole.
  bool may = connectFailed ? (s->held || !s->req_sent_any) : (s->held && s->req_end);
  if (!may) return false;
  if (s->attempt >= rp->numRetries) {
    host_.CountRetryOutcome(RetryOutcome::kLimitExceeded);
    s->log_flags |= engine::kFlagUpstreamRetryLimitExceeded;
    return false;
  }
  if (s->waiting) {
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), s), waiting_.end());
    s->waiting = false;
  }
  if (s->conn) Detach(s);
  s->resp.clear();
  s->resp_trailers.clear();
  s->resp_body.Clear();
  s->resp_done = s->resp_end = false;
  s->resp_field_bytes = 0;
  if (std::find(s->tried.begin(), s->tried.end(), s->group) == s->tried.end()) s->tried.push_back(s->group);
  s->attempt++;
  host_.CountRetry();
  s->up_id = -1;
  s->up_opened = false;
  s->stream_deadline = s->try_deadline = 0;
  s->retry_at = host_.ArmTimer(rp->BackOffMs(s->attempt));
  if (s->retry_at == 0) {
    // A host without timers (RelayHost's default): the next attempt waits for a connection at once.
    s->group = host_.Reroute(s->tried);
    s->waiting = true;
    waiting_.push_back(s);
  }
  return true;
}

bool Relay::CutFromUpstream(Stream* s) {
  if (s->waiting) {
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), s), waiting_.end());
    s->waiting = false;
  }
  if (s->conn) Detach(s);
  if (!s->resp_submitted) return false;
  // Part of the response went out: the client must not take it for a whole one.
  nghttp2_submit_rst_stream(down_, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
  return true;
}

void Relay::TryTimeOut(Stream* s) {
  s->try_deadline = 0;
  host_.CountRetryOutcome(RetryOutcome::kPerTryTimeout);
  if (!s->resp_submitted && RetryStream(s, s->limits.retry->RetryReset(false, false), false)) return;
  s->log_flags |= engine::kFlagUpstreamRequestTimeout;
  if (CutFromUpstream(s)) return;
  s->deadline = s->stream_deadline = s->active_at = 0;
  LocalAnswer a;
  a.status = 504;
  a.grpcStatus = 4;  // DEADLINE_EXCEEDED
  a.message = "upstream per-try timeout";
  Answer(s, a);
}

int64_t Relay::ExpireRequests(int64_t nowMs) {
  int64_t next = 0;
  std::vector<std::pair<Stream*, Expiry>> due;
  std::vector<Stream*> resend;
  std::vector<Stream*> tryDue;
  for (auto& [id, s] : streams_) {
    int64_t idleAt = s->active_at != 0 ? s->active_at + s->limits.streamIdleMs : 0;
    if (s->deadline == 0 && s->stream_deadline == 0 && idleAt == 0 && s->retry_at == 0 && s->try_deadline == 0) continue;
    if (s->resp_end || s->down_closed) {
      // The response is complete (every limit ends with the upstream's END_STREAM).
      s->deadline = s->stream_deadline = s->active_at = s->retry_at = s->try_deadline = 0;
      continue;
    }
    if (s->deadline != 0 && s->deadline <= nowMs) {
      due.emplace_back(s.get(), Expiry::kRequestTimeout);
    } else if (s->stream_deadline != 0 && s->stream_deadline <= nowMs) {
      due.emplace_back(s.get(), Expiry::kMaxStreamDuration);
    } else if (idleAt != 0 && idleAt <= nowMs) {
      due.emplace_back(s.get(), Expiry::kStreamIdle);
    } else if (s->retry_at != 0 && s->retry_at <= nowMs) {
      resend.push_back(s.get());
    } else if (s->try_deadline != 0 && s->try_deadline <= nowMs) {
      tryDue.push_back(s.get());
    } else {
      for (int64_t d : {s->deadline, s->stream_deadline, idleAt, s->retry_at, s->try_deadline})
        if (d != 0 && (next == 0 || d < next)) next = d;
    }
  }
  for (auto [s, why] : due) {
    s->retry_at = s->try_deadline = 0;
    TimeOut(s, why);
  }
  for (Stream* s : tryDue) TryTimeOut(s);
  for (Stream* s : resend) {
    // The back-off is over: the next attempt goes to another endpoint where there is one.
    s->retry_at = 0;
    s->group = host_.Reroute(s->tried);
    s->waiting = true;
    waiting_.push_back(s);
  }
  for (auto& [id, s] : streams_)
    for (int64_t d : {s->retry_at, s->try_deadline})
      if (d != 0 && (next == 0 || d < next)) next = d;
  if (!due.empty() || !resend.empty() || !tryDue.empty()) Dispatch();
  return next;
}

void Relay::TimeOut(Stream* s, Expiry why) {
  s->deadline = s->stream_deadline = s->active_at = 0;
  host_.CountExpiry(why);
  s->log_flags |= why == Expiry::kRequestTimeout ? engine::kFlagUpstreamRequestTimeout : why == Expiry::kStreamIdle ? engine::kFlagStreamIdleTimeout : engine::kFlagUpstreamMaxStreamDuration;
  if (CutFromUpstream(s)) return;
  LocalAnswer a;
  a.grpcStatus = 4;  // DEADLINE_EXCEEDED
  if (why == Expiry::kRequestTimeout) {
    a.status = 504;
    a.message = "upstream request timeout";
  } else if (why == Expiry::kStreamIdle) {
    a.status = 408;  // as Envoy's stream idle timeout
    a.message = "stream timeout";
  } else {
    // As Envoy: 504 once the whole request was received, 408 while it was still arriving.
    a.status = s->req_end ? 504 : 408;
    a.message = "upstream max stream duration reached";
  }
  Answer(s, a);
}

void Relay::LocalReply(Stream* s, const std::string& reason) {
  LocalAnswer a;
  a.message = reason;
  Answer(s, a);
}

void Relay::Answer(Stream* s, const LocalAnswer& a) {
  if (s->down_closed || s->resp_submitted) return;
  ReleaseRequestBody(s);
  s->resp.clear();
  s->resp_trailers.clear();
  s->resp_body.Clear();
  if (a.counted) host_.CountResponse(a.status);
  s->log_flags |= a.flags | (a.overloaded ? engine::kFlagUpstreamOverflow : 0u);
  s->resp_end = true;
  if (opts_.grpc) {
    s->resp = {{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", std::to_string(a.grpcStatus)}, {"grpc-message", GrpcMessage(a.message)}};
    SubmitResponse(s, true);
  } else {
    s->resp = {{":status", std::to_string(a.status)}, {"content-type", "text/plain; charset=utf-8"}};
    if (a.overloaded) s->resp.emplace_back("x-envoy-overloaded", "true");
    s->resp_body.Append(a.message + "\n");
    SubmitResponse(s, false);
  }
}

void Relay::SubmitResponse(Stream* s, bool end) {
  if (s->down_closed) return;
  Headers h;
  h.reserve(s->resp.size());
  for (const auto& [k, v] : s->resp) {
    if (k.empty()) continue;
    if (k[0] != ':' && (ConnectionSpecific(k) || (k == "te" && !IEquals(v, "trailers")))) continue;
    if (k[0] == ':' && k != ":status") continue;
    h.emplace_back(k, v);
  }
  auto nv = ToNv(h);
  nghttp2_data_provider prd;
  prd.source.ptr = s;
  prd.read_callback = ReadResponse;
  s->resp_submitted = true;
  if (nghttp2_submit_response(down_, s->id, nv.data(), nv.size(), end ? nullptr : &prd) != 0) {
    nghttp2_submit_rst_stream(down_, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
  }
}

void Relay::ResumeClientData(Stream* s) {
  if (s->down_deferred && !s->down_closed) {
    s->down_deferred = false;
    nghttp2_session_resume_data(down_, s->id);
  }
}

void Relay::ResumeUpstreamData(Stream* s) {
  if (s->up_deferred && s->conn && s->up_active) {
    s->up_deferred = false;
    nghttp2_session_resume_data(s->conn->sess, s->up_id);
  }
}

void Relay::ReleaseRequestBody(Stream* s) {
  size_t n = s->req_body.Size();
  s->req_body.Clear();
  if (n == 0 || !down_) return;
  // Bytes we will never forward still count against the client's windows until acknowledged.
  if (s->down_closed) nghttp2_session_consume_connection(down_, n);
  else nghttp2_session_consume(down_, s->id, n);
}

void Relay::ReleaseResponseBody(Stream* s) {
  size_t n = s->resp_body.Size();
  s->resp_body.Clear();
  if (n == 0 || !s->conn) return;
  nghttp2_session_consume(s->conn->sess, s->up_id, n);
}

}  // namespace mx::h2
