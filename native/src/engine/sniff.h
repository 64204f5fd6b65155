// Client codec detection for http and http2 services (Envoy's codec AUTO): an HTTP/2 prior-knowledge client
// opens with the fixed connection preface, anything else is HTTP/1.x. The sniffer reads just enough to tell,
// then hands the connection and the bytes it read to the session of that protocol on the same loop. A client
// that stays silent for the plan's HTTP idle timeout, or closes before saying anything, is closed.
#pragma once
#include <string>
#include <string_view>

#include "downstream.h"
#include "engine.h"

namespace mx::engine {

class SniffSession final : public Session, private Watcher {
 public:
  explicit SniffSession(Downstream d) : d_(std::move(d)) {}

  /** Whether `bytes` start with the whole HTTP/2 connection preface. */
  static bool IsHttp2(std::string_view bytes);

  void Start() override;
  void Close(const char* reason, bool reset) override;
  void Drain() override { Close("closed", false); }
  void OnTimer(int64_t nowMs) override;
  const char* kind() const override { return "sniff"; }

 private:
  void OnEvents(uint32_t events) override;
  void Read();

  Downstream d_;
  int64_t deadline_ = 0;
  bool ended_ = false;
};

}  // namespace mx::engine
