// The upstream side of a proxied connection: a plain socket or a layered transport (TLS; protocol bridges
// such as HTTP/1.1 over HTTP/2, which wrap another transport). Sessions talk to upstreams only through this
// interface.
//
// Semantics (shared by every implementation):
//  - Read/Write return bytes moved (> 0), 0 from Read at end of stream, or -errno; -EAGAIN means "not now,
//    wait for readiness on fd()". A layered transport may need the opposite readiness (TLS: a read that must
//    write, a write that must read); it says so by returning true from anyReadinessRetries(), and the session
//    then retries both directions on any event of fd().
//  - Errors that mean the peer is gone are -ECONNRESET/-EPIPE; other negative values are fatal as well.
//  - ShutdownWrite() sends the end of stream once all written bytes are out (TLS: close_notify, then FIN);
//    it returns 0, -EAGAIN (call again when writable) or -errno.
//  - Reset() makes the eventual close abortive (RST); the destructor closes the fd.
//  - spliceFd() >= 0 only for plain sockets: the session may then move bytes with splice(2) directly.
//  - Layered transports with a setup phase (TLS handshake) get Bind() once on the loop thread before any
//    I/O, and add their figures to the closed event. The connector drives that phase with Handshake() until
//    it returns 0 (so a failed handshake fails over to the next endpoint before any session sees the
//    transport) under its connect deadline; when that passes it calls SetupTimedOut().
//  - A short Read (fewer bytes than asked) means the socket is drained, as for a plain socket: edge-triggered
//    readiness announces what arrives next (TLS reads until the socket is drained or the buffer is full) —
//    unless readPending() says the next Read has an end of stream or error to report already.
//  - A bridge (holdsBytes() true) may hold bytes no readiness event will announce: a reply produced by a
//    Write, or bytes it accepted for its socket (a request body waiting for the peer's flow-control window).
//    Sessions read a bridge again after every successful Write, never take a short read from it as
//    "drained", and call Flush() on every readiness event of its fd, so held bytes move on even while the
//    session itself has nothing to read or write.
//  - WireCounts() gives the bytes the transport moved on its socket (TLS records included) when they differ
//    from what the session read and wrote through it.
#pragma once
#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>

#include "fd.h"

namespace mx::engine {

class Loop;
struct Event;

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int fd() const = 0;
  virtual ssize_t Read(char* buf, size_t len) = 0;
  virtual ssize_t Write(const char* buf, size_t len) = 0;
  virtual int ShutdownWrite() = 0;
  virtual void Reset() = 0;
  virtual int spliceFd() const { return -1; }
  virtual bool anyReadinessRetries() const { return false; }
  /** The next Read reports something without waiting (an end of stream or error seen after a short read's bytes). */
  virtual bool readPending() const { return false; }
  /** A bridge: may hold bytes both ways that no readiness of fd() announces (see the header comment). */
  virtual bool holdsBytes() const { return false; }
  /** Whether a finished exchange leaves it fit for the next one (a bridge: not after GOAWAY or a failure). */
  virtual bool reusable() const { return true; }
  virtual void Bind(Loop* /*loop*/) {}
  virtual void SetupTimedOut() {}
  virtual void Describe(Event& /*closed*/) const {}
  /** Moves bytes a bridge holds (see the header comment); nothing for other transports. */
  virtual void Flush() {}
  /** Completes the setup phase: 0 when done (or there is none), -EAGAIN to wait for readiness on fd(), else -errno. */
  virtual int Handshake() { return 0; }
  /** Bytes moved on the socket when they differ from the session's own counts (TLS records); false otherwise. */
  virtual bool WireCounts(uint64_t* /*rx*/, uint64_t* /*tx*/) const { return false; }
};

/** Sets SO_LINGER {1, 0} so close() sends RST instead of FIN. */
inline void SetAbortiveClose(int fd) {
  struct linger lg {};
  lg.l_onoff = 1;
  lg.l_linger = 0;
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/** A connected stream socket (TCP or unix) used as is. */
class PlainTransport final : public Transport {
 public:
  explicit PlainTransport(UniqueFd fd) : fd_(std::move(fd)) {}
  int fd() const override { return fd_.get(); }
  ssize_t Read(char* buf, size_t len) override {
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buf, len, 0);
      if (n >= 0) return n;
      if (errno != EINTR) return -errno;
    }
  }
  ssize_t Write(const char* buf, size_t len) override {
    for (;;) {
      ssize_t n = ::send(fd_.get(), buf, len, MSG_NOSIGNAL);
      if (n >= 0) return n;
      if (errno != EINTR) return -errno;
    }
  }
  int ShutdownWrite() override { return ::shutdown(fd_.get(), SHUT_WR) == 0 || errno == ENOTCONN ? 0 : -errno; }
  void Reset() override { SetAbortiveClose(fd_.get()); }
  int spliceFd() const override { return fd_.get(); }

 private:
  UniqueFd fd_;
};

}  // namespace mx::engine
