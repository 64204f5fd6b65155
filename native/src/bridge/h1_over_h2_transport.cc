// HTTP/1.1 over HTTP/2 (see h1_over_h2_transport.h for the model).
#include "h1_over_h2_transport.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "../http_common.h"
#include "fields.h"

namespace mx::bridge {
namespace {

using http::IEquals;

// Frames pulled from nghttp2 per round before the inner transport must take them (a few frames' worth: a
// slow peer backs up into nghttp2's flow-controlled queues, not into our buffer).
constexpr size_t kPullChunk = 64 * 1024;
// Bytes read from the inner transport per call.
constexpr size_t kReadChunk = 16 * 1024;

std::string_view View(const uint8_t* p, size_t n) { return std::string_view(reinterpret_cast<const char*>(p), n); }

}  // namespace

const H2Setup& H1OverH2Transport::Setup() {
  static const H2Setup setup([](nghttp2_session_callbacks* cb) {
    nghttp2_session_callbacks_set_on_header_callback(cb, OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, OnFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, OnDataChunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, OnStreamClose);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, OnFrameNotSend);
  });
  return setup;
}

H1OverH2Transport::H1OverH2Transport(std::unique_ptr<engine::Transport> inner, H1OverH2Options opts)
    : io_(std::move(inner)), opts_(std::move(opts)) {
  const H2Setup& setup = Setup();
  if (!setup.ok() || nghttp2_session_client_new2(&sess_, setup.cb, this, setup.opt) != 0) {
    sess_ = nullptr;
    failed_ = eof_ = true;
    return;
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, opts_.stream_window},
      // The session reads heads of at most 64 KiB; a larger block is refused here already.
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(h1::kMaxHeadBytes)},
  };
  nghttp2_submit_settings(sess_, NGHTTP2_FLAG_NONE, iv, 3);
  if (opts_.connection_window > 65535)
    nghttp2_session_set_local_window_size(sess_, NGHTTP2_FLAG_NONE, 0, static_cast<int32_t>(opts_.connection_window));
}

H1OverH2Transport::~H1OverH2Transport() {
  if (sess_) nghttp2_session_del(sess_);
}

int H1OverH2Transport::Handshake() {
  int r = io_.t().Handshake();
  if (r != 0) return r;
  FlushOut();
  if (io_.broken()) return io_.error() ? -io_.error() : -ECONNRESET;
  return 0;
}

bool H1OverH2Transport::WireCounts(uint64_t* rx, uint64_t* tx) const {
  if (io_.t().WireCounts(rx, tx)) return true;
  *rx = io_.rx();
  *tx = io_.tx();
  return true;
}

// ---------------------------------------------------------------------------------------------------
// Transport

ssize_t H1OverH2Transport::Read(char* buf, size_t len) {
  Pump();
  if (!out_.empty()) {
    size_t n = std::min(len, out_.size());
    std::memcpy(buf, out_.data(), n);
    out_.Consume(n);
    Ack(n);
    FlushOut();  // the WINDOW_UPDATE that reading made due
    return static_cast<ssize_t>(n);
  }
  if (reset_) return -ECONNRESET;
  if (eof_) return 0;
  return -EAGAIN;
}

ssize_t H1OverH2Transport::Write(const char* buf, size_t len) {
  Pump();
  if (len == 0) return reset_ ? -ECONNRESET : 0;  // a poke: held bytes moved, nothing new taken
  size_t used = 0;
  while (used < len) {
    size_t k = Take(buf + used, len - used);
    if (k == 0) break;
    used += k;
  }
  FlushOut();
  if (used > 0) return static_cast<ssize_t>(used);
  if (reset_) return -ECONNRESET;
  // A new request on a connection that cannot carry one: the session's retry logic takes it from here.
  if (in_ == In::Head && head_.empty() && !CanStart()) return -EPIPE;
  return -EAGAIN;
}

