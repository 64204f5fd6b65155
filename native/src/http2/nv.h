// nghttp2 name/value arrays over owned header lists (the relay's and the bridges').
#pragma once
#include <nghttp2/nghttp2.h>

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

}  // namespace mx::h2
