// An HTTP/2 stream's header blocks as the access log reads them (%REQ()% / %RESP()%).
#pragma once
#include <string_view>

#include "../engine/access_log.h"
#include "relay.h"

namespace mx::h2 {

class H2LogHeaders final : public engine::LogHeaders {
 public:
  H2LogHeaders(const Headers* req, const Headers* resp) : req_(req), resp_(resp) {}
  bool Req(std::string_view lname, std::string_view* out) const override { return Find(req_, lname, out); }
  bool Resp(std::string_view lname, std::string_view* out) const override { return Find(resp_, lname, out); }

 private:
  // HTTP/2 field names are lower case on the wire (nghttp2 refuses others).
  static bool Find(const Headers* h, std::string_view lname, std::string_view* out) {
    if (!h) return false;
    for (const auto& [k, v] : *h) {
      if (k == lname) {
        *out = v;
        return true;
      }
    }
    return false;
  }
  const Headers* req_;
  const Headers* resp_;
};

}  // namespace mx::h2