int H1OverH2Transport::ShutdownWrite() {
  if (!sess_ || io_.broken()) return 0;
  if (!shut_) {
    shut_ = true;
    nghttp2_submit_goaway(sess_, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
  }
  FlushOut();
  if (io_.broken()) return 0;
  if (!io_.out.empty() || open_ || sid_ != 0) return -EAGAIN;
  return io_.t().ShutdownWrite();
}

void H1OverH2Transport::Pump() {
  if (!sess_) return;
  FlushOut();
  ReadIn();
  FlushOut();
  // nghttp2 is done with a connection after a GOAWAY exchange or its own fatal error.
  if (!failed_ && !nghttp2_session_want_read(sess_) && !nghttp2_session_want_write(sess_)) Lost();
}

void H1OverH2Transport::FlushOut() {
  if (!sess_) return;
  while (!io_.broken()) {
    while (io_.out.size() < kPullChunk) {
      const uint8_t* p = nullptr;
      ssize_t n = nghttp2_session_mem_send(sess_, &p);
      if (n < 0) {
        io_.Abandon();
        Lost();
        return;
      }
      if (n == 0) break;
      io_.out.Append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    }
    if (io_.out.empty()) return;
    io_.Flush();
    if (io_.broken()) {
      Lost();
      return;
    }
    if (!io_.out.empty()) return;  // the transport pushes back; its readiness brings us back
  }
}

void H1OverH2Transport::ReadIn() {
  char buf[kReadChunk];
  // Response bytes are bounded by our windows; the extra bound keeps a session that stopped reading from
  // making us parse frames it will not take soon.
  while (!failed_ && !io_.broken() && out_.size() < 2 * opts_.stream_window) {
    ssize_t n = io_.Read(buf, sizeof buf);
    if (n == -EAGAIN || n == -EWOULDBLOCK) return;
    if (n <= 0) {
      Lost();
      return;
    }
    if (nghttp2_session_mem_recv(sess_, reinterpret_cast<const uint8_t*>(buf), static_cast<size_t>(n)) < 0) {
      io_.Abandon();
      Lost();
      return;
    }
  }
}

void H1OverH2Transport::Ack(size_t n) {
  // Framing bytes are not DATA payload: acknowledging at most what was taken (all of it once the output is
  // empty) never acknowledges more than arrived, and settles exactly whenever the session catches up.
  size_t c = out_.empty() ? unacked_ : std::min(unacked_, n);
  if (c == 0 || !sess_) return;
  unacked_ -= c;
  nghttp2_session_consume(sess_, ack_sid_, c);
}

void H1OverH2Transport::Abort() {
  if (sid_ != 0 && !resp_end_) nghttp2_submit_rst_stream(sess_, NGHTTP2_FLAG_NONE, sid_, NGHTTP2_CANCEL);
  reset_ = true;
  open_ = false;
  req_body_.Clear();
}

void H1OverH2Transport::Lost() {
  if (failed_) return;
  failed_ = true;
  // An exchange cut short is a reset for the session; an idle connection simply ends.
  if (open_ || !head_.empty() || (in_ == In::Body && !discard_)) {
    reset_ = true;
    open_ = false;
  } else {
    eof_ = true;
  }
}

// ---------------------------------------------------------------------------------------------------
// Requests (HTTP/1.1 in, HTTP/2 out)

size_t H1OverH2Transport::Take(const char* p, size_t n) {
  if (reset_) return 0;
  switch (in_) {
    case In::Head:
      // The previous stream may still be sending its body (the response came first).
      if (sid_ != 0 || (head_.empty() && !CanStart())) return 0;
      return TakeHead(p, n);
    case In::Body:
      return TakeBody(p, n);
    case In::Sent:
      return 0;  // HTTP/1.1: the next request only once this exchange is over
    case In::Discard:
      return n;
  }
  return 0;
}

size_t H1OverH2Transport::TakeHead(const char* p, size_t n) {
  size_t before = head_.size();
  size_t take = std::min(n, h1::kMaxHeadBytes + 1 - std::min(before, h1::kMaxHeadBytes));
  head_.append(p, take);
  h1::Error err;
  h1::Status st = scan_.Scan(head_.data(), head_.size(), err);
  if (st == h1::Status::Partial) return take;
  size_t end = scan_.end();
  scan_.Reset();
  if (st == h1::Status::Failed) {
    LocalReply(err.status, err.reason);
    return take;
  }
  head_.resize(end);
  if (!h1::ParseRequest(head_, req_, err)) {
    LocalReply(err.status, err.reason);
    return end - before;
  }
  StartRequest();
  return end - before;
}

void H1OverH2Transport::StartRequest() {
  if (goaway_ || failed_) {
    // The connection ended while the head was arriving; nothing reached the peer, so the session may retry.
    head_.clear();
    reset_ = true;
    return;
  }
  if (req_.upgrade || IEquals(req_.method, "CONNECT")) {
    LocalReply(501, std::string(req_.upgrade ? "protocol upgrades" : "CONNECT") + " cannot be relayed to an HTTP/2 service");
    return;
  }
  if (!OnlyChunked(req_.fields)) {
    LocalReply(501, "transfer codings other than chunked cannot be relayed to an HTTP/2 service");
    return;
  }
  head_method_ = IEquals(req_.method, "HEAD");
  http10_ = req_.minor == 0;

  std::string_view path = req_.target;
  std::string_view authority = req_.has_host ? req_.host : std::string_view(opts_.authority);
  // Absolute form (RFC 9112 §3.2.2): the target's authority wins over Host (without userinfo, RFC 9113 §8.3.1).
  std::string_view absAuthority, absPath;
  if (h1::SplitAbsoluteForm(path, &absAuthority, &absPath)) {
    authority = absAuthority;
    path = absPath.empty() ? std::string_view("/") : absPath;
  }
  h1::FieldList h;
  h.reserve(req_.fields.size() + 4);
  h.emplace_back(":method", std::string(req_.method));
  h.emplace_back(":scheme", opts_.scheme);
  if (!authority.empty()) h.emplace_back(":authority", std::string(authority));
  if (!path.empty() && path[0] == '?') h.emplace_back(":path", "/" + std::string(path));
  else h.emplace_back(":path", std::string(path));
  for (const h1::Field& f : req_.fields) {
    std::string name = Lower(f.name);
    if (name == "te") {
      if (ListHasToken(f.value, "trailers")) h.emplace_back("te", "trailers");
      continue;
    }
    if (ConnectionSpecific(name)) continue;
    if (h1::NamedInConnection(req_.connection_tokens, name)) continue;
    h.emplace_back(std::move(name), std::string(f.value));
  }

  req_framing_ = req_.framing;
  req_left_ = req_.content_length;
  chunked_.Reset();
  req_body_.Clear();
  req_trailers_.clear();
  req_end_ = req_framing_ == h1::Framing::None;
  req_deferred_ = discard_ = false;
  fields_.clear();
  field_bytes_ = 0;
  head_done_ = resp_end_ = false;
  body_ = Out::None;
  open_ = true;

  auto nv = ToNv(h);
  nghttp2_data_provider prd{};
  prd.read_callback = ReadBody;
  int32_t id = nghttp2_submit_request(sess_, nullptr, nv.data(), nv.size(), req_end_ ? nullptr : &prd, nullptr);
  head_.clear();  // req_ views die here; nothing below reads them
  if (id < 0) {
    Abort();
    return;
  }
  sid_ = id;
  in_ = req_end_ ? In::Sent : In::Body;
}

size_t H1OverH2Transport::TakeBody(const char* p, size_t n) {
  size_t held = req_body_.size() + io_.out.size();
  size_t room = discard_ ? n : (held >= opts_.max_buffered ? 0 : opts_.max_buffered - held);
  size_t m = std::min(n, room);
  if (m == 0) return 0;
  h1::Buf* sink = discard_ ? nullptr : &req_body_;
  size_t used;
  if (req_framing_ == h1::Framing::Length) {
    used = static_cast<size_t>(std::min<uint64_t>(m, req_left_));
    if (sink) sink->Append(p, used);
    req_left_ -= used;
    if (req_left_ == 0) BodyEnded();
  } else {
    used = chunked_.Decode(p, m, sink);
    if (chunked_.failed()) {
      // The session validated this framing already; a mismatch leaves nothing sensible to send.
      Abort();
      return used;
    }
    if (chunked_.done()) BodyEnded();
  }
  ResumeBody();
  return used;
}

void H1OverH2Transport::BodyEnded() {
  if (discard_) {
    discard_ = false;
    in_ = sid_ == 0 ? In::Head : In::Sent;
    return;
  }
  req_end_ = true;
  in_ = In::Sent;
  if (req_framing_ != h1::Framing::Chunked) return;
  for (const auto& [name, value] : chunked_.trailers()) {
    std::string lower = Lower(name);
    if (TrailerAllowed(lower)) req_trailers_.emplace_back(std::move(lower), value);
  }
}

void H1OverH2Transport::ResumeBody() {
  if (req_deferred_ && sid_ != 0 && (!req_body_.empty() || req_end_)) {
    req_deferred_ = false;
    nghttp2_session_resume_data(sess_, sid_);
  }
}

ssize_t H1OverH2Transport::ReadBody(nghttp2_session* sess, int32_t stream_id, uint8_t* buf, size_t len, uint32_t* flags,
                                    nghttp2_data_source*, void* ud) {
  auto* self = static_cast<H1OverH2Transport*>(ud);
  if (stream_id != self->sid_) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t n = std::min(len, self->req_body_.size());
  if (n > 0) {
    std::memcpy(buf, self->req_body_.data(), n);
    self->req_body_.Consume(n);
  }
  return h2::DataReadResult(sess, stream_id, n, self->req_end_ && self->req_body_.empty(), self->req_trailers_, flags, &self->req_deferred_);
}

void H1OverH2Transport::LocalReply(int status, const std::string& why) {
  std::string r = h1::LocalResponse(status, why, true);
  out_.Append(r.data(), r.size());
  head_.clear();
  in_ = In::Discard;
  open_ = false;
  eof_ = true;
}

// ---------------------------------------------------------------------------------------------------
// Responses (HTTP/2 in, HTTP/1.1 out)

int H1OverH2Transport::OnHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
                                const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
  auto* self = static_cast<H1OverH2Transport*>(ud);
  if (f->hd.stream_id != self->sid_ || self->reset_) return 0;
  self->field_bytes_ += namelen + valuelen + 4;
  // Resets the stream: the session would reject the head anyway.
  if (self->field_bytes_ > h1::kMaxHeadBytes) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  self->fields_.emplace_back(std::string(View(name, namelen)), std::string(View(value, valuelen)));
  return 0;
}

