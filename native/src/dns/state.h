// The engine's DNS table (installed by TypeScript with each snapshot) and the counts of the queries it settled.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <atomic>
#include <tuple>
#include <vector>

#include "wire.h"

namespace mx::dns {

/** The engine's DNS table and counts; any thread. */
class State {
 public:
  std::shared_ptr<const Table> Current() const {
    std::lock_guard<std::mutex> g(mu_);
    return table_;
  }
  void Replace(std::shared_ptr<const Table> t) {
    std::lock_guard<std::mutex> g(mu_);
    table_ = std::move(t);
  }
  /** Counts one query the engine settled (answered, formerr, dropped, stalled) by its qtype (-1: unreadable). */
  void Count(int qtype, Outcome o) { counts_[Bucket(qtype)][o].fetch_add(1, std::memory_order_relaxed); }
  /** (qtype, outcome, count) for every non-zero count; qtype -1: unreadable, kOtherType: any type above 255. */
  std::vector<std::tuple<int, Outcome, int64_t>> Counts() const {
    std::vector<std::tuple<int, Outcome, int64_t>> out;
    for (size_t b = 0; b < kBuckets; b++)
      for (int o = 0; o < kOutcomes; o++)
        if (int64_t n = counts_[b][o].load(std::memory_order_relaxed)) out.emplace_back(b == kBuckets - 1 ? kOtherType : static_cast<int>(b) - 1, static_cast<Outcome>(o), n);
    return out;
  }
  /** Reported for query types above 255 (rare; TypeScript labels them OTHER). */
  static constexpr int kOtherType = 65535;

 private:
  // Buckets: unreadable (-1), types 0..255, and every other type; no lock on the query path, bounded memory.
  static constexpr size_t kBuckets = 258;
  static size_t Bucket(int qtype) { return qtype < -1 || qtype > 255 ? kBuckets - 1 : static_cast<size_t>(qtype + 1); }
  mutable std::mutex mu_;  // the table pointer only
  std::shared_ptr<const Table> table_;
  std::atomic<int64_t> counts_[kBuckets][kOutcomes] = {};
};

}  // namespace mx::dns
