// H1OverH2Transport: an HTTP/1.x session's pooled upstream connection to an HTTP/2 (or gRPC) service. The
// session writes HTTP/1.1 requests and reads HTTP/1.1 responses exactly as over a keep-alive socket;
// inside, each request becomes one stream of an nghttp2 client session on the inner transport (plain or
// TLS, connected and handshaken; h2 by prior knowledge or ALPN).
//
// Requests, one at a time: :method, :scheme (the option), :authority (absolute-form target, else Host,
// else the option), :path; field names lower-cased; connection-specific fields dropped (Connection and
// the fields it names, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, Host, HTTP2-Settings, TE
// unless it says trailers). The body is decoded from its framing into DATA; chunked trailers become a
// trailing HEADERS. The HEADERS frame leaves as soon as the head is complete, so Expect: 100-continue works.
// Upgrade and CONNECT requests cannot be expressed: they get a local `501 Not Implemented` with
// `Connection: close`, and the bridge reports end of stream after it.
//
// Responses: 1xx heads pass as interim heads. A final head becomes a status line (RFC 9110 reason phrase)
// and fields; the body is sent with Content-Length when the peer gave one and announced no trailers,
// close-delimited for an HTTP/1.0 request, else chunked (DATA as chunks, trailers as the trailer section:
// gRPC's grpc-status arrives this way). HEAD, 204 and 304 responses have no body.
//
// Connection: after a complete response the bridge takes the next request. After a GOAWAY (or a fatal
// connection error) responses say `Connection: close` and Read reports end of stream once the response
// in flight is out. A stream reset, or a connection lost before its response completed, makes Read return
// the bytes already produced and then -ECONNRESET (Write: -ECONNRESET); the bridge is then unusable.
//
// Flow control: request body bytes wait for the stream's send window in a buffer of at most max_buffered
// bytes (Write accepts no more and returns -EAGAIN; the peer's WINDOW_UPDATE arrives as readiness of fd()).
// Response DATA is acknowledged only as the session reads it, so the response bytes held here are bounded
// by the receive windows we advertise.
//
// Readiness: Read and Write both move bytes both ways on the inner transport, and a Write may produce
// response bytes (the local 501), so anyReadinessRetries() is true. Unlike a socket, the bridge holds
// bytes it accepted (the tail of a request body waiting for the peer's window): a session that on an event
// of fd() neither reads (its client is slow) nor has bytes to write must call Write(buf, 0), which only
// moves what the bridge holds. Setup, timeouts, close events and wire counts are the inner transport's.
#pragma once
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>
#include <string>

#include "../engine/transport.h"
#include "../http1/chunked.h"
#include "../http1/codec.h"
#include "h2_setup.h"
#include "inner.h"

namespace mx::bridge {

struct H1OverH2Options {
  /** :scheme of every request: "https" when the inner transport is TLS. */
  std::string scheme = "http";
  /** :authority for a request that names none (an HTTP/1.0 request without Host); empty: none is sent. */
  std::string authority;
  /** Our HTTP/2 receive windows; they bound the response bytes held for a session that reads slowly. */
  uint32_t stream_window = 256 * 1024;
  uint32_t connection_window = 1024 * 1024;
  /** Request bytes held for the peer before Write pushes back with -EAGAIN. */
  size_t max_buffered = 256 * 1024;
};

class H1OverH2Transport final : public engine::Transport {
 public:
  H1OverH2Transport(std::unique_ptr<engine::Transport> inner, H1OverH2Options opts);
  ~H1OverH2Transport() override;
  H1OverH2Transport(const H1OverH2Transport&) = delete;
  H1OverH2Transport& operator=(const H1OverH2Transport&) = delete;

  int fd() const override { return io_.t().fd(); }
  ssize_t Read(char* buf, size_t len) override;
  /** Takes request bytes (-EAGAIN while max_buffered are held); len 0 only moves held bytes (returns 0). */
  ssize_t Write(const char* buf, size_t len) override;
  /** Sends GOAWAY, then the inner transport's end of stream once no exchange is in flight (-EAGAIN until then). */
  int ShutdownWrite() override;
  void Reset() override { io_.t().Reset(); }
  bool anyReadinessRetries() const override { return true; }
  bool holdsBytes() const override { return true; }
  /** Moves what the bridge holds both ways on the inner transport (Write(buf, 0) does the same). */
  void Flush() override { Write(nullptr, 0); }
  void Bind(engine::Loop* loop) override { io_.t().Bind(loop); }
  void SetupTimedOut() override { io_.t().SetupTimedOut(); }
  void Describe(engine::Event& closed) const override { io_.t().Describe(closed); }
  /** The inner transport's handshake; once it is done, the HTTP/2 preface and SETTINGS go out. */
  int Handshake() override;
  /** The inner transport's wire counts, else the HTTP/2 bytes moved on it (never the session's HTTP/1.1 bytes). */
  bool WireCounts(uint64_t* rx, uint64_t* tx) const override;

