// HTTP/2 over HTTP/1.1 (see h2_over_h1_transport.h for the model).
#include "h2_over_h1_transport.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "../http_common.h"
#include "fields.h"

namespace mx::bridge {
namespace {

using http::IEquals;

constexpr size_t kReadChunk = 16 * 1024;

std::string_view View(const uint8_t* p, size_t n) { return std::string_view(reinterpret_cast<const char*>(p), n); }

bool ValidMethod(std::string_view m) {
  if (m.empty()) return false;
  for (char c : m)
    if (!h1::IsTchar(static_cast<unsigned char>(c))) return false;
  return true;
}

// What may stand between the spaces of a request line (RFC 9112 §3.2: no whitespace, no controls).
bool ValidTarget(std::string_view t) {
  if (t.empty()) return false;
  for (char c : t) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return false;
  }
  return true;
}

}  // namespace

const H2Setup& H2OverH1Transport::Setup() {
  static const H2Setup setup([](nghttp2_session_callbacks* cb) {
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, OnBeginHeaders);
    nghttp2_session_callbacks_set_on_header_callback(cb, OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, OnFrameRecv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, OnDataChunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, OnFrameSend);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, OnStreamClose);
  });
  return setup;
}

H2OverH1Transport::H2OverH1Transport(std::unique_ptr<engine::Transport> inner, H2OverH1Options opts)
    : io_(std::move(inner)), opts_(opts) {
  const H2Setup& setup = Setup();
  if (!setup.ok() || nghttp2_session_server_new2(&sess_, setup.cb, this, setup.opt) != 0) {
    sess_ = nullptr;
    fatal_ = true;
    return;
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1},  // an HTTP/1.1 connection carries one exchange at a time
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, opts_.stream_window},
  };
  nghttp2_submit_settings(sess_, NGHTTP2_FLAG_NONE, iv, 2);
  if (opts_.connection_window > 65535)
    nghttp2_session_set_local_window_size(sess_, NGHTTP2_FLAG_NONE, 0, static_cast<int32_t>(opts_.connection_window));
}

H2OverH1Transport::~H2OverH1Transport() {
  if (sess_) nghttp2_session_del(sess_);
}

bool H2OverH1Transport::WireCounts(uint64_t* rx, uint64_t* tx) const {
  if (io_.t().WireCounts(rx, tx)) return true;
  *rx = io_.rx();
  *tx = io_.tx();
  return true;
}

// ---------------------------------------------------------------------------------------------------
// Transport

ssize_t H2OverH1Transport::Read(char* buf, size_t len) {
  if (fatal_) return -EPROTO;
  Pump();
  size_t got = std::min(len, staged_.size() - staged_off_);
  std::memcpy(buf, staged_.data() + staged_off_, got);
  staged_off_ += got;
  if (staged_off_ == staged_.size()) {
    staged_.clear();
    staged_off_ = 0;
  }
  while (got < len) {
    const uint8_t* p = nullptr;
    ssize_t n = nghttp2_session_mem_send(sess_, &p);
    if (n < 0) {
      fatal_ = true;
      GiveUpInner();
      break;
    }
    if (n == 0) break;
    size_t k = std::min(len - got, static_cast<size_t>(n));
    std::memcpy(buf + got, p, k);
    got += k;
    if (k < static_cast<size_t>(n)) staged_.assign(reinterpret_cast<const char*>(p) + k, static_cast<size_t>(n) - k);
  }
  if (got > 0) return static_cast<ssize_t>(got);
  if (fatal_) return -EPROTO;
  // Done: GOAWAY is out and no stream is left (or nghttp2 has nothing more to do on this connection).
  bool idle = !nghttp2_session_want_write(sess_);
  if (idle && ((goaway_ && sid_ == 0) || !nghttp2_session_want_read(sess_))) return 0;
  return -EAGAIN;
}

ssize_t H2OverH1Transport::Write(const char* buf, size_t len) {
  if (fatal_) return -EPROTO;
  Pump();
  if (len == 0) return 0;  // a poke: held bytes moved, nothing new taken
  // Request bytes the upstream has not taken yet push back on the relay (its DATA waits in its own windows).
  if (!io_.write_failed() && io_.out.size() >= opts_.max_buffered) return -EAGAIN;
  if (nghttp2_session_mem_recv(sess_, reinterpret_cast<const uint8_t*>(buf), len) < 0) {
    fatal_ = true;
    GiveUpInner();
    return -EPROTO;
  }
  FlushInner();
  return static_cast<ssize_t>(len);
}

