// JavaScript surface of native TLS origination: context handles made from TS-resolved inputs, their session
// caches, and a self-contained one-shot exchange (tlsProbe) that drives a ClientConn with poll(2).
#pragma once
#include <napi.h>

#include <memory>

#include "client_context.h"
#include "client_conn.h"

namespace mx::tls {

/** The context held by a handle from tlsContextCreate; throws a TypeError for anything else. */
std::shared_ptr<ClientContext> ContextFromValue(const Napi::Value& v);

/** ["h2", "http/1.1"] → ALPN wire format; throws a TypeError for names outside 1..255 bytes. */
std::string AlpnWire(Napi::Env env, const Napi::Value& v);

/** {stage, code, message, reason?} for a failed connection. */
Napi::Object FailureToJs(Napi::Env env, const Failure& f);

}  // namespace mx::tls
