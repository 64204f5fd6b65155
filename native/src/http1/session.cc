// The HTTP/1.x proxy session. Everything here runs on the session's loop thread. One Pump() drives all
// progress (edge-triggered readiness is remembered in flags and cleared only on EAGAIN), so every state
// change, whichever side caused it, goes through the same few steps.
#include "session.h"

#include "../bridge/h1_over_h2_transport.h"
#include "../engine/admission.h"
#include "../engine/transport.h"
#include "../http_common.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace mx::h1 {
namespace {

constexpr int kMaxRounds = 16;

const char* ErrName(int err) {
  const char* n = err ? strerrorname_np(err) : nullptr;
  return n ? n : "ECONNRESET";
}

// Writes as much of p[0..n) as the socket takes. Returns bytes written, 0 with *again on EAGAIN,
// -1 with *err on failure.
ssize_t WriteSome(int fd, const char* p, size_t n, bool* again, int* err) {
  for (;;) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w >= 0) return w;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *again = true;
      return 0;
    }
    *err = errno;
    return -1;
  }
}

/** The upstream connection as the session uses it: HTTP/1.1 as is; an HTTP/2 upstream behind the bridge. */
std::unique_ptr<engine::Transport> WrapUpstream(const engine::Plan& plan, const engine::PlanEndpoint& ep, std::unique_ptr<engine::Transport> t) {
  if (plan.protocol == engine::Protocol::kHttp) return t;
  bridge::H1OverH2Options o;
  o.scheme = plan.tls ? "https" : "http";
  o.authority = ep.host;
  auto b = std::make_unique<bridge::H1OverH2Transport>(std::move(t), std::move(o));
  // The inner transport is connected and verified: the HTTP/2 preface and SETTINGS go out now.
  b->Handshake();
  return b;
}

}  // namespace

Http1Session::Http1Session(engine::Downstream d)
    : d_(std::move(d)), cfd_(std::move(d_.fd)), connector_(*this, *this), idle_ms_(d_.plan->httpIdleMs) {
  cw_.s = this;
  if (!d_.initial.empty()) cin_.Append(d_.initial.data(), d_.initial.size());
  std::string().swap(d_.initial);
  plan_ = d_.plan;
}

Http1Session::~Http1Session() = default;

void Http1Session::Start() {
  int err = loop()->Watch(cfd_.get(), &cw_);
  if (err != 0) {
    End("error", "cannot watch the client socket");
    return;
  }
  last_active_ = loop()->NowMs();
  ArmOwn(last_active_ + idle_ms_);
  // Bytes handed over with the fd (read by Node before the hand-over) are processed without waiting for
  // a readiness edge that may never come.
  c_readable_ = true;
  Pump();
}

void Http1Session::Close(const char* reason, bool reset) {
  if (closed_) return;
  if (reset) engine::SetAbortiveClose(cfd_.get());
  End(reason);
}

void Http1Session::End(const char* reason, const char* /*detail*/) {
  if (closed_) return;
  closed_ = true;
  if (log_.begun) {
    // Cut short (a request in progress, a tunnel ending): the side that left is named by the flags.
    if (std::strncmp(reason, "client", 6) == 0) log_.flags |= engine::kFlagDownstreamConnectionTermination;
    else if (std::strncmp(reason, "upstream", 8) == 0) log_.flags |= engine::kFlagUpstreamConnectionTermination;
    LogExchange();
  }
  connector_.Cancel();
  DropUpstream();
  rq_slot_.reset();
  cfd_.Reset();
  loop()->Retire(this);
}

void Http1Session::ArmOwn(int64_t deadline) {
  // One chain of the session's own: a later deadline waits for the entry already armed to fire.
  if (armed_ != 0 && armed_ <= deadline) return;
  armed_ = deadline;
  loop()->ArmTimer(this, deadline);
}

