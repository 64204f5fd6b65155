#include "tls_transport.h"

#include <sys/socket.h>


namespace mx::tls {

TlsTransport::TlsTransport(engine::UniqueFd fd, std::shared_ptr<ClientContext> ctx, ConnParams params)
    : fd_(std::move(fd)), ctx_(std::move(ctx)), params_(std::move(params)) {}

void TlsTransport::Bind(engine::Loop* /*loop*/) {
  conn_ = std::make_unique<ClientConn>(std::move(ctx_), fd_.get(), std::move(params_));
}

void TlsTransport::SetupTimedOut() {
  // The connector reports the timeout (with its deadline); this only ends the connection and its session.
  if (conn_) conn_->Abort({"timeout", "MESHEXT_E_CONNECT_TIMEOUT", "TLS handshake timed out"});
  failed_ = true;
}

ssize_t TlsTransport::Failed() {
  failed_ = true;
  const Failure& f = conn_->failure();
  // After the handshake a plain reset stays a reset (not a TLS failure).
  if (f.stage == "closed" && conn_->handshake_done()) return f.code == "EPIPE" ? -EPIPE : -ECONNRESET;
  return -EPROTO;
}

int TlsTransport::Progress() {
  if (!conn_) return -EAGAIN;  // not bound to a loop yet
  if (conn_->handshake_done()) return 0;
  if (failed_) return -EPROTO;
  Io io = conn_->Handshake();
  if (io == Io::kWantRead || io == Io::kWantWrite) return -EAGAIN;
  if (io == Io::kError) return static_cast<int>(Failed());
  return 0;
}

ssize_t TlsTransport::Read(char* buf, size_t len) {
  if (int r = Progress()) return r;
  // SSL_read returns one record (<= 16 KiB) at a time: fill the caller's buffer from what has arrived, so the
  // other side gets one large write instead of one per record. Stop once the socket is drained and OpenSSL
  // holds nothing: the next SSL_read would only meet EAGAIN, and a short read tells the session just that.
  conn_->ClearDrained();
  endPending_ = false;
  size_t got = 0;
  while (got < len) {
    size_t n = 0;
    switch (conn_->Read(buf + got, len - got, &n)) {
      case Io::kOk:
        got += n;
        if (conn_->socket_drained() && !conn_->has_pending()) return static_cast<ssize_t>(got);
        continue;
      case Io::kEof:
        if (got > 0) {
          endPending_ = true;  // EOF is seen again on the next call
          return static_cast<ssize_t>(got);
        }
        return 0;
      case Io::kWantRead:
      case Io::kWantWrite:
        return got > 0 ? static_cast<ssize_t>(got) : -EAGAIN;
      case Io::kError:
        if (got > 0) {
          endPending_ = true;  // the error is reported by the next call
          return static_cast<ssize_t>(got);
        }
        return Failed();
    }
  }
  return static_cast<ssize_t>(got);
}

ssize_t TlsTransport::Write(const char* buf, size_t len) {
  if (int r = Progress()) return r;
  size_t n = 0;
  switch (conn_->Write(buf, len, &n)) {
    case Io::kOk:
      return static_cast<ssize_t>(n);
    case Io::kWantRead:
    case Io::kWantWrite:
      return -EAGAIN;
    case Io::kEof:
    case Io::kError:
      break;
  }
  return Failed();
}

int TlsTransport::ShutdownWrite() {
  // The client may finish before the handshake does: complete (and verify) it first, as Node would.
  if (int r = Progress()) return r;
  if (!shutSent_) {
    Io io = conn_->ShutdownWrite();
    if (io == Io::kWantRead || io == Io::kWantWrite) return -EAGAIN;
    if (io == Io::kError) return static_cast<int>(Failed());
    shutSent_ = true;
  }
  return ::shutdown(fd_.get(), SHUT_WR) == 0 || errno == ENOTCONN ? 0 : -errno;
}

bool TlsTransport::WireCounts(uint64_t* rx, uint64_t* tx) const {
  if (!conn_) return false;
  *rx = conn_->wire_rx();
  *tx = conn_->wire_tx();
  return true;
}

void TlsTransport::Describe(engine::Event& closed) const {
  if (!conn_) return;
  closed.Num("tlsWireRx", static_cast<double>(conn_->wire_rx())).Num("tlsWireTx", static_cast<double>(conn_->wire_tx()));
  const Failure& f = conn_->failure();
  if (f.stage.empty()) return;
  // A plain reset after the handshake is reported by the session's own reason/error fields.
  if (f.stage == "closed" && conn_->handshake_done()) return;
  closed.Str("tlsStage", f.stage).Str("tlsCode", f.code).Str("tlsMessage", f.message);
  closed.Num("tlsAfterHandshake", conn_->handshake_done() ? 1 : 0);
}

}  // namespace mx::tls
