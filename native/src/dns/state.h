// The engine's DNS table (installed by TypeScript with each snapshot) and the counts of the queries it settled.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

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
  /** Counts one query the engine settled (answered, formerr, dropped) by its qtype (-1: unreadable). */
  void Count(int qtype, Outcome o) {
    std::lock_guard<std::mutex> g(mu_);
    counts_[(static_cast<uint32_t>(qtype + 1) << 2) | o]++;
  }
  /** (qtype + 1) << 2 | outcome → count. */
  std::unordered_map<uint32_t, int64_t> Counts() const {
    std::lock_guard<std::mutex> g(mu_);
    return counts_;
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Table> table_;
  std::unordered_map<uint32_t, int64_t> counts_;
};

}  // namespace mx::dns