void Http1Session::OnTimer(int64_t now) {
  if (closed_) return;
  connector_.OnTimer(now);
  // Entries the Connector armed (connect deadlines) share the heap: only the session's own goes on.
  if (closed_ || now < armed_) return;
  armed_ = 0;
  // A back-off that ended or an attempt out of time; a retry may be due at once (a zero back-off), so again.
  while ((phase_ == Phase::WaitUpstream || phase_ == Phase::Exchange) && ((retry_at_ != 0 && now >= retry_at_) || (try_deadline_ != 0 && now >= try_deadline_))) {
    if (retry_at_ != 0 && now >= retry_at_) Resend();
    else TryTimedOut();
    Pump();
    if (closed_) return;
  }
  bool exchange = phase_ == Phase::WaitUpstream || phase_ == Phase::Exchange;
  // plan_ is the exchange's during one (outside one it may be null: the service is gone).
  int64_t idleAt = exchange && plan_->streamIdleMs > 0 ? stream_active_ + plan_->streamIdleMs : 0;
  bool rqDue = rq_deadline_ != 0 && now >= rq_deadline_;
  bool streamDue = stream_deadline_ != 0 && now >= stream_deadline_;
  bool idleDue = idleAt != 0 && now >= idleAt;
  if (exchange && (rqDue || streamDue || idleDue)) {
    TimedOut(rqDue ? Expiry::kRequestTimeout : streamDue ? Expiry::kMaxStreamDuration : Expiry::kStreamIdle);
    if (!closed_) ArmOwn(now + idle_ms_);  // the keep-alive (or linger) timer goes on
    Pump();
    return;
  }
  int64_t deadline;
  if (phase_ == Phase::Linger) {
    deadline = linger_until_;
  } else if (phase_ == Phase::Head) {
    // Idle keep-alive ends after the idle timeout. A head that has begun must be complete within the header
    // timeout however its bytes trickle (slow-loris): 408, as Envoy's request_headers_timeout answers.
    deadline = last_active_ + idle_ms_;
    int64_t headMs = d_.plan->httpHeaderMs;
    if (head_since_ != 0 && headMs > 0) {
      if (now >= head_since_ + headMs) {
        d_.plan->state->stats.Add(engine::ServiceStats::kHeaderTimeout);
        head_since_ = 0;
        req_scan_.Reset();
        cin_.Clear();
        req_done_ = true;
        LocalReply(408, "request header timeout", false);
        Pump();
        return;
      }
      deadline = std::min(deadline, head_since_ + headMs);
    }
  } else if (phase_ == Phase::Tunnel) {
    // An upgraded connection is a TCP relay: it gets the TCP session's idle timeout (0: none, as there).
    if (d_.plan->tcpIdleMs <= 0) return;
    deadline = last_active_ + d_.plan->tcpIdleMs;
  } else {
    // A request in progress has no client idle timeout; its route timeout, when the plan has one, runs.
    deadline = now + idle_ms_;
    if (rq_deadline_ != 0) deadline = std::min(deadline, rq_deadline_);
    if (stream_deadline_ != 0) deadline = std::min(deadline, stream_deadline_);
    if (exchange && idleAt != 0) deadline = std::min(deadline, idleAt);
    if (retry_at_ != 0) deadline = std::min(deadline, retry_at_);
    if (try_deadline_ != 0) deadline = std::min(deadline, try_deadline_);
  }
  if (now >= deadline) {
    End(phase_ == Phase::Linger ? "done" : "idle-timeout");
    return;
  }
  ArmOwn(deadline);
}

void Http1Session::OnSoon() { Pump(); }

void Http1Session::OnClientEvents(uint32_t ev) {
  if (closed_) return;
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c_readable_ = true;
  if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c_rdhup_ = true;
  if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) c_writable_ = true;
  Pump();
}

void Http1Session::OnUpstreamEvents(UpstreamConn* c, uint32_t ev) {
  if (closed_ || c != up_.get()) return;
  if (c->t().holdsBytes()) c->t().Flush();
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->readable = true;
  if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->rdhup = true;
  if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) c->writable = true;
  Pump();
}

void Http1Session::Pump() {
  if (closed_ || in_pump_) return;
  in_pump_ = true;
  for (int round = 0;; round++) {
    if (round == kMaxRounds) {
      // Fairness: let the loop serve other sessions, continue after this batch of events.
      loop()->Soon(this);
      break;
    }
    bool progress = ReadClient();
    progress |= Process();
    if (closed_) break;
    progress |= ReadUpstream();
    progress |= Process();
    if (closed_) break;
    progress |= FlushUpstream();
    progress |= FlushClient();
    if (closed_) break;
    if (phase_ == Phase::Closing && cout_.empty()) {
      StartClosing();
      if (closed_) break;
      progress = true;
    }
    if (!progress) break;
  }
  in_pump_ = false;
}

