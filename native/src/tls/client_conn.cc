#include "client_conn.h"

#include <openssl/err.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace mx::tls {
namespace {

int ConnIndex() {
  static int idx = -1;
  static std::once_flag once;
  std::call_once(once, [] { idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr); });
  return idx;
}

// Node's code for an OpenSSL error: "ERR_SSL_" + the reason text upper-cased, non-alphanumerics as '_'.
std::string NodeCode(unsigned long e) {
  const char* lib = ERR_lib_error_string(e);
  const char* reason = ERR_reason_error_string(e);
  std::string code = "ERR_";
  std::string l = lib && std::strcmp(lib, "SSL routines") == 0 ? "SSL" : (lib ? lib : "OSSL");
  for (char c : l + "_" + (reason ? reason : "UNKNOWN")) {
    if (c >= 'a' && c <= 'z') code += static_cast<char>(c - 'a' + 'A');
    else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) code += c;
    else code += '_';
  }
  return code;
}


}  // namespace

ClientConn::ClientConn(std::shared_ptr<ClientContext> ctx, int fd, ConnParams params)
    : ctx_(std::move(ctx)), fd_(fd), params_(std::move(params)) {
  ERR_clear_error();
  ssl_ = SSL_new(ctx_->ctx());
  if (!ssl_) {
    Fail({"alert", "ERR_SSL_NEW", TakeOpensslError("SSL_new failed")});
    return;
  }
  SSL_set_ex_data(ssl_, ConnIndex(), this);
  SSL_set_connect_state(ssl_);
  const ClientConfig& k = ctx_->config();
  if (SSL_set_fd(ssl_, fd_) != 1 ||
      (k.has_servername && SSL_set_tlsext_host_name(ssl_, k.servername.c_str()) != 1) ||
      (!params_.alpn_wire.empty() &&
       SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(params_.alpn_wire.data()),
                           static_cast<unsigned>(params_.alpn_wire.size())) != 0)) {
    Fail({"alert", "ERR_SSL_SETUP", TakeOpensslError("TLS connection setup failed")});
    return;
  }
  if (BIO* rb = SSL_get_rbio(ssl_)) {
    BIO_set_callback_arg(rb, reinterpret_cast<char*>(this));
    BIO_set_callback_ex(rb, OnSocketBio);
  }
  if (!params_.session_key.empty()) {
    if (SSL_SESSION* s = ctx_->sessions().Take(params_.session_key)) {
      SSL_set_session(ssl_, s);  // takes its own reference
      SSL_SESSION_free(s);
    }
  }
}

ClientConn::~ClientConn() {
  if (pending_) SSL_SESSION_free(pending_);
  if (ssl_) {
    SSL_set_ex_data(ssl_, ConnIndex(), nullptr);
    SSL_free(ssl_);
  }
}

uint64_t ClientConn::wire_rx() const {
  BIO* b = ssl_ ? SSL_get_rbio(ssl_) : nullptr;
  return b ? BIO_number_read(b) : 0;
}

uint64_t ClientConn::wire_tx() const {
  BIO* b = ssl_ ? SSL_get_wbio(ssl_) : nullptr;
  return b ? BIO_number_written(b) : 0;
}

std::string ClientConn::alpn() const {
  const unsigned char* p = nullptr;
  unsigned len = 0;
  if (ssl_) SSL_get0_alpn_selected(ssl_, &p, &len);
  return p ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

Io ClientConn::Fail(Failure f) {
  if (!failed_) {
    failed_ = true;
    failure_ = std::move(f);
    // Whatever we hold for this endpoint may be what led here (or was issued by a server we now reject).
    if (!verified_ && !params_.session_key.empty()) ctx_->sessions().Drop(params_.session_key);
  }
  return Io::kError;
}

Io ClientConn::PolicyFail(std::string code, std::string message) {
  return Fail({"policy", std::move(code), std::move(message)});
}

Io ClientConn::FromSslError(int ret, bool in_handshake) {
  int err = SSL_get_error(ssl_, ret);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      return Io::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return Io::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      if (!in_handshake) return Io::kEof;
      break;
    case SSL_ERROR_SSL: {
      unsigned long e = ERR_peek_last_error();
      std::string code = e ? NodeCode(e) : "ERR_SSL_UNKNOWN";
      return Fail({"alert", code, TakeOpensslError("TLS error")});
    }
    case SSL_ERROR_SYSCALL: {
      int saved = errno;
      ERR_clear_error();
      if (saved == EAGAIN || saved == EINTR) return Io::kWantRead;
      if (!in_handshake && (ret == 0 || saved == 0)) return Io::kEof;
      if (!in_handshake)
        return Fail({"closed", saved ? strerrorname_np(saved) : "ECONNRESET", std::strerror(saved ? saved : ECONNRESET)});
      break;
    }
    default:
      ERR_clear_error();
      break;
  }
  return Fail({"closed", "ECONNRESET", "upstream closed the connection during the TLS handshake"});
}

Io ClientConn::Handshake() {
  if (failed_) return Io::kError;
  if (verified_) return Io::kOk;
  ERR_clear_error();
  int ret = SSL_do_handshake(ssl_);
  if (ret != 1) return FromSslError(ret, true);
  return Verify();
}

