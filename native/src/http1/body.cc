// Body tracking for pass-through forwarding: the bytes are not rewritten, so all we need is where the
// message ends. Chunked bodies are parsed by the one strict chunked parser (chunked.h: no bare LF, no
// whitespace except before an extension, bounded sizes), so that we and the next hop never disagree.
#include "codec.h"

namespace mx::h1 {

void BodyTracker::Start(Framing f, uint64_t length) {
  framing_ = f;
  remaining_ = f == Framing::Chunked ? 0 : length;
  failed_ = false;
  error_ = nullptr;
  chunked_.Reset();
  done_ = f == Framing::None || (f == Framing::Length && length == 0);
}

bool BodyTracker::Fail(const char* why) {
  failed_ = true;
  error_ = why;
  return false;
}

size_t BodyTracker::Consume(const char* p, size_t n) {
  if (done_ || failed_) return 0;
  switch (framing_) {
    case Framing::None:
      return 0;
    case Framing::Length: {
      size_t k = remaining_ < n ? static_cast<size_t>(remaining_) : n;
      remaining_ -= k;
      done_ = remaining_ == 0;
      return k;
    }
    case Framing::Close:
    case Framing::Tunnel:
      return n;
    case Framing::Chunked: {
      size_t k = chunked_.Decode(p, n, nullptr);
      if (chunked_.failed()) Fail(chunked_.error());
      else done_ = chunked_.done();
      return k;
    }
  }
  return 0;
}

}  // namespace mx::h1
