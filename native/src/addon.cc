// meshext native addon: registers the plain functions declared in api.h. Policy lives in TypeScript
// (src/redirect/native.ts is the only loader); this layer only moves bytes and calls libbpf.
#include <napi.h>

#include "api.h"

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
  exports.Set("mapLookupAndDelete", Napi::Function::New(env, mx::MapLookupAndDelete));
  exports.Set("mapKeys", Napi::Function::New(env, mx::MapKeys));
  exports.Set("mapCount", Napi::Function::New(env, mx::MapCount));
  exports.Set("percpuSumU64", Napi::Function::New(env, mx::PercpuSumU64));
  exports.Set("probe", Napi::Function::New(env, mx::Probe));
  exports.Set("cgroupId", Napi::Function::New(env, mx::CgroupId));
  exports.Set("netnsCookie", Napi::Function::New(env, mx::NetnsCookie));
  exports.Set("layout", Napi::Function::New(env, mx::Layout));
  exports.Set("tlsContextCreate", Napi::Function::New(env, mx::TlsContextCreate));
  exports.Set("tlsSessionCount", Napi::Function::New(env, mx::TlsSessionCount));
  exports.Set("tlsProbe", Napi::Function::New(env, mx::TlsProbe));
  exports.Set("engineStart", Napi::Function::New(env, mx::EngineStart));
  exports.Set("engineStop", Napi::Function::New(env, mx::EngineStop));
  exports.Set("engineClose", Napi::Function::New(env, mx::EngineClose));
  exports.Set("engineListen", Napi::Function::New(env, mx::EngineListen));
  exports.Set("engineTcpClient", Napi::Function::New(env, mx::EngineTcpClient));
  exports.Set("engineTcpConnect", Napi::Function::New(env, mx::EngineTcpConnect));
  exports.Set("engineRoutes", Napi::Function::New(env, mx::EngineRoutes));
  exports.Set("engineRouteHealth", Napi::Function::New(env, mx::EngineRouteHealth));
  exports.Set("engineStats", Napi::Function::New(env, mx::EngineStats));
  exports.Set("engineRef", Napi::Function::New(env, mx::EngineRef));
  exports.Set("engineFlush", Napi::Function::New(env, mx::EngineFlush));
  exports.Set("h1ParseHead", Napi::Function::New(env, mx::H1ParseHead));
  exports.Set("h1BodyScan", Napi::Function::New(env, mx::H1BodyScan));
  exports.Set("h1Rewrite", Napi::Function::New(env, mx::H1Rewrite));
  exports.Set("h1LocalResponse", Napi::Function::New(env, mx::H1LocalResponse));
  exports.Set("h1PoolCreate", Napi::Function::New(env, mx::H1PoolCreate));
  exports.Set("h1PoolsReap", Napi::Function::New(env, mx::H1PoolsReap));
  exports.Set("h1PoolsSweep", Napi::Function::New(env, mx::H1PoolsSweep));
  exports.Set("h1PoolClose", Napi::Function::New(env, mx::H1PoolClose));
  exports.Set("h1PoolFree", Napi::Function::New(env, mx::H1PoolFree));
  exports.Set("h1PoolStats", Napi::Function::New(env, mx::H1PoolStats));
  exports.Set("h1Serve", Napi::Function::New(env, mx::H1Serve));
  exports.Set("h1Upstream", Napi::Function::New(env, mx::H1Upstream));
  exports.Set("h1UpstreamFailed", Napi::Function::New(env, mx::H1UpstreamFailed));
  exports.Set("h1Drain", Napi::Function::New(env, mx::H1Drain));
  exports.Set("relayH2", Napi::Function::New(env, mx::RelayH2));
  exports.Set("relayH2Attach", Napi::Function::New(env, mx::RelayH2Attach));
  exports.Set("relayH2Unavailable", Napi::Function::New(env, mx::RelayH2Unavailable));
  exports.Set("relayH2Drain", Napi::Function::New(env, mx::RelayH2Drain));
  exports.Set("h2CountersNew", Napi::Function::New(env, mx::H2CountersNew));
  exports.Set("h2CountersRead", Napi::Function::New(env, mx::H2CountersRead));
  exports.Set("h2CountersFree", Napi::Function::New(env, mx::H2CountersFree));
  return exports;
}

}  // namespace

NODE_API_MODULE(meshext_native, Init)
