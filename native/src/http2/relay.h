// HTTP/2 stream relay, independent of any event loop: one nghttp2 server session for a client connection
// and nghttp2 client sessions for the upstream connections it uses. Bytes go in through recv*() and come
// out through send*(), so the I/O layer (the engine's Http2Session, or a test's socketpair pump) owns the
// sockets. Client streams are multiplexed onto upstream connections up to each upstream's
// SETTINGS_MAX_CONCURRENT_STREAMS; the relay asks its host for another connection when all are full.
// Flow control is tied end to end: bytes received on one side are acknowledged (WINDOW_UPDATE) only once
// the other side has taken them into a DATA frame, so buffering is bounded by the advertised windows.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../engine/retry.h"

namespace mx::engine {
struct Plan;
}

namespace mx::h2 {

using Headers = std::vector<std::pair<std::string, std::string>>;

/** A response the relay makes up itself: HTTP `status` with `message` as a text body, or for gRPC status 200 with `grpcStatus`. */
struct LocalAnswer {
  int status = 503;
  int grpcStatus = 14;  // UNAVAILABLE
  std::string message;
  /** Counted as a response (CountResponse): an upstream failure is; a denial, which never went upstream, is not. */
  bool counted = true;
  /** Refused by the host's concurrency limit: HTTP answers carry x-envoy-overloaded: true, as Envoy's. */
  bool overloaded = false;
  /** engine::LogFlag bits for the access log. */
  uint32_t flags = 0;
};

/** How a client stream ended, for the access log (RelayHost::StreamClosed). */
struct StreamEnd {
  const Headers* req = nullptr;   // the request's header block (pseudo-headers included)
  const Headers* resp = nullptr;  // what the client was answered (":status" included; empty: nothing)
  uint64_t reqBytes = 0;          // request body bytes from the client
  uint64_t respBytes = 0;         // response body bytes to the client
  int64_t startUs = 0;            // engine::MonoUs() when its HEADERS began
  uint32_t flags = 0;             // engine::LogFlag bits the relay knows
  uint32_t upstream = 0;          // the upstream connection that last carried it (0: none)
  const std::string* failure = nullptr;  // why it was answered locally after an upstream failure
  const engine::Plan* plan = nullptr;    // the plan the stream was admitted (or answered) under; null: before that
};

/** Time limits of one admitted stream, from its plan (0: none). */
struct StreamLimits {
  /** Envoy's route timeout: from the client's END_STREAM to the upstream's. */
  int64_t requestMs = 0;
  /** Envoy's cluster max_stream_duration: from the request leaving for the upstream to the end of the response. */
  int64_t maxStreamMs = 0;
  /** Envoy's stream_idle_timeout: no frame of the stream either way for this long. */
  int64_t streamIdleMs = 0;
  /** The plan's retry policy (null: no request is retried beyond replays of streams the upstream never processed). */
  std::shared_ptr<const engine::PlanRetry> retry;
  /** Whatever the host holds for the stream while it lives (a request slot of a concurrency limit): released with it. */
  std::shared_ptr<void> hold;
};

/** What became of a retry policy's request, for the host's books. */
enum class RetryOutcome { kSuccess, kLimitExceeded, kBufferOverflow, kPerTryTimeout };

/** Why a stream's time ran out. */
enum class Expiry { kRequestTimeout, kMaxStreamDuration, kStreamIdle };

/** What the relay needs from whoever drives it. Called synchronously from the Recv, Send and Attach calls. */
class RelayHost {
 public:
  virtual ~RelayHost() = default;
  /**
   * A request's header block is complete: true forwards it upstream; false answers it with `*answer` (a denied
   * service, a service that cannot be served) and forwards nothing.
   */
  virtual bool Admit(LocalAnswer* answer, std::string_view method, std::string_view path) = 0;
  /**
   * The group of the request just admitted: its streams go only to upstream connections of that group (the
   * engine's session makes one group per endpoint, so it picks an endpoint per request). Default: one group.
   */
  virtual uint32_t Route() { return 0; }
  /**
   * Streams of `group` are waiting and no upstream connection of that group has room: open one (AttachUpstream
   * or AdoptUpstream with that group, or UpstreamUnavailable for it).
   */
  virtual void NeedUpstream(uint32_t group) = 0;
  /** One response went to the client: the upstream's status, or the status of a local reply. */
  virtual void CountResponse(int status) = 0;
  /** The status of a response from upstream connection `upstream` (before CountResponse): for the host's outlier detection. */
  virtual void UpstreamStatus(uint32_t upstream, int status) {
    (void)upstream;
    (void)status;
  }
  /** A stream on upstream connection `upstream` failed before its response (reset, connection lost): for outlier detection. */
  virtual void UpstreamFailure(uint32_t upstream, const std::string& reason) {
    (void)upstream;
    (void)reason;
  }
  /**
   * A stream is being sent again: one the upstream refused unprocessed (GOAWAY, REFUSED_STREAM), or a failed
   * attempt the plan's retry policy retries.
   */
  virtual void CountRetry() = 0;
  /** See RetryOutcome. */
  virtual void CountRetryOutcome(RetryOutcome what) { (void)what; }
  /**
   * The group for another attempt of a request whose attempts went to `tried` groups: its next endpoint in the
   * plan's order, those already tried last (Envoy's previous_hosts). Default: Route().
   */
  virtual uint32_t Reroute(const std::vector<uint32_t>& tried) {
    (void)tried;
    return Route();
  }
  /** Right after Admit said yes: the admitted stream's time limits. */
  virtual StreamLimits Limits() { return {}; }
  /**
   * Right after Admit (either answer): the plan the stream is served under, kept with it so that its access log
   * line follows that plan even when a reload installs another before the stream ends. Default: none.
   */
  virtual std::shared_ptr<const engine::Plan> StreamPlan() { return nullptr; }
  /** The host's clock in ms (what ArmTimer deadlines are on; the header deadline too, OldestOpenHeaders). */
  virtual int64_t NowMs() { return 0; }
  /** Returns the deadline `afterMs` from now on the host's clock, having arranged for ExpireRequests to be called then. */
  virtual int64_t ArmTimer(int64_t afterMs) {
    (void)afterMs;
    return 0;
  }
  /** A client stream is gone (answered, reset or cancelled); `e` is valid during the call only. */
  virtual void StreamClosed(const StreamEnd& e) { (void)e; }
  /** An upstream response ended (END_STREAM) `us` microseconds after its request's HEADERS began arriving. */
  virtual void CountRequestTime(int64_t us) { (void)us; }
  /** A stream ran out of time (ExpireRequests): it is answered locally, or reset if its response began. */
  virtual void CountExpiry(Expiry why) { (void)why; }
};

struct RelayOptions {
  /** Local replies in gRPC form (status 200 + grpc-status 14) instead of HTTP 503. */
  bool grpc = false;
  /** Our receive window per stream on both sides; bounds what one stream can have buffered. */
  uint32_t stream_window = 256 * 1024;
  /** Our receive window per connection on both sides. */
  uint32_t connection_window = 1024 * 1024;
  /** SETTINGS_MAX_CONCURRENT_STREAMS we advertise to the client. */
  uint32_t max_client_streams = 256;
};

class Relay {
 public:
  Relay(RelayHost& host, const RelayOptions& opts);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  /** Client bytes in. Returns false on a fatal error (bad preface, flood): flush what send gives, then close. */
  bool RecvClient(const uint8_t* data, size_t len);
  /** Appends pending client-bound bytes to `out` until it holds at least `limit` bytes or nothing is left. */
  bool SendClient(std::string& out, size_t limit);
  /** False once the client connection has nothing left to do (GOAWAY exchanged and no streams, or fatal). */
  bool ClientAlive() const;
  /** The client connection is gone (EOF or error): cancels every stream, reporting each open one (StreamClosed, DC). */
  void ClientLost();
  /** Graceful shutdown: GOAWAY to the client; streams in flight finish. */
  void Drain();