int H2OverH1Transport::ShutdownWrite() {
  if (!sess_) return 0;
  keep_ = false;
  Goaway();
  if (sid_ != 0) return -EAGAIN;
  FlushInner();
  if (io_.write_failed()) return 0;
  if (!io_.out.empty()) return -EAGAIN;
  return io_.t().ShutdownWrite();
}

void H2OverH1Transport::Pump() {
  if (!sess_) return;
  FlushInner();
  ReadInner();
  FlushInner();
}

void H2OverH1Transport::FlushInner() {
  size_t n = io_.Flush();
  if (n > 0) Ack(n);
  if (io_.write_failed() && !io_.read_ended() && resp_ == Resp::Idle) {
    // Nothing is owed by the upstream: the connection is simply gone.
    InnerEnded();
  }
}

void H2OverH1Transport::Ack(size_t n) {
  // Framing bytes (request head, chunk lines) are not DATA: acknowledging at most what left (all of it once
  // nothing is queued) never acknowledges more than arrived.
  size_t c = io_.out.empty() ? unacked_ : std::min(unacked_, n);
  if (c == 0) return;
  unacked_ -= c;
  nghttp2_session_consume(sess_, ack_sid_, c);
}

bool H2OverH1Transport::CanReadInner() const {
  if (io_.read_ended()) return false;
  // A body whose DATA the stream window holds back stays in the upstream's socket; so does a runaway head.
  if (resp_ == Resp::Body) return body_.size() < opts_.max_buffered && in_.size() < kReadChunk;
  return in_.size() <= h1::kMaxHeadBytes;
}

void H2OverH1Transport::ReadInner() {
  char buf[kReadChunk];  // on the stack: an idle connection's EAGAIN reads allocate nothing
  while (CanReadInner()) {
    ssize_t n = io_.Read(buf, sizeof buf);
    if (n > 0) {
      in_.Append(buf, static_cast<size_t>(n));
      if (sid_ != 0) any_byte_ = true;
      Process();
      continue;
    }
    if (n == -EAGAIN || n == -EWOULDBLOCK) break;
    InnerEnded();
    return;
  }
  // Bytes already in hand still count (a body that was waiting for room).
  if (!in_.empty()) Process();
}

void H2OverH1Transport::GiveUpInner(bool abortive) {
  if (abortive) io_.t().Reset();
  io_.Abandon();
  in_.Clear();
}

void H2OverH1Transport::Goaway() {
  if (goaway_ || !sess_) return;
  goaway_ = true;
  nghttp2_submit_goaway(sess_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(sess_), NGHTTP2_NO_ERROR, nullptr, 0);
}

// ---------------------------------------------------------------------------------------------------
// Requests (HTTP/2 in, HTTP/1.1 out)

int H2OverH1Transport::OnBeginHeaders(nghttp2_session* sess, const nghttp2_frame* f, void* ud) {
  auto* self = static_cast<H2OverH1Transport*>(ud);
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  if (self->sid_ != 0 || !self->keep_ || self->goaway_ || self->io_.broken()) {
    // nghttp2 refuses streams beyond our SETTINGS itself; this covers a peer that has not seen them yet
    // and a connection that cannot carry another exchange.
    nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  self->sid_ = f->hd.stream_id;
  self->fields_.clear();
  self->req_head_ = self->req_chunked_ = self->req_end_ = self->local_ = false;
  self->method_.clear();
  self->idempotent_ = false;
  self->resp_ = Resp::Head;
  self->any_byte_ = self->submitted_ = self->body_end_ = self->deferred_ = false;
  self->scan_.Reset();
  self->body_.Clear();
  self->trailers_.clear();
  return 0;
}

int H2OverH1Transport::OnHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
                                const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
  auto* self = static_cast<H2OverH1Transport*>(ud);
  if (f->hd.stream_id != self->sid_) return 0;
  self->fields_.emplace_back(std::string(View(name, namelen)), std::string(View(value, valuelen)));
  return 0;
}

int H2OverH1Transport::OnFrameRecv(nghttp2_session*, const nghttp2_frame* f, void* ud) {
  auto* self = static_cast<H2OverH1Transport*>(ud);
  if (self->sid_ == 0 || f->hd.stream_id != self->sid_) return 0;
  bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (f->hd.type == NGHTTP2_HEADERS) {
    if (!self->req_head_ && !self->local_) self->StartRequest(end);
    else if (end) self->EndRequest();  // trailers
  } else if (f->hd.type == NGHTTP2_DATA && end) {
    self->EndRequest();
  }
  return 0;
}

