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
  exports.Set("relayStart", Napi::Function::New(env, mx::RelayStart));
  exports.Set("relayStop", Napi::Function::New(env, mx::RelayStop));
  exports.Set("relayTcp", Napi::Function::New(env, mx::RelayTcp));
  exports.Set("relayClose", Napi::Function::New(env, mx::RelayClose));
  exports.Set("relayStats", Napi::Function::New(env, mx::RelayStats));
  return exports;
}

}  // namespace

NODE_API_MODULE(meshext_native, Init)
