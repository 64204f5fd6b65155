// SniffSession: see sniff.h.
#include "sniff.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "listener.h"
#include "transport.h"

namespace mx::engine {

namespace {
constexpr std::string_view kPreface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
}  // namespace

bool SniffSession::IsHttp2(std::string_view bytes) { return bytes.size() >= kPreface.size() && bytes.substr(0, kPreface.size()) == kPreface; }

void SniffSession::Start() {
  if (loop()->Watch(d_.fd.get(), this) != 0) {
    ended_ = true;
    loop()->Retire(this);
    return;
  }
  deadline_ = loop()->NowMs() + d_.plan->httpIdleMs;
  loop()->ArmTimer(this, deadline_);
  Read();
}

void SniffSession::OnEvents(uint32_t /*events*/) {
  if (!ended_) Read();
}

void SniffSession::Read() {
  char buf[kPreface.size()];
  for (;;) {
    size_t want = kPreface.size() - d_.initial.size();
    ssize_t n = ::recv(d_.fd.get(), buf, want, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      Close("client-error", true);
      return;
    }
    if (n == 0) {
      // Nothing useful said before the half-close: there is no request to serve.
      Close("done", false);
      return;
    }
    d_.initial.append(buf, static_cast<size_t>(n));
    size_t k = d_.initial.size();
    if (k < kPreface.size() && d_.initial == kPreface.substr(0, k)) continue;  // could still be HTTP/2
    break;
  }
  // Decided: the session of that protocol takes the socket (watched anew there) and the bytes read.
  ended_ = true;
  loop()->Unwatch(d_.fd.get());
  Loop* l = loop();
  Downstream d = std::move(d_);
  l->Retire(this);
  engine::Serve(l, std::move(d));
}

void SniffSession::OnTimer(int64_t nowMs) {
  if (ended_ || nowMs < deadline_) return;
  Close("idle-timeout", false);
}

void SniffSession::Close(const char* /*reason*/, bool reset) {
  if (ended_) return;
  ended_ = true;
  if (reset) SetAbortiveClose(d_.fd.get());
  d_.fd.Reset();
  loop()->Retire(this);
}

}  // namespace mx::engine
