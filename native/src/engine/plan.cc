// PlanTable, Plan::Order and StartConnect: see plan.h.
#include "plan.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/un.h>

#include <algorithm>
#include <cstddef>

#include "meshext_maps.h"
#include "../orig_dst.h"
#include "engine.h"
#include "sockaddr.h"

namespace mx::engine {

namespace {

static_assert(sizeof(mx_peer_key) == 20, "mx_peer_key layout");
static_assert(sizeof(mx_orig) == 48 && offsetof(mx_orig, port) == 16 && offsetof(mx_orig, created_ns) == 40, "mx_orig layout");

/** A socket address as mx_addr (IPv4 mapped into IPv6) and its port. */
bool ToMapped(const sockaddr_storage& ss, uint8_t out[16], uint16_t* port) {
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, &in->sin_addr, 4);
    *port = ntohs(in->sin_port);
    return true;
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    memcpy(out, &in6->sin6_addr, 16);
    *port = ntohs(in6->sin6_port);
    return true;
  }
  return false;
}

}  // namespace

std::string MappedText(const uint8_t a[16]) {
  static const uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char buf[INET6_ADDRSTRLEN] = {0};
  if (memcmp(a, kPrefix, 12) == 0) return inet_ntop(AF_INET, a + 12, buf, sizeof buf) ? buf : "";
  return inet_ntop(AF_INET6, a, buf, sizeof buf) ? buf : "";
}

void Plan::Order(int64_t nowMs, std::vector<uint32_t>* out) const {
  out->clear();
  size_t n = endpoints.size();
  if (n == 0) return;
  size_t start = state->next.fetch_add(1, std::memory_order_relaxed);
  // One reading of the back-offs (TypeScript may push new ones meanwhile), so each endpoint is listed once.
  thread_local std::vector<int64_t> down;
  down.resize(n);
  for (size_t k = 0; k < n; k++) down[k] = endpoints[k].state->downUntilMs.load(std::memory_order_relaxed);
  // Round-robin within each priority over its own members, so endpoints of other priorities declared in
  // between do not skew it.
  for (const std::vector<uint32_t>& g : groups) {
    size_t m = g.size();
    for (size_t i = 0; i < m; i++) {
      uint32_t k = g[(start + i) % m];
      if (down[k] <= nowMs) out->push_back(k);
    }
  }
  start %= n;
  size_t healthy = out->size();
  // Backed-off endpoints stay last-resort candidates, so "all down" still tries something.
  for (size_t i = 0; i < n; i++) {
    size_t k = (start + i) % n;
    if (down[k] > nowMs) out->push_back(static_cast<uint32_t>(k));
  }
  std::stable_sort(out->begin() + static_cast<long>(healthy), out->end(), [](uint32_t a, uint32_t b) { return down[a] < down[b]; });
}

std::string Plan::H1PoolKey(const PlanTarget& target, const std::string& host) const {
  std::string k = service;
  k += '|';
  k += tlsId;
  k += protocol == Protocol::kHttp ? "|h1|" : "|h2|";
  // A pooled connection keeps the idle timeout and age limit of the plan that opened it (see Plan::poolKey).
  k += std::to_string(upstreamIdleMs);
  k += '|';
  k += std::to_string(maxConnMs);
  k += '|';
  k += target.address;
  k += ':';
  k += std::to_string(target.port);
  k += '|';
  k += host;
  return k;
}

std::shared_ptr<ServiceState> PlanTable::StateFor(const std::string& id) {
  std::lock_guard<std::mutex> g(mu_);
  auto& w = states_[id];
  std::shared_ptr<ServiceState> s = w.lock();
  if (!s) {
    s = std::make_shared<ServiceState>(id);
    w = s;
  }
  return s;
}

std::shared_ptr<tls::ClientContext> PlanTable::ContextFor(const std::string& id) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = contexts_.find(id);
  return it == contexts_.end() ? nullptr : it->second.lock();
}

void PlanTable::RememberContext(const std::string& id, const std::shared_ptr<tls::ClientContext>& ctx) {
  std::lock_guard<std::mutex> g(mu_);
  contexts_[id] = ctx;
}

