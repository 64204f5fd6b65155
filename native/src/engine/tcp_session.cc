// TcpSession: see tcp_session.h.
#include "tcp_session.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>

namespace mx::engine {

namespace {
// Bytes one direction may move per wake-up before yielding to other sessions on the loop.
constexpr size_t kBudget = 1024 * 1024;
// Largest single splice request; the pipe's capacity caps what actually moves.
constexpr size_t kSpliceChunk = 1024 * 1024;
}  // namespace

TcpSession::TcpSession(Downstream d) : d_(std::move(d)), connector_(*this, *this), idleMs_(d_.plan->tcpIdleMs) {
  sides_[kClient].t = std::make_unique<PlainTransport>(std::move(d_.fd));
  for (int i = 0; i < 2; i++) {
    sides_[i].session = this;
    sides_[i].index = i;
    flows_[i].src = i;
    flows_[i].dst = 1 - i;
  }
}

void TcpSession::Start() {
  if (d_.plan->accessLog) log_.Begin();
  lastActive_ = loop()->NowMs();
  ArmIdle();
  // Watched from the start, so that a client that resets while the upstream is still being connected ends
  // the attempt at once (a FIN is only a half-close: the bytes before it still go upstream).
  if (loop()->Watch(sides_[kClient].t->fd(), &sides_[kClient]) != 0) {
    Finish();
    return;
  }
  std::vector<uint32_t> order;
  d_.plan->Order(loop()->NowMs(), &order);
  connector_.Start(d_.plan, std::move(order), Connector::Alpn::kNone, d_.client);
}

void TcpSession::ArmIdle() {
  if (idleMs_ <= 0) return;
  idleArmed_ = lastActive_ + idleMs_;
  loop()->ArmTimer(this, idleArmed_);
}

void TcpSession::OnUpstream(std::unique_ptr<Transport> t, UpstreamLease lease, uint32_t endpoint, uint32_t target) {
  const PlanTarget& at = d_.plan->endpoints[endpoint].targets[target];
  if (log_.begun) log_.upstreamHost = TargetText(at.address, at.port);
  sides_[kUpstream].t = std::move(t);
  lease_ = std::move(lease);
  StartRelay();
}

void TcpSession::OnUpstreamFailed(const std::string& reason) {
  loop()->Emit(Event("upstream-failed", id()).Str("service", d_.plan->service).Str("client", d_.client).Str("reason", reason));
  log_.failure = reason;
  // A connect the plan's own limits refused is an overflow (UO), not a failure of the endpoint (UF).
  log_.flags |= connector_.overflowed() ? kFlagUpstreamOverflow : kFlagUpstreamConnectFailure;
  // The client learns it the way a direct connection would: by a reset.
  sides_[kClient].t->Reset();
  Finish();
}

void TcpSession::StartRelay() {
  relaying_ = true;
  for (int i = 0; i < 2; i++) {
    Flow& f = flows_[i];
    f.spliceable = sides_[f.src].t->spliceFd() >= 0 && sides_[f.dst].t->spliceFd() >= 0;
  }
  if (loop()->Watch(sides_[kUpstream].t->fd(), &sides_[kUpstream]) != 0) {
    Finish();
    return;
  }
  PumpAll();
}

void TcpSession::Side::OnEvents(uint32_t events) { session->OnSideEvents(index, events); }

void TcpSession::OnSideEvents(int side, uint32_t events) {
  if (ended_) return;
  Side& s = sides_[side];
  if (!relaying_) {
    // Still connecting: only a client that is gone for good matters now (its readiness stays set for later).
    if (side == kClient && (events & EPOLLERR)) {
      connector_.Cancel();
      Finish();
    }
    return;
  }
  if (s.t->anyReadinessRetries()) {
    s.readable = s.writable = true;
  } else {
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) s.readable = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) s.writable = true;
  }
  if (events & EPOLLERR) {
    // An error with nothing to read or write (e.g. an RST on an otherwise quiet connection) would
    // otherwise never surface through a syscall.
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(s.t->fd(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
      Fail(side);
      return;
    }
  }
  PumpAll();
}

void TcpSession::OnSoon() {
  if (!ended_ && relaying_) PumpAll();
}

void TcpSession::PumpAll() {
  size_t budget0 = kBudget, budget1 = kBudget;
  if (!Pump(flows_[0], budget0)) return;
  if (!Pump(flows_[1], budget1)) return;
  if (flows_[0].done && flows_[1].done) Finish();
}

void TcpSession::PutBack(Flow& f) {
  if (f.pipe.r.valid() && f.inPipe == 0) loop()->pipes().Give(std::move(f.pipe));
}

