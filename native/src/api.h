// Declarations of every function the addon exports (registered in addon.cc).
#pragma once
#include <napi.h>

namespace mx {

Napi::Value LoadObject(const Napi::CallbackInfo& info);
Napi::Value CloseObject(const Napi::CallbackInfo& info);

Napi::Value ObjGet(const Napi::CallbackInfo& info);
Napi::Value ObjPin(const Napi::CallbackInfo& info);
Napi::Value CloseFd(const Napi::CallbackInfo& info);
Napi::Value LinkCreate(const Napi::CallbackInfo& info);
Napi::Value LinkUpdate(const Napi::CallbackInfo& info);
Napi::Value LinkDetach(const Napi::CallbackInfo& info);
Napi::Value LinkInfo(const Napi::CallbackInfo& info);
Napi::Value ProgInfoById(const Napi::CallbackInfo& info);

Napi::Value MapInfo(const Napi::CallbackInfo& info);
Napi::Value MapLookup(const Napi::CallbackInfo& info);
Napi::Value MapUpdate(const Napi::CallbackInfo& info);
Napi::Value MapDelete(const Napi::CallbackInfo& info);
Napi::Value MapLookupAndDelete(const Napi::CallbackInfo& info);
Napi::Value MapKeys(const Napi::CallbackInfo& info);
Napi::Value MapCount(const Napi::CallbackInfo& info);
Napi::Value PercpuSumU64(const Napi::CallbackInfo& info);

Napi::Value Probe(const Napi::CallbackInfo& info);
Napi::Value CgroupId(const Napi::CallbackInfo& info);
Napi::Value NetnsCookie(const Napi::CallbackInfo& info);
Napi::Value Layout(const Napi::CallbackInfo& info);

Napi::Value TlsContextCreate(const Napi::CallbackInfo& info);
Napi::Value TlsSessionCount(const Napi::CallbackInfo& info);
Napi::Value TlsProbe(const Napi::CallbackInfo& info);
// Relay engine (relay/api.cc).
Napi::Value RelayStart(const Napi::CallbackInfo& info);
Napi::Value RelayStop(const Napi::CallbackInfo& info);
Napi::Value RelayTcp(const Napi::CallbackInfo& info);
Napi::Value RelayClose(const Napi::CallbackInfo& info);
Napi::Value RelayStats(const Napi::CallbackInfo& info);

}  // namespace mx
