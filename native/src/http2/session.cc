// Http2Session: see session.h.
#include "session.h"

#include "log_headers.h"

#include "../bridge/h2_over_h1_transport.h"
#include "../engine/admission.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <unordered_map>

namespace mx::h2 {

namespace {
/** An http service's upstream speaks HTTP/1.1: the relay reaches it through the HTTP/2-over-HTTP/1.1 bridge. */
std::unique_ptr<engine::Transport> WrapHttp1Upstream(std::unique_ptr<engine::Transport> t) {
  auto b = std::make_unique<bridge::H2OverH1Transport>(std::move(t), bridge::H2OverH1Options{});
  b->Handshake();
  return b;
}
// Bytes read per wake-up (all sides together) before yielding to other sessions on the loop.
constexpr size_t kBudget = 1024 * 1024;
// Output pulled from nghttp2 per flush (a few frames' worth). More is pulled only once the socket took all
// of it, so a slow peer backs up into nghttp2's flow-controlled queues, never into an unbounded buffer here.
constexpr size_t kPullChunk = 64 * 1024;
// Idle upstream connections kept per service and loop thread (each for its plan's upstreamIdleMs: checked on
// every use, and closed by the cache's upkeep when no client comes).
constexpr size_t kIdlePerService = 16;
}  // namespace

void Http2Session::Idle::OnEvents(uint32_t events) {
  // Registration reports the socket writable; only input or a hang-up means the upstream spoke.
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) Report();
}

void Http2Session::Idle::Report() {
  if (!side || !side->t) return;
  up.reset();
  side->CloseUpstream();
  side.reset();
}

void Http2Session::Side::CloseUpstream() {
  if (!t) return;
  engine::CloseUpstream(engine::Loop::Current(), 0, *t, lease, rx, tx);
  t.reset();  // closing the fd also removes it from epoll
}

namespace {
RelayOptions OptionsFor(const engine::Plan& plan) {
  RelayOptions o;
  o.grpc = plan.grpc();
  return o;
}
}  // namespace

Http2Session::Http2Session(engine::Downstream d)
    : d_(std::move(d)), plan_(d_.plan), connector_(*this, *this), relay_(*this, OptionsFor(*d_.plan)) {
  client_.session = this;
  client_.client = true;
  client_.t = std::make_unique<engine::PlainTransport>(std::move(d_.fd));
}

Http2Session::~Http2Session() = default;

void Http2Session::Side::OnEvents(uint32_t events) {
  // A parked side has no session: events of the batch that parked it may still name it (its Idle entry
  // watches the fd from then on).
  if (!dead && session != nullptr) session->OnSideEvents(*this, events);
}

void Http2Session::Start() {
  if (int err = loop()->Watch(client_.t->fd(), &client_)) {
    Finish("error", err);
    return;
  }
  lastActive_ = loop()->NowMs();
  ArmOwn(lastActive_ + d_.plan->httpIdleMs);
  if (!d_.initial.empty()) {
    client_.rx += d_.initial.size();
    if (!relay_.RecvClient(reinterpret_cast<const uint8_t*>(d_.initial.data()), d_.initial.size())) clientFatal_ = true;
    std::string().swap(d_.initial);
    ArmHeaderDeadline();
  }
  Pump();
}

void Http2Session::OnSideEvents(Side& s, uint32_t events) {
  if (ended_) return;
  if (s.t->holdsBytes()) s.t->Flush();
  if (s.t->anyReadinessRetries()) {
    s.readable = s.writable = true;
  } else {
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s.readable = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) s.writable = true;
  }
  Pump();
}

void Http2Session::OnSoon() {
  dead_.clear();  // the epoll batch that could still name them is over
  if (!ended_) Pump();
}