  /**
   * A new upstream connection is ready; `authority` (may be empty) replaces the client's :authority, `scheme` is
   * the upstream hop's :scheme ("http" or "https"). `assumedStreams` is the concurrency to assume until its
   * SETTINGS arrive (0: what the last upstream announced; 1 for a connection known to carry one exchange at a
   * time, such as the HTTP/2-over-HTTP/1.1 bridge, so that no stream is sent only to be refused). Returns its id.
   */
  uint32_t AttachUpstream(const std::string& authority, const std::string& scheme, uint32_t assumedStreams = 0, uint32_t group = 0);
  /** No upstream connection of `group` could be opened: its waiting streams get a local 503 / UNAVAILABLE. */
  /** `overloaded`: refused by the host's connection limits (the answers carry x-envoy-overloaded: true). */
  void UpstreamUnavailable(const std::string& reason, uint32_t group = 0, bool overloaded = false);
  bool RecvUpstream(uint32_t id, const uint8_t* data, size_t len);
  bool SendUpstream(uint32_t id, std::string& out, size_t limit);
  /** False once the upstream connection should be closed (after GOAWAY or retirement with no streams left, or fatal). */
  bool UpstreamAlive(uint32_t id) const;
  /** The connection takes no new stream (its max connection duration passed); it ends when its streams are done. */
  void RetireUpstream(uint32_t id);
  /** The upstream connection is gone: its unanswered streams get a local reply, answered ones are reset. */
  void UpstreamLost(uint32_t id, const std::string& reason);
  /** Ids of the live upstream connections, to flush each after any input. */
  std::vector<uint32_t> UpstreamIds() const;
  /** Streams open on the client side (for tests and drain). */
  size_t OpenStreams() const { return streams_.size(); }
  /** When the oldest request header block still incomplete began (host NowMs), 0 when none is. */
  int64_t OldestOpenHeaders() const;
  /** Body bytes held between the two sides right now (bounded by the windows we advertise). */
  size_t BufferedBytes() const;

