#include "udp_session.h"

#include <errno.h>
#include <string.h>

#include "../engine/sockaddr.h"

namespace mx::dns {

namespace {
// Datagrams read per wake-up before yielding to the loop's other sessions.
constexpr int kReadBatch = 256;
// Anything bigger than a query can be is read truncated and fails to parse (FORMERR or drop).
constexpr size_t kMaxQuery = 4096;
// Forwarded queries waiting for JS; beyond this, new ones get SERVFAIL at once (JS is not keeping up).
constexpr size_t kMaxPending = 4096;
}  // namespace

void UdpSession::Start() {
  if (int err = loop()->Watch(fd_.get(), this)) {
    engine::Event ev("closed", id());
    ev.Str("reason", "error").Str("error", strerrorname_np(err) ? strerrorname_np(err) : "unknown");
    ended_ = true;
    fd_.Reset();
    loop()->Retire(this, std::move(ev));
    return;
  }
  Read();
}

void UdpSession::OnEvents(uint32_t /*events*/) {
  if (!ended_) Read();
}

void UdpSession::OnSoon() {
  if (!ended_) Read();
}

void UdpSession::Read() {
  std::shared_ptr<const Table> table = state_->Current();
  uint8_t buf[kMaxQuery];
  for (int i = 0; i < kReadBatch; i++) {
    sockaddr_storage peer{};
    socklen_t plen = sizeof peer;
    ssize_t n = ::recvfrom(fd_.get(), buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&peer), &plen);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // EAGAIN, or an ICMP error of an earlier send: nothing more to read now
    }
    Resolution r = Resolve(table.get(), buf, static_cast<size_t>(n), true);
    if (r.kind == Resolution::kForward) {
      std::string query(reinterpret_cast<char*>(buf), static_cast<size_t>(n));
      if (pending_.size() >= kMaxPending) {
        state_->Count(r.q.qtype, kStalled);
        Send(peer, plen, Servfail(buf, static_cast<size_t>(n)));
        continue;
      }
      uint64_t token = nextToken_++;
      engine::Event ev("dns-query", id());
      ev.Num("token", static_cast<double>(token)).Num("qtype", r.q.qtype).Num("questionEnd", static_cast<double>(r.q.questionEnd));
      ev.Num("at", static_cast<double>(loop()->NowMs()));  // CLOCK_MONOTONIC ms: JS skips what it got too late
      ev.Buf("query", query);
      loop()->Emit(std::move(ev));
      int64_t deadline = loop()->NowMs() + deadlineMs_;
      if (expiry_.empty()) loop()->ArmTimer(this, deadline);
      expiry_.emplace_back(deadline, token);
      pending_.emplace(token, Pending{peer, plen, std::move(query), r.q.qtype});
      continue;
    }
    state_->Count(r.q.qtype, r.outcome);
    if (r.kind == Resolution::kReply) Send(peer, plen, r.reply);
  }
  loop()->Soon(this);  // more may be waiting: come back after the loop's other work
}

void UdpSession::Reply(uint64_t token, const std::string& bytes) {
  auto it = pending_.find(token);
  if (it == pending_.end()) return;  // answered SERVFAIL already
  Send(it->second.peer, it->second.plen, bytes);
  pending_.erase(it);
}

void UdpSession::OnTimer(int64_t nowMs) {
  if (ended_) return;
  // Deadlines are in arrival order (one fixed delay), so the expired ones are at the front.
  while (!expiry_.empty() && expiry_.front().first <= nowMs) {
    auto it = pending_.find(expiry_.front().second);
    expiry_.pop_front();
    if (it == pending_.end()) continue;  // JS answered in time
    const Pending& p = it->second;
    state_->Count(p.qtype, kStalled);
    std::string sf = Servfail(reinterpret_cast<const uint8_t*>(p.query.data()), p.query.size());
    if (!sf.empty()) Send(p.peer, p.plen, sf);
    pending_.erase(it);
  }
  // Entries JS answered stay in expiry_ until their time; drop them early while the front is answered.
  while (!expiry_.empty() && pending_.find(expiry_.front().second) == pending_.end()) expiry_.pop_front();
  if (!expiry_.empty()) loop()->ArmTimer(this, expiry_.front().first);
}

void UdpSession::Send(const sockaddr_storage& peer, socklen_t len, const std::string& bytes) {
  if (ended_) return;
  // A full socket buffer drops the reply, as a lost datagram would be; the client asks again.
  ::sendto(fd_.get(), bytes.data(), bytes.size(), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&peer), len);
}

void UdpSession::Close(const char* reason, bool /*reset*/) {
  if (ended_) return;
  ended_ = true;
  fd_.Reset();
  loop()->Retire(this, engine::Event("closed", id()).Str("reason", reason));
}

}  // namespace mx::dns