int H1OverH2Transport::OnFrameRecv(nghttp2_session*, const nghttp2_frame* f, void* ud) {
  auto* self = static_cast<H1OverH2Transport*>(ud);
  if (f->hd.type == NGHTTP2_GOAWAY) {
    // A stream above last_stream_id is closed by nghttp2 (REFUSED_STREAM): a reset the session may retry.
    self->goaway_ = true;
    if (!self->open_ && self->head_.empty() && self->in_ != In::Body) self->eof_ = true;
    return 0;
  }
  if (f->hd.stream_id != self->sid_ || self->sid_ == 0 || self->reset_) return 0;
  bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (f->hd.type == NGHTTP2_HEADERS) {
    if (!self->head_done_) {
      int status = 0;
      for (const auto& [k, v] : self->fields_)
        if (k == ":status") status = std::atoi(v.c_str());
      if (status < 200) {
        self->EmitInterim(status);
        self->fields_.clear();
        self->field_bytes_ = 0;
      } else {
        self->EmitHead(status, end);
      }
      return 0;
    }
    if (end) self->EndResponse();
    return 0;
  }
  if (f->hd.type == NGHTTP2_DATA && end && self->head_done_) self->EndResponse();
  return 0;
}

int H1OverH2Transport::OnDataChunk(nghttp2_session* sess, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* ud) {
  auto* self = static_cast<H1OverH2Transport*>(ud);
  if (stream_id != self->sid_ || self->reset_ || !self->head_done_ || self->body_ == Out::None) {
    nghttp2_session_consume(sess, stream_id, len);
    return 0;
  }
  const char* p = reinterpret_cast<const char*>(data);
  if (self->body_ == Out::Chunked) h1::AppendChunk(self->out_, p, len);
  else self->out_.Append(p, len);
  self->unacked_ += len;
  self->ack_sid_ = stream_id;
  return 0;
}

