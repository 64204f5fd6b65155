// A listening socket served by an engine loop: accepts connections and hands each new fd to JS in an
// `accepted` event {fd, peer, peerPort, local, localPort}, so Node builds no socket for connections the
// engine will relay. JS owns every fd it is given (it passes it back to the engine with relayTcpClient's
// `owned` flag, wraps it in a net.Socket, or closes it); events not yet delivered when the engine stops come
// back from relayStop() for the same treatment.
// Accepting stops for 100 ms after EMFILE/ENFILE/ENOBUFS/ENOMEM (reported once per pause as
// `accept-error` {error}) instead of spinning on a backlog it cannot drain.
#pragma once
#include "engine.h"
#include "fd.h"

namespace mx::relay {

class ListenerSession final : public Session, private Watcher {
 public:
  explicit ListenerSession(UniqueFd fd) : fd_(std::move(fd)) {}

  void Start() override;
  void Close(const char* reason, bool reset) override;
  void OnTimer(int64_t nowMs) override;
  void OnSoon() override;
  const char* kind() const override { return "listener"; }
  bool listener() const override { return true; }

 private:
  void OnEvents(uint32_t events) override;
  void Accept();

  UniqueFd fd_;
  bool paused_ = false;
  bool ended_ = false;
};

}  // namespace mx::relay
