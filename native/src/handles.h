// Objects JS addresses by small integer handles (engines, HTTP/1 pools, HTTP/2 counter sets), so a
// stale or made-up handle is a TypeError naming it, never a dangling pointer. JS thread only.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>

#include "errors.h"

namespace mx {

template <typename T>
class HandleTable {
 public:
  /** `what` names the objects in errors, `missing` says what an unknown handle means ("is not running"). */
  HandleTable(const char* what, const char* missing) : what_(what), missing_(missing) {}

  uint32_t Add(T v) {
    uint32_t h = next_++;
    items_.emplace(h, std::move(v));
    return h;
  }

  /** The object behind argument `i`; throws "<what> <handle> <missing>" when there is none. */
  T& Arg(const Napi::CallbackInfo& info, size_t i) {
    uint32_t h = ArgU32(info, i, what_);
    auto it = items_.find(h);
    if (it == items_.end()) ThrowArg(info.Env(), std::string(what_) + " " + std::to_string(h) + " " + missing_);
    return it->second;
  }

  void Erase(uint32_t h) { items_.erase(h); }
  auto begin() { return items_.begin(); }
  auto end() { return items_.end(); }

 private:
  const char* what_;
  const char* missing_;
  uint32_t next_ = 1;
  std::unordered_map<uint32_t, T> items_;
};

}  // namespace mx