int H1OverH2Transport::OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t, void* ud) {
  auto* self = static_cast<H1OverH2Transport*>(ud);
  if (stream_id != self->sid_) return 0;
  self->sid_ = 0;
  self->req_deferred_ = false;
  if (!self->resp_end_) {
    // RST_STREAM (any code, NO_ERROR included: the response did not end), REFUSED_STREAM after GOAWAY.
    self->Abort();
    return 0;
  }
  if (self->in_ == In::Sent) {
    self->in_ = In::Head;
  } else if (self->in_ == In::Body) {
    // The peer answered before the body was complete and stopped the stream: the rest goes nowhere.
    self->discard_ = true;
    self->req_body_.Clear();
  }
  return 0;
}

int H1OverH2Transport::OnFrameNotSend(nghttp2_session*, const nghttp2_frame* f, int, void* ud) {
  auto* self = static_cast<H1OverH2Transport*>(ud);
  // Typically a GOAWAY that arrived before our HEADERS left: nothing reached the peer.
  if (f->hd.type == NGHTTP2_HEADERS && f->hd.stream_id == self->sid_ && !self->head_done_) {
    self->sid_ = 0;
    self->Abort();
  }
  return 0;
}

void H1OverH2Transport::EmitInterim(int status) {
  char line[64];
  int n = std::snprintf(line, sizeof line, "HTTP/1.1 %03d %s\r\n", status, ReasonPhrase(status));
  out_.Append(line, static_cast<size_t>(n));
  for (const auto& [k, v] : fields_) {
    if (k.empty() || k[0] == ':' || ConnectionSpecific(k) || k == "content-length" || !h1::ValidFieldLine(k, v)) continue;
    out_.Append(k.data(), k.size());
    out_.Append(": ", 2);
    out_.Append(v.data(), v.size());
    out_.Append("\r\n", 2);
  }
  out_.Append("\r\n", 2);
}

