// Exports only tests use, built into the test addon (meshext_native_test.node) and never into the production
// one: the HTTP/1.1 codec as plain functions, and native TLS driven without an engine.
#pragma once
#include <napi.h>

namespace mx::testing {

Napi::Value H1ParseHead(const Napi::CallbackInfo& info);
Napi::Value H1BodyScan(const Napi::CallbackInfo& info);
Napi::Value H1Rewrite(const Napi::CallbackInfo& info);
Napi::Value H1LocalResponse(const Napi::CallbackInfo& info);
Napi::Value TlsContextCreate(const Napi::CallbackInfo& info);
Napi::Value TlsSessionCount(const Napi::CallbackInfo& info);
Napi::Value TlsProbe(const Napi::CallbackInfo& info);

/** Adds the test-only exports to the addon's exports. */
void Register(Napi::Env env, Napi::Object exports);

}  // namespace mx::testing
