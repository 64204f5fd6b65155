#include "client_context.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include "client_conn.h"

namespace mx::tls {
namespace {

// OpenSSL's receive buffer with read-ahead: four full records per recv(2) (released while idle).
constexpr size_t kReadBuffer = 4 * (16384 + 512);

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr MemBio(const std::string& s) { return BioPtr(BIO_new_mem_buf(s.data(), static_cast<int>(s.size()))); }

// A PEM that needs a passphrase is a configuration error, never a prompt on the agent's terminal.
int NoPassphrase(char*, int, int, void*) { return 0; }

// Verification outcome is decided after the handshake (like Node with rejectUnauthorized: false), so that
// every mode takes the same path and a failure has a precise reason.
int AcceptAndRecord(int, X509_STORE_CTX*) { return 1; }

bool LoadCa(SSL_CTX* ctx, const std::string& pem, std::string* err) {
  X509_STORE* store = X509_STORE_new();
  if (!store) return (*err = TakeOpensslError("X509_STORE_new failed")), false;
  BioPtr bio = MemBio(pem);
  for (;;) {
    X509* x = PEM_read_bio_X509_AUX(bio.get(), nullptr, NoPassphrase, nullptr);
    if (!x) break;
    X509_STORE_add_cert(store, x);
    X509_free(x);
  }
  ERR_clear_error();  // the loop ends on "no start line"
  SSL_CTX_set_cert_store(ctx, store);
  return true;
}

bool LoadIdentity(SSL_CTX* ctx, const std::string& cert_pem, const std::string& key_pem, std::string* err) {
  BioPtr cbio = MemBio(cert_pem);
  X509* leaf = PEM_read_bio_X509_AUX(cbio.get(), nullptr, NoPassphrase, nullptr);
  if (!leaf) return (*err = TakeOpensslError("client certificate: no PEM certificate")), false;
  int ok = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);
  if (ok != 1) return (*err = TakeOpensslError("client certificate rejected")), false;
  for (;;) {
    X509* extra = PEM_read_bio_X509(cbio.get(), nullptr, NoPassphrase, nullptr);
    if (!extra) break;
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
      X509_free(extra);
      return (*err = TakeOpensslError("client certificate chain rejected")), false;
    }
  }
  ERR_clear_error();
  BioPtr kbio = MemBio(key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(kbio.get(), nullptr, NoPassphrase, nullptr);
  if (!key) return (*err = TakeOpensslError("client key: no PEM private key")), false;
  ok = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1) return (*err = TakeOpensslError("client key rejected")), false;
  return true;
}

}  // namespace

std::string TakeOpensslError(const char* fallback) {
  unsigned long e = 0, last = 0;
  while ((e = ERR_get_error()) != 0) last = e;
  if (!last) return fallback;
  char buf[256];
  ERR_error_string_n(last, buf, sizeof buf);
  return buf;
}

std::shared_ptr<ClientContext> ClientContext::Create(ClientConfig cfg, std::string* err) {
  ERR_clear_error();
  std::shared_ptr<ClientContext> c(new ClientContext(std::move(cfg)));
  const ClientConfig& k = c->cfg_;
  c->ctx_ = SSL_CTX_new(TLS_client_method());
  if (!c->ctx_) return (*err = TakeOpensslError("SSL_CTX_new failed")), nullptr;
  SSL_CTX* ctx = c->ctx_;
  if (SSL_CTX_set_min_proto_version(ctx, k.min_version) != 1 || SSL_CTX_set_max_proto_version(ctx, k.max_version) != 1)
    return (*err = TakeOpensslError("unsupported TLS protocol bounds")), nullptr;
  if (!k.cipher_list.empty() && SSL_CTX_set_cipher_list(ctx, k.cipher_list.c_str()) != 1)
    return (*err = TakeOpensslError("no cipher match")), nullptr;
  if (!k.cipher_suites.empty() && SSL_CTX_set_ciphersuites(ctx, k.cipher_suites.c_str()) != 1)
    return (*err = TakeOpensslError("no ciphersuite match")), nullptr;
  uint64_t opts = SSL_OP_IGNORE_UNEXPECTED_EOF;
  // Envoy (BoringSSL) never renegotiates unless allowed; OpenSSL clients accept it by default.
  if (!k.allow_renegotiation) opts |= SSL_OP_NO_RENEGOTIATION;
  SSL_CTX_set_options(ctx, opts);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  // Read several records per recv(2) instead of a header and a body per record.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, kReadBuffer);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, AcceptAndRecord);
  if (k.verify_chain && !LoadCa(ctx, k.ca_pem, err)) return nullptr;
  // The client identity is ours, not a verification setting, so it is presented in every mode.
  if (!k.cert_pem.empty() && !k.key_pem.empty() && !LoadIdentity(ctx, k.cert_pem, k.key_pem, err)) return nullptr;
  // Sessions live in our own cache (per endpoint and SNI), never in OpenSSL's internal one.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, ClientConn::OnNewSession);
  return c;
}

ClientContext::~ClientContext() {
  if (ctx_) SSL_CTX_free(ctx_);
}

}  // namespace mx::tls
