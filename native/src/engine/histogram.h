// Latency histograms of a service (Envoy's upstream_rq_time and upstream_cx_connect_ms): fixed millisecond
// buckets, one relaxed atomic increment per observation plus the sum, so a loop thread pays one clock read and
// two atomics. Buckets are stored per bucket (not cumulative); TypeScript makes them cumulative for Prometheus
// and takes the bounds from the engine's report (kHistogramBoundsMs), so they are written down once.
#pragma once
#include <time.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace mx::engine {

/** Upper bounds of the finite buckets in µs (Prometheus `le`, in ms: 0.5 … 60000); one more bucket is +Inf. */
inline constexpr int64_t kHistogramBoundsUs[] = {500,     1000,    2500,    5000,     10000,    25000,    50000,    100000,
                                                 250000,  500000,  1000000, 2500000,  5000000,  10000000, 30000000, 60000000};
inline constexpr size_t kHistogramFinite = sizeof kHistogramBoundsUs / sizeof kHistogramBoundsUs[0];

/** CLOCK_MONOTONIC in µs: fine enough for sub-millisecond buckets (the loops' coarse clock ticks in 4 ms). */
inline int64_t MonoUs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

struct LatencyHistogram {
  /** Per bucket (the last is +Inf): observations whose value is above the previous bound and at most this one. */
  std::atomic<uint64_t> counts[kHistogramFinite + 1] = {};
  std::atomic<uint64_t> sumUs{0};

  /** Records one observation of `us` microseconds (negative: clock went backwards, counted as 0). */
  void Record(int64_t us) {
    if (us < 0) us = 0;
    size_t i = 0;
    while (i < kHistogramFinite && us > kHistogramBoundsUs[i]) i++;
    counts[i].fetch_add(1, std::memory_order_relaxed);
    sumUs.fetch_add(static_cast<uint64_t>(us), std::memory_order_relaxed);
  }
};

}  // namespace mx::engine
