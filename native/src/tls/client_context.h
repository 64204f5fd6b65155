// A client TLS context for one service, built from inputs TypeScript has already resolved from the
// service's CompiledTls (src/snapshot/plan.ts is the one place that decides them): protocol bounds, cipher
// lists, which of chain and names are verified, the CA bundle PEM, client identity, SNI and SAN matchers.
#pragma once
#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "session_cache.h"
#include "verify.h"

namespace mx::tls {

struct ClientConfig {
  int min_version = TLS1_2_VERSION;  // TLS1_VERSION..TLS1_3_VERSION
  int max_version = TLS1_3_VERSION;
  std::string cipher_list;    // TLS <= 1.2 ciphers (OpenSSL syntax)
  std::string cipher_suites;  // TLS 1.3 suites; empty keeps OpenSSL's default
  bool verify_chain = true;
  bool verify_names = true;
  bool allow_renegotiation = false;
  std::string ca_pem;  // trusted roots; used only when verify_chain
  std::string cert_pem;
  std::string key_pem;
  bool has_servername = false;
  std::string servername;
  std::vector<SanMatcher> sans;
  /** Session cache bounds: TLS 1.3 tickets kept per endpoint key, endpoint keys per context (the plan's). */
  size_t tickets_per_key = 1;
  size_t keys_per_cache = 1;
};

class ClientContext {
 public:
  /** Builds the context; on failure returns null and sets `err` to OpenSSL's text (never key material). */
  static std::shared_ptr<ClientContext> Create(ClientConfig cfg, std::string* err);
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  SSL_CTX* ctx() const { return ctx_; }
  const ClientConfig& config() const { return cfg_; }
  SessionCache& sessions() { return sessions_; }

 private:
  explicit ClientContext(ClientConfig cfg) : cfg_(std::move(cfg)), sessions_(cfg_.tickets_per_key, cfg_.keys_per_cache) {}
  ClientConfig cfg_;
  SSL_CTX* ctx_ = nullptr;
  SessionCache sessions_;
};

/** OpenSSL's text for the newest queued error (and clears the queue); `fallback` when there is none. */
std::string TakeOpensslError(const char* fallback);

}  // namespace mx::tls
