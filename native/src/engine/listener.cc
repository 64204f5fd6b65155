// ListenerSession: see listener.h.
#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "sockaddr.h"
#include "tcp_session.h"

namespace mx::engine {

namespace {
// Connections accepted per wake-up before yielding to the loop's other sessions.
constexpr int kAcceptBatch = 64;
constexpr int64_t kPauseMs = 100;
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
      loop()->Emit(Event("accept-error", id()).Str("error", strerrorname_np(err) ? strerrorname_np(err) : "unknown"));
      // Out of descriptors or memory: the backlog stays, and with edge-triggered readiness nothing would
      // wake us for it; try again shortly. Anything else unexpected is retried the same way.
      paused_ = true;
      loop()->ArmTimer(this, loop()->NowMs() + kPauseMs);
      return;
    }
    sockaddr_storage local{};
    socklen_t llen = sizeof local;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint16_t peerPort = 0, localPort = 0;
    std::string peerIp = IpText(peer, &peerPort);
    std::string localIp = IpText(local, &localPort);
    Event ev("accepted", id());
    ev.Str("peer", std::move(peerIp)).Num("peerPort", peerPort).Str("local", std::move(localIp)).Num("localPort", localPort);
    RouteTable& routes = loop()->engine()->routes();
    std::shared_ptr<Route> route;
    if (!routeKey_.empty()) {
      route = routes.Take(routeKey_);
    } else if (transparent_) {
      std::string dst;
      uint16_t dstPort = 0;
      if (routes.OriginalDst(peer, local, &dst, &dstPort)) {
        if (!dst.empty()) route = routes.Take(dst + ":" + std::to_string(dstPort));
        ev.Str("dst", std::move(dst)).Num("dstPort", dstPort);
      }
    }
    if (route) {
      ev.kind = "routed";
      ev.Lazy();
      ServeRouted(fd, route, std::move(ev));
      continue;
    }
    loop()->Emit(std::move(ev.Num("fd", fd)));
  }
  loop()->Soon(this);  // more may be waiting: come back after the loop's other work
}

void ListenerSession::ServeRouted(int fd, const std::shared_ptr<Route>& route, Event routed) {
  auto owned = std::make_unique<TcpSession>(std::make_unique<PlainTransport>(UniqueFd(fd)), std::string(), route->idleTimeoutMs, true);
  TcpSession* session = owned.get();
  size_t target = route->Pick(loop()->NowMs());
  const RouteTarget& t = *route->targets[target];
  uint64_t sid = loop()->engine()->AdoptHere(loop(), std::move(owned));
  // JS must know the session before any of its events: `routed` is emitted first, on this loop's outbox.
  routed.Num("session", static_cast<double>(sid)).Num("route", route->id).Num("target", static_cast<double>(target));
  loop()->Emit(std::move(routed.Str("address", t.address).Num("port", t.port)));
  int err = 0;
  UniqueFd up = StartConnect(t.address, t.port, &err);
  if (!up.valid()) {
    session->ConnectFailedNow(err);
    return;
  }
  session->Connect(route->Upstream(target, std::move(up)), route->connectTimeoutMs);
}

void ListenerSession::Close(const char* reason, bool /*reset*/) {
  if (ended_) return;
  ended_ = true;
  fd_.Reset();
  loop()->Retire(this, Event("closed", id()).Str("reason", reason));
}

}  // namespace mx::engine
