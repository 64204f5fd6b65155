// The transport a bridge speaks its second protocol on (a plain socket or TLS, connected and handshaken):
// its queued output, how each direction ended, and the bytes moved. Bridges call it without readiness
// bookkeeping of their own: a call that cannot proceed returns -EAGAIN, and the session retries the bridge
// on any readiness of the shared fd (anyReadinessRetries()).
#pragma once
#include <cerrno>
#include <cstdint>
#include <memory>

#include "../engine/transport.h"
#include "../http1/buf.h"

namespace mx::bridge {

class Inner {
 public:
  explicit Inner(std::unique_ptr<engine::Transport> t) : t_(std::move(t)) {}

  engine::Transport& t() const { return *t_; }
  /** Bytes waiting to be written to the transport (dropped once writing failed). */
  h1::Buf out;

  /** Writes queued bytes until none are left or the transport pushes back; returns the bytes written. */
  size_t Flush() {
    size_t moved = 0;
    while (!out.empty() && !write_failed()) {
      ssize_t n = t_->Write(out.data(), out.size());
      if (n == -EAGAIN || n == -EWOULDBLOCK) break;
      if (n <= 0) {
        werr_ = n == 0 ? EPIPE : static_cast<int>(-n);
        out.Clear();
        break;
      }
      out.Consume(static_cast<size_t>(n));
      tx_ += static_cast<uint64_t>(n);
      moved += static_cast<size_t>(n);
    }
    return moved;
  }

  /**
   * One read: > 0 bytes, 0 at end of stream, -EAGAIN, or -errno. A failed write does not stop reading: the
   * peer may have answered before it closed.
   */
  ssize_t Read(char* buf, size_t len) {
    if (read_ended()) return rerr_ ? -rerr_ : 0;
    ssize_t n = t_->Read(buf, len);
    if (n > 0) rx_ += static_cast<uint64_t>(n);
    else if (n == 0) reof_ = true;
    else if (n != -EAGAIN && n != -EWOULDBLOCK) rerr_ = static_cast<int>(-n);
    return n;
  }

  /** Stops all I/O: the bridge gave the connection up (queued output is dropped). */
  void Abandon() {
    if (!werr_) werr_ = ECONNABORTED;
    if (!read_ended()) rerr_ = ECONNABORTED;
    out.Clear();
  }

  bool write_failed() const { return werr_ != 0; }
  /** End of stream or a read error was seen. */
  bool read_ended() const { return reof_ || rerr_ != 0; }
  /** Either direction is over: the connection cannot carry a new exchange. */
  bool broken() const { return write_failed() || read_ended(); }
  /** errno of the first failure (read or write), 0 for none or a clean end of stream. */
  int error() const { return rerr_ ? rerr_ : werr_; }
  uint64_t rx() const { return rx_; }
  uint64_t tx() const { return tx_; }

 private:
  std::unique_ptr<engine::Transport> t_;
  bool reof_ = false;
  int rerr_ = 0, werr_ = 0;
  uint64_t rx_ = 0, tx_ = 0;
};

}  // namespace mx::bridge
