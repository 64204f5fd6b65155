// A listening socket served by an engine loop. A connection with a route (routes.h: by the listener's fixed
// route key, or by its original destination on the transparent listener) becomes a TcpSession here, with the
// connect to its upstream started, and JS hears of it in a `routed` event. Any other connection's fd goes to
// JS in an `accepted` event {fd, peer, peerPort, local, localPort, dst?, dstPort?}, so Node builds no socket
// for connections the engine will relay. JS owns every fd it is given (it passes it back to the engine with engineTcpClient's
// `owned` flag, wraps it in a net.Socket, or closes it); events not yet delivered when the engine stops come
// back from engineStop() for the same treatment.
// Accepting stops for 100 ms after EMFILE/ENFILE/ENOBUFS/ENOMEM (reported once per pause as
// `accept-error` {error}) instead of spinning on a backlog it cannot drain.
#pragma once
#include "engine.h"
#include "fd.h"

namespace mx::engine {

class ListenerSession final : public Session, private Watcher {
 public:
  /** `routeKey`: the route of every connection (outbound listener); else `transparent` routes by original destination. */
  ListenerSession(UniqueFd fd, std::string routeKey, bool transparent)
      : fd_(std::move(fd)), routeKey_(std::move(routeKey)), transparent_(transparent) {}

  void Start() override;
  void Close(const char* reason, bool reset) override;
  void OnTimer(int64_t nowMs) override;
  void OnSoon() override;
  const char* kind() const override { return "listener"; }
  bool listener() const override { return true; }

 private:
  void OnEvents(uint32_t events) override;
  void Accept();
  /** Starts a session for a connection whose route was found; the fd is the session's from here on. */
  void ServeRouted(int fd, const std::shared_ptr<Route>& route, Event routed);

  UniqueFd fd_;
  std::string routeKey_;
  bool transparent_;
  bool paused_ = false;
  bool ended_ = false;
};

}  // namespace mx::engine