bool Http1Session::ReadClient() {
  if (!c_readable_ || c_eof_) return false;
  switch (phase_) {
    case Phase::Closing:
      return false;
    case Phase::Exchange:
      if (!req_done_ && uout_.size() >= kMaxPending) return false;
      if (req_done_ && cin_.size() >= kMaxHeadBytes) return false;  // pipelined requests wait here
      break;
    case Phase::Tunnel:
      if (uout_.size() >= kMaxPending) return false;
      break;
    case Phase::Head:
    case Phase::WaitUpstream:
      if (cin_.size() > kMaxHeadBytes) return false;
      break;
    case Phase::Linger:
      break;
  }
  // Heads (and bytes to discard) are read into the loop's scratch buffer and only what arrived is kept;
  // bodies and tunnel bytes are read straight into the queue.
  bool bulk = (phase_ == Phase::Exchange && !req_done_) || phase_ == Phase::Tunnel;
  size_t want = kReadChunk;
  char* p = bulk ? cin_.Reserve(want) : loop()->scratch();
  ssize_t n = ::read(cfd_.get(), p, want);
  if (n > 0) {
    // A short read drained the socket; edge-triggered epoll reports the next arrival, so skip the EAGAIN read.
    // (Unless the peer's FIN was already signalled: that needs one more read to see, and raises no new edge.)
    if (static_cast<size_t>(n) < want && !c_rdhup_) c_readable_ = false;
    rx_ += static_cast<uint64_t>(n);
    last_active_ = stream_active_ = loop()->NowMs();
    if (phase_ == Phase::Linger) return true;  // discarded: we are only waiting for the client's FIN
    if (bulk) cin_.Commit(static_cast<size_t>(n));
    else cin_.Append(p, static_cast<size_t>(n));
    return true;
  }
  if (bulk) cin_.Commit(0);
  if (n == 0) {
    c_eof_ = true;
    if (phase_ == Phase::Linger) End("done");
    return true;
  }
  if (errno == EINTR) return true;
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    c_readable_ = false;
    return false;
  }
  End("client-error", ErrName(errno));
  return false;
}

bool Http1Session::ReadUpstream() {
  if (!up_ || !up_->readable || up_->eof) return false;
  if (phase_ != Phase::Exchange && phase_ != Phase::Tunnel) return false;
  if (cout_.size() >= kMaxPending) return false;
  bool bulk = resp_started_;
  char* p = bulk ? uin_.Reserve(kReadChunk) : loop()->scratch();
  ssize_t n = up_->t().Read(p, kReadChunk);
  if (bulk && n <= 0) uin_.Commit(0);
  if (n > 0) {
    // A short read drained the socket (edge-triggered epoll reports the next arrival); a bridge may still
    // hold bytes, so it is read until it says EAGAIN.
    if (static_cast<size_t>(n) < kReadChunk && !up_->rdhup && !up_->t().holdsBytes() && !up_->t().readPending()) up_->readable = false;
    if (bulk) uin_.Commit(static_cast<size_t>(n));
    else uin_.Append(p, static_cast<size_t>(n));
    up_->rx += static_cast<uint64_t>(n);
    stream_active_ = loop()->NowMs();
    if (phase_ == Phase::Tunnel) last_active_ = stream_active_;
    resp_any_ = true;
    return true;
  }
  if (n == 0) {
    up_->eof = true;
    return true;
  }
  if (n == -EAGAIN) {
    up_->readable = false;
    return false;
  }
  up_->err = static_cast<int>(-n);
  up_->eof = true;
  return true;
}

bool Http1Session::FlushClient() {
  bool progress = false;
  while (!cout_.empty() && c_writable_) {
    bool again = false;
    int err = 0;
    ssize_t w = WriteSome(cfd_.get(), cout_.data(), cout_.size(), &again, &err);
    if (w < 0) {
      End("client-error", ErrName(err));
      return false;
    }
    if (again) {
      c_writable_ = false;
      break;
    }
    tx_ += static_cast<uint64_t>(w);
    cout_.Consume(static_cast<size_t>(w));
    progress = true;
  }
  return progress;
}

bool Http1Session::FlushUpstream() {
  if (!up_ || up_->eof) return false;
  bool progress = false;
  while (!uout_.empty() && up_->writable) {
    ssize_t w = up_->t().Write(uout_.data(), uout_.size());
    if (w == -EAGAIN) {
      up_->writable = false;
      break;
    }
    if (w < 0) {
      // The request cannot be delivered; Process decides between retry, 503 and cutting the client.
      up_->err = static_cast<int>(-w);
      up_->eof = true;
      uout_.Clear();
      return true;
    }
    up_->tx += static_cast<uint64_t>(w);
    uout_.Consume(static_cast<size_t>(w));
    progress = true;
    // What a bridge produces in answer (its local reply) comes without a readiness event.
    if (up_->t().holdsBytes()) up_->readable = true;
  }
  return progress;
}

bool Http1Session::Process() {
  bool progress = false;
  for (int guard = 0; guard < 64 && !closed_; guard++) {
    bool step = false;
    switch (phase_) {
      case Phase::Head:
        step = StepHead();
        break;
      case Phase::Exchange:
        step = StepExchange();
        break;
      case Phase::Tunnel:
        step = StepTunnel();
        break;
      case Phase::WaitUpstream:
      case Phase::Closing:
      case Phase::Linger:
        break;
    }
    if (!step) break;
    progress = true;
  }
  return progress;
}

