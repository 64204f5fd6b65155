// nghttp2 name/value arrays over owned header lists (the relay's and the bridges').
#pragma once
#include <nghttp2/nghttp2.h>

#include <sys/types.h>

#include <cstdint>
#include <vector>

namespace mx::h2 {

/** nghttp2 name/value array over name/value string pairs; they must outlive the submit call (nghttp2 copies them). */
template <typename Pairs>
std::vector<nghttp2_nv> ToNv(const Pairs& h) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(h.size());
  for (const auto& [k, v] : h) {
    nv.push_back(nghttp2_nv{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(k.data())),
                            const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(v.data())), k.size(), v.size(),
                            NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

/**
 * What a DATA read callback that copied `n` body bytes returns: at the end of the body (`ended`) the EOF flag,
 * with `trailers` (already filtered to those that may cross), if any, submitted instead of END_STREAM;
 * otherwise the bytes, or NGHTTP2_ERR_DEFERRED (noted in `*deferred`, so the stream is resumed when bytes
 * arrive) when there were none.
 */
template <typename Pairs>
ssize_t DataReadResult(nghttp2_session* sess, int32_t stream_id, size_t n, bool ended, const Pairs& trailers, uint32_t* flags, bool* deferred) {
  if (ended) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!trailers.empty()) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      auto nv = ToNv(trailers);
      if (nghttp2_submit_trailer(sess, stream_id, nv.data(), nv.size()) != 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return static_cast<ssize_t>(n);
  }
  if (n == 0) {
    *deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

}  // namespace mx::h2
