// A byte queue for one direction of a connection: append at the end, consume from the front, or read(2)
// straight into its tail. Storage exists only while bytes are queued: an idle keep-alive connection holds
// no buffer memory (small messages cost one small allocation, which the allocator serves from its caches).
#pragma once
#include <cstddef>
#include <cstring>
#include <memory>

namespace mx::h1 {

class Buf {
 public:
  const char* data() const { return mem_.get() + off_; }
  size_t size() const { return end_ - off_; }
  bool empty() const { return end_ == off_; }

  void Consume(size_t n) {
    off_ += n;
    if (off_ == end_) Clear();
  }
  void Clear() {
    off_ = end_ = 0;
    mem_.reset();
    cap_ = 0;
  }
  /** Room for at least n more bytes at the tail; write there, then Commit. */
  char* Reserve(size_t n) {
    if (cap_ - end_ >= n) return mem_.get() + end_;
    size_t live = size();
    if (off_ > 0 && cap_ - live >= n) {
      std::memmove(mem_.get(), data(), live);
    } else {
      size_t cap = cap_ ? cap_ : kMinCap;
      while (cap - live < n) cap *= 2;
      std::unique_ptr<char[]> m(new char[cap]);
      if (live) std::memcpy(m.get(), data(), live);
      mem_ = std::move(m);
      cap_ = cap;
    }
    off_ = 0;
    end_ = live;
    return mem_.get() + end_;
  }
  void Commit(size_t n) {
    end_ += n;
    if (off_ == end_) Clear();
  }
  void Append(const char* p, size_t n) {
    if (n == 0) return;
    std::memcpy(Reserve(n), p, n);
    end_ += n;
  }

 private:
  static constexpr size_t kMinCap = 256;
  std::unique_ptr<char[]> mem_;
  size_t cap_ = 0, off_ = 0, end_ = 0;
};

}  // namespace mx::h1
