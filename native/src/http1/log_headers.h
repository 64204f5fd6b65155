// An HTTP/1.x exchange's heads as the access log reads them (%REQ()% / %RESP()%).
#pragma once
#include <string_view>

#include "../engine/access_log.h"
#include "../http_common.h"
#include "codec.h"

namespace mx::h1 {

class H1LogHeaders final : public engine::LogHeaders {
 public:
  /** The request head (views into the session's copy of it); null before one parsed. */
  const Head* req = nullptr;
  /** The response head relayed to the client; null when none was (a local reply). */
  const Head* resp = nullptr;

  bool Req(std::string_view lname, std::string_view* out) const override {
    if (!req) return false;
    if (lname == ":method") return Set(req->method, out);
    if (lname == ":path") return Set(req->target, out);
    if (lname == ":authority") return req->has_host && Set(req->host, out);
    return Find(*req, lname, out);
  }
  bool Resp(std::string_view lname, std::string_view* out) const override { return resp && Find(*resp, lname, out); }

 private:
  static bool Set(std::string_view v, std::string_view* out) {
    *out = v;
    return true;
  }
  static bool Find(const Head& h, std::string_view lname, std::string_view* out) {
    for (const Field& f : h.fields)
      if (http::IEquals(f.name, lname)) return Set(f.value, out);
    return false;
  }
};

}  // namespace mx::h1
