// Registers the test-only exports (see testing.h).
#include "testing.h"

#include <pthread.h>
#include <signal.h>

#include <string>
#include <thread>

#include "../engine/access_log.h"
#include "../engine/crash.h"

namespace mx::testing {

namespace {

// Recurses until the thread's stack is gone (the frame is kept alive so the compiler cannot fold the calls).
volatile bool deep_enough = false;  // never set: the recursion only ends with the stack
__attribute__((noinline)) int Deeper(int n) {
  if (deep_enough) return n;
  volatile char frame[1024];
  frame[0] = static_cast<char>(n);
  return Deeper(n + 1) + frame[0];
}

// Ends the process the way a data-plane bug would: `fault` (a null write), `abort` or `overflow`, on a thread marked and
// named like an engine thread, with the crash report installed as engineStart installs it.
Napi::Value CrashOnEngineThread(const Napi::CallbackInfo& info) {
  std::string how = info[0].As<Napi::String>().Utf8Value();
  engine::InstallCrashReport();
  std::thread([how] {
    pthread_setname_np(pthread_self(), "mx-engine-test");
    engine::MarkCrashReportThread();
    if (how == "abort") abort();
    if (how == "overflow") Deeper(0);
    volatile int* p = nullptr;
    *p = 1;
  }).detach();
  return info.Env().Undefined();
}

// Sets the bound of every access log sink's queue (so a test fills one with a few lines); returns the old one.
Napi::Value AccessLogCapacity(const Napi::CallbackInfo& info) {
  auto bytes = static_cast<size_t>(info[0].As<Napi::Number>().Int64Value());
  return Napi::Number::New(info.Env(), static_cast<double>(engine::LogSink::Capacity().exchange(bytes)));
}

}  // namespace

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("accessLogCapacity", Napi::Function::New(env, AccessLogCapacity));
  exports.Set("h1ParseHead", Napi::Function::New(env, H1ParseHead));
  exports.Set("h1BodyScan", Napi::Function::New(env, H1BodyScan));
  exports.Set("h1Rewrite", Napi::Function::New(env, H1Rewrite));
  exports.Set("h1LocalResponse", Napi::Function::New(env, H1LocalResponse));
  exports.Set("tlsContextCreate", Napi::Function::New(env, TlsContextCreate));
  exports.Set("tlsSessionCount", Napi::Function::New(env, TlsSessionCount));
  exports.Set("tlsProbe", Napi::Function::New(env, TlsProbe));
  exports.Set("crashOnEngineThread", Napi::Function::New(env, CrashOnEngineThread));
}

}  // namespace mx::testing
