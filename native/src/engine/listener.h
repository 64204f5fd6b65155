// A listening socket served by an engine loop. Each connection is routed by its plan (plan.h): by the
// listener's fixed key (`@<serviceId>`, an outbound listener), or by its original destination `<vip>:<port>`
// (the transparent listener; from mx_peer_orig or the local address, as installed). A connection without a
// plan is reset and counted (`no-route` event); one of a denied TCP service is closed at once (`denied`);
// the rest become sessions of their plan's protocol: TCP relays, and HTTP sessions (HTTP/1.x or HTTP/2 by
// the client's first bytes for http and http2 services; HTTP/2 for grpc).
// Limits: over the engine's connection cap (GlobalStats::maxDownstream) a connection is reset at once. Out of
// descriptors (EMFILE/ENFILE) the loop's reserve descriptor lets it take and reset the waiting connections,
// so clients never hang in a backlog nobody drains (`accept-error` {error, refused}). Without a reserve, or
// on ENOBUFS/ENOMEM, accepting stops for 100 ms instead of spinning.
#pragma once
#include <string>

#include "engine.h"
#include "downstream.h"
#include "fd.h"

namespace mx::engine {

class ListenerSession final : public Session, private Watcher {
 public:
  /** `routeKey`: the plan of every connection (outbound listener); empty: route by original destination. */
  ListenerSession(UniqueFd fd, std::string routeKey) : fd_(std::move(fd)), routeKey_(std::move(routeKey)) {}

  void Start() override;
  void Close(const char* reason, bool reset) override;
  void OnTimer(int64_t nowMs) override;
  void OnSoon() override;
  const char* kind() const override { return "listener"; }
  bool listener() const override { return true; }

 private:
  void OnEvents(uint32_t events) override;
  void Accept();
  /** Starts serving one accepted connection (the fd is the callee's from here on). */
  void Serve(int fd, const sockaddr_storage& peer, const sockaddr_storage& local);

  UniqueFd fd_;
  std::string routeKey_;
  bool paused_ = false;
  bool ended_ = false;
};

/** Starts the session that serves `d` on `loop` by its plan's protocol (the sniffer too, once it knows). */
void Serve(Loop* loop, Downstream d);

}  // namespace mx::engine