bool Http1Session::StepHead() {
  if (cin_.empty()) {
    // Close only once the last response is flushed (Pump closes a Closing session with empty output).
    if (c_eof_ || draining_) phase_ = Phase::Closing;
    return false;
  }
  Error err;
  Status st = req_scan_.Scan(cin_.data(), cin_.size(), err);
  if (st == Status::Partial) {
    if (c_eof_) phase_ = Phase::Closing;
    if (head_since_ == 0) {
      head_since_ = loop()->NowMs();
      if (d_.plan->httpHeaderMs > 0) ArmOwn(head_since_ + d_.plan->httpHeaderMs);
    }
    return false;
  }
  head_since_ = 0;
  if (st == Status::Failed || (req_head_.assign(cin_.data(), req_scan_.end()), !ParseRequest(req_head_, req_, err))) {
    log_.Begin();
    log_.flags = engine::kFlagDownstreamProtocolError;
    req_scan_.Reset();
    cin_.Clear();
    req_done_ = true;
    LocalReply(err.status, err.reason, false);
    return true;
  }
  cin_.Consume(req_scan_.end());
  log_.Begin();
  log_.protocol = req_.minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
  log_.headers = &log_heads_;
  log_heads_.req = &req_;
  log_heads_.resp = nullptr;
  req_scan_.Reset();
  resp_scan_.Reset();
  req_body_.Start(req_.framing, req_.content_length);
  req_done_ = req_body_.done();
  rq_deadline_ = stream_deadline_ = 0;
  resp_started_ = resp_done_ = resp_any_ = false;
  retried_ = false;
  req_body_sent_ = 0;
  const engine::Plan* plan = CurrentPlan();
  engine::Admission a = engine::AdmitRequest(plan, loop(), id(), d_.client, req_.method, req_.target);
  if (a.verdict != engine::Admission::Verdict::kPass) {
    using V = engine::Admission::Verdict;
    log_.flags = a.verdict == V::kDenied ? engine::kFlagUnauthorized : a.verdict == V::kGone ? engine::kFlagNoRoute : engine::kFlagNoHealthyUpstream;
    // A connection whose service is gone closes; otherwise it stays usable once this request's body is read.
    LocalReply(a.status, a.message, a.verdict != engine::Admission::Verdict::kGone && req_done_);
    return true;
  }
  if (!engine::TakeRequestSlot(*plan, &rq_slot_)) {
    plan->state->stats.CountResponse(engine::kOverflowStatus);
    LocalReply(engine::kOverflowStatus, engine::OverflowMessage(*plan), req_done_, true);
    return true;
  }
  // A request may be sent again only while all of it is held: the policy retries, its method is one it retries,
  // and (checked as the body passes) its body stays within the buffer bound. Nothing is copied otherwise.
  const engine::PlanRetry* rp = plan->retry.get();
  held_ = rp != nullptr && rp->enabled() && !req_.upgrade && rp->Eligible(req_.method, [this](std::string_view name) -> std::optional<std::string_view> {
            for (const Field& f : req_.fields)
              if (http::IEquals(f.name, name)) return f.value;
            return std::nullopt;
          });
  retry_body_.clear();
  attempt_ = 0;
  tried_.clear();
  retry_at_ = try_deadline_ = 0;
  sent_any_ = false;
  // The balancer picks an endpoint for every request; an idle connection to it is used when there is one.
  plan->Order(loop()->NowMs(), &order_);
  SendRequest();
  stream_active_ = loop()->NowMs();
  if (plan_->streamIdleMs > 0) ArmOwn(stream_active_ + plan_->streamIdleMs);
  if (req_done_) StartRequestTimer();
  return true;
}

void Http1Session::SendRequest() {
  std::unique_ptr<UpstreamConn> c;
  if (!order_.empty()) {
    cur_endpoint_ = order_[0];
    // A connection made to any address of the endpoint (the connector falls over between them) is pooled
    // under that address.
    for (const engine::PlanTarget& t : plan_->endpoints[order_[0]].targets)
      if ((c = Pool::Of(loop()).Take(t.h1PoolKey))) break;
  }
  try_deadline_ = 0;
  StartTry();
  if (c) Begin(std::move(c), true);
  else AskUpstream();
}

void Http1Session::StartTry() {
  const engine::PlanRetry* rp = plan_->retry.get();
  if (try_deadline_ != 0 || !req_done_ || rp == nullptr || rp->perTryMs <= 0) return;
  try_deadline_ = loop()->NowMs() + rp->perTryMs;
  ArmOwn(try_deadline_);
}

bool Http1Session::MayRetry(bool connectFailed) {
  const engine::PlanRetry* rp = plan_->retry.get();
  if (rp == nullptr || !rp->enabled() || resp_started_) return false;
  // A request no upstream received (no connection was made) is safe to send whatever its method; one that went
  // out is sent again only when it is held whole.
  if (connectFailed) return held_ || !sent_any_;
  return held_ && req_done_;
}