size_t Http2Session::ReadSide(Side& s) {
  if (!s.readable || s.eof || s.dead) return 0;
  char* buf = loop()->scratch();
  ssize_t n = s.t->Read(buf, engine::Loop::kScratchSize);
  if (n == -EAGAIN || n == -EWOULDBLOCK) {
    s.readable = false;
    return 0;
  }
  if (n <= 0) {
    s.eof = true;  // end of stream or an error: either way this connection is over
    if (s.client) {
      Finish(n == 0 ? "done" : (n == -ECONNRESET ? "client-reset" : "client-error"), n < 0 ? static_cast<int>(-n) : 0);
    } else {
      KillUpstream(s, n == 0 ? "upstream closed the connection" : std::string("upstream connection failed: ") + strerror(static_cast<int>(-n)));
    }
    return 0;
  }
  s.rx += static_cast<uint64_t>(n);
  const auto* p = reinterpret_cast<const uint8_t*>(buf);
  if (s.client) {
    lastActive_ = loop()->NowMs();
    if (!relay_.RecvClient(p, static_cast<size_t>(n))) clientFatal_ = true;
    ArmHeaderDeadline();
  } else if (!relay_.RecvUpstream(s.rid, p, static_cast<size_t>(n))) {
    KillUpstream(s, "upstream HTTP/2 protocol error");
  }
  return static_cast<size_t>(n);
}

bool Http2Session::FlushSide(Side& s) {
  if (s.dead || ended_) return false;
  bool moved = false;
  for (;;) {
    if (s.pending() == 0) {
      s.out.clear();
      s.off = 0;
      if (s.client) relay_.SendClient(s.out, kPullChunk);
      else relay_.SendUpstream(s.rid, s.out, kPullChunk);
      if (s.out.empty()) return moved;
    }
    if (!s.writable) return moved;
    ssize_t n = s.t->Write(s.out.data() + s.off, s.pending());
    if (n == -EAGAIN || n == -EWOULDBLOCK) {
      s.writable = false;
      return moved;
    }
    if (n < 0) {
      if (s.client) {
        Finish(n == -ECONNRESET || n == -EPIPE ? "client-reset" : "client-error", static_cast<int>(-n));
      } else {
        KillUpstream(s, std::string("upstream connection failed: ") + strerror(static_cast<int>(-n)));
      }
      return moved;
    }
    s.off += static_cast<size_t>(n);
    s.tx += static_cast<uint64_t>(n);
    moved = true;
  }
}

void Http2Session::Pump() {
  size_t budget = kBudget;
  bool progress = true;
  while (progress && !ended_) {
    progress = false;
    // Output first: it makes room (and window updates) for what the reads below bring in.
    progress |= FlushSide(client_);
    for (size_t i = 0; i < ups_.size() && !ended_; i++) progress |= FlushSide(*ups_[i]);
    if (ended_) return;
    if (clientFatal_) {
      // nghttp2 queued its GOAWAY (if any) above; once it is out, the connection is done.
      if (client_.pending() == 0 || !client_.writable) Finish("client-error", 0);
      return;
    }
    if (budget == 0) {
      loop()->Soon(this);
      return;
    }
    // What reading adds for the other side is bounded by the flow-control windows we advertise (DATA is
    // acknowledged only once forwarded); control-frame floods are bounded by nghttp2 itself.
    size_t n = ReadSide(client_);
    for (size_t i = 0; i < ups_.size() && !ended_; i++) n += ReadSide(*ups_[i]);
    if (ended_) return;
    // A layered upstream transport may have produced bytes as a result of what was just written to it.
    for (auto& u : ups_)
      if (u->t && u->t->holdsBytes() && u->tx > 0) u->readable = true;
    budget = n >= budget ? 0 : budget - n;
    progress |= n > 0;
    // Upstream connections nghttp2 has finished with (GOAWAY and no streams left) close once flushed.
    for (size_t i = 0; i < ups_.size();) {
      Side& u = *ups_[i];
      if (!relay_.UpstreamAlive(u.rid) && u.pending() == 0) {
        KillUpstream(u, "upstream connection finished");
        progress = true;
        continue;  // KillUpstream removed it from ups_
      }
      i++;
    }
    if (wantUpstream_ && !connector_.busy()) {
      wantUpstream_ = false;
      // Groups waiting for a connection: a parked one to their endpoint, else the Connector makes one (one
      // connect at a time; its answer sets wantUpstream_ again for the groups still waiting).
      std::vector<uint32_t> asked = relay_.RequestedGroups();
      for (uint32_t g : asked) {
        if (AdoptIdle(g)) progress = true;
        if (ended_) return;
      }
      if (!relay_.RequestedGroups().empty()) {
        uint32_t g = relay_.RequestedGroups().front();
        // The order the group's request was routed by, with its plan (its indexes are that plan's). A group
        // without one (a request replayed after the plan changed) gets its endpoint first in the current plan's
        // order, the rest for failover.
        std::shared_ptr<const engine::Plan> plan;
        std::vector<uint32_t> order;
        auto it = groupOrder_.find(g);
        if (it != groupOrder_.end() && it->second.plan) {
          plan = it->second.plan;
          order = it->second.order;
        } else {
          plan = plan_;
          plan->Order(loop()->NowMs(), &order);
          for (size_t i = 0; i < order.size(); i++) {
            if (plan->endpoints[order[i]].label == groups_[g]) {
              std::rotate(order.begin(), order.begin() + static_cast<long>(i), order.begin() + static_cast<long>(i) + 1);
              break;
            }
          }
        }
        // The connection's endpoint indexes refer to this plan, whatever plan_ becomes meanwhile.
        connectPlan_ = plan;
        connectGroup_ = g;
        connector_.Start(plan, std::move(order), plan->protocol == engine::Protocol::kHttp ? engine::Connector::Alpn::kHttp1 : engine::Connector::Alpn::kH2, d_.client);
        if (ended_) return;
        progress = true;
      }
    }
    if (!relay_.ClientAlive() && client_.pending() == 0) {
      Finish("done", 0);
      return;
    }
  }
}

