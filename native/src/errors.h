// Native failures surface as JS errors shaped like Node system errors plus a meshext code.
#pragma once
#include <napi.h>
#include <string>

namespace mx {

// Throws Error{code, errno, errnoName, syscall, path?} with "operation (path): strerror" as message.
[[noreturn]] void ThrowErrno(Napi::Env env, const char* code, const char* syscall, int err,
                             const std::string& path = "");

// Throws a TypeError for an argument the TypeScript layer should already have rejected.
[[noreturn]] void ThrowArg(Napi::Env env, const std::string& what);

int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name);
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name);
uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name);

}  // namespace mx