void H1OverH2Transport::EmitHead(int status, bool end) {
  bool has_length = false, announced = false;
  for (const auto& [k, v] : fields_) {
    if (k == "content-length") has_length = true;
    else if (k == "trailer") announced = true;
  }
  if (head_method_ || status == 204 || status == 304) body_ = Out::None;
  else if (end || (has_length && !announced)) body_ = Out::Length;
  else if (http10_) body_ = Out::Close;  // an HTTP/1.0 client cannot read chunked coding
  else body_ = Out::Chunked;
  bool own_framing = body_ == Out::Chunked || body_ == Out::Close;

  char line[64];
  int n = std::snprintf(line, sizeof line, "HTTP/1.1 %03d %s\r\n", status, ReasonPhrase(status));
  out_.Append(line, static_cast<size_t>(n));
  for (const auto& [k, v] : fields_) {
    if (k.empty() || k[0] == ':' || ConnectionSpecific(k)) continue;
    if (own_framing && k == "content-length") continue;
    // HTTP/2 allows bytes in values that an HTTP/1.1 field line cannot carry; such a field is left out.
    if (!h1::ValidFieldLine(k, v)) continue;
    out_.Append(k.data(), k.size());
    out_.Append(": ", 2);
    out_.Append(v.data(), v.size());
    out_.Append("\r\n", 2);
  }
  if (body_ == Out::Length && end && !has_length) out_.Append("Content-Length: 0\r\n", 19);
  if (body_ == Out::Chunked) out_.Append("Transfer-Encoding: chunked\r\n", 28);
  if (goaway_ || failed_ || body_ == Out::Close) out_.Append("Connection: close\r\n", 19);
  out_.Append("\r\n", 2);
  head_done_ = true;
  fields_.clear();  // what arrives from here on is the trailer section
  field_bytes_ = 0;
  if (end) EndResponse();
}

void H1OverH2Transport::EndResponse() {
  if (resp_end_) return;
  resp_end_ = true;
  open_ = false;
  if (body_ == Out::Chunked) {
    h1::FieldList trailers;
    for (auto& [k, v] : fields_)
      if (TrailerAllowed(k)) trailers.emplace_back(std::move(k), std::move(v));
    h1::AppendLastChunk(out_, trailers);
  }
  fields_.clear();
  field_bytes_ = 0;
  // A close-delimited body ends with our end of stream; after GOAWAY no request follows this one.
  if (body_ == Out::Close || goaway_ || failed_) eof_ = true;
}

}  // namespace mx::bridge