void H2OverH1Transport::StartRequest(bool end) {
  std::string_view method, path, authority, host;
  bool has_length = false;
  std::string cookie;
  for (const auto& [k, v] : fields_) {
    if (k == ":method") method = v;
    else if (k == ":path") path = v;
    else if (k == ":authority") authority = v;
    else if (k == "host") host = v;
    else if (k == "content-length") has_length = true;
  }
  if (authority.empty()) authority = host;
  if (IEquals(method, "CONNECT")) {
    // A tunnel has no HTTP/1.1 exchange to map to on a connection of its own.
    local_ = true;
    req_end_ = end;
    resp_ = Resp::Done;
    body_end_ = true;
    static const char kText[] = "CONNECT cannot be relayed to an HTTP/1.1 service\n";
    body_.Append(kText, sizeof kText - 1);
    h1::FieldList h = {{":status", "501"}, {"content-type", "text/plain; charset=utf-8"}, {"content-length", std::to_string(sizeof kText - 1)}};
    auto nv = ToNv(h);
    nghttp2_data_provider prd{};
    prd.read_callback = ReadBody;
    submitted_ = true;
    nghttp2_submit_response(sess_, sid_, nv.data(), nv.size(), &prd);
    fields_.clear();
    return;
  }
  if (!ValidMethod(method) || !ValidTarget(path) || !h1::ValidFieldLine("host", authority)) {
    local_ = true;
    req_end_ = end;
    resp_ = Resp::Done;
    nghttp2_submit_rst_stream(sess_, NGHTTP2_FLAG_NONE, sid_, NGHTTP2_PROTOCOL_ERROR);
    fields_.clear();
    return;
  }
  method_ = std::string(method);
  idempotent_ = http::IdempotentMethod(method_);
  req_chunked_ = !end && !has_length;
  req_end_ = end;

  std::string h;
  h.reserve(256);
  h.append(method);
  h.push_back(' ');
  h.append(path);
  h.append(" HTTP/1.1\r\n");
  h1::AppendField(h, "Host", authority);
  for (const auto& [k, v] : fields_) {
    if (k.empty() || k[0] == ':' || ConnectionSpecific(k)) continue;
    if (k == "cookie") {
      if (!cookie.empty()) cookie.append("; ");
      cookie.append(v);
      continue;
    }
    h1::AppendField(h, k, v);
  }
  if (!cookie.empty()) h1::AppendField(h, "cookie", cookie);
  if (req_chunked_) h.append("Transfer-Encoding: chunked\r\n");
  h.append("Connection: keep-alive\r\n\r\n");
  io_.out.Append(h.data(), h.size());
  req_head_ = true;
  fields_.clear();  // trailers collect here next
  FlushInner();
}

void H2OverH1Transport::EndRequest() {
  if (req_end_) return;
  req_end_ = true;
  if (!req_chunked_ || local_) {
    fields_.clear();  // a Content-Length body cannot carry trailers: they are dropped
    return;
  }
  h1::FieldList trailers;
  for (auto& [k, v] : fields_)
    if (TrailerAllowed(k)) trailers.emplace_back(std::move(k), std::move(v));
  fields_.clear();
  h1::AppendLastChunk(io_.out, trailers);
  FlushInner();
}

int H2OverH1Transport::OnDataChunk(nghttp2_session* sess, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* ud) {
  auto* self = static_cast<H2OverH1Transport*>(ud);
  if (stream_id != self->sid_ || self->local_ || !self->req_head_ || self->io_.write_failed()) {
    nghttp2_session_consume(sess, stream_id, len);
    return 0;
  }
  const char* p = reinterpret_cast<const char*>(data);
  if (self->req_chunked_) h1::AppendChunk(self->io_.out, p, len);
  else self->io_.out.Append(p, len);
  self->unacked_ += len;
  self->ack_sid_ = stream_id;
  return 0;
}

int H2OverH1Transport::OnFrameSend(nghttp2_session* sess, const nghttp2_frame* f, void* ud) {
  auto* self = static_cast<H2OverH1Transport*>(ud);
  if (f->hd.stream_id != self->sid_ || self->sid_ == 0 || (f->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) return 0;
  if (f->hd.type != NGHTTP2_DATA && f->hd.type != NGHTTP2_HEADERS) return 0;
  if (self->req_end_) return 0;
  // The response is complete before the request (RFC 9113 §8.1): stop the relay's body without error.
  if (!self->local_) {
    self->keep_ = false;  // the upstream connection is mid-request
    self->Goaway();
  }
  nghttp2_submit_rst_stream(sess, NGHTTP2_FLAG_NONE, self->sid_, NGHTTP2_NO_ERROR);
  return 0;
}

int H2OverH1Transport::OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t, void* ud) {
  auto* self = static_cast<H2OverH1Transport*>(ud);
  if (stream_id != self->sid_) return 0;
  self->StreamDone();
  return 0;
}

