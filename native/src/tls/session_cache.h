// Client-side TLS session cache: one cache per client context (a TLS settings change builds a new context and
// so starts empty), entries keyed by endpoint address:port and SNI (the plan's per-target session key), TLS 1.3
// tickets handed out once (RFC 8446 C.4), TLS 1.2 sessions reusable until replaced, the oldest endpoint evicted
// first; its bounds come with the plan's TLS settings. Sessions are kept as live SSL_SESSION objects, so offering one costs no
// deserialisation, and each carries the peer certificate it was verified with.
#pragma once
#include <openssl/ssl.h>

#include <cstddef>
#include <deque>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

namespace mx::tls {

class SessionCache {
 public:
  SessionCache(size_t per_key, size_t max_keys)
      : per_key_(per_key), max_keys_(max_keys) {}
  ~SessionCache();
  SessionCache(const SessionCache&) = delete;
  SessionCache& operator=(const SessionCache&) = delete;

  /** A session to offer to `key` (a reference the caller frees), removed when single-use; null when none. */
  SSL_SESSION* Take(const std::string& key);
  /** Stores a session from a verified connection; takes over the caller's reference. */
  void Put(const std::string& key, SSL_SESSION* sess);
  /** Forgets everything cached for `key` (e.g. after a verification failure on that endpoint). */
  void Drop(const std::string& key);
  /** Number of sessions held for `key`. */
  size_t Size(const std::string& key);

 private:
  struct Entry {
    SSL_SESSION* sess;
    bool single_use;
  };
  struct Slot {
    std::deque<Entry> list;
    std::list<std::string>::iterator pos;
  };
  void EraseLocked(std::unordered_map<std::string, Slot>::iterator it);

  const size_t per_key_;
  const size_t max_keys_;
  std::mutex mu_;
  std::unordered_map<std::string, Slot> by_key_;
  // Insertion order of keys, oldest first (a JS Map's iteration order).
  std::list<std::string> order_;
};

}  // namespace mx::tls