Http2Session::IdleCache& Http2Session::Cache() {
  // One cache per loop thread: a parked connection is only ever touched by the thread that parked it.
  thread_local IdleCache cache;
  return cache;
}

int64_t Http2Session::IdleCache::Run(int64_t nowMs) {
  // The batch is over: nothing names the entries taken out, so they are freed here.
  graveyard.clear();
  int64_t next = 0;
  for (auto it = byKey.begin(); it != byKey.end();) {
    auto& list = it->second;
    list.erase(std::remove_if(list.begin(), list.end(), [nowMs](const std::unique_ptr<Idle>& idle) { return !idle->side || idle->until <= nowMs; }), list.end());
    for (const auto& idle : list) next = next == 0 ? idle->until : std::min(next, idle->until);
    it = list.empty() ? byKey.erase(it) : std::next(it);
  }
  return next;
}

std::string Http2Session::IdleKey(const engine::Plan& plan, const std::string& label) { return plan.poolKey + '\n' + label; }

void Http2Session::RetainIdle(const std::unordered_set<std::string>& live) {
  IdleCache& cache = Cache();
  for (auto it = cache.byKey.begin(); it != cache.byKey.end();) {
    if (live.count(it->first.substr(0, it->first.rfind('\n'))) != 0) {
      ++it;
      continue;
    }
    // Posted commands run inside a loop iteration: events of its batch may still name these entries, so they
    // are closed now and freed once the batch is over.
    for (auto& idle : it->second) {
      idle->Report();
      if (engine::Loop* l = engine::Loop::Current()) l->Defer(std::move(idle));
    }
    it = cache.byKey.erase(it);
  }
}

void Http2Session::GraveyardAdd(std::unique_ptr<Idle> idle) {
  Cache().graveyard.emplace_back(loop()->Stats().wakeups, std::move(idle));
}

std::vector<std::unique_ptr<Http2Session::Idle>>& Http2Session::IdleList(const std::string& key) {
  IdleCache& cache = Cache();
  uint64_t batch = loop()->Stats().wakeups;
  auto& g = cache.graveyard;
  g.erase(std::remove_if(g.begin(), g.end(), [batch](const auto& e) { return e.first < batch; }), g.end());
  auto& list = cache.byKey[key];
  int64_t now = loop()->NowMs();
  for (size_t i = 0; i < list.size();) {
    if (list[i]->side && now < list[i]->until) {
      i++;
      continue;
    }
    list[i]->Report();
    GraveyardAdd(std::move(list[i]));
    list.erase(list.begin() + static_cast<long>(i));
  }
  return list;
}

