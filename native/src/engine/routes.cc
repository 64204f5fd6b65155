// RouteTable and StartConnect: see routes.h.
#include "routes.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/un.h>

#include <cstddef>

#include "../tls/tls_transport.h"
#include "engine.h"
#include "sockaddr.h"

namespace mx::engine {

namespace {

// bpf/meshext_maps.h: struct mx_peer_key and struct mx_orig (addresses IPv6 or IPv4-mapped, ports big-endian).
struct PeerKey {
  uint8_t addr[16];
  uint16_t port;
  uint16_t proxyPort;
};
static_assert(sizeof(PeerKey) == 20, "mx_peer_key layout");
struct Orig {
  uint8_t addr[16];
  uint16_t port;
  uint8_t proto;
  uint8_t flags;
  uint32_t pid;
  uint64_t cgroupId;
};
static_assert(sizeof(Orig) == 32 && offsetof(Orig, port) == 16 && offsetof(Orig, cgroupId) == 24, "mx_orig layout");

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

/** mx_addr as text: IPv4-mapped addresses in dotted form (as the TS codec decodes them). */
std::string MappedText(const uint8_t a[16]) {
  static const uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char buf[INET6_ADDRSTRLEN] = {0};
  if (memcmp(a, kPrefix, 12) == 0) return inet_ntop(AF_INET, a + 12, buf, sizeof buf) ? buf : "";
  return inet_ntop(AF_INET6, a, buf, sizeof buf) ? buf : "";
}

}  // namespace

size_t Route::Pick(int64_t nowMs) {
  size_t n = targets.size();
  size_t start = next.fetch_add(1, std::memory_order_relaxed) % n;
  size_t soonest = start;
  for (size_t i = 0; i < n; i++) {
    size_t k = (start + i) % n;
    int64_t until = targets[k]->downUntilMs.load(std::memory_order_relaxed);
    if (until <= nowMs) return k;
    if (until < targets[soonest]->downUntilMs.load(std::memory_order_relaxed)) soonest = k;
  }
  return soonest;
}

std::unique_ptr<Transport> Route::Upstream(size_t target, UniqueFd fd) const {
  if (!tls) return std::make_unique<PlainTransport>(std::move(fd));
  return std::make_unique<tls::TlsTransport>(std::move(fd), tls, targets[target]->tls, handshakeTimeoutMs);
}

std::vector<std::pair<uint32_t, uint64_t>> RouteTable::Replace(std::vector<std::shared_ptr<Route>> routes,
                                                               std::vector<std::pair<std::string, uint32_t>> keys,
                                                               OrigDstSource source, UniqueFd map) {
  std::unordered_map<uint32_t, std::shared_ptr<Route>> byId;
  std::vector<std::pair<uint32_t, uint64_t>> gone;
  auto newMap = map.valid() ? std::make_shared<UniqueFd>(std::move(map)) : nullptr;
  std::lock_guard<std::mutex> g(mu_);
  for (auto& r : routes) {
    // Same id, maybe new content (a DNS name's addresses changed): the new object carries on the old one's
    // round-robin position, count and, target by target, health. Accepts still holding the old object
    // finish with it; no later Take() returns it.
    if (auto old = byId_.find(r->id); old != byId_.end()) {
      const Route& o = *old->second;
      r->next.store(o.next.load(std::memory_order_relaxed), std::memory_order_relaxed);
      r->routed = o.routed;
      for (size_t i = 0; i < r->targets.size() && i < o.targets.size(); i++)
        r->targets[i]->downUntilMs.store(o.targets[i]->downUntilMs.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    uint32_t id = r->id;
    byId.emplace(id, std::move(r));
  }
  for (auto& [id, r] : byId_)
    if (byId.find(id) == byId.end()) gone.emplace_back(id, r->routed);
  std::unordered_map<std::string, std::shared_ptr<Route>> byKey;
  for (auto& [key, id] : keys) {
    auto it = byId.find(id);
    if (it != byId.end()) byKey[key] = it->second;
  }
  byId_.swap(byId);
  byKey_.swap(byKey);
  source_ = source;
  map_ = std::move(newMap);
  return gone;
}

std::shared_ptr<Route> RouteTable::Take(const std::string& key) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = byKey_.find(key);
  if (it == byKey_.end()) return nullptr;
  it->second->routed++;
  return it->second;
}

bool RouteTable::SetHealth(uint32_t route, size_t target, int64_t downForMs) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = byId_.find(route);
  if (it == byId_.end() || target >= it->second->targets.size()) return false;
  it->second->targets[target]->downUntilMs.store(downForMs > 0 ? Loop::Clock() + downForMs : 0, std::memory_order_relaxed);
  return true;
}

bool RouteTable::OriginalDst(const sockaddr_storage& peer, const sockaddr_storage& local, std::string* dst, uint16_t* dstPort) {
  OrigDstSource source;
  std::shared_ptr<UniqueFd> map;
  {
    std::lock_guard<std::mutex> g(mu_);
    source = source_;
    map = map_;
  }
  dst->clear();
  *dstPort = 0;
  if (source == OrigDstSource::kNone) return false;
  uint8_t localAddr[16];
  uint16_t localPort = 0;
  if (!ToMapped(local, localAddr, &localPort)) return true;
  if (source == OrigDstSource::kLocal) {
    *dst = MappedText(localAddr);
    *dstPort = localPort;
    return true;
  }
  if (!map || !map->valid()) return true;
  PeerKey k{};
  uint16_t peerPort = 0;
  if (!ToMapped(peer, k.addr, &peerPort)) return true;
  k.port = htons(peerPort);
  k.proxyPort = htons(localPort);
  Orig o{};
  if (bpf_map_lookup_and_delete_elem(map->get(), &k, &o) != 0) return true;
  *dst = MappedText(o.addr);
  *dstPort = ntohs(o.port);
  return true;
}

UniqueFd StartConnect(const std::string& address, uint32_t port, int* err) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family;
  if (port == 0) {
    auto* un = reinterpret_cast<sockaddr_un*>(&ss);
    if (address.empty() || address.size() >= sizeof un->sun_path) return (*err = ENAMETOOLONG), UniqueFd();
    un->sun_family = family = AF_UNIX;
    memcpy(un->sun_path, address.data(), address.size());
    // An abstract name (leading NUL) is as long as given; a path carries its terminating NUL.
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size() + (address[0] == '\0' ? 0 : 1));
  } else {
    if (!IpSockaddr(address, static_cast<uint16_t>(port), &ss, &len)) return (*err = EINVAL), UniqueFd();
    family = ss.ss_family;
  }
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return (*err = errno), UniqueFd();
  if (family != AF_UNIX) {
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  int r;
  do r = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len);
  while (r != 0 && errno == EINTR);
  if (r != 0 && errno != EINPROGRESS) return (*err = errno), UniqueFd();
  *err = 0;
  return fd;
}

}  // namespace mx::engine
