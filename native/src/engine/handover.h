// Helpers for N-API functions that hand connections to the engine (used by every session kind's export,
// e.g. engineTcpClient in api.cc). JS thread only.
#pragma once
#include <napi.h>

#include <string>

#include "engine.h"
#include "fd.h"

namespace mx::engine {

/** The running engine whose handle is argument `i`; throws a TypeError for an unknown or stopped handle. */
Engine* EngineArg(const Napi::CallbackInfo& info, size_t i);

/** Engine::Adopt for an N-API call: the new session's id, or a TypeError when the engine is stopping. */
uint64_t AdoptOrThrow(Napi::Env env, Engine* e, std::unique_ptr<Session> s);

/** Argument `i` as a session id; throws a TypeError when it is not a number. */
uint64_t SessionIdArg(const Napi::CallbackInfo& info, size_t i);

/** Duplicates a connected stream socket the engine will own (F_DUPFD_CLOEXEC, O_NONBLOCK); throws on failure. */
UniqueFd DupSocket(Napi::Env env, int fd, const char* what);

/** Argument `i` as bytes (Buffer), or empty when it is null/undefined/absent. */
std::string OptionalBytes(const Napi::CallbackInfo& info, size_t i, const char* name);

}  // namespace mx::engine