bool Http2Session::AdoptIdle(uint32_t group) {
  auto& list = IdleList(IdleKey(*plan_, groups_[group]));
  while (!list.empty()) {
    std::unique_ptr<Idle> idle = std::move(list.back());
    list.pop_back();
    std::unique_ptr<Side> side = std::move(idle->side);
    Relay::UpstreamHandle up = std::move(idle->up);
    GraveyardAdd(std::move(idle));
    Side& s = *side;
    loop()->Unwatch(s.t->fd());
    s.session = this;
    s.readable = s.writable = true;
    s.eof = s.dead = false;
    s.rid = relay_.AdoptUpstream(std::move(up), group);
    if (s.expires != 0) ArmOwn(s.expires);  // its max connection duration runs on in this session
    ups_.push_back(std::move(side));
    if (int err = loop()->Watch(s.t->fd(), &s)) {
      KillUpstream(s, std::string("cannot watch the upstream socket: ") + strerror(err));
      continue;
    }
    // Whatever the upstream sent since the last event (GOAWAY, its close) is read before any stream goes out.
    while (s.readable && !s.dead && !ended_) ReadSide(s);
    if (ended_) return true;
    if (s.dead || !relay_.UpstreamAlive(s.rid)) {
      if (!s.dead) KillUpstream(s, "parked upstream connection finished");
      continue;
    }
    relay_.Kick();
    return true;
  }
  return false;
}

void Http2Session::Park(std::unique_ptr<Side> side, Relay::UpstreamHandle up) {
  auto& list = IdleList(side->poolKey);
  if (list.size() >= kIdlePerService) {
    list.front()->Report();  // the oldest goes
    GraveyardAdd(std::move(list.front()));
    list.erase(list.begin());
  }
  auto idle = std::make_unique<Idle>();
  int fd = side->t->fd();
  loop()->Unwatch(fd);
  side->session = nullptr;
  idle->side = std::move(side);
  idle->up = std::move(up);
  idle->until = loop()->NowMs() + idle->side->idleMs;
  if (idle->side->expires != 0) idle->until = std::min(idle->until, idle->side->expires);
  if (loop()->Watch(fd, idle.get()) != 0) {
    idle->Report();
    GraveyardAdd(std::move(idle));
    return;
  }
  loop()->ScheduleUpkeep(&Cache(), idle->until);
  list.push_back(std::move(idle));
}

void Http2Session::KillUpstream(Side& s, const std::string& why) {
  if (s.dead) return;
  s.dead = true;
  relay_.UpstreamLost(s.rid, why);
  s.CloseUpstream();
  for (size_t i = 0; i < ups_.size(); i++) {
    if (ups_[i].get() == &s) {
      dead_.push_back(std::move(ups_[i]));
      ups_.erase(ups_.begin() + static_cast<long>(i));
      break;
    }
  }
  loop()->Soon(this);
}

const engine::Plan* Http2Session::CurrentPlan() {
  engine::PlanTable& table = loop()->engine()->plans();
  uint64_t gen = table.generation();
  if (gen != planGen_) {
    planGen_ = gen;
    std::shared_ptr<const engine::Plan> p = table.Find(d_.key);
    // Gone: new streams are refused until a later install has the service again (plan_ stays, for the
    // upstream connections and streams in flight).
    gone_ = !p;
    if (p) plan_ = std::move(p);
  }
  return gone_ ? nullptr : plan_.get();
}

void Http2Session::ArmHeaderDeadline() {
  // A header block that has begun must end within the header timeout, however its frames trickle in.
  int64_t oldest = relay_.OldestOpenHeaders();
  if (oldest != 0 && d_.plan->httpHeaderMs > 0) ArmOwn(oldest + d_.plan->httpHeaderMs);
}

uint32_t Http2Session::GroupOf(const std::string& label) {
  for (size_t i = 0; i < groups_.size(); i++)
    if (groups_[i] == label) return static_cast<uint32_t>(i);
  groups_.push_back(label);
  return static_cast<uint32_t>(groups_.size() - 1);
}

uint32_t Http2Session::Route() {
  // Called right after Admit let the request through, so plan_ is current. The endpoint is picked per request;
  // the rest of the order is the failover should it not answer.
  std::vector<uint32_t> order;
  plan_->Order(loop()->NowMs(), &order);
  uint32_t g = GroupOf(order.empty() ? std::string() : plan_->endpoints[order.front()].label);
  groupOrder_[g] = GroupOrder{plan_, std::move(order)};
  return g;
}