void H2OverH1Transport::StreamDone() {
  bool whole = local_ || (req_end_ && resp_ == Resp::Done && body_end_);
  if (unacked_ > 0) {
    // Still queued for the upstream: acknowledged for the connection now (the stream is gone).
    nghttp2_session_consume(sess_, ack_sid_, unacked_);
    unacked_ = 0;
  }
  sid_ = 0;
  resp_ = Resp::Idle;
  body_.Clear();
  fields_.clear();
  if (!whole) {
    // Reset mid-exchange: the upstream may be reading a body that never ends, or writing a response
    // nobody reads. Its connection cannot be trusted with another request.
    keep_ = false;
    Goaway();
    GiveUpInner();
    return;
  }
  if (!local_) reused_ = true;
  if (!keep_) {
    Goaway();
    GiveUpInner(false);  // both messages are whole: an orderly close
  } else if (!in_.empty()) {
    Process();  // the upstream spoke out of turn
  }
}

// ---------------------------------------------------------------------------------------------------
// Responses (HTTP/1.1 in, HTTP/2 out)

void H2OverH1Transport::Process() {
  while (!in_.empty()) {
    switch (resp_) {
      case Resp::Idle:
      case Resp::Done:
        // Bytes nobody asked for: the connection cannot be trusted with another exchange.
        in_.Clear();
        keep_ = false;
        Goaway();
        if (sid_ == 0) GiveUpInner();
        return;
      case Resp::Head: {
        h1::Error err;
        h1::Status st = scan_.Scan(in_.data(), in_.size(), err);
        if (st == h1::Status::Partial) return;
        if (st == h1::Status::Failed) {
          BadResponse(err.reason);
          return;
        }
        head_.assign(in_.data(), scan_.end());
        in_.Consume(scan_.end());
        scan_.Reset();
        if (!h1::ParseResponse(head_, method_, head_parsed_, err)) {
          BadResponse(err.reason);
          return;
        }
        if (head_parsed_.status == 101 || head_parsed_.framing == h1::Framing::Tunnel) {
          BadResponse("protocol switch that was not asked for");
          return;
        }
        if (!OnlyChunked(head_parsed_.fields)) {
          // The coded bytes would reach the client as if they were the content.
          BadResponse("transfer coding other than chunked");
          return;
        }
        if (head_parsed_.status < 200) SubmitInterim();
        else SubmitResponse();
        continue;
      }
      case Resp::Body: {
        if (body_.size() >= opts_.max_buffered) return;  // the stream window holds DATA back (and the rest waits)
        size_t m = std::min(in_.size(), opts_.max_buffered - body_.size());
        if (framing_ == h1::Framing::Length) {
          size_t k = static_cast<size_t>(std::min<uint64_t>(m, left_));
          body_.Append(in_.data(), k);
          in_.Consume(k);
          left_ -= k;
          if (left_ == 0) BodyDone();
        } else if (framing_ == h1::Framing::Chunked) {
          size_t k = chunked_.Decode(in_.data(), m, &body_);
          in_.Consume(k);
          if (chunked_.failed()) {
            BadResponse(std::string("malformed chunked body: ") + chunked_.error());
            return;
          }
          if (chunked_.done()) {
            for (const auto& [name, value] : chunked_.trailers()) {
              std::string lower = Lower(name);
              if (TrailerAllowed(lower)) trailers_.emplace_back(std::move(lower), value);
            }
            BodyDone();
          }
        } else {  // close-delimited: everything until the upstream closes
          body_.Append(in_.data(), m);
          in_.Consume(m);
        }
        ResumeBody();
        continue;
      }
    }
  }
  // The upstream's end and everything it sent before it have been taken in.
  if (resp_ == Resp::Body && io_.read_ended()) {
    if (framing_ == h1::Framing::Close && io_.error() == 0) {
      BodyDone();
    } else {
      ResetStream(NGHTTP2_INTERNAL_ERROR);  // truncated: the client must not take it for whole
      GiveUpInner();
    }
  }
}

void H2OverH1Transport::SubmitInterim() {
  h1::FieldList h;
  h.emplace_back(":status", std::to_string(head_parsed_.status));
  for (const h1::Field& f : head_parsed_.fields) {
    std::string name = Lower(f.name);
    if (ConnectionSpecific(name) || name == "content-length") continue;
    h.emplace_back(std::move(name), std::string(f.value));
  }
  auto nv = ToNv(h);
  nghttp2_submit_headers(sess_, NGHTTP2_FLAG_NONE, sid_, nullptr, nv.data(), nv.size(), nullptr);
}