bool Http1Session::RetryIfAllowed(bool retriable, bool connectFailed) {
  if (!retriable || !MayRetry(connectFailed)) return false;
  const engine::PlanRetry& rp = *plan_->retry;
  engine::ServiceStats& stats = plan_->state->stats;
  if (attempt_ >= rp.numRetries) {
    stats.Add(engine::ServiceStats::kRqRetryLimitExceeded);
    log_.flags |= engine::kFlagUpstreamRetryLimitExceeded;
    return false;
  }
  DropUpstream();
  connector_.Cancel();
  if (std::find(tried_.begin(), tried_.end(), cur_endpoint_) == tried_.end()) tried_.push_back(cur_endpoint_);
  attempt_++;
  stats.Add(engine::ServiceStats::kRqRetry);
  phase_ = Phase::WaitUpstream;
  uin_.Clear();
  uout_.Clear();
  resp_scan_.Reset();
  resp_any_ = false;
  stream_deadline_ = try_deadline_ = 0;
  retry_at_ = loop()->NowMs() + rp.BackOffMs(attempt_);
  ArmOwn(retry_at_);
  return true;
}

void Http1Session::Resend() {
  retry_at_ = 0;
  plan_->Order(loop()->NowMs(), &order_);
  // Host selection omits the endpoints already tried while there are others (Envoy's previous_hosts predicate).
  std::stable_partition(order_.begin(), order_.end(), [this](uint32_t e) { return std::find(tried_.begin(), tried_.end(), e) == tried_.end(); });
  SendRequest();
}

void Http1Session::TryTimedOut() {
  try_deadline_ = 0;
  plan_->state->stats.Add(engine::ServiceStats::kRqPerTryTimeout);
  if (!resp_started_) {
    if (RetryIfAllowed(plan_->retry->RetryReset(false, false), false)) return;
    log_.flags |= engine::kFlagUpstreamRequestTimeout;
    connector_.Cancel();
    Report(504, "upstream per-try timeout");
    plan_->state->stats.CountResponse(504);
    LocalReply(504, "upstream per-try timeout", req_done_);
    return;
  }
  // Part of the response went out: the client must not take it for a whole one.
  log_.flags |= engine::kFlagUpstreamRequestTimeout;
  Report(504, "upstream per-try timeout");
  End("upstream-error", "upstream per-try timeout");
}

void Http1Session::StartRequestTimer() {
  if (rq_deadline_ != 0 || plan_->requestTimeoutMs <= 0) return;
  rq_deadline_ = loop()->NowMs() + plan_->requestTimeoutMs;
  ArmOwn(rq_deadline_);
}

void Http1Session::TimedOut(Expiry why) {
  rq_deadline_ = stream_deadline_ = retry_at_ = try_deadline_ = 0;
  engine::ServiceStats& stats = plan_->state->stats;
  const char* what = "upstream request timeout";
  int status = 504;
  if (why == Expiry::kRequestTimeout) {
    stats.Add(engine::ServiceStats::kUpstreamRqTimeout);
    log_.flags |= engine::kFlagUpstreamRequestTimeout;
  } else if (why == Expiry::kMaxStreamDuration) {
    stats.Add(engine::ServiceStats::kUpstreamRqMaxDuration);
    log_.flags |= engine::kFlagUpstreamMaxStreamDuration;
    what = "upstream max stream duration reached";
    // As Envoy: a max stream duration that ends while the request is still arriving is the client's 408.
    if (!req_done_) status = 408;
  } else {
    stats.Add(engine::ServiceStats::kDownstreamRqIdleTimeout);
    log_.flags |= engine::kFlagStreamIdleTimeout;
    what = "stream timeout";
    status = 408;
  }
  connector_.Cancel();
  if (up_ && why != Expiry::kStreamIdle && plan_->reportStatuses) up_->lease().ReportFailure(loop(), id(), what, plan_->countResponses);
  Report(status, what);
  if (resp_started_) {
    // Part of the response went out: the client must not take it for a whole one (Envoy resets the stream).
    End("upstream-error", what);
    return;
  }
  // The upstream request is reset with its connection (an HTTP/1.1 exchange cannot be cancelled otherwise);
  // the client connection stays usable when the request was read whole.
  stats.CountResponse(status);
  LocalReply(status, what, req_done_);
}

const engine::Plan* Http1Session::CurrentPlan() {
  engine::PlanTable& table = loop()->engine()->plans();
  uint64_t gen = table.generation();
  if (gen != planGen_) {
    planGen_ = gen;
    plan_ = table.Find(d_.key);
  }
  return plan_.get();
}

void Http1Session::AskUpstream() {
  phase_ = Phase::WaitUpstream;
  if (order_.empty()) plan_->Order(loop()->NowMs(), &order_);  // a retry: the balancer picks again
  connector_.Start(plan_, std::move(order_), plan_->protocol == engine::Protocol::kHttp ? engine::Connector::Alpn::kHttp1 : engine::Connector::Alpn::kH2, d_.client);
  order_.clear();
}