  struct Stream;
  struct Upstream;
  struct UpstreamDeleter {
    void operator()(Upstream* u) const;
  };
  /** An upstream connection's HTTP/2 state, out of any relay (between two client connections). */
  using UpstreamHandle = std::unique_ptr<Upstream, UpstreamDeleter>;

  /**
   * Takes an idle, healthy upstream connection out of this relay so another relay of the same service can
   * reuse it; null when it has streams, received GOAWAY or failed.
   */
  UpstreamHandle ReleaseIdleUpstream(uint32_t id);
  /** Adopts a connection from ReleaseIdleUpstream for `group` (no stream is sent yet: feed its pending bytes, then Kick). */
  uint32_t AdoptUpstream(UpstreamHandle u, uint32_t group = 0);
  /**
   * Streams whose route timeout, max stream duration or stream idle timeout passed at `nowMs` before their
   * response completed: the upstream stream is reset (RST_STREAM CANCEL) and the client gets 504 (408 for an
   * idle stream, and for a max stream duration that ends before the whole request arrived; gRPC: grpc-status 4
   * DEADLINE_EXCEEDED) or, when the response had begun, RST_STREAM. The connections stay. Returns the next
   * pending deadline (0: none).
   */
  int64_t ExpireRequests(int64_t nowMs);
  /** Sends waiting streams to connections with room. */
  void Kick() { Dispatch(); }
  /** The groups between NeedUpstream and its answer (AttachUpstream, AdoptUpstream or UpstreamUnavailable), oldest first. */
  const std::vector<uint32_t>& RequestedGroups() const { return requested_; }

