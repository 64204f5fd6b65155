#include "session_cache.h"

namespace mx::tls {

SessionCache::~SessionCache() {
  for (auto& kv : by_key_)
    for (auto& e : kv.second.list) SSL_SESSION_free(e.sess);
}

void SessionCache::EraseLocked(std::unordered_map<std::string, Slot>::iterator it) {
  for (auto& e : it->second.list) SSL_SESSION_free(e.sess);
  order_.erase(it->second.pos);
  by_key_.erase(it);
}

SSL_SESSION* SessionCache::Take(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  if (it == by_key_.end() || it->second.list.empty()) return nullptr;
  // Newest first: the latest ticket has the longest remaining lifetime.
  Entry e = it->second.list.back();
  if (e.single_use) {
    it->second.list.pop_back();
    if (it->second.list.empty()) EraseLocked(it);
    return e.sess;
  }
  SSL_SESSION_up_ref(e.sess);
  return e.sess;
}

void SessionCache::Put(const std::string& key, SSL_SESSION* sess) {
  bool single_use = SSL_SESSION_get_protocol_version(sess) == TLS1_3_VERSION;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    if (by_key_.size() >= max_keys_ && !order_.empty()) EraseLocked(by_key_.find(order_.front()));
    order_.push_back(key);
    it = by_key_.emplace(key, Slot{{}, std::prev(order_.end())}).first;
  }
  auto& list = it->second.list;
  // A reusable (TLS 1.2) session replaces everything: there is no point in keeping several.
  if (!single_use) {
    for (auto& e : list) SSL_SESSION_free(e.sess);
    list.clear();
  }
  list.push_back(Entry{sess, single_use});
  while (list.size() > per_key_) {
    SSL_SESSION_free(list.front().sess);
    list.pop_front();
  }
}

void SessionCache::Drop(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  if (it != by_key_.end()) EraseLocked(it);
}

size_t SessionCache::Size(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  return it == by_key_.end() ? 0 : it->second.list.size();
}

}  // namespace mx::tls
