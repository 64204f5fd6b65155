// Http1Session: one HTTP/1.x client connection proxied on an engine loop. Requests are handled one at a
// time in arrival order (pipelined requests wait in the input buffer). Each request is routed by the plan
// current when its head arrives (a reload applies to the next request on a kept-alive connection): denied
// services answer 403 locally; otherwise the plan's endpoint order is taken for that request (round-robin per
// request, as Envoy balances), and the request goes on an idle pooled connection to the first endpoint or on a
// new connection the Connector makes (failing over through the others). Heads are parsed and rewritten;
// bodies pass through unchanged. An http2/grpc service's upstream speaks HTTP/2: its connections are wrapped
// in the HTTP/1.1-over-HTTP/2 bridge, which the session uses like any other upstream connection.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../engine/connector.h"
#include "../engine/downstream.h"
#include "../engine/engine.h"
#include "buf.h"
#include "codec.h"
#include "log_headers.h"
#include "pool.h"

namespace mx::h1 {

class Http1Session : public engine::Session, private engine::ConnectorHost {
 public:
  static constexpr int64_t kLingerMs = 5'000;
  static constexpr size_t kReadChunk = 64 * 1024;
  // Back-pressure: a side is not read while the other side's pending output is above this.
  static constexpr size_t kMaxPending = 256 * 1024;

  /** The plan's HTTP idle timeout closes a client connection idle between requests (or slow to send a head). */
  explicit Http1Session(engine::Downstream d);
  ~Http1Session() override;

  void Start() override;
  void Close(const char* reason, bool reset) override;
  void OnTimer(int64_t now) override;
  void OnSoon() override;
  const char* kind() const override { return "http1"; }
  void DrainNew() override { Drain(); }

  /** Finish the exchange in flight with `Connection: close`, close at once when idle. */
  void Drain() override;
  void OnUpstreamEvents(UpstreamConn* c, uint32_t events);

 private:
  enum class Phase { Head, WaitUpstream, Exchange, Tunnel, Closing, Linger };
  struct ClientWatcher : engine::Watcher {
    Http1Session* s = nullptr;
    void OnEvents(uint32_t events) override { s->OnClientEvents(events); }
  };

  void OnClientEvents(uint32_t events);
  void Pump();
  bool ReadClient();
  bool ReadUpstream();
  bool FlushClient();
  bool FlushUpstream();
  bool Process();
  bool StepHead();
  bool StepExchange();
  bool StepTunnel();
  void AskUpstream();
  /** The request is complete: its route timeout (Plan::requestTimeoutMs) starts now. */
  void StartRequestTimer();
  enum class Expiry { kRequestTimeout, kMaxStreamDuration, kStreamIdle };
  /**
   * A time limit of the exchange passed before the response completed: reset upstream, answer 504 (408 for an
   * idle stream, and for a max stream duration while the request was still arriving), or cut a begun response.
   */
  void TimedOut(Expiry why);
  /** Arms the session's own timer chain for `deadline` (earlier deadlines first; see OnTimer). */
  void ArmOwn(int64_t deadline);
  /** The plan for the request whose head just arrived (looked up again only when plans changed). */
  const engine::Plan* CurrentPlan();
  void OnUpstream(std::unique_ptr<engine::Transport> t, engine::UpstreamLease lease, uint32_t endpoint, uint32_t target) override;
  void OnUpstreamFailed(const std::string& reason) override;
  void Begin(std::unique_ptr<UpstreamConn> c, bool reused);
  void UpstreamGone();
  /** Takes an idle pooled connection to the first endpoint of order_ for the request, else asks the Connector. */
  void SendRequest();
  /** Whether the failed attempt may be tried again: the policy allows another, and the request is still held whole. */
  bool MayRetry(bool nothingSent);
  /**
   * Counts and decides a failed attempt of the request whose condition `retriable` the policy names: true when a
   * retry was scheduled (the attempt's upstream is dropped; the next one goes after the back-off).
   */
  bool RetryIfAllowed(bool retriable, bool nothingSent);
  /** The back-off ended: the next attempt goes to the next endpoint in order, ones already tried last. */
  void Resend();
  /** The attempt's per-try timeout (PlanRetry::perTryMs) starts, once the request is complete. */
  void StartTry();
  /** The attempt ran out of its per-try time: another attempt, 504, or a cut response. */
  void TryTimedOut();
  void Finish();
  /** `overloaded`: refused by a PlanLimits limit (x-envoy-overloaded: true). */
  void LocalReply(int status, const std::string& body, bool keep, bool overloaded = false);
  void DropUpstream();
  /** Retires the session; `reason` is one of the relay's close reasons (RelayCloseReason), `detail` says more. */
  void End(const char* reason, const char* detail = nullptr);
  void StartClosing();
  /** Tells JS about an upstream failure worth a log line (the client saw a 502 or a cut response). */
  void Report(int status, const std::string& reason);
  /** The exchange is over: its access log line (when the plan has a log and the exchange began one). */
  void LogExchange();

