// H2OverH1Transport: an HTTP/2 session's upstream connection to an HTTP/1.1 service. The session's
// h2::Relay writes HTTP/2 frames (it runs an nghttp2 client session) and reads HTTP/2 frames back, exactly
// as over an h2c socket; inside, an nghttp2 server session turns each stream into one HTTP/1.1 exchange on
// the inner transport (plain or TLS, connected and handshaken).
//
// One exchange at a time: SETTINGS_MAX_CONCURRENT_STREAMS is 1 (the relay opens more connections for
// concurrent streams), and a stream that arrives while one is in flight gets RST_STREAM(REFUSED_STREAM).
//
// Requests: request line from :method and :path, Host from :authority (else host), the other fields as
// they are (cookie crumbs joined, RFC 9113 §8.2.3) minus connection-specific ones, `Connection:
// keep-alive`. A body keeps its Content-Length when the request has one, else goes chunked (trailers as
// the trailer section); END_STREAM on HEADERS means no body.
//
// Responses are read with the HTTP/1.1 codec (1xx interim heads, HEAD/204/304, Content-Length, chunked and
// close-delimited bodies) and become :status, lower-cased fields without connection-specific ones, DATA
// and, from a chunked trailer section, trailers. While the stream's send window is exhausted the bridge
// stops reading the inner transport (at most max_buffered decoded bytes wait here).
//
// Failures: a response the codec rejects becomes a local 502 (like the HTTP/1.1 session's) when no head
// was sent yet, else RST_STREAM(INTERNAL_ERROR). A connection that ends before the response head resets
// the stream: REFUSED_STREAM (the relay replays it) when it is the keep-alive race (a reused connection,
// an idempotent method, no response byte), else INTERNAL_ERROR. The end of a close-delimited body is
// the end of the response. Every one of these, and a response that does not allow reuse (Connection:
// close, HTTP/1.0, close-delimited), sends GOAWAY as soon as it is known (last-stream-id = the stream in
// flight, which completes), so the relay opens a new connection for later streams. A stream the relay
// resets before its exchange completed leaves the HTTP/1.1 connection in an unknown state: GOAWAY, and
// the inner transport is given up (abortive close when the bridge is destroyed). Once GOAWAY is out and no
// stream is left, Read reports end of stream.
//
// Readiness: Read and Write both move bytes both ways on the inner transport (a Write of request frames
// may make a response readable, and reading DATA out opens room to read the inner transport again), so
// anyReadinessRetries() is true. A session that on an event of fd() neither reads nor writes must call
// Write(buf, 0), which only moves the request bytes the bridge holds. Setup, timeouts, close events and
// wire counts are the inner transport's.
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

struct H2OverH1Options {
  /** Our HTTP/2 receive windows: bound the request body bytes held while the upstream reads slowly. */
  uint32_t stream_window = 256 * 1024;
  uint32_t connection_window = 1024 * 1024;
  /** Write pushes back (-EAGAIN) while this many bytes wait for the inner transport; also the most response body held. */
  size_t max_buffered = 256 * 1024;
};

class H2OverH1Transport final : public engine::Transport {
 public:
  H2OverH1Transport(std::unique_ptr<engine::Transport> inner, H2OverH1Options opts);
  ~H2OverH1Transport() override;
  H2OverH1Transport(const H2OverH1Transport&) = delete;
  H2OverH1Transport& operator=(const H2OverH1Transport&) = delete;

  int fd() const override { return io_.t().fd(); }
  ssize_t Read(char* buf, size_t len) override;
  /** Takes HTTP/2 frames (-EAGAIN while max_buffered request bytes wait); len 0 only moves held bytes (returns 0). */
  ssize_t Write(const char* buf, size_t len) override;
  /** GOAWAY (no new streams), then the inner transport's end of stream once no exchange is in flight. */
  int ShutdownWrite() override;
  void Reset() override { io_.t().Reset(); }
  bool anyReadinessRetries() const override { return true; }
  bool holdsBytes() const override { return true; }
  /** Moves what the bridge holds both ways on the inner transport (Write(buf, 0) does the same). */
  void Flush() override { Write(nullptr, 0); }
  void Bind(engine::Loop* loop) override { io_.t().Bind(loop); }
  void SetupTimedOut() override { io_.t().SetupTimedOut(); }
  void Describe(engine::Event& closed) const override { io_.t().Describe(closed); }
  int Handshake() override { return io_.t().Handshake(); }
  /** The inner transport's wire counts, else the HTTP/1.1 bytes moved on it (never the session's HTTP/2 bytes). */
  bool WireCounts(uint64_t* rx, uint64_t* tx) const override;

