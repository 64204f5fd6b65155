// meshext native addon: registers the plain functions declared in api.h: libbpf calls for the redirect, and
// the data-plane engine. Policy lives in TypeScript (src/native/addon.ts is the only loader). The test build
// (meshext_native_test.node, MESHEXT_TEST_EXPORTS) adds the exports only tests use (testing/testing.h).
#include <napi.h>

#include "api.h"
#ifdef MESHEXT_TEST_EXPORTS
#include "testing/testing.h"
#endif

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("loadObject", Napi::Function::New(env, mx::LoadObject));
  exports.Set("closeObject", Napi::Function::New(env, mx::CloseObject));
  exports.Set("objGet", Napi::Function::New(env, mx::ObjGet));
  exports.Set("objPin", Napi::Function::New(env, mx::ObjPin));
  exports.Set("closeFd", Napi::Function::New(env, mx::CloseFd));
  exports.Set("linkCreate", Napi::Function::New(env, mx::LinkCreate));
  exports.Set("linkUpdate", Napi::Function::New(env, mx::LinkUpdate));
  exports.Set("linkDetach", Napi::Function::New(env, mx::LinkDetach));
  exports.Set("linkInfo", Napi::Function::New(env, mx::LinkInfo));
  exports.Set("progInfoById", Napi::Function::New(env, mx::ProgInfoById));
  exports.Set("mapInfo", Napi::Function::New(env, mx::MapInfo));
  exports.Set("mapLookup", Napi::Function::New(env, mx::MapLookup));
  exports.Set("mapUpdate", Napi::Function::New(env, mx::MapUpdate));
  exports.Set("mapDelete", Napi::Function::New(env, mx::MapDelete));
  exports.Set("origDstTake", Napi::Function::New(env, mx::OrigDstTake));
  exports.Set("origDstSweep", Napi::Function::New(env, mx::OrigDstSweep));
  exports.Set("mapKeys", Napi::Function::New(env, mx::MapKeys));
  exports.Set("mapCount", Napi::Function::New(env, mx::MapCount));
  exports.Set("percpuSumU64", Napi::Function::New(env, mx::PercpuSumU64));
  exports.Set("probe", Napi::Function::New(env, mx::Probe));
  exports.Set("cgroupId", Napi::Function::New(env, mx::CgroupId));
  exports.Set("netnsCookie", Napi::Function::New(env, mx::NetnsCookie));
  exports.Set("layout", Napi::Function::New(env, mx::Layout));
  exports.Set("fdLimit", Napi::Function::New(env, mx::FdLimit));
  exports.Set("sharedSocket", Napi::Function::New(env, mx::SharedSocket));
  exports.Set("adoptListenFds", Napi::Function::New(env, mx::AdoptListenFds));
  exports.Set("adoptHeldSockets", Napi::Function::New(env, mx::AdoptHeldSockets));
  exports.Set("serveHeldSockets", Napi::Function::New(env, mx::ServeHeldSockets));
  exports.Set("releaseHeldSockets", Napi::Function::New(env, mx::ReleaseHeldSockets));
  exports.Set("engineDnsListen", Napi::Function::New(env, mx::EngineDnsListen));
  exports.Set("engineDnsTable", Napi::Function::New(env, mx::EngineDnsTable));
  exports.Set("engineDnsResolve", Napi::Function::New(env, mx::EngineDnsResolve));
  exports.Set("engineDnsSend", Napi::Function::New(env, mx::EngineDnsSend));
  exports.Set("engineDnsCounts", Napi::Function::New(env, mx::EngineDnsCounts));
  exports.Set("dnsServfail", Napi::Function::New(env, mx::DnsServfail));
  exports.Set("dnsFitReply", Napi::Function::New(env, mx::DnsFitReply));
  exports.Set("engineStart", Napi::Function::New(env, mx::EngineStart));
  exports.Set("engineStop", Napi::Function::New(env, mx::EngineStop));
  exports.Set("engineListen", Napi::Function::New(env, mx::EngineListen));
  exports.Set("engineClose", Napi::Function::New(env, mx::EngineClose));
  exports.Set("engineInstall", Napi::Function::New(env, mx::EngineInstall));
  exports.Set("engineHealth", Napi::Function::New(env, mx::EngineHealth));
  exports.Set("engineReopenLogs", Napi::Function::New(env, mx::EngineReopenLogs));
  exports.Set("engineProbe", Napi::Function::New(env, mx::EngineProbe));
  exports.Set("engineCounters", Napi::Function::New(env, mx::EngineCounters));
  exports.Set("engineDrain", Napi::Function::New(env, mx::EngineDrain));
  exports.Set("engineStats", Napi::Function::New(env, mx::EngineStats));
  exports.Set("engineRef", Napi::Function::New(env, mx::EngineRef));
  exports.Set("engineFlush", Napi::Function::New(env, mx::EngineFlush));
#ifdef MESHEXT_TEST_EXPORTS
  mx::testing::Register(env, exports);
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(meshext_native, Init)