  engine::Downstream d_;
  engine::UniqueFd cfd_;
  ClientWatcher cw_;
  engine::Connector connector_;
  std::shared_ptr<const engine::Plan> plan_;  // the plan of the exchange in progress (or the last one)
  uint64_t planGen_ = 0;
  std::vector<uint32_t> order_;
  int64_t idle_ms_;
  Buf cin_, cout_, uin_, uout_;
  bool c_readable_ = false, c_rdhup_ = false, c_writable_ = true, c_eof_ = false, c_shut_ = false, u_shut_ = false;
  bool closed_ = false, in_pump_ = false, draining_ = false;
  Phase phase_ = Phase::Head;
  int64_t last_active_ = 0, linger_until_ = 0;
  int64_t head_since_ = 0;  // when the first byte of the request head being read arrived (0: none yet)
  int64_t armed_ = 0;  // deadline of the session's own pending timer entry (0: none)
  int64_t rq_deadline_ = 0;  // when the exchange in progress times out (0: no request timeout running)
  int64_t stream_deadline_ = 0;  // when its upstream request reaches the max stream duration (0: none running)
  int64_t stream_active_ = 0;    // last byte of the exchange either way (its stream idle timeout counts from here)
  uint64_t rx_ = 0, tx_ = 0;

  std::unique_ptr<UpstreamConn> up_;
  /** The request's PlanLimits::maxRequests slot (engine::TakeRequestSlot), held until its exchange ends. */
  std::shared_ptr<void> rq_slot_;

  // The exchange in progress.
  HeadScanner req_scan_{Kind::Request}, resp_scan_{Kind::Response};
  std::string req_head_, resp_head_, hbuf_;
  Head req_, resp_;
  BodyTracker req_body_, resp_body_;
  bool req_done_ = false, resp_started_ = false, resp_done_ = false, resp_any_ = false;
  bool reused_ = false, retried_ = false, close_after_ = false;
  uint64_t req_body_sent_ = 0;
  engine::AccessRecord log_;  // the exchange's access log record; its start is upstream_rq_time's origin too
  H1LogHeaders log_heads_;

  // Retries of the exchange in progress (the plan's PlanRetry).
  std::string retry_body_;     // request body bytes forwarded so far, held for a retry while held_ is true
  bool held_ = false;          // the whole request so far can be sent again (policy applies, method, size)
  bool sent_any_ = false;      // some attempt's head went upstream
  uint32_t attempt_ = 0;       // retries made (0: the first attempt is under way)
  uint32_t cur_endpoint_ = 0;  // endpoint of the attempt under way (plan_'s index)
  std::vector<uint32_t> tried_;  // endpoints of the attempts made, tried last by the next one
  int64_t retry_at_ = 0;       // when the back-off before the next attempt ends (0: none)
  int64_t try_deadline_ = 0;   // when the attempt under way runs out of its per-try time (0: none)
};

}  // namespace mx::h1
