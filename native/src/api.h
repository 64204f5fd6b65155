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
// Engine (engine/api.cc).
Napi::Value EngineStart(const Napi::CallbackInfo& info);
Napi::Value EngineStop(const Napi::CallbackInfo& info);
Napi::Value EngineClose(const Napi::CallbackInfo& info);
Napi::Value EngineListen(const Napi::CallbackInfo& info);
Napi::Value EngineTcpClient(const Napi::CallbackInfo& info);
Napi::Value EngineTcpConnect(const Napi::CallbackInfo& info);
Napi::Value EngineRoutes(const Napi::CallbackInfo& info);
Napi::Value EngineRouteHealth(const Napi::CallbackInfo& info);
Napi::Value EngineStats(const Napi::CallbackInfo& info);
Napi::Value EngineRef(const Napi::CallbackInfo& info);
Napi::Value EngineFlush(const Napi::CallbackInfo& info);
// HTTP/1.1 codec, exported for its unit tests (native/src/http1/testing.cc).
Napi::Value H1ParseHead(const Napi::CallbackInfo& info);
Napi::Value H1BodyScan(const Napi::CallbackInfo& info);
Napi::Value H1Rewrite(const Napi::CallbackInfo& info);
Napi::Value H1LocalResponse(const Napi::CallbackInfo& info);
// HTTP/1.1 proxy session (native/src/http1/api.cc).
Napi::Value H1PoolCreate(const Napi::CallbackInfo& info);
Napi::Value H1PoolsReap(const Napi::CallbackInfo& info);
Napi::Value H1PoolsSweep(const Napi::CallbackInfo& info);
Napi::Value H1PoolClose(const Napi::CallbackInfo& info);
Napi::Value H1PoolFree(const Napi::CallbackInfo& info);
Napi::Value H1PoolStats(const Napi::CallbackInfo& info);
Napi::Value H1Serve(const Napi::CallbackInfo& info);
Napi::Value H1Upstream(const Napi::CallbackInfo& info);
Napi::Value H1UpstreamFailed(const Napi::CallbackInfo& info);
Napi::Value H1Drain(const Napi::CallbackInfo& info);

// HTTP/2 sessions on the engine (http2/api.cc).
Napi::Value RelayH2(const Napi::CallbackInfo& info);
Napi::Value RelayH2Attach(const Napi::CallbackInfo& info);
Napi::Value RelayH2Unavailable(const Napi::CallbackInfo& info);
Napi::Value RelayH2Drain(const Napi::CallbackInfo& info);
Napi::Value H2CountersNew(const Napi::CallbackInfo& info);
Napi::Value H2CountersRead(const Napi::CallbackInfo& info);
Napi::Value H2CountersFree(const Napi::CallbackInfo& info);

}  // namespace mx
