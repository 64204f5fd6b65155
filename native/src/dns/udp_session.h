// The resolver's UDP socket, served by an engine loop: owned names (and malformed queries) are answered here,
// off the JS thread, from the table TypeScript installs with each snapshot (State). Every other query goes to JS
// as a `dns-query` event {token, qtype, questionEnd, query}; JS forwards it and hands the reply back (Reply).
// A query JS has not answered by its deadline (JS's own query timeout plus a grace) gets SERVFAIL from here,
// so a stalled JS thread never leaves a client waiting longer than that.
#pragma once
#include <sys/socket.h>

#include <deque>
#include <string>
#include <unordered_map>

#include "../engine/engine.h"
#include "../engine/fd.h"
#include "state.h"

namespace mx::dns {

class UdpSession final : public engine::Session, private engine::Watcher {
 public:
  /** `deadlineMs`: how long a forwarded query may wait for JS's reply before the engine answers SERVFAIL. */
  UdpSession(engine::UniqueFd fd, State* state, int64_t deadlineMs) : fd_(std::move(fd)), state_(state), deadlineMs_(deadlineMs) {}
  void Start() override;
  void Close(const char* reason, bool reset) override;
  void OnSoon() override;
  void OnTimer(int64_t nowMs) override;
  const char* kind() const override { return "dns-udp"; }
  bool listener() const override { return true; }
  /** Loop thread: sends JS's reply to forwarded query `token` (nothing when it already got SERVFAIL). */
  void Reply(uint64_t token, const std::string& bytes);

 private:
  struct Pending {
    sockaddr_storage peer;
    socklen_t plen;
    std::string query;
    int qtype;
  };
  void OnEvents(uint32_t events) override;
  void Read();
  void Send(const sockaddr_storage& peer, socklen_t len, const std::string& bytes);

  engine::UniqueFd fd_;
  State* state_;
  int64_t deadlineMs_;
  bool ended_ = false;
  uint64_t nextToken_ = 1;
  std::unordered_map<uint64_t, Pending> pending_;
  std::deque<std::pair<int64_t, uint64_t>> expiry_;  // (deadline, token), in order of arrival
};

}  // namespace mx::dns
