// TLS settings from JavaScript: a plan's `tls` object read strictly into a ClientConfig, and ALPN lists.
#pragma once
#include <napi.h>

#include <string>

#include "client_context.h"

namespace mx::tls {

/** `o` ({minVersion, maxVersion, cipherList, cipherSuites, verifyChain, ...}) as a ClientConfig; TypeErrors name `where`. */
ClientConfig ConfigFromJs(Napi::Env env, const Napi::Object& o, const std::string& where);

/** ["h2", "http/1.1"] → ALPN wire format; throws a TypeError for names outside 1..255 bytes. */
std::string AlpnWire(Napi::Env env, const Napi::Value& v);

}  // namespace mx::tls
