// The engine's TLS upstream transport: a ClientConn over the dialled socket. The Connector drives the
// handshake to its end (Handshake()) before a session gets the transport, so application bytes reach the
// upstream only after the handshake has passed verification; Read/Write/ShutdownWrite would complete it too.
// A failure after the handshake is described in the tls* fields of Describe().
#pragma once
#include <memory>

#include "../engine/engine.h"
#include "../engine/transport.h"
#include "client_conn.h"

namespace mx::tls {

class TlsTransport final : public engine::Transport {
 public:
  TlsTransport(engine::UniqueFd fd, std::shared_ptr<ClientContext> ctx, ConnParams params);

  int fd() const override { return fd_.get(); }
  ssize_t Read(char* buf, size_t len) override;
  ssize_t Write(const char* buf, size_t len) override;
  int ShutdownWrite() override;
  void Reset() override { engine::SetAbortiveClose(fd_.get()); }
  // OpenSSL may need to write to read (and read to write): retry both directions on any readiness.
  bool anyReadinessRetries() const override { return true; }
  void Bind(engine::Loop* loop) override;
  void SetupTimedOut() override;
  void Describe(engine::Event& closed) const override;
  int Handshake() override { return Progress(); }
  bool readPending() const override { return endPending_; }
  bool WireCounts(uint64_t* rx, uint64_t* tx) const override;
  bool resumed() const { return conn_ && conn_->resumed(); }
  /** The protocol the server selected by ALPN ("" when none). */
  std::string alpn() const { return conn_ ? conn_->alpn() : std::string(); }
  /** Why the connection failed (stage empty when it did not). */
  const Failure* failure() const { return conn_ ? &conn_->failure() : nullptr; }

 private:
  /** 0 once the handshake is done, else -EAGAIN or a fatal -errno. */
  int Progress();
  /** Maps a failed ClientConn call onto the transport's -errno contract. */
  ssize_t Failed();

  engine::UniqueFd fd_;
  // Built in Bind() on the loop thread (SSL_new and the session lookup stay off the JS thread).
  // Declared after fd_ so that it is destroyed (SSL_free) before the fd is closed.
  std::unique_ptr<ClientConn> conn_;
  std::shared_ptr<ClientContext> ctx_;
  ConnParams params_;
  bool failed_ = false;
  bool shutSent_ = false;
  bool endPending_ = false;  // a Read returned bytes and has the end or error they came with still to report
};


}  // namespace mx::tls