void Http1Session::OnUpstream(std::unique_ptr<engine::Transport> t, engine::UpstreamLease lease, uint32_t endpoint, uint32_t target) {
  const engine::PlanEndpoint& ep = plan_->endpoints[endpoint];
  if (!closed_ && phase_ == Phase::WaitUpstream) cur_endpoint_ = endpoint;
  // Pooled under the address it is connected to: a later request for that address may reuse it.
  const std::string& key = ep.targets[target].h1PoolKey;
  std::unique_ptr<engine::Transport> up = WrapUpstream(*plan_, ep, std::move(t));
  int64_t expires = plan_->maxConnMs > 0 ? loop()->NowMs() + plan_->maxConnMs : 0;
  auto c = std::make_unique<UpstreamConn>(std::move(up), std::move(lease), key, ep.host, plan_->upstreamIdleMs, expires);
  c->address = engine::TargetText(ep.targets[target].address, ep.targets[target].port);
  if (loop()->Watch(c->fd(), c.get()) != 0) {
    c->Kill();
    loop()->Defer(std::move(c));
    if (!closed_ && phase_ == Phase::WaitUpstream) OnUpstreamFailed("cannot watch the upstream connection");
    return;
  }
  if (closed_ || phase_ != Phase::WaitUpstream) {
    // The client went away while the connection was being made: keep it for the next request.
    Pool::Of(loop()).Release(std::move(c));
    return;
  }
  Begin(std::move(c), false);
  Pump();
}

void Http1Session::OnUpstreamFailed(const std::string& reason) {
  if (closed_ || phase_ != Phase::WaitUpstream) return;
  // A refusal by the plan's own connection limits is not retried: another attempt would meet the same limit.
  if (plan_->retry && !connector_.overflowed() && RetryIfAllowed(plan_->retry->RetryReset(true, false), true)) return;
  plan_->state->stats.CountResponse(503);
  // A connect the plan's own limits refused is an overflow (UO), not a failure of the endpoint (UF).
  log_.flags |= connector_.overflowed() ? engine::kFlagUpstreamOverflow : engine::kFlagUpstreamConnectFailure;
  log_.failure = reason;
  loop()->Emit(engine::Event("upstream-failed", id()).Str("service", plan_->service).Str("client", d_.client).Str("reason", reason).Str("method", std::string(req_.method)).Str("path", std::string(req_.target)));
  LocalReply(503, "upstream unavailable: " + reason, req_done_ && req_body_sent_ == 0, connector_.overflowed());
  Pump();
}

void Http1Session::Begin(std::unique_ptr<UpstreamConn> c, bool reused) {
  up_ = std::move(c);
  up_->owner = this;
  log_.upstreamHost = up_->address;
  reused_ = reused;
  uin_.Clear();
  uout_.Clear();
  hbuf_.clear();
  WriteRequestHead(req_, up_->host, hbuf_);
  uout_.Append(hbuf_.data(), hbuf_.size());
  // A retry sends the body bytes held from the attempts before; the rest follows from the client as it arrives.
  if (attempt_ > 0 && !retry_body_.empty()) uout_.Append(retry_body_.data(), retry_body_.size());
  sent_any_ = true;
  phase_ = Phase::Exchange;
  // Each upstream request (a retry is a new one) gets the whole max stream duration, as Envoy's.
  stream_deadline_ = 0;
  if (plan_->maxStreamMs > 0) {
    stream_deadline_ = loop()->NowMs() + plan_->maxStreamMs;
    ArmOwn(stream_deadline_);
  }
}