bool Http2Session::Admit(LocalAnswer* answer, std::string_view method, std::string_view path) {
  engine::Admission a = engine::AdmitRequest(CurrentPlan(), loop(), id(), d_.client, method, path);
  if (a.verdict == engine::Admission::Verdict::kPass) {
    if (engine::TakeRequestSlot(*plan_, &admittedHold_)) return true;
    answer->status = engine::kOverflowStatus;
    answer->grpcStatus = engine::kOverflowGrpcStatus;
    answer->message = engine::OverflowMessage(*plan_);
    answer->overloaded = true;
    return false;  // counted as a 503 response by the relay
  }
  answer->status = a.status;
  answer->grpcStatus = a.grpcStatus;
  answer->message = a.message;
  answer->counted = false;  // AdmitRequest kept the books
  using V = engine::Admission::Verdict;
  answer->flags = a.verdict == V::kDenied ? engine::kFlagUnauthorized : a.verdict == V::kGone ? engine::kFlagNoRoute : engine::kFlagNoHealthyUpstream;
  return false;
}

void Http2Session::OnUpstream(std::unique_ptr<engine::Transport> t, engine::UpstreamLease lease, uint32_t endpoint, uint32_t target) {
  std::shared_ptr<const engine::Plan> plan = std::move(connectPlan_);
  const engine::PlanEndpoint& ep = plan->endpoints[endpoint];
  attachAddress_ = engine::TargetText(ep.targets[target].address, ep.targets[target].port);
  // An HTTP/1.1 upstream carries one exchange at a time: the relay must not assume more before its SETTINGS.
  bool bridged = plan->protocol == engine::Protocol::kHttp;
  if (bridged) t = WrapHttp1Upstream(std::move(t));
  wantUpstream_ = true;  // other groups may be waiting for the connector
  // Parked later under the endpoint it reached (the group's own, or the one the Connector failed over to).
  Attach(std::move(t), std::move(lease), *plan, ep.host, plan->tls ? "https" : "http", bridged ? 1 : 0, connectGroup_, ep.label);
}

void Http2Session::OnUpstreamFailed(const std::string& reason) {
  connectPlan_.reset();
  if (ended_) return;
  loop()->Emit(engine::Event("upstream-failed", id()).Str("service", plan_->service).Str("client", d_.client).Str("reason", reason));
  // Every endpoint was tried (the group's first): that group's requests get the local reply.
  relay_.UpstreamUnavailable(reason, connectGroup_, connector_.overflowed());
  wantUpstream_ = true;
  Pump();
}

void Http2Session::Attach(std::unique_ptr<engine::Transport> t, engine::UpstreamLease lease, const engine::Plan& plan, const std::string& authority, const std::string& scheme, uint32_t assumedStreams, uint32_t group, const std::string& endpoint) {
  auto side = std::make_unique<Side>();
  side->session = this;
  side->poolKey = IdleKey(plan, endpoint);
  side->idleMs = plan.upstreamIdleMs;
  if (plan.maxConnMs > 0) {
    side->expires = loop()->NowMs() + plan.maxConnMs;
    ArmOwn(side->expires);
  }
  side->t = std::move(t);
  side->lease = std::move(lease);
  side->address = std::move(attachAddress_);
  Side& s = *side;
  ups_.push_back(std::move(side));
  if (int err = loop()->Watch(s.t->fd(), &s)) {
    s.rid = relay_.AttachUpstream(authority, scheme, assumedStreams, group);  // registered so KillUpstream can fail its streams cleanly
    KillUpstream(s, std::string("cannot watch the upstream socket: ") + strerror(err));
    Pump();
    return;
  }
  s.rid = relay_.AttachUpstream(authority, scheme, assumedStreams, group);
  Pump();
}

void Http2Session::Drain() {
  if (ended_) return;
  relay_.Drain();
  Pump();
}

