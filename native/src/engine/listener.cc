// ListenerSession and Serve: see listener.h.
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../http1/session.h"
#include "../http2/session.h"
#include "sniff.h"
#include "sockaddr.h"
#include "tcp_session.h"

namespace mx::engine {

namespace {
// Connections accepted per wake-up before yielding to the loop's other sessions.
constexpr int kAcceptBatch = 64;
constexpr int64_t kPauseMs = 100;

std::string HostPort(const std::string& ip, uint16_t port) {
  return ip.find(':') != std::string::npos ? "[" + ip + "]:" + std::to_string(port) : ip + ":" + std::to_string(port);
}

/**
 * Out of descriptors, the kernel still completes handshakes into the backlog and clients would wait for their
 * timeout. Gives the loop's reserve descriptor back, takes each waiting connection and resets it at once (the
 * client learns now), then takes the reserve again. Returns how many were refused; -1 when the reserve could
 * not be taken back (the caller pauses).
 */
int RefuseBacklog(Loop* loop, int listenFd) {
  UniqueFd& reserve = loop->reserve();
  if (!reserve.valid()) return -1;
  reserve.Reset();
  int n = 0;
  for (int i = 0; i < kAcceptBatch; i++) {
    int fd = ::accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) break;
    SetAbortiveClose(fd);
    ::close(fd);
    n++;
  }
  reserve.Reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  return reserve.valid() ? n : -1;
}
}  // namespace

void ListenerSession::Start() {
  if (int err = loop()->Watch(fd_.get(), this)) {
    Event ev("closed", id());
    ev.Str("reason", "error").Str("error", strerrorname_np(err) ? strerrorname_np(err) : "unknown");
    ended_ = true;
    fd_.Reset();
    loop()->Retire(this, std::move(ev));
    return;
  }
  Accept();
}

void ListenerSession::OnEvents(uint32_t /*events*/) {
  if (!ended_ && !paused_) Accept();
}

void ListenerSession::OnSoon() {
  if (!ended_ && !paused_) Accept();
}

void ListenerSession::OnTimer(int64_t /*nowMs*/) {
  if (ended_ || !paused_) return;
  paused_ = false;
  Accept();
}

void ListenerSession::Accept() {
  // Another thread may have taken the descriptor the reserve gave back: take one again while there are some.
  UniqueFd& reserve = loop()->reserve();
  if (!reserve.valid()) reserve.Reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  for (int i = 0; i < kAcceptBatch; i++) {
    sockaddr_storage peer{};
    socklen_t plen = sizeof peer;
    int fd = ::accept4(fd_.get(), reinterpret_cast<sockaddr*>(&peer), &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN) return;
      // Errors of the new connection, not of the listener (accept(2): treat them like EAGAIN and retry).
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO || errno == EPERM || errno == ENETDOWN ||
          errno == ENOPROTOOPT || errno == EHOSTDOWN || errno == ENONET || errno == EHOSTUNREACH ||
          errno == EOPNOTSUPP || errno == ENETUNREACH)
        continue;
      int err = errno;
      int refused = (err == EMFILE || err == ENFILE) ? RefuseBacklog(loop(), fd_.get()) : -1;
      Event ev("accept-error", id());
      ev.Str("error", strerrorname_np(err) ? strerrorname_np(err) : "unknown");
      if (refused > 0) ev.Num("refused", refused);
      loop()->Emit(std::move(ev));
      if (refused >= 0) {
        loop()->engine()->plans().global().overflowFd.fetch_add(refused, std::memory_order_relaxed);
        if (refused > 0) {
          loop()->Soon(this);  // more may be waiting: refuse them too, after the loop's other work
          return;
        }
      }
      // Out of memory, or no reserve: the backlog stays, and with edge-triggered readiness nothing would
      // wake us for it; try again shortly. Anything else unexpected is retried the same way.
      paused_ = true;
      loop()->ArmTimer(this, loop()->NowMs() + kPauseMs);
      return;
    }
    // Only a transparent listener routes by where the client connected (an outbound one by its own key).
    sockaddr_storage local{};
    if (routeKey_.empty()) {
      socklen_t llen = sizeof local;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen);
    }
    Serve(fd, peer, local);
  }
  loop()->Soon(this);  // more may be waiting: come back after the loop's other work
}