bool Http1Session::StepExchange() {
  bool progress = false;
  if (!req_done_ && !cin_.empty()) {
    size_t n = req_body_.Consume(cin_.data(), cin_.size());
    if (n > 0) {
      uout_.Append(cin_.data(), n);
      if (held_) {
        if (retry_body_.size() + n > engine::PlanRetry::kBufferBytes) {
          // Too large to hold: streamed from here on, and never sent again.
          held_ = false;
          std::string().swap(retry_body_);
          plan_->state->stats.Add(engine::ServiceStats::kRqRetryBufferOverflow);
        } else {
          retry_body_.append(cin_.data(), n);
        }
      }
      cin_.Consume(n);
      req_body_sent_ += n;
      progress = true;
    }
    if (req_body_.failed()) {
      DropUpstream();
      if (!resp_started_) {
        cin_.Clear();
        LocalReply(400, std::string("malformed request body: ") + req_body_.error(), false);
        return true;
      }
      End("client-error", "malformed request body");
      return false;
    }
    if (req_body_.done()) {
      req_done_ = true;
      StartRequestTimer();
      StartTry();
    }
  }
  if (!req_done_ && c_eof_ && cin_.empty()) {
    End("client-reset", "client closed mid-request");
    return false;
  }
  while (!resp_started_ && !uin_.empty()) {
    Error err;
    Status st = resp_scan_.Scan(uin_.data(), uin_.size(), err);
    if (st == Status::Partial) break;
    if (st == Status::Failed || (resp_head_.assign(uin_.data(), resp_scan_.end()), !ParseResponse(resp_head_, req_.method, resp_, err))) {
      plan_->state->stats.CountResponse(502);
      log_.flags |= engine::kFlagUpstreamProtocolError;
      Report(502, "upstream sent an invalid response: " + err.reason);
      LocalReply(502, "upstream sent an invalid response: " + err.reason, false);
      return true;
    }
    uin_.Consume(resp_scan_.end());
    resp_scan_.Reset();
    progress = true;
    hbuf_.clear();
    if (resp_.status < 200 && resp_.status != 101) {
      WriteResponseHead(resp_, req_, false, hbuf_);
      cout_.Append(hbuf_.data(), hbuf_.size());
      continue;
    }
    // Outlier detection sees every upstream answer, a retried one included (as Envoy's).
    if (plan_->reportStatuses) up_->lease().ReportStatus(loop(), id(), resp_.status, plan_->countResponses);
    if (plan_->retry && resp_.status != 101) {
      // The final response head is here and nothing of it went to the client: a status the policy retries
      // sends the request again rather than relaying the failure.
      int grpc = -1;
      bool limited = false;
      if (plan_->retry->ReadsHeaders())
        for (const Field& f : resp_.fields) {
          if (http::IEquals(f.name, "grpc-status")) grpc = std::atoi(std::string(f.value).c_str());
          else if (http::IEquals(f.name, "x-envoy-ratelimited")) limited = true;
        }
      if (plan_->retry->RetryStatus(resp_.status, grpc, limited)) {
        if (RetryIfAllowed(true, false)) return true;
      } else if (attempt_ > 0) {
        plan_->state->stats.Add(engine::ServiceStats::kRqRetrySuccess);
      }
    }
    plan_->state->stats.CountResponse(resp_.status);
    log_.status = resp_.status;
    log_heads_.resp = &resp_;
    close_after_ = draining_ || !ClientKeepAlive(req_, resp_);
    WriteResponseHead(resp_, req_, close_after_, hbuf_);
    cout_.Append(hbuf_.data(), hbuf_.size());
    resp_started_ = true;
    // No retry once the response goes to the client: a body still arriving is no longer copied.
    if (held_) {
      held_ = false;
      std::string().swap(retry_body_);
    }
    resp_body_.Start(resp_.framing, resp_.content_length);
    if (resp_.framing == Framing::Tunnel) {
      rq_deadline_ = stream_deadline_ = 0;  // an upgraded connection is a tunnel, not an exchange
      phase_ = Phase::Tunnel;
      return true;
    }
  }
  if (resp_started_ && !resp_done_) {
    if (!uin_.empty()) {
      size_t n = resp_body_.Consume(uin_.data(), uin_.size());
      log_.bytesSent += n;
      if (n > 0) {
        cout_.Append(uin_.data(), n);
        uin_.Consume(n);
        progress = true;
      }
      if (resp_body_.failed()) {
        Report(502, std::string("upstream sent a malformed response body: ") + resp_body_.error());
        End("upstream-error", "malformed response body");
        return false;
      }
    }
    if (!resp_body_.done() && up_->eof && uin_.empty()) {
      resp_body_.EndOfStream();
      if (!resp_body_.done()) {
        // Truncated: the client must not take a partial body for a whole one.
        Report(502, std::string("upstream closed mid-response: ") + (up_->err ? ErrName(up_->err) : "end of stream"));
        End("upstream-error", "upstream closed mid-response");
        return false;
      }
    }
    if (resp_body_.done()) resp_done_ = true;
  }
  if (!resp_started_ && up_->eof) {
    UpstreamGone();
    return true;
  }
  if (resp_done_) {
    Finish();
    return true;
  }
  return progress;
}

void Http1Session::UpstreamGone() {
  bool nothing = !resp_any_;
  int err = up_->err;
  bool replay = nothing && reused_ && !retried_ && http::IdempotentMethod(req_.method) && req_body_sent_ == 0;
  // The keep-alive race below is no fault of the endpoint; any other loss of the connection is.
  if (!replay && plan_->reportStatuses) up_->lease().ReportFailure(loop(), id(), std::string("upstream connection lost: ") + (err ? ErrName(err) : "closed before responding"), plan_->countResponses);
  DropUpstream();
  if (replay) {
    // The keep-alive race: the upstream closed the pooled connection as we reused it. The request never
    // reached it, so it goes once more on a fresh connection (Envoy's reset-before-request retry).
    retried_ = true;
    plan_->state->stats.Add(engine::ServiceStats::kRqRetry);
    AskUpstream();
    return;
  }
  if (plan_->retry && RetryIfAllowed(plan_->retry->RetryReset(false, false), false)) return;
  std::string reason;
  if (nothing && reused_ && !retried_) reason = "upstream closed the reused connection before responding";
  else if (nothing && retried_) reason = "upstream closed the connection before responding";
  else reason = std::string("upstream connection error: ") + ErrName(err);
  plan_->state->stats.CountResponse(503);
  log_.flags |= engine::kFlagUpstreamConnectionTermination;
  LocalReply(503, "upstream unavailable: " + reason, req_done_ && req_body_sent_ == 0);
}

