// The nghttp2 callback table and options of one bridge kind. nghttp2 copies both into each session, so one
// immutable set serves every connection on every thread (built once, on first use, by a function-local
// static). Flow control is the bridge's: DATA is acknowledged only once it has left the bridge.
#pragma once
#include <nghttp2/nghttp2.h>

namespace mx::bridge {

struct H2Setup {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_option* opt = nullptr;

  /** Null members mean out of memory (session creation then fails cleanly). */
  explicit H2Setup(void (*fill)(nghttp2_session_callbacks*)) {
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0) return;
    fill(cb);
    nghttp2_option_set_no_auto_window_update(opt, 1);
  }
  H2Setup(const H2Setup&) = delete;
  H2Setup& operator=(const H2Setup&) = delete;
  ~H2Setup() {
    if (opt) nghttp2_option_del(opt);
    if (cb) nghttp2_session_callbacks_del(cb);
  }
  bool ok() const { return cb && opt; }
};

}  // namespace mx::bridge
