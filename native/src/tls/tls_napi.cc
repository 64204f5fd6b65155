// TLS settings as TypeScript hands them to the addon (a plan's `tls`), read into a ClientConfig; and ALPN lists.
#include "tls_napi.h"

#include <openssl/ssl.h>

#include <string>

#include "../errors.h"
#include "../jsargs.h"

namespace mx::tls {

std::string AlpnWire(Napi::Env env, const Napi::Value& v) {
  std::string wire;
  if (!v.IsArray()) return wire;
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    std::string p = a.Get(i).ToString().Utf8Value();
    if (p.empty() || p.size() > 255)
      ThrowArg(env, "tls: alpn[" + std::to_string(i) + "] must be 1..255 bytes, got " + std::to_string(p.size()));
    wire += static_cast<char>(p.size());
    wire += p;
  }
  return wire;
}

ClientConfig ConfigFromJs(Napi::Env env, const Napi::Object& o, const std::string& where) {
  ClientConfig c;
  auto version = [&](const char* k) {
    uint32_t n = js::U32(env, o, k, where, 0xffff);
    if (n < TLS1_VERSION || n > TLS1_3_VERSION)
      ThrowArg(env, where + "." + k + " must be a TLS protocol number (0x0301..0x0304), got " + std::to_string(n));
    return static_cast<int>(n);
  };
  c.min_version = version("minVersion");
  c.max_version = version("maxVersion");
  c.cipher_list = js::Str(env, o, "cipherList", where, false);
  c.cipher_suites = js::Str(env, o, "cipherSuites", where, false);
  c.verify_chain = js::Bool(env, o, "verifyChain", where);
  c.verify_names = js::Bool(env, o, "verifyNames", where);
  c.allow_renegotiation = js::Bool(env, o, "allowRenegotiation", where);
  c.ca_pem = js::Bytes(env, o, "ca", where);
  c.cert_pem = js::Bytes(env, o, "cert", where);
  c.key_pem = js::Bytes(env, o, "key", where);
  if (!o.Get("servername").IsUndefined()) {
    c.has_servername = true;
    c.servername = js::Str(env, o, "servername", where, false);
  }
  Napi::Array sans = js::Arr(env, o, "subjectAltNames", where);
  for (uint32_t i = 0; i < sans.Length(); i++) {
    std::string w = where + ".subjectAltNames[" + std::to_string(i) + "]";
    Napi::Object m = js::Obj(env, sans.Get(i), w);
    c.sans.push_back({js::Bool(env, m, "exact", w), js::Str(env, m, "value", w, false), js::Str(env, m, "ipValue", w, false)});
  }
  Napi::Object cache = js::Obj(env, o.Get("sessionCache"), where + ".sessionCache");
  c.tickets_per_key = js::U32(env, cache, "ticketsPerKey", where + ".sessionCache", 4096);
  c.keys_per_cache = js::U32(env, cache, "keys", where + ".sessionCache", 65536);
  if (c.tickets_per_key == 0 || c.keys_per_cache == 0) ThrowArg(env, where + ".sessionCache bounds must be at least 1");
  return c;
}

}  // namespace mx::tls