void ListenerSession::Serve(int rawFd, const sockaddr_storage& peer, const sockaddr_storage& local) {
  UniqueFd fd(rawFd);
  PlanTable& table = loop()->engine()->plans();
  GlobalStats& g = table.global();
  g.accepted.fetch_add(1, std::memory_order_relaxed);
  // The cap keeps descriptors for the control plane (admin, DNS) and for upstream connections: over it, a
  // connection is reset at once rather than left to fail later.
  int64_t cap = g.maxDownstream.load(std::memory_order_relaxed);
  if (cap > 0 && g.downstreamLive.load(std::memory_order_relaxed) >= cap) {
    g.overflowCap.fetch_add(1, std::memory_order_relaxed);
    SetAbortiveClose(fd.get());
    return;
  }
  std::shared_ptr<const PlanSet> set = table.Current();
  std::string key = routeKey_;
  std::string dst;
  uint16_t dstPort = 0;
  if (key.empty()) {
    table.OriginalDst(*set, peer, local, &dst, &dstPort);
    if (!dst.empty()) key = dst + ":" + std::to_string(dstPort);
  }
  uint16_t peerPort = 0;
  std::string client = IpText(peer, &peerPort);
  client = HostPort(client, peerPort);
  auto it = key.empty() ? set->byKey.end() : set->byKey.find(key);
  if (it == set->byKey.end()) {
    g.noRoute.fetch_add(1, std::memory_order_relaxed);
    Event ev("no-route", id());
    ev.Lazy().Str("client", client).Str("key", key);
    loop()->Emit(std::move(ev));
    SetAbortiveClose(fd.get());
    return;
  }
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::shared_ptr<const Plan> plan = it->second;
  set.reset();
  Downstream d;
  d.fd = std::move(fd);
  d.lease = DownstreamLease(plan->state, &g.downstreamLive);
  d.plan = std::move(plan);
  d.key = std::move(key);
  d.client = std::move(client);
  engine::Serve(loop(), std::move(d));
}

void Serve(Loop* loop, Downstream d) {
  const Plan& plan = *d.plan;
  Engine* engine = loop->engine();
  switch (plan.protocol) {
    case Protocol::kTcp:
      if (plan.denied) {
        // TCP has no way to say why: the connection closes at once; TypeScript logs the denial.
        plan.state->stats.Add(ServiceStats::kAccessDenied);
        loop->Emit(Event("denied", 0).Lazy().Str("service", plan.service).Str("client", d.client));
        if (plan.accessLog) {
          AccessRecord r;
          r.Begin();
          r.flags = kFlagUnauthorized;
          LogAccess(plan, r, d.client);
        }
        return;
      }
      engine->AdoptHere(loop, std::make_unique<TcpSession>(std::move(d)));
      return;
    case Protocol::kHttp:
    case Protocol::kHttp2:
      // Like Kuma's listener (codec AUTO), http and http2 services take either HTTP version from the client.
      if (d.initial.empty()) {
        engine->AdoptHere(loop, std::make_unique<SniffSession>(std::move(d)));
        return;
      }
      if (SniffSession::IsHttp2(d.initial)) engine->AdoptHere(loop, std::make_unique<h2::Http2Session>(std::move(d)));
      else engine->AdoptHere(loop, std::make_unique<h1::Http1Session>(std::move(d)));
      return;
    case Protocol::kGrpc:
      // gRPC clients always speak HTTP/2.
      engine->AdoptHere(loop, std::make_unique<h2::Http2Session>(std::move(d)));
      return;
  }
}

void ListenerSession::Close(const char* reason, bool /*reset*/) {
  if (ended_) return;
  ended_ = true;
  fd_.Reset();
  loop()->Retire(this, Event("closed", id()).Str("reason", reason));
}

}  // namespace mx::engine
