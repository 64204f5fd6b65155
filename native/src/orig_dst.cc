#include "orig_dst.h"

#include <bpf/bpf.h>
#include <time.h>

#include <vector>

namespace mx {

namespace {

// CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

constexpr size_t kMaxVisit = 2 * MX_PEER_MAX_ENTRIES;
constexpr uint64_t kMaxAgeNs = static_cast<uint64_t>(MX_ORIG_MAX_AGE_MS) * 1000000ull;

// An entry made after `now` was read (during a sweep's walk) is fresh.
bool Stale(const mx_orig& o, uint64_t now) { return now > o.created_ns && now - o.created_ns > kMaxAgeNs; }

}  // namespace

OrigTake TakeOriginalDst(int mapFd, const mx_peer_key& key, mx_orig* out) {
  if (bpf_map_lookup_and_delete_elem(mapFd, &key, out) != 0) return OrigTake::kMissing;
  return Stale(*out, MonotonicNs()) ? OrigTake::kStale : OrigTake::kFound;
}

uint32_t SweepOriginalDst(int mapFd) {
  // Collect first: deleting while walking with get_next_key restarts the walk from the beginning.
  std::vector<mx_peer_key> stale;
  uint64_t now = MonotonicNs();
  mx_peer_key cur{}, next{};
  const void* prev = nullptr;
  // Bounded work per sweep (it runs on the JS thread): a walk restarted by concurrent deletes cannot run on.
  size_t visited = 0;
  while (visited++ < kMaxVisit && bpf_map_get_next_key(mapFd, prev, &next) == 0) {
    mx_orig o{};
    if (bpf_map_lookup_elem(mapFd, &next, &o) == 0 && Stale(o, now)) stale.push_back(next);
    cur = next;
    prev = &cur;
  }
  uint32_t n = 0;
  for (const auto& k : stale) {
    mx_orig o{};
    // Re-checked just before the delete: an entry rewritten since the walk (its port reused) is fresh and stays.
    if (bpf_map_lookup_elem(mapFd, &k, &o) == 0 && Stale(o, MonotonicNs()) && bpf_map_delete_elem(mapFd, &k) == 0) n++;
  }
  return n;
}

}  // namespace mx