 private:
  /** The callback table and options of one side's nghttp2 sessions (null members: out of memory). */
  struct SessionSetup {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_option* opt = nullptr;
    /** Both sides' options (flow control is ours: no automatic WINDOW_UPDATE) and the callbacks `fill` sets. */
    explicit SessionSetup(void (*fill)(nghttp2_session_callbacks*));
    SessionSetup(const SessionSetup&) = delete;
    SessionSetup& operator=(const SessionSetup&) = delete;
    ~SessionSetup();
  };
  static const SessionSetup& ClientSide();
  static const SessionSetup& UpstreamSide();

  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnHeader(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t, const uint8_t*, size_t, uint8_t, void*);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame*, void*);
  static int OnDataChunk(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int OnStreamClose(nghttp2_session*, int32_t, uint32_t, void*);
  /** Tells the host a client stream ended (RelayHost::StreamClosed). */
  void ReportEnd(Stream* s);
  static ssize_t ReadResponse(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*, nghttp2_data_source*, void*);

  static int UpOnHeader(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t, const uint8_t*, size_t, uint8_t, void*);
  static int UpOnFrameRecv(nghttp2_session*, const nghttp2_frame*, void*);
  static int UpOnDataChunk(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int UpOnStreamClose(nghttp2_session*, int32_t, uint32_t, void*);
  static int UpBeforeFrameSend(nghttp2_session*, const nghttp2_frame*, void*);
  static int UpOnFrameNotSend(nghttp2_session*, const nghttp2_frame*, int, void*);
  static ssize_t ReadRequest(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*, nghttp2_data_source*, void*);

  void Dispatch();
  /** `group`'s request for a connection is answered. */
  void Answered(uint32_t group);
  bool Submit(Stream* s, Upstream* u);
  /** Unlinks the stream from its upstream connection, cancelling the upstream stream if it is open. */
  void Detach(Stream* s);
  void UpstreamFailedStream(Stream* s, uint32_t code, const std::string& why);
  /** An upstream failure's local reply: 503, or grpc-status 14 (UNAVAILABLE). */
  void LocalReply(Stream* s, const std::string& reason);
  /** A frame of the stream arrived from either side: its stream idle timeout starts over. */
  void Touch(Stream* s);
  /** The request is complete: its route timeout starts (see RelayHost::ArmTimer). */
  void StartRequestTimer(Stream* s);
  void TimeOut(Stream* s, Expiry why);
  /** The attempt under way ran out of its per-try time: another attempt, a local 504 / DEADLINE_EXCEEDED, or a reset. */
  /**
   * Takes a timed-out stream off its upstream (the waiting queue, its connection). When its response had begun
   * the client stream is reset and true returned; otherwise the caller answers it.
   */
  bool CutFromUpstream(Stream* s);
  void TryTimeOut(Stream* s);
  /** The attempt's per-try timeout starts, once the request is complete and on its way. */
  void StartTry(Stream* s);
  /**
   * A failed attempt whose condition the policy names (`retriable`): true when another attempt is scheduled (the
   * upstream stream is cancelled, the next goes after the back-off). `connectFailed`: no connection was made.
   */
  bool RetryStream(Stream* s, bool retriable, bool connectFailed);
  void Answer(Stream* s, const LocalAnswer& a);
  void SubmitResponse(Stream* s, bool end);
  void ResumeClientData(Stream* s);
  void ResumeUpstreamData(Stream* s);
  void ReleaseRequestBody(Stream* s);
  void ReleaseResponseBody(Stream* s);

  RelayHost& host_;
  RelayOptions opts_;
  nghttp2_session* down_ = nullptr;
  std::map<int32_t, std::unique_ptr<Stream>> streams_;
  std::deque<Stream*> waiting_;
  std::map<uint32_t, std::unique_ptr<Upstream>> ups_;
  uint32_t next_up_id_ = 1;
  /** Concurrency assumed for a new upstream connection until its SETTINGS arrive: the last one announced. */
  uint32_t assumed_limit_ = 100;
  std::vector<uint32_t> requested_;  // groups asked for (NeedUpstream) and not answered yet
  bool fatal_ = false;
};

}  // namespace mx::h2
