#include "errors.h"

#include <cstring>

namespace mx {

void ThrowErrno(Napi::Env env, const char* code, const char* syscall, int err, const std::string& path) {
  if (err < 0) err = -err;
  std::string msg = std::string(syscall);
  if (!path.empty()) msg += " (" + path + ")";
  msg += ": ";
  msg += std::strerror(err);
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, err));
  const char* name = strerrorname_np(err);
  if (name) e.Set("errnoName", Napi::String::New(env, name));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) e.Set("path", Napi::String::New(env, path));
  throw e;
}

void ThrowArg(Napi::Env env, const std::string& what) {
  Napi::TypeError e = Napi::TypeError::New(env, what);
  e.Set("code", Napi::String::New(env, "MESHEXT_E_BPF_ARG"));
  throw e;
}

int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowArg(info.Env(), std::string("expected fd for ") + name);
  int fd = info[i].As<Napi::Number>().Int32Value();
  if (fd < 0) ThrowArg(info.Env(), std::string("expected fd >= 0 for ") + name);
  return fd;
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) ThrowArg(info.Env(), std::string("expected string for ") + name);
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsBuffer()) ThrowArg(info.Env(), std::string("expected Buffer for ") + name);
  return info[i].As<Napi::Buffer<uint8_t>>();
}

uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowArg(info.Env(), std::string("expected number for ") + name);
  return info[i].As<Napi::Number>().Uint32Value();
}

}  // namespace mx