void Http2Session::Close(const char* reason, bool reset) {
  if (ended_) return;
  if (reset) {
    client_.t->Reset();
    for (auto& u : ups_) u->t->Reset();
  }
  Finish(reason, 0);
}

void Http2Session::Finish(const char* reason, int err) {
  if (ended_) return;
  relay_.ClientLost();
  // A client that left normally leaves its idle upstream connections to the next client of the service.
  bool park = strcmp(reason, "done") == 0 || strcmp(reason, "closed") == 0 || strcmp(reason, "client-reset") == 0;
  if (park) {
    std::vector<Side*> sides;
    for (auto& u : ups_) sides.push_back(u.get());
    for (Side* u : sides) {
      FlushSide(*u);  // cancellations (RST_STREAM) go out now, not whenever the connection is reused
      if (u->dead || u->pending() != 0) continue;
      Relay::UpstreamHandle h = relay_.ReleaseIdleUpstream(u->rid);
      if (!h) continue;
      for (size_t i = 0; i < ups_.size(); i++) {
        if (ups_[i].get() == u) {
          std::unique_ptr<Side> side = std::move(ups_[i]);
          ups_.erase(ups_.begin() + static_cast<long>(i));
          Park(std::move(side), std::move(h));
          break;
        }
      }
    }
  }
  ended_ = true;
  connector_.Cancel();
  for (auto& u : ups_) {
    u->dead = true;
    u->CloseUpstream();
  }
  (void)err;
  client_.dead = true;
  client_.t.reset();
  loop()->Retire(this);
}

void Http2Session::NeedUpstream(uint32_t /*group*/) {
  // Called from inside the relay: answered from Pump (a parked connection, or the Connector makes one).
  if (ended_) return;
  wantUpstream_ = true;
  loop()->Soon(this);
}

void Http2Session::CountResponse(int status) { plan_->state->stats.CountResponse(status); }

void Http2Session::CountRequestTime(int64_t us) { plan_->state->rqTime.Record(us); }

void Http2Session::StreamClosed(const StreamEnd& e) {
  // The plan the stream was admitted under (a reload may have installed another since); a stream that ended
  // before its header block did has none yet: the session's.
  const engine::Plan& plan = e.plan ? *e.plan : *plan_;
  if (!plan.accessLog) return;
  engine::AccessRecord r;
  r.BeginAt(e.startUs);
  r.protocol = "HTTP/2";
  H2LogHeaders headers(e.req, e.resp->empty() ? nullptr : e.resp);
  r.headers = &headers;
  for (const auto& [k, v] : *e.resp)
    if (k == ":status") r.status = std::atoi(v.c_str());
  r.bytesReceived = e.reqBytes;
  r.bytesSent = e.respBytes;
  r.flags = e.flags;
  r.failure = *e.failure;
  for (const auto& s : ups_)
    if (e.upstream != 0 && s->rid == e.upstream) r.upstreamHost = s->address;
  engine::LogAccess(plan, r, d_.client);
}

void Http2Session::CountRetry() { plan_->state->stats.Add(engine::ServiceStats::kRqRetry); }

// Admit has just looked the plan up: plan_ is the stream's.
std::shared_ptr<const engine::Plan> Http2Session::StreamPlan() { return plan_; }

// Admit has just looked the plan up: plan_ is the admitted stream's.
StreamLimits Http2Session::Limits() { return {plan_->requestTimeoutMs, plan_->maxStreamMs, plan_->streamIdleMs, plan_->retry, std::move(admittedHold_)}; }

void Http2Session::CountRetryOutcome(RetryOutcome what) {
  engine::ServiceStats::Index i = what == RetryOutcome::kSuccess         ? engine::ServiceStats::kRqRetrySuccess
                                  : what == RetryOutcome::kLimitExceeded ? engine::ServiceStats::kRqRetryLimitExceeded
                                  : what == RetryOutcome::kBufferOverflow ? engine::ServiceStats::kRqRetryBufferOverflow
                                                                          : engine::ServiceStats::kRqPerTryTimeout;
  plan_->state->stats.Add(i);
}

