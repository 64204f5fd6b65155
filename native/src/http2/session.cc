// Http2Session: see session.h.
#include "session.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <unordered_map>

namespace mx::h2 {

namespace {
// Bytes read per wake-up (all sides together) before yielding to other sessions on the loop.
constexpr size_t kBudget = 1024 * 1024;
// Output pulled from nghttp2 per flush (a few frames' worth). More is pulled only once the socket took all
// of it, so a slow peer backs up into nghttp2's flow-controlled queues, never into an unbounded buffer here.
constexpr size_t kPullChunk = 64 * 1024;
// Idle upstream connections kept per service and loop thread, and for how long (checked on every use).
constexpr size_t kIdlePerService = 16;
constexpr int64_t kIdleKeepMs = 60 * 1000;
}  // namespace

void Http2Session::Idle::OnEvents(uint32_t events) {
  // Registration reports the socket writable; only input or a hang-up means the upstream spoke.
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) Report();
}

void Http2Session::Idle::Report() {
  if (!side || !side->t) return;
  up.reset();
  side->t.reset();  // closing the fd also removes it from epoll
  if (engine) {
    engine->Emit(UpstreamClosed(sessionId, side->token, side->rx, side->tx));
  }
  side.reset();
}

Http2Session::Http2Session(std::unique_ptr<engine::Transport> client, std::string initial, const RelayOptions& opts,
                           std::shared_ptr<H2Counters> counters, uint32_t poolKey)
    : initial_(std::move(initial)), counters_(std::move(counters)), relay_(*this, opts), poolKey_(poolKey) {
  client_.session = this;
  client_.client = true;
  client_.t = std::move(client);
}

Http2Session::~Http2Session() = default;

void Http2Session::Side::OnEvents(uint32_t events) {
  if (!dead) session->OnSideEvents(*this, events);
}

void Http2Session::Start() {
  if (int err = loop()->Watch(client_.t->fd(), &client_)) {
    Finish("error", err);
    return;
  }
  if (!initial_.empty()) {
    client_.rx += initial_.size();
    if (!relay_.RecvClient(reinterpret_cast<const uint8_t*>(initial_.data()), initial_.size())) clientFatal_ = true;
    std::string().swap(initial_);
  }
  Pump();
}

void Http2Session::OnSideEvents(Side& s, uint32_t events) {
  if (ended_) return;
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
    if (!relay_.RecvClient(p, static_cast<size_t>(n))) clientFatal_ = true;
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
    if (wantUpstream_) {
      wantUpstream_ = false;
      // The relay may have been served meanwhile (a parked connection adopted by an earlier round).
      if (relay_.UpstreamRequested()) {
        if (AdoptIdle()) progress = true;
        else if (relay_.UpstreamRequested()) loop()->Emit(engine::Event("need-upstream", id()));
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

void Http2Session::GraveyardAdd(std::unique_ptr<Idle> idle) {
  Cache().graveyard.emplace_back(loop()->Stats().wakeups, std::move(idle));
}

std::vector<std::unique_ptr<Http2Session::Idle>>& Http2Session::IdleList() {
  IdleCache& cache = Cache();
  uint64_t batch = loop()->Stats().wakeups;
  auto& g = cache.graveyard;
  g.erase(std::remove_if(g.begin(), g.end(), [batch](const auto& e) { return e.first < batch; }), g.end());
  auto& list = cache.byKey[poolKey_];
  int64_t now = loop()->NowMs();
  for (size_t i = 0; i < list.size();) {
    if (list[i]->side && now - list[i]->since < kIdleKeepMs) {
      i++;
      continue;
    }
    list[i]->Report();
    GraveyardAdd(std::move(list[i]));
    list.erase(list.begin() + static_cast<long>(i));
  }
  return list;
}

bool Http2Session::AdoptIdle() {
  auto& list = IdleList();
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
    s.rid = relay_.AdoptUpstream(std::move(up));
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
  auto& list = IdleList();
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
  idle->since = loop()->NowMs();
  idle->engine = loop()->engine();
  idle->sessionId = id();
  if (loop()->Watch(fd, idle.get()) != 0) {
    idle->Report();
    GraveyardAdd(std::move(idle));
    return;
  }
  list.push_back(std::move(idle));
}

void Http2Session::KillUpstream(Side& s, const std::string& why) {
  if (s.dead) return;
  s.dead = true;
  relay_.UpstreamLost(s.rid, why);
  closedUpRx_ += s.rx;
  closedUpTx_ += s.tx;
  loop()->Emit(UpstreamClosed(id(), s.token, s.rx, s.tx));
  s.t.reset();  // closing the fd also removes it from epoll
  for (size_t i = 0; i < ups_.size(); i++) {
    if (ups_[i].get() == &s) {
      dead_.push_back(std::move(ups_[i]));
      ups_.erase(ups_.begin() + static_cast<long>(i));
      break;
    }
  }
  loop()->Soon(this);
}

void Http2Session::Attach(std::unique_ptr<engine::Transport> t, uint32_t token, const std::string& authority, const std::string& initial) {
  if (ended_) {
    t.reset();
    loop()->Emit(UpstreamClosed(id(), token, 0, 0));
    return;
  }
  auto side = std::make_unique<Side>();
  side->session = this;
  side->token = token;
  side->t = std::move(t);
  Side& s = *side;
  ups_.push_back(std::move(side));
  if (int err = loop()->Watch(s.t->fd(), &s)) {
    s.rid = relay_.AttachUpstream(authority);  // registered so KillUpstream can fail its streams cleanly
    KillUpstream(s, std::string("cannot watch the upstream socket: ") + strerror(err));
    Pump();
    return;
  }
  s.rid = relay_.AttachUpstream(authority);
  if (!initial.empty()) {
    s.rx += initial.size();
    if (!relay_.RecvUpstream(s.rid, reinterpret_cast<const uint8_t*>(initial.data()), initial.size())) KillUpstream(s, "upstream HTTP/2 protocol error");
  }
  Pump();
}

void Http2Session::Unavailable(const std::string& reason) {
  if (ended_) return;
  relay_.UpstreamUnavailable(reason);
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
  uint64_t upRx = closedUpRx_, upTx = closedUpTx_;
  for (auto& u : ups_) {
    upRx += u->rx;
    upTx += u->tx;
    u->dead = true;
    loop()->Emit(UpstreamClosed(id(), u->token, u->rx, u->tx));
    u->t.reset();
  }
  engine::Event ev("closed", id());
  ev.Num("rx", static_cast<double>(upRx))
      .Num("tx", static_cast<double>(upTx))
      .Num("downstreamRx", static_cast<double>(client_.rx))
      .Num("downstreamTx", static_cast<double>(client_.tx))
      .Str("reason", reason);
  if (err != 0) ev.Str("error", strerrorname_np(err) ? strerrorname_np(err) : "unknown");
  client_.dead = true;
  client_.t.reset();
  loop()->Retire(this, std::move(ev));
}

void Http2Session::NeedUpstream() {
  // Called from inside the relay: answered from Pump (a parked connection, or JS dials one).
  if (ended_) return;
  wantUpstream_ = true;
  loop()->Soon(this);
}

void Http2Session::CountResponse(int status) {
  int cls = status / 100;
  if (cls < 1 || cls > 5) cls = 0;
  counters_->byClass[cls].fetch_add(1, std::memory_order_relaxed);
}

void Http2Session::CountRetry() { counters_->retries.fetch_add(1, std::memory_order_relaxed); }

}  // namespace mx::h2