Io ClientConn::Verify() {
  const ClientConfig& k = ctx_->config();
  resumed_ = SSL_session_reused(ssl_) == 1;
  // On resumption the peer certificate is the one stored with the session, i.e. the one verified when the
  // session was made (against this same context, since the cache belongs to it).
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if ((k.verify_chain || k.verify_names) && !cert)
    return PolicyFail("MESHEXT_E_TLS_VERIFY", std::string("TLS handshake failed: no peer certificate to verify") + (resumed_ ? " on a resumed session" : ""));
  if (k.verify_chain) {
    long vr = SSL_get_verify_result(ssl_);
    if (vr != X509_V_OK) return Fail({"chain", VerifyCodeName(vr), X509_verify_cert_error_string(vr)});
  }
  if (resumed_ && k.verify_chain && cert) {
    // Time has moved on since the session was verified.
    if (long bad = OutsideValidity(cert)) return PolicyFail(VerifyCodeName(bad), std::string(X509_verify_cert_error_string(bad)) + " (resumed session)");
  }
  if (k.verify_names && cert) {
    const std::string& expected = k.has_servername ? k.servername : params_.dialled_ip;
    bool std_ok = (k.has_servername || !params_.dialled_ip.empty()) && CheckServerIdentity(expected, cert);
    if (!std_ok && !MatchesUserSans(cert, k.sans)) {
      std::string sans = SanListText(cert);
      return PolicyFail(VerifyCodeName(X509_V_ERR_HOSTNAME_MISMATCH), "certificate name mismatch: expected " +
                                             (k.has_servername || !params_.dialled_ip.empty() ? expected : "(no server name)") +
                                             (k.sans.empty() ? "" : " or a configured subjectAltName") + ", certificate has " +
                                             (sans.empty() ? "no SANs" : sans) + (resumed_ ? " (resumed session)" : ""));
    }
  }
  verified_ = true;
  has_peer_ = cert != nullptr;
  // SkipAll with a server that sends no certificate at all leaves nothing to remember: no caching.
  if (!params_.session_key.empty() && has_peer_) {
    if (pending_) {
      ctx_->sessions().Put(params_.session_key, pending_);
      pending_ = nullptr;
    } else if (SSL_version(ssl_) != TLS1_3_VERSION && !resumed_) {
      if (SSL_SESSION* s = SSL_get1_session(ssl_)) ctx_->sessions().Put(params_.session_key, s);
    }
  }
  return Io::kOk;
}

int ClientConn::OnNewSession(SSL* ssl, SSL_SESSION* sess) {
  auto* c = static_cast<ClientConn*>(SSL_get_ex_data(ssl, ConnIndex()));
  if (!c || c->params_.session_key.empty() || c->failed_) return 0;
  if (c->verified_) {
    if (!c->has_peer_) return 0;
    c->ctx_->sessions().Put(c->params_.session_key, sess);
    return 1;
  }
  // TLS 1.2 reports its session during the handshake, before anything is verified: hold it back.
  if (c->pending_) SSL_SESSION_free(c->pending_);
  c->pending_ = sess;
  return 1;
}

long ClientConn::OnSocketBio(BIO* b, int oper, const char*, size_t len, int, long, int ret, size_t* processed) {
  if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
    auto* c = reinterpret_cast<ClientConn*>(BIO_get_callback_arg(b));
    // A short read, or one that would block, means the socket has nothing more right now.
    if (c) c->drained_ = ret <= 0 ? BIO_should_retry(b) != 0 : (processed != nullptr && *processed < len);
  }
  return ret;
}

Io ClientConn::Read(char* buf, size_t cap, size_t* n) {
  *n = 0;
  if (failed_) return Io::kError;
  ERR_clear_error();
  int ret = SSL_read_ex(ssl_, buf, cap, n) == 1 ? 1 : 0;
  if (ret == 1) return Io::kOk;
  return FromSslError(ret, false);
}

Io ClientConn::Write(const char* buf, size_t len, size_t* n) {
  *n = 0;
  if (failed_) return Io::kError;
  ERR_clear_error();
  int ret = SSL_write_ex(ssl_, buf, len, n) == 1 ? 1 : 0;
  if (ret == 1) return Io::kOk;
  Io io = FromSslError(ret, false);
  if (io == Io::kEof) io = Fail({"closed", "EPIPE", "upstream closed the connection"});
  return ExplainWriteFailure(io);
}

Io ClientConn::ExplainWriteFailure(Io io) {
  if (io != Io::kError || failure_.stage != "closed") return io;
  // The session is ending either way, so whatever application data is still queued may be discarded.
  char buf[4096];
  for (int i = 0; i < 64; i++) {
    ERR_clear_error();
    size_t n = 0;
    if (SSL_read_ex(ssl_, buf, sizeof buf, &n) == 1) continue;
    if (SSL_get_error(ssl_, 0) == SSL_ERROR_SSL) {
      unsigned long e = ERR_peek_last_error();
      failure_ = {"alert", e ? NodeCode(e) : "ERR_SSL_UNKNOWN", TakeOpensslError("TLS error")};
    }
    break;
  }
  ERR_clear_error();
  return io;
}

Io ClientConn::ShutdownWrite() {
  if (failed_) return Io::kError;
  ERR_clear_error();
  int ret = SSL_shutdown(ssl_);
  if (ret >= 0) return Io::kOk;  // 0: close_notify sent, the peer's may follow later
  return ExplainWriteFailure(FromSslError(ret, false));
}

}  // namespace mx::tls