void H2OverH1Transport::SubmitResponse() {
  const h1::Head& r = head_parsed_;
  h1::FieldList h;
  h.reserve(r.fields.size() + 1);
  h.emplace_back(":status", std::to_string(r.status));
  for (const h1::Field& f : r.fields) {
    std::string name = Lower(f.name);
    if (ConnectionSpecific(name)) continue;
    if (h1::NamedInConnection(r.connection_tokens, name)) continue;
    // HTTP/2 forbids Content-Length on a 204 (nghttp2 rejects the response); a chunked body has none.
    if (name == "content-length" && (r.status == 204 || r.framing == h1::Framing::Chunked)) continue;
    h.emplace_back(std::move(name), std::string(f.value));
  }
  framing_ = r.framing;
  left_ = r.content_length;
  chunked_.Reset();
  if (!h1::UpstreamReusable(r)) {
    keep_ = false;
    Goaway();  // the stream in flight completes; later ones go to another connection
  }
  auto nv = ToNv(h);
  submitted_ = true;
  if (framing_ == h1::Framing::None) {
    resp_ = Resp::Done;
    body_end_ = true;
    nghttp2_submit_response(sess_, sid_, nv.data(), nv.size(), nullptr);
    return;
  }
  resp_ = Resp::Body;
  nghttp2_data_provider prd{};
  prd.read_callback = ReadBody;
  nghttp2_submit_response(sess_, sid_, nv.data(), nv.size(), &prd);
}

void H2OverH1Transport::BodyDone() {
  resp_ = Resp::Done;
  body_end_ = true;
  ResumeBody();
}

void H2OverH1Transport::ResumeBody() {
  if (deferred_ && sid_ != 0 && (!body_.empty() || body_end_)) {
    deferred_ = false;
    nghttp2_session_resume_data(sess_, sid_);
  }
}

ssize_t H2OverH1Transport::ReadBody(nghttp2_session* sess, int32_t stream_id, uint8_t* buf, size_t len, uint32_t* flags,
                                    nghttp2_data_source*, void* ud) {
  auto* self = static_cast<H2OverH1Transport*>(ud);
  if (stream_id != self->sid_) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t n = std::min(len, self->body_.size());
  if (n > 0) {
    std::memcpy(buf, self->body_.data(), n);
    self->body_.Consume(n);
  }
  return h2::DataReadResult(sess, stream_id, n, self->body_end_ && self->body_.empty(), self->trailers_, flags, &self->deferred_);
}

void H2OverH1Transport::BadResponse(const std::string& why) {
  keep_ = false;
  Goaway();
  GiveUpInner();
  if (submitted_) {
    ResetStream(NGHTTP2_INTERNAL_ERROR);
    return;
  }
  // Like the HTTP/1.1 session: an upstream that does not speak HTTP/1.1 properly earns a 502.
  std::string text = "upstream sent an invalid response: " + why + "\n";
  body_.Clear();
  body_.Append(text.data(), text.size());
  body_end_ = true;
  trailers_.clear();
  resp_ = Resp::Done;
  submitted_ = true;
  h1::FieldList h = {{":status", "502"}, {"content-type", "text/plain; charset=utf-8"}, {"content-length", std::to_string(text.size())}};
  auto nv = ToNv(h);
  nghttp2_data_provider prd{};
  prd.read_callback = ReadBody;
  nghttp2_submit_response(sess_, sid_, nv.data(), nv.size(), &prd);
}

void H2OverH1Transport::ResetStream(uint32_t code) {
  keep_ = false;
  Goaway();
  if (sid_ != 0) nghttp2_submit_rst_stream(sess_, NGHTTP2_FLAG_NONE, sid_, code);
}

void H2OverH1Transport::InnerEnded() {
  switch (resp_) {
    case Resp::Idle:
      // The upstream closed an idle keep-alive connection.
      keep_ = false;
      Goaway();
      return;
    case Resp::Head:
      // Nothing (or half a head) before the end. A reused connection closed under a request that got no
      // byte back is the keep-alive race: an idempotent request is refused, so the relay sends it again.
      ResetStream(reused_ && !any_byte_ && idempotent_ ? NGHTTP2_REFUSED_STREAM : NGHTTP2_INTERNAL_ERROR);
      GiveUpInner();
      return;
    case Resp::Body:
      // Ends the body (close-delimited) or cuts it, once the bytes that came before the end are in.
      Process();
      return;
    case Resp::Done:
      keep_ = false;
      Goaway();
      return;
  }
}

}  // namespace mx::bridge
