// Connector: see connector.h.
#include "connector.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>

#include "../tls/tls_transport.h"

namespace mx::engine {

namespace {

const char* ErrName(int err) {
  const char* n = strerrorname_np(err);
  return n ? n : "EIO";
}

std::string Where(const PlanTarget& t) { return t.port ? (t.address.find(':') != std::string::npos ? "[" + t.address + "]:" : t.address + ":") + std::to_string(t.port) : t.address; }

const std::string kAlpnHttp1("\x08http/1.1", 9);
const std::string kAlpnH2("\x02h2", 3);

}  // namespace

UpstreamLease::UpstreamLease(std::shared_ptr<ServiceState> s, std::shared_ptr<EndpointState> e) : service_(std::move(s)), endpoint_(std::move(e)) {
  service_->stats.Add(ServiceStats::kUpstreamCxActive);
  endpoint_->active.fetch_add(1, std::memory_order_relaxed);
}

UpstreamLease& UpstreamLease::operator=(UpstreamLease&& o) noexcept {
  if (this != &o) {
    Close(0, 0);
    service_ = std::move(o.service_);
    endpoint_ = std::move(o.endpoint_);
  }
  return *this;
}

void UpstreamLease::Close(uint64_t rx, uint64_t tx) {
  if (!service_) return;
  ServiceStats& st = service_->stats;
  st.Add(ServiceStats::kUpstreamCxActive, -1);
  st.Add(ServiceStats::kUpstreamRxBytes, static_cast<int64_t>(rx));
  st.Add(ServiceStats::kUpstreamTxBytes, static_cast<int64_t>(tx));
  endpoint_->active.fetch_sub(1, std::memory_order_relaxed);
  service_.reset();
  endpoint_.reset();
}

void UpstreamLease::ReportStatus(Loop* loop, uint64_t session, int status, bool count) const {
  if (!endpoint_) return;
  EndpointState& ep = *endpoint_;
  if (count) {
    ep.responses.fetch_add(1, std::memory_order_relaxed);
    if (status >= 500) ep.failedResponses.fetch_add(1, std::memory_order_relaxed);
  }
  if (status >= 500) {
    uint32_t streak = ep.errorStreak.fetch_add(1, std::memory_order_relaxed) + 1;
    loop->Emit(Event("endpoint-status", session).Lazy().Str("service", service_->id).Str("endpoint", ep.label).Num("status", status).Num("streak", streak));
    return;
  }
  if (ep.errorStreak.load(std::memory_order_relaxed) != 0 && ep.errorStreak.exchange(0, std::memory_order_relaxed) != 0)
    loop->Emit(Event("endpoint-ok", session).Str("service", service_->id).Str("endpoint", ep.label).Str("source", "response"));
}

void UpstreamLease::ReportFailure(Loop* loop, uint64_t session, const std::string& reason, bool count) const {
  if (!endpoint_) return;
  if (count) {
    endpoint_->responses.fetch_add(1, std::memory_order_relaxed);
    endpoint_->failedResponses.fetch_add(1, std::memory_order_relaxed);
  }
  loop->Emit(Event("endpoint-failed", session).Lazy().Str("service", service_->id).Str("endpoint", endpoint_->label).Str("reason", reason));
}

const std::string& UpstreamLease::service() const {
  static const std::string kNone;
  return service_ ? service_->id : kNone;
}

void CloseUpstream(Loop* loop, uint64_t session, const Transport& t, UpstreamLease& lease, uint64_t rx, uint64_t tx) {
  if (loop != nullptr && lease.open()) {
    Event ev("upstream-closed", session);
    t.Describe(ev);
    if (!ev.strs.empty()) loop->Emit(std::move(ev.Str("service", lease.service())));
  }
  t.WireCounts(&rx, &tx);
  lease.Close(rx, tx);
}

/** One connect (and handshake) to one address; a watcher of its socket for as long as it runs. */
struct Connector::Attempt final : Watcher {
  Connector* c = nullptr;
  uint32_t endpoint = 0;
  uint32_t targetIndex = 0;
  const PlanTarget* target = nullptr;
  std::unique_ptr<Transport> t;
  tls::TlsTransport* tls = nullptr;  // t, when it is TLS
  bool handshaking = false;
  bool dead = false;
  int64_t deadline = 0;
  int64_t startUs = 0;  // MonoUs() at connect(2): the connect time histogram's origin
  void OnEvents(uint32_t events) override {
    if (!dead) c->OnAttemptEvents(*this, events);
  }
};

Connector::Connector(Session& owner, ConnectorHost& host) : owner_(owner), host_(host) {}

Connector::~Connector() { Cancel(); }

void Connector::Cancel() {
  if (attempt_) Drop();
  ReleasePending();
  plan_.reset();
}

bool Connector::TakePending(std::string* why) {
  const PlanLimits& lim = plan_->limits;
  if (probe_ || (lim.maxPendingRequests == 0 && lim.maxConnections == 0)) return true;
  ServiceState& s = *plan_->state;
  int64_t pending = s.pending.fetch_add(1, std::memory_order_relaxed) + 1;
  pendingOf_ = plan_->state;
  if (lim.maxPendingRequests != 0 && pending > lim.maxPendingRequests) {
    ReleasePending();
    s.stats.Add(ServiceStats::kUpstreamRqPendingOverflow);
    *why = "upstream overflow: " + std::to_string(lim.maxPendingRequests) + " connects already under way (MeshCircuitBreaker maxPendingRequests)";
    return false;
  }
  // Connections being made count against maxConnections as the open ones do, so a burst cannot overshoot it.
  if (lim.maxConnections != 0 && s.stats.v[ServiceStats::kUpstreamCxActive].load(std::memory_order_relaxed) + pending > lim.maxConnections) {
    ReleasePending();
    s.stats.Add(ServiceStats::kUpstreamCxOverflow);
    *why = "upstream overflow: " + std::to_string(lim.maxConnections) + " upstream connections open (MeshCircuitBreaker maxConnections)";
    return false;
  }
  return true;
}

void Connector::ReleasePending() {
  if (!pendingOf_) return;
  pendingOf_->pending.fetch_sub(1, std::memory_order_relaxed);
  pendingOf_.reset();
}

void Connector::Drop() {
  Attempt& a = *attempt_;
  a.dead = true;
  a.t.reset();  // closing the socket also removes it from epoll
  // Events of this epoll batch may still name it: it is freed once the batch is over.
  owner_.loop()->Defer(std::move(attempt_));
}

void Connector::Start(std::shared_ptr<const Plan> plan, std::vector<uint32_t> order, Alpn alpn, std::string client) {
  if (attempt_) Drop();
  ReleasePending();
  plan_ = std::move(plan);
  order_ = std::move(order);
  alpn_ = alpn;
  client_ = std::move(client);
  pos_ = 0;
  target_ = 0;
  attempts_ = 0;
  lastError_.clear();
  if (!plan_->error.empty()) {
    std::shared_ptr<const Plan> p = std::move(plan_);
    host_.OnUpstreamFailed(p->error);
    return;
  }
  std::string overflow;
  overflowed_ = !TakePending(&overflow);
  if (overflowed_) {
    std::shared_ptr<const Plan> p = std::move(plan_);
    host_.OnUpstreamFailed(overflow);
    return;
  }
  if (order_.empty()) lastError_ = "service has no endpoints";
  // An order made for another plan would index past this one's endpoints: such entries are dropped.
  order_.erase(std::remove_if(order_.begin(), order_.end(), [n = plan_->endpoints.size()](uint32_t i) { return i >= n; }), order_.end());
  Next();
}

void Connector::Next() {
  // The plan's connect attempts (MeshRetry tcp.maxConnectAttempt) bound the connects, going round the order
  // again when it has fewer addresses; without them each address is tried once.
  // A health check tries its endpoint's addresses once: retrying would hide the failure it is there to see.
  uint32_t limit = plan_->retry && !probe_ ? plan_->retry->connectAttempts : 0;
  for (;;) {
    if (limit != 0 && attempts_ >= limit) break;
    if (pos_ >= order_.size()) {
      if (limit == 0 || attempts_ == 0) break;  // attempts_ == 0: no address anywhere, going round would spin
      pos_ = 0;
      target_ = 0;
    }
    const PlanEndpoint& ep = plan_->endpoints[order_[pos_]];
    if (target_ >= ep.targets.size()) {
      if (ep.targets.empty() && !ep.unavailable.empty()) lastError_ = ep.unavailable;
      pos_++;
      target_ = 0;
      continue;
    }
    const PlanTarget& t = ep.targets[target_++];
    attempts_++;
    if (!probe_) {
      plan_->state->stats.Add(ServiceStats::kUpstreamCxTotal);
      ep.state->total.fetch_add(1, std::memory_order_relaxed);
    }
    auto a = std::make_unique<Attempt>();
    a->c = this;
    a->endpoint = order_[pos_];
    a->targetIndex = static_cast<uint32_t>(target_ - 1);
    a->target = &t;
    int err = 0;
    a->startUs = MonoUs();
    UniqueFd fd = StartConnect(t, &err);
    attempt_ = std::move(a);
    if (!fd.valid()) {
      ConnectFailed(err, false);
      continue;
    }
    Attempt& cur = *attempt_;
    if (plan_->tls) {
      tls::ConnParams p = t.tls;
      p.alpn_wire = alpn_ == Alpn::kH2 ? kAlpnH2 : alpn_ == Alpn::kHttp1 ? kAlpnHttp1 : std::string();
      auto tt = std::make_unique<tls::TlsTransport>(std::move(fd), plan_->tls, std::move(p));
      cur.tls = tt.get();
      cur.t = std::move(tt);
    } else {
      cur.t = std::make_unique<PlainTransport>(std::move(fd));
    }
    if (int werr = owner_.loop()->Watch(cur.t->fd(), &cur)) {
      ConnectFailed(werr, false);
      continue;
    }
    cur.deadline = owner_.loop()->NowMs() + plan_->connectTimeoutMs;
    owner_.loop()->ArmTimer(&owner_, cur.deadline);
    return;
  }
  ReleasePending();
  std::shared_ptr<const Plan> p = std::move(plan_);
  host_.OnUpstreamFailed(lastError_.empty() ? "no endpoint reachable" : lastError_);
}

void Connector::OnAttemptEvents(Attempt& a, uint32_t events) {
  if (&a != attempt_.get()) return;
  if (!a.handshaking) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(a.t->fd(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0 && (events & (EPOLLERR | EPOLLHUP))) err = ECONNREFUSED;
    if (err != 0) {
      ConnectFailed(err, false);
      Next();
      return;
    }
    if (!(events & EPOLLOUT)) return;
    if (!a.tls) {
      Succeeded();
      return;
    }
    a.handshaking = true;
    a.t->Bind(owner_.loop());
    a.deadline = owner_.loop()->NowMs() + plan_->connectTimeoutMs;
    owner_.loop()->ArmTimer(&owner_, a.deadline);
  }
  Advance(a);
}

void Connector::Advance(Attempt& a) {
  int r = a.t->Handshake();
  if (r == -EAGAIN) return;
  if (r != 0) {
    const tls::Failure* f = a.tls->failure();
    if (f && !f->stage.empty()) TlsFailed(f->stage, f->code, f->message);
    else TlsFailed("closed", ErrName(-r), "upstream closed the connection during the TLS handshake");
    Next();
    return;
  }
  if (alpn_ == Alpn::kH2 && a.tls->alpn() != "h2") {
    std::string got = a.tls->alpn();
    TlsFailed("policy", "MESHEXT_E_ALPN", "upstream did not negotiate HTTP/2 (ALPN " + (got.empty() ? std::string("none") : got) + ")");
    Next();
    return;
  }
  if (!probe_) {
    ServiceStats& st = plan_->state->stats;
    st.Add(ServiceStats::kTlsHandshake);
    if (a.tls->resumed()) st.Add(ServiceStats::kTlsResumed);
  }
  Succeeded();
}

void Connector::OnTimer(int64_t nowMs) {
  if (!attempt_ || nowMs < attempt_->deadline) return;
  Attempt& a = *attempt_;
  if (a.handshaking) {
    a.t->SetupTimedOut();
    TlsFailed("timeout", "MESHEXT_E_CONNECT_TIMEOUT", "TLS handshake timed out after " + std::to_string(plan_->connectTimeoutMs) + " ms");
  } else {
    ConnectFailed(ETIMEDOUT, true);
  }
  Next();
}

void Connector::ConnectFailed(int err, bool timedOut) {
  Attempt& a = *attempt_;
  const PlanEndpoint& ep = plan_->endpoints[a.endpoint];
  lastError_ = timedOut ? "connect to " + Where(*a.target) + " timed out after " + std::to_string(plan_->connectTimeoutMs) + " ms"
                        : "connect to " + Where(*a.target) + " failed: " + ErrName(err);
  if (probe_) {
    Drop();
    return;
  }
  ServiceStats& st = plan_->state->stats;
  st.Add(timedOut ? ServiceStats::kConnectTimeout : ServiceStats::kConnectFail);
  ep.state->failStreak.fetch_add(1, std::memory_order_relaxed);
  owner_.loop()->Emit(Event("connect-failed", owner_.id())
                          .Str("service", plan_->service)
                          .Str("endpoint", ep.label)
                          .Str("reason", lastError_)
                          .Str("error", ErrName(err))
                          .Num("timeout", timedOut ? 1 : 0));
  Drop();
}

void Connector::TlsFailed(const std::string& stage, const std::string& code, const std::string& message) {
  Attempt& a = *attempt_;
  const PlanEndpoint& ep = plan_->endpoints[a.endpoint];
  std::string why = message.empty() ? code : stage == "policy" || stage == "timeout" || code.empty() ? message : message + " (" + code + ")";
  lastError_ = "TLS handshake with " + Where(*a.target) + " failed: " + why;
  if (probe_) {
    Drop();
    return;
  }
  ep.state->failStreak.fetch_add(1, std::memory_order_relaxed);
  Event ev("tls-failed", owner_.id());
  ev.Str("service", plan_->service).Str("endpoint", ep.label).Str("address", Where(*a.target)).Str("stage", stage).Str("code", code).Str("message", message);
  if (!client_.empty()) ev.Str("client", client_);
  owner_.loop()->Emit(std::move(ev));
  // The client reads lastError_: the words and code of the check that failed (TypeScript names the reason for
  // metrics and logs).
  Drop();
}

void Connector::Succeeded() {
  Attempt& a = *attempt_;
  const PlanEndpoint& ep = plan_->endpoints[a.endpoint];
  if (!probe_) plan_->state->connectTime.Record(MonoUs() - a.startUs);
  if (!probe_ && ep.state->failStreak.exchange(0, std::memory_order_relaxed) != 0)
    owner_.loop()->Emit(Event("endpoint-ok", owner_.id()).Str("service", plan_->service).Str("endpoint", ep.label).Str("source", "connect"));
  owner_.loop()->Unwatch(a.t->fd());
  std::unique_ptr<Transport> t = std::move(a.t);
  uint32_t endpoint = a.endpoint;
  uint32_t target = a.targetIndex;
  // The lease counts the connection from here: its pending slot ends (maxConnections then sees it as open).
  UpstreamLease lease = probe_ ? UpstreamLease() : UpstreamLease(plan_->state, ep.state);
  ReleasePending();
  a.dead = true;
  owner_.loop()->Defer(std::move(attempt_));
  plan_.reset();
  host_.OnUpstream(std::move(t), std::move(lease), endpoint, target);
}

}  // namespace mx::engine