void PlanTable::Replace(std::shared_ptr<PlanSet> set) {
  std::shared_ptr<const PlanSet> old;
  {
    std::lock_guard<std::mutex> g(mu_);
    set->generation = generation_.load(std::memory_order_relaxed) + 1;
    old = std::move(set_);
    set_ = std::move(set);
    generation_.store(set_->generation, std::memory_order_release);
    for (auto it = states_.begin(); it != states_.end();) it = it->second.expired() ? states_.erase(it) : std::next(it);
    for (auto it = contexts_.begin(); it != contexts_.end();) it = it->second.expired() ? contexts_.erase(it) : std::next(it);
  }
  // `old` (and the plans only it held) go here, outside the lock.
}

std::shared_ptr<const Plan> PlanTable::Find(const std::string& key) const {
  std::lock_guard<std::mutex> g(mu_);
  auto it = set_->byKey.find(key);
  return it == set_->byKey.end() ? nullptr : it->second;
}

std::shared_ptr<const PlanSet> PlanTable::Current() const {
  std::lock_guard<std::mutex> g(mu_);
  return set_;
}

bool PlanTable::SetHealth(const std::string& service, const std::string& label, int64_t downForMs) {
  std::shared_ptr<ServiceState> s;
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = states_.find(service);
    if (it != states_.end()) s = it->second.lock();
  }
  if (!s) return false;
  auto e = s->endpoints.find(label);
  if (e == s->endpoints.end()) return false;
  e->second->downUntilMs.store(downForMs > 0 ? Loop::Clock() + downForMs : 0, std::memory_order_relaxed);
  return true;
}

std::vector<std::shared_ptr<ServiceState>> PlanTable::LiveStates() {
  std::vector<std::shared_ptr<ServiceState>> out;
  std::lock_guard<std::mutex> g(mu_);
  for (auto& [id, w] : states_)
    if (auto s = w.lock()) out.push_back(std::move(s));
  return out;
}

void PlanTable::OriginalDst(const PlanSet& set, const sockaddr_storage& peer, const sockaddr_storage& local, std::string* dst, uint16_t* dstPort) {
  dst->clear();
  *dstPort = 0;
  uint8_t localAddr[16];
  uint16_t localPort = 0;
  if (!ToMapped(local, localAddr, &localPort)) return;
  if (set.source == OrigDstSource::kLocal) {
    *dst = MappedText(localAddr);
    *dstPort = localPort;
    return;
  }
  if (!set.map || !set.map->valid()) return;
  mx_peer_key k{};
  uint16_t peerPort = 0;
  if (!ToMapped(peer, reinterpret_cast<uint8_t*>(k.addr.w), &peerPort)) return;
  k.port = htons(peerPort);
  k.proxy_port = htons(localPort);
  mx_orig o{};
  switch (TakeOriginalDst(set.map->get(), k, &o)) {
    case OrigTake::kMissing:
      global_.origDstMissing.fetch_add(1, std::memory_order_relaxed);
      return;
    case OrigTake::kStale:
      global_.origDstStale.fetch_add(1, std::memory_order_relaxed);
      return;
    case OrigTake::kFound:
      break;
  }
  global_.origDstFound.fetch_add(1, std::memory_order_relaxed);
  *dst = MappedText(reinterpret_cast<const uint8_t*>(o.addr.w));
  *dstPort = ntohs(o.port);
}

bool TargetSockaddr(const std::string& address, uint16_t port, sockaddr_storage* ss, socklen_t* len) {
  if (port != 0) return IpSockaddr(address, port, ss, len);
  *ss = sockaddr_storage{};
  auto* un = reinterpret_cast<sockaddr_un*>(ss);
  if (address.empty() || address.size() >= sizeof un->sun_path) return false;
  un->sun_family = AF_UNIX;
  memcpy(un->sun_path, address.data(), address.size());
  // An abstract name (leading NUL) is as long as given; a path carries its terminating NUL.
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size() + (address[0] == '\0' ? 0 : 1));
  return true;
}

UniqueFd StartConnect(const PlanTarget& target, int* err) {
  sockaddr_storage again;
  socklen_t len = target.saLen;
  const sockaddr_storage* ss = &target.sa;
  if (len == 0) {
    if (!TargetSockaddr(target.address, target.port, &again, &len)) return (*err = EINVAL), UniqueFd();
    ss = &again;
  }
  int family = ss->ss_family;
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return (*err = errno), UniqueFd();
  if (family != AF_UNIX) {
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  int r;
  do r = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(ss), len);
  while (r != 0 && errno == EINTR);
  if (r != 0 && errno != EINPROGRESS) return (*err = errno), UniqueFd();
  *err = 0;
  return fd;
}

}  // namespace mx::engine
