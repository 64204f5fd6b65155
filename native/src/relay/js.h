// What other session kinds' JS exports (http1, http2) share with the engine's own (implemented in api.cc).
#pragma once
#include <napi.h>

#include "engine.h"
#include "fd.h"

namespace mx::relay {

/** The engine named by argument 0 (a handle from relayStart); throws a JS error when it is not running. */
Engine* EngineFromArg(const Napi::CallbackInfo& info);
/** Duplicates a connected stream socket for the engine (CLOEXEC, non-blocking); throws a JS error on failure. */
UniqueFd DupSocketFd(Napi::Env env, int fd, const char* what);

}  // namespace mx::relay
