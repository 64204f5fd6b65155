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
Napi::Value OrigDstTake(const Napi::CallbackInfo& info);
Napi::Value OrigDstSweep(const Napi::CallbackInfo& info);
Napi::Value MapKeys(const Napi::CallbackInfo& info);
Napi::Value MapCount(const Napi::CallbackInfo& info);
Napi::Value PercpuSumU64(const Napi::CallbackInfo& info);

Napi::Value Probe(const Napi::CallbackInfo& info);
Napi::Value CgroupId(const Napi::CallbackInfo& info);
Napi::Value NetnsCookie(const Napi::CallbackInfo& info);
Napi::Value Layout(const Napi::CallbackInfo& info);
Napi::Value FdLimit(const Napi::CallbackInfo& info);
Napi::Value SharedSocket(const Napi::CallbackInfo& info);
Napi::Value AdoptListenFds(const Napi::CallbackInfo& info);
Napi::Value AdoptHeldSockets(const Napi::CallbackInfo& info);
Napi::Value ServeHeldSockets(const Napi::CallbackInfo& info);
Napi::Value ReleaseHeldSockets(const Napi::CallbackInfo& info);

// Engine DNS (dns/dns_napi.cc).
Napi::Value EngineDnsListen(const Napi::CallbackInfo& info);
Napi::Value EngineDnsTable(const Napi::CallbackInfo& info);
Napi::Value EngineDnsResolve(const Napi::CallbackInfo& info);
Napi::Value EngineDnsSend(const Napi::CallbackInfo& info);
Napi::Value EngineDnsCounts(const Napi::CallbackInfo& info);
Napi::Value DnsServfail(const Napi::CallbackInfo& info);
Napi::Value DnsFitReply(const Napi::CallbackInfo& info);

// Engine (engine/api.cc).
Napi::Value EngineStart(const Napi::CallbackInfo& info);
Napi::Value EngineStop(const Napi::CallbackInfo& info);
Napi::Value EngineListen(const Napi::CallbackInfo& info);
Napi::Value EngineClose(const Napi::CallbackInfo& info);
Napi::Value EngineInstall(const Napi::CallbackInfo& info);
Napi::Value EngineHealth(const Napi::CallbackInfo& info);
Napi::Value EngineReopenLogs(const Napi::CallbackInfo& info);
Napi::Value EngineProbe(const Napi::CallbackInfo& info);
Napi::Value EngineCounters(const Napi::CallbackInfo& info);
Napi::Value EngineDrain(const Napi::CallbackInfo& info);
Napi::Value EngineStats(const Napi::CallbackInfo& info);
Napi::Value EngineRef(const Napi::CallbackInfo& info);
Napi::Value EngineFlush(const Napi::CallbackInfo& info);

}  // namespace mx