  /** Bytes held inside the bridge: request bytes for the upstream, response bytes waiting for DATA frames. */
  size_t buffered() const { return io_.out.size() + in_.size() + body_.size() + staged_.size() - staged_off_; }
  /** Whether the bridge would take a new stream now (idle, no GOAWAY, connection healthy). */
  bool reusable() const override { return sid_ == 0 && !goaway_ && keep_ && !fatal_ && !io_.broken(); }

 private:
  // Where the response of the exchange in flight is.
  enum class Resp : uint8_t { Idle, Head, Body, Done };

  static const H2Setup& Setup();
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnHeader(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t, const uint8_t*, size_t, uint8_t, void*);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int OnFrameSend(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnStreamClose(nghttp2_session*, int32_t, uint32_t, void*);
  static ssize_t ReadBody(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*, nghttp2_data_source*, void*);

  /** Moves bytes both ways on the inner transport (what every Read and Write does first). */
  void Pump();
  void FlushInner();
  void ReadInner();
  bool CanReadInner() const;
  void StartRequest(bool end);
  void EndRequest();
  /** Turns what the upstream sent into response frames. */
  void Process();
  void SubmitInterim();
  void SubmitResponse();
  void BodyDone();
  void ResumeBody();
  /** The upstream's response cannot be relayed: a local 502 if nothing was sent yet, else a reset stream. */
  void BadResponse(const std::string& why);
  void ResetStream(uint32_t code);
  void InnerEnded();
  /** The exchange's stream is closed; `complete` when both messages were whole. */
  void StreamDone();
  /** Stops all I/O on the inner transport; `abortive` makes its close (when the bridge is destroyed) send RST. */
  void GiveUpInner(bool abortive = true);
  void Goaway();
  /** Acknowledges request DATA as `n` bytes leave for the upstream. */
  void Ack(size_t n);

  Inner io_;
  H2OverH1Options opts_;
  nghttp2_session* sess_ = nullptr;
  std::string staged_;  // frames for the session that did not fit its last Read
  size_t staged_off_ = 0;
  bool fatal_ = false;  // nghttp2 failed: the connection is unusable

  // The exchange in flight (sid_ != 0).
  int32_t sid_ = 0;
  h1::FieldList fields_;  // the request's header block, then its trailers
  bool req_head_ = false; // the request head went to the upstream
  bool req_chunked_ = false, req_end_ = false;
  bool local_ = false;    // answered here (CONNECT, invalid request line): the upstream saw nothing
  std::string method_;
  bool idempotent_ = false;
  size_t unacked_ = 0;    // request DATA queued for the upstream, not acknowledged yet
  int32_t ack_sid_ = 0;

  Resp resp_ = Resp::Idle;
  bool any_byte_ = false;   // the upstream sent something for this exchange
  bool submitted_ = false;  // the final response HEADERS were submitted
  h1::Buf in_;              // upstream bytes not processed yet
  h1::HeadScanner scan_{h1::Kind::Response};
  std::string head_;
  h1::Head head_parsed_;
  h1::Framing framing_ = h1::Framing::None;
  uint64_t left_ = 0;
  h1::ChunkedDecoder chunked_;
  h1::Buf body_;            // decoded response body waiting for DATA frames
  bool body_end_ = false;
  h1::FieldList trailers_;
  bool deferred_ = false;

  // The connection.
  bool reused_ = false;  // an exchange completed on it before
  bool keep_ = true;     // it may carry another exchange
  bool goaway_ = false;  // GOAWAY submitted
};

}  // namespace mx::bridge