  /** Bytes held inside the bridge: request body and frames for the peer, response bytes for the session. */
  size_t buffered() const { return req_body_.size() + io_.out.size() + out_.size(); }
  /** Whether the bridge would take a new request now (idle, no GOAWAY, no failure). */
  bool reusable() const override { return CanStart() && in_ == In::Head && head_.empty() && sid_ == 0 && out_.empty(); }

 private:
  // Where the session's request bytes are: a head, its body, done (waiting for the stream to end), or
  // after a local reply (everything dropped).
  enum class In : uint8_t { Head, Body, Sent, Discard };
  // How the response body is framed for the session.
  enum class Out : uint8_t { None, Length, Chunked, Close };

  static const H2Setup& Setup();
  static int OnHeader(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t, const uint8_t*, size_t, uint8_t, void*);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int OnStreamClose(nghttp2_session*, int32_t, uint32_t, void*);
  static int OnFrameNotSend(nghttp2_session*, const nghttp2_frame*, int, void*);
  static ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*, nghttp2_data_source*, void*);

  /** Moves frames both ways on the inner transport (what every Read and Write does first). */
  void Pump();
  void FlushOut();
  void ReadIn();
  bool CanStart() const { return sess_ && !goaway_ && !failed_ && !eof_ && !reset_ && !shut_; }
  size_t Take(const char* p, size_t n);
  size_t TakeHead(const char* p, size_t n);
  size_t TakeBody(const char* p, size_t n);
  void StartRequest();
  void BodyEnded();
  void ResumeBody();
  void LocalReply(int status, const std::string& why);
  void EmitInterim(int status);
  void EmitHead(int status, bool end);
  void EndResponse();
  /** The stream in flight failed: the session sees -ECONNRESET after the bytes it already has. */
  void Abort();
  /** The connection is unusable (inner transport closed or failed, nghttp2 fatal error). */
  void Lost();
  /** Acknowledges response DATA as the session takes `n` bytes of output. */
  void Ack(size_t n);

  Inner io_;
  H1OverH2Options opts_;
  nghttp2_session* sess_ = nullptr;

  // The request, as the session writes it.
  In in_ = In::Head;
  h1::HeadScanner scan_{h1::Kind::Request};
  std::string head_;  // the head so far (req_ views point into it)
  h1::Head req_;
  h1::Framing req_framing_ = h1::Framing::None;
  uint64_t req_left_ = 0;  // Content-Length bytes still to come
  h1::ChunkedDecoder chunked_;
  h1::Buf req_body_;  // decoded body waiting for DATA frames
  h1::FieldList req_trailers_;
  bool req_end_ = false;     // the whole body is in req_body_
  bool req_deferred_ = false;
  bool discard_ = false;     // the response is complete and the stream gone: the rest of the body is dropped

  // The stream and its response.
  int32_t sid_ = 0;
  bool open_ = false;        // an exchange is in flight (head taken, response not complete)
  bool head_method_ = false, http10_ = false;
  h1::FieldList fields_;     // the header block being received
  size_t field_bytes_ = 0;
  bool head_done_ = false;   // the final head went to the session
  bool resp_end_ = false;
  Out body_ = Out::None;
  h1::Buf out_;              // HTTP/1.1 bytes for the session
  size_t unacked_ = 0;       // DATA payload in out_ not acknowledged yet
  int32_t ack_sid_ = 0;

  // The connection.
  bool goaway_ = false;  // the peer sent GOAWAY: no new requests
  bool failed_ = false;  // the connection is gone
  bool reset_ = false;   // after out_, Read reports -ECONNRESET
  bool eof_ = false;     // after out_, Read reports end of stream
  bool shut_ = false;    // ShutdownWrite was called
};

}  // namespace mx::bridge
