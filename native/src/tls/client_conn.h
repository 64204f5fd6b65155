// One upstream TLS client connection over a connected, non-blocking fd: the handshake as a resumable step
// function, the verification policy (DESIGN decision 6, as the plan's TLS settings say) applied once it completes, session
// caching of verified connections only, then SSL_read/SSL_write for the relay. Not thread-safe: one
// connection is driven by one thread at a time (the context and its cache are shared and locked).
#pragma once
#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "client_context.h"

namespace mx::tls {

/** Why a connection failed, shaped for TypeScript (src/proxy/tls.ts names the reason for logs and metrics). */
struct Failure {
  /** "chain": code is Node's X509 code name; "alert": an OpenSSL/TLS error (code ERR_SSL_...);
   *  "closed": the peer went away; "policy": a check of ours failed, code names it (an X509 code name such
   *  as HOSTNAME_MISMATCH, or MESHEXT_E_...) and message says it in full. */
  std::string stage;
  std::string code;
  std::string message;
};

enum class Io { kOk, kWantRead, kWantWrite, kEof, kError };

struct ConnParams {
  /** TlsSessionCache.key(address, port, SNI); empty disables resumption for this connection. */
  std::string session_key;
  /** The address actually dialled; the expected name when there is no SNI. */
  std::string dialled_ip;
  /** ALPN protocols in wire format (length-prefixed); empty offers none. */
  std::string alpn_wire;
};

class ClientConn {
 public:
  ClientConn(std::shared_ptr<ClientContext> ctx, int fd, ConnParams params);
  ~ClientConn();
  ClientConn(const ClientConn&) = delete;
  ClientConn& operator=(const ClientConn&) = delete;

  /** Advances the handshake: kOk once done and verified, kWantRead/kWantWrite to wait, kError (see failure()). */
  Io Handshake();
  /** Reads decrypted bytes; kEof on close_notify or TCP EOF. */
  Io Read(char* buf, size_t cap, size_t* n);
  /** Writes plaintext; may accept part of it (partial writes are enabled). */
  Io Write(const char* buf, size_t len, size_t* n);
  /** Sends close_notify (our half-close); kWantWrite to retry. */
  Io ShutdownWrite();

  /** Fails the connection from outside (e.g. the handshake timer); same cache rules as any failure. */
  void Abort(Failure f) { Fail(std::move(f)); }

  const Failure& failure() const { return failure_; }
  bool handshake_done() const { return verified_; }
  bool resumed() const { return resumed_; }
  /** "TLSv1.3" etc. once the handshake is done. */
  const char* protocol() const { return ssl_ ? SSL_get_version(ssl_) : ""; }
  /** Negotiated ALPN protocol or empty. */
  std::string alpn() const;
  int fd() const { return fd_; }
  /** The last read of the socket since ClearDrained() returned less than asked or would block: nothing more is there now. */
  bool socket_drained() const { return drained_; }
  void ClearDrained() { drained_ = false; }
  /** Decrypted bytes or unprocessed records held by OpenSSL (a read would not touch the socket). */
  bool has_pending() const { return ssl_ && SSL_has_pending(ssl_) == 1; }
  /** Bytes read from / written to the socket, TLS records included (what Node's raw socket counts). */
  uint64_t wire_rx() const;
  uint64_t wire_tx() const;

  /** SSL_CTX new-session callback: caches sessions of verified connections (see client_context.cc). */
  static int OnNewSession(SSL* ssl, SSL_SESSION* sess);
  /** The socket BIO's callback: notes whether a read drained the socket. */
  static long OnSocketBio(BIO* b, int oper, const char* argp, size_t len, int argi, long argl, int ret, size_t* processed);

 private:
  Io Fail(Failure f);
  Io PolicyFail(std::string code, std::string message);
  Io FromSslError(int ret, bool in_handshake);
  Io Verify();
  /** After a failed write: a TLS peer usually said why (an alert) before closing; prefer that reason. */
  Io ExplainWriteFailure(Io io);

  std::shared_ptr<ClientContext> ctx_;
  int fd_;
  ConnParams params_;
  SSL* ssl_ = nullptr;
  SSL_SESSION* pending_ = nullptr;  // a TLS 1.2 session reported before verification
  bool verified_ = false;
  bool has_peer_ = false;
  bool resumed_ = false;
  bool failed_ = false;
  bool drained_ = false;
  Failure failure_;
};

}  // namespace mx::tls