uint32_t Http2Session::Reroute(const std::vector<uint32_t>& tried) {
  std::vector<uint32_t> order;
  plan_->Order(loop()->NowMs(), &order);
  // Endpoints of groups already tried go last (Envoy's previous_hosts), so the next attempt goes elsewhere
  // while there is an elsewhere; their order stays the failover order.
  std::stable_partition(order.begin(), order.end(), [&](uint32_t e) {
    const std::string& label = plan_->endpoints[e].label;
    for (uint32_t g : tried)
      if (g < groups_.size() && groups_[g] == label) return false;
    return true;
  });
  uint32_t g = GroupOf(order.empty() ? std::string() : plan_->endpoints[order.front()].label);
  groupOrder_[g] = GroupOrder{plan_, std::move(order)};
  return g;
}

void Http2Session::UpstreamFailure(uint32_t upstream, const std::string& reason) {
  if (!plan_ || !plan_->reportStatuses) return;
  for (const auto& u : ups_) {
    if (u->rid == upstream) {
      u->lease.ReportFailure(loop(), id(), reason, plan_->countResponses);
      return;
    }
  }
}

void Http2Session::UpstreamStatus(uint32_t upstream, int status) {
  if (!plan_ || !plan_->reportStatuses) return;
  for (const auto& u : ups_) {
    if (u->rid == upstream) {
      u->lease.ReportStatus(loop(), id(), status, plan_->countResponses);
      return;
    }
  }
}

int64_t Http2Session::NowMs() { return loop()->NowMs(); }

int64_t Http2Session::ArmTimer(int64_t afterMs) {
  int64_t deadline = loop()->NowMs() + afterMs;
  ArmOwn(deadline);
  return deadline;
}

void Http2Session::CountExpiry(Expiry why) {
  engine::ServiceStats::Index i = why == Expiry::kRequestTimeout      ? engine::ServiceStats::kUpstreamRqTimeout
                                  : why == Expiry::kMaxStreamDuration ? engine::ServiceStats::kUpstreamRqMaxDuration
                                                                      : engine::ServiceStats::kDownstreamRqIdleTimeout;
  plan_->state->stats.Add(i);
}

void Http2Session::ArmOwn(int64_t deadline) {
  if (armed_ != 0 && armed_ <= deadline) return;
  armed_ = deadline;
  loop()->ArmTimer(this, deadline);
}

void Http2Session::OnTimer(int64_t nowMs) {
  if (ended_) return;
  connector_.OnTimer(nowMs);
  // Connect deadlines share the heap: only the session's own entry decides about idleness.
  if (ended_ || nowMs < armed_) return;
  armed_ = 0;
  int64_t next = relay_.ExpireRequests(nowMs);
  // Upstream connections past their max connection duration take no new stream and end once idle.
  for (auto& u : ups_) {
    if (u->expires == 0 || u->retired || u->dead) continue;
    if (nowMs >= u->expires) {
      u->retired = true;
      u->lease.Count(engine::ServiceStats::kUpstreamCxMaxDuration);
      relay_.RetireUpstream(u->rid);
    } else if (next == 0 || u->expires < next) {
      next = u->expires;
    }
  }
  Pump();
  if (ended_) return;
  int64_t idle = d_.plan->httpIdleMs;
  int64_t headerMs = d_.plan->httpHeaderMs;
  int64_t oldest = relay_.OldestOpenHeaders();
  if (oldest != 0 && headerMs > 0 && nowMs - oldest >= headerMs) {
    // HEADERS without END_HEADERS, CONTINUATION trickled or never sent: the slow-loris of HTTP/2.
    d_.plan->state->stats.Add(engine::ServiceStats::kHeaderTimeout);
    relay_.Drain();
    FlushSide(client_);
    Finish("header-timeout", 0);
    return;
  }
  if (relay_.OpenStreams() == 0 && nowMs - lastActive_ >= idle) {
    // A client connection with no stream for the HTTP idle timeout is closed, as an HTTP/1 one is.
    relay_.Drain();
    FlushSide(client_);
    Finish("idle-timeout", 0);
    return;
  }
  ArmOwn(relay_.OpenStreams() == 0 ? lastActive_ + idle : nowMs + idle);
  if (oldest != 0 && headerMs > 0) ArmOwn(oldest + headerMs);
  if (next != 0) ArmOwn(next);
}

}  // namespace mx::h2