bool TcpSession::Pump(Flow& f, size_t& budget) {
  Side& in = sides_[f.src];
  Side& out = sides_[f.dst];
  while (!f.done) {
    if (f.len > 0) {
      if (!out.writable) break;
      ssize_t n = out.t->Write(f.buf.get() + f.off, f.len);
      if (n == -EAGAIN) {
        out.writable = false;
        break;
      }
      if (n < 0) {
        Fail(f.dst);
        return false;
      }
      f.off += static_cast<size_t>(n);
      f.len -= static_cast<size_t>(n);
      out.tx += static_cast<uint64_t>(n);
      lastActive_ = loop()->NowMs();
      if (f.len == 0) {
        f.buf.reset();
        f.off = 0;
      }
      continue;
    }
    if (f.inPipe > 0) {
      if (!out.writable) break;
      ssize_t n = ::splice(f.pipe.r.get(), nullptr, out.t->spliceFd(), nullptr, f.inPipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          out.writable = false;
          break;
        }
        Fail(f.dst);
        return false;
      }
      f.inPipe -= static_cast<size_t>(n);
      out.tx += static_cast<uint64_t>(n);
      lastActive_ = loop()->NowMs();
      continue;
    }
    if (f.eof) {
      int r = out.t->ShutdownWrite();
      if (r == -EAGAIN) {
        out.writable = false;
        break;
      }
      if (r < 0) {
        Fail(f.dst);
        return false;
      }
      f.done = true;
      break;
    }
    if (!in.readable) break;
    if (budget == 0) {
      loop()->Soon(this);
      break;
    }
    if (f.splice) {
      if (!f.pipe.r.valid()) {
        f.pipe = loop()->pipes().Take();
        if (!f.pipe.r.valid()) {
          f.splice = false;  // out of fds for pipes: copy instead (and try again at the next full read)
          continue;
        }
      }
      ssize_t n = ::splice(in.t->spliceFd(), nullptr, f.pipe.w.get(), nullptr, kSpliceChunk,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          in.readable = false;  // the pipe is empty here, so EAGAIN can only mean the socket is
          break;
        }
        if (errno == EINVAL) {
          f.splice = f.spliceable = false;  // this pair of files cannot splice: copy from now on
          continue;
        }
        Fail(f.src);
        return false;
      }
      if (n == 0) {
        f.eof = true;
        continue;
      }
      f.inPipe = static_cast<size_t>(n);
      in.rx += static_cast<uint64_t>(n);
      budget = budget > static_cast<size_t>(n) ? budget - static_cast<size_t>(n) : 0;
      lastActive_ = loop()->NowMs();
      continue;
    }
    char* scratch = loop()->scratch();
    ssize_t n = in.t->Read(scratch, Loop::kScratchSize);
    if (n == -EAGAIN) {
      in.readable = false;
      break;
    }
    if (n < 0) {
      Fail(f.src);
      return false;
    }
    if (n == 0) {
      f.eof = true;
      continue;
    }
    in.rx += static_cast<uint64_t>(n);
    budget = budget > static_cast<size_t>(n) ? budget - static_cast<size_t>(n) : 0;
    lastActive_ = loop()->NowMs();
    // A full buffer means bulk traffic: splice from the next read on (after this chunk is written).
    if (f.spliceable && static_cast<size_t>(n) == Loop::kScratchSize) f.splice = true;
    size_t done = 0;
    if (out.writable) {
      ssize_t w = out.t->Write(scratch, static_cast<size_t>(n));
      if (w == -EAGAIN) {
        out.writable = false;
      } else if (w < 0) {
        Fail(f.dst);
        return false;
      } else {
        done = static_cast<size_t>(w);
        out.tx += static_cast<uint64_t>(w);
      }
    }
    if (done < static_cast<size_t>(n)) {
      // The scratch buffer belongs to the loop: keep the unwritten remainder in the session.
      f.len = static_cast<size_t>(n) - done;
      f.off = 0;
      f.buf.reset(new char[f.len]);
      memcpy(f.buf.get(), scratch + done, f.len);
    }
  }
  PutBack(f);
  return true;
}

void TcpSession::Fail(int side) {
  log_.flags |= side == kClient ? kFlagDownstreamConnectionTermination : kFlagUpstreamConnectionTermination;
  // The failed side is gone; the other side learns it the way a direct connection would: by a reset.
  if (sides_[1 - side].t) sides_[1 - side].t->Reset();
  Finish();
}

void TcpSession::Close(const char* /*reason*/, bool reset) {
  if (ended_) return;
  if (reset) {
    for (Side& s : sides_)
      if (s.t) s.t->Reset();
  }
  Finish();
}

void TcpSession::OnTimer(int64_t nowMs) {
  if (ended_) return;
  connector_.OnTimer(nowMs);
  if (ended_) return;
  // Connect deadlines share the heap with the idle timer; only the idle chain's own entry re-arms it, so a
  // session keeps one idle entry however many other deadlines it had.
  if (idleMs_ <= 0 || nowMs < idleArmed_) return;
  if (nowMs >= lastActive_ + idleMs_) {
    Close("idle-timeout", false);
    return;
  }
  ArmIdle();
}

void TcpSession::Finish() {
  if (ended_) return;
  ended_ = true;
  connector_.Cancel();
  for (Flow& f : flows_) {
    if (!f.pipe.r.valid()) continue;
    if (f.inPipe == 0) {
      loop()->pipes().Give(std::move(f.pipe));
    } else {
      loop()->pipes().Drop();  // may hold bytes: close it rather than pool it
      f.pipe = Pipe{};
    }
    f.buf.reset();
  }
  if (sides_[kUpstream].t) CloseUpstream(loop(), id(), *sides_[kUpstream].t, lease_, sides_[kUpstream].rx, sides_[kUpstream].tx);
  log_.bytesReceived = sides_[kClient].rx;
  log_.bytesSent = sides_[kClient].tx;
  LogAccess(*d_.plan, log_, d_.client);
  sides_[0].t.reset();
  sides_[1].t.reset();
  loop()->Retire(this);
}

}  // namespace mx::engine
