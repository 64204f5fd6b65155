// Registers the test-only exports (see testing.h).
#include "testing.h"

namespace mx::testing {

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("h1ParseHead", Napi::Function::New(env, H1ParseHead));
  exports.Set("h1BodyScan", Napi::Function::New(env, H1BodyScan));
  exports.Set("h1Rewrite", Napi::Function::New(env, H1Rewrite));
  exports.Set("h1LocalResponse", Napi::Function::New(env, H1LocalResponse));
  exports.Set("tlsContextCreate", Napi::Function::New(env, TlsContextCreate));
  exports.Set("tlsSessionCount", Napi::Function::New(env, TlsSessionCount));
  exports.Set("tlsProbe", Napi::Function::New(env, TlsProbe));
}

}  // namespace mx::testing