void Http1Session::Finish() {
  rq_deadline_ = stream_deadline_ = retry_at_ = try_deadline_ = 0;
  rq_slot_.reset();
  plan_->state->rqTime.Record(engine::MonoUs() - log_.startMonoUs);
  // A connection whose FIN arrived with the response (rdhup) is done, even before the read that says so.
  // A bridged HTTP/2 upstream that received GOAWAY says so itself.
  bool reusable = UpstreamReusable(resp_) && req_done_ && !up_->eof && !up_->rdhup && uin_.empty() && uout_.empty() && up_->t().reusable();
  if (reusable) {
    Pool::Of(loop()).Release(std::move(up_));
  } else {
    DropUpstream();
  }
  LogExchange();
  if (close_after_ || !req_done_ || draining_) {
    phase_ = Phase::Closing;
  } else {
    phase_ = Phase::Head;
    last_active_ = loop()->NowMs();
  }
}

bool Http1Session::StepTunnel() {
  bool progress = false;
  if (!cin_.empty()) {
    uout_.Append(cin_.data(), cin_.size());
    cin_.Clear();
    progress = true;
  }
  if (!uin_.empty()) {
    cout_.Append(uin_.data(), uin_.size());
    uin_.Clear();
    progress = true;
  }
  if (up_->err != 0) {
    End("upstream-reset", ErrName(up_->err));
    return false;
  }
  // Half-closes cross the tunnel once everything before them was delivered.
  if (c_eof_ && !u_shut_ && uout_.empty()) {
    if (up_->t().ShutdownWrite() == -EAGAIN) return progress;
    u_shut_ = true;
    progress = true;
  }
  if (up_->eof && !c_shut_ && cout_.empty()) {
    ::shutdown(cfd_.get(), SHUT_WR);
    c_shut_ = true;
    progress = true;
  }
  if (c_shut_ && u_shut_) End("done");
  return progress && !closed_;
}

void Http1Session::LocalReply(int status, const std::string& body, bool keep, bool overloaded) {
  rq_deadline_ = stream_deadline_ = retry_at_ = try_deadline_ = 0;
  rq_slot_.reset();
  keep = keep && !draining_ && req_.keep_alive;
  if (overloaded) log_.flags |= engine::kFlagUpstreamOverflow;
  std::string r = LocalResponse(status, body, !keep, overloaded);
  cout_.Append(r.data(), r.size());
  log_.status = status;
  log_.bytesSent = body.size() + 1;  // LocalResponse ends the body with a newline
  log_heads_.resp = nullptr;
  LogExchange();
  DropUpstream();
  if (keep) {
    phase_ = Phase::Head;
    last_active_ = loop()->NowMs();
  } else {
    phase_ = Phase::Closing;
  }
}

void Http1Session::StartClosing() {
  // FIN after the last response, then wait (bounded) for the client's FIN: closing with unread input
  // would send RST and could destroy the response before the client reads it.
  ::shutdown(cfd_.get(), SHUT_WR);
  c_shut_ = true;
  if (c_eof_) {
    End("done");
    return;
  }
  phase_ = Phase::Linger;
  cin_.Clear();
  linger_until_ = loop()->NowMs() + kLingerMs;
  ArmOwn(linger_until_);
}

void Http1Session::Report(int status, const std::string& reason) {
  loop()->Emit(engine::Event("h1-error", id()).Str("service", plan_->service).Num("status", status).Str("reason", reason).Str("method", std::string(req_.method)));
}

void Http1Session::LogExchange() {
  if (!log_.begun) return;
  log_.bytesReceived = req_body_sent_;
  if (plan_) engine::LogAccess(*plan_, log_, d_.client);
  log_.begun = false;
}

void Http1Session::Drain() {
  if (closed_) return;
  draining_ = true;
  if (phase_ == Phase::Head && cin_.empty()) End("done");
}

void Http1Session::DropUpstream() {
  if (!up_) return;
  up_->owner = nullptr;
  up_->Kill();
  // Events of this epoll batch may still name it.
  loop()->Defer(std::move(up_));
}

}  // namespace mx::h1
