// Strict readers for the fields of JS objects handed to the addon (plans, TLS settings, listen options):
// each names the field's path and the value it got when the value is unusable, so a caller bug reads as
// "plans[2].endpoints[0].port must be an integer 0..65535, got 70000".
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

#include "errors.h"

namespace mx::js {

inline std::string What(const Napi::Value& v) {
  if (v.IsUndefined()) return "nothing";
  if (v.IsBuffer()) return "a Buffer";
  if (v.IsArray()) return "an array";
  if (v.IsObject() && !v.IsFunction()) return "an object";
  return v.ToString().Utf8Value();
}

inline Napi::Object Obj(Napi::Env env, const Napi::Value& v, const std::string& where) {
  if (!v.IsObject() || v.IsArray() || v.IsBuffer()) ThrowArg(env, where + " must be an object, got " + What(v));
  return v.As<Napi::Object>();
}

inline uint32_t U32(Napi::Env env, const Napi::Object& o, const char* k, const std::string& where, uint32_t max) {
  Napi::Value v = o.Get(k);
  double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(d >= 0 && d <= max) || d != static_cast<double>(static_cast<uint32_t>(d)))
    ThrowArg(env, where + "." + k + " must be an integer 0.." + std::to_string(max) + ", got " + What(v));
  return static_cast<uint32_t>(d);
}

inline std::string Str(Napi::Env env, const Napi::Object& o, const char* k, const std::string& where, bool optional) {
  Napi::Value v = o.Get(k);
  if (v.IsString()) return v.As<Napi::String>().Utf8Value();
  if (optional && v.IsUndefined()) return {};
  ThrowArg(env, where + "." + k + " must be a string, got " + What(v));
}

inline bool Bool(Napi::Env env, const Napi::Object& o, const char* k, const std::string& where) {
  Napi::Value v = o.Get(k);
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value();
  ThrowArg(env, where + "." + k + " must be a boolean, got " + What(v));
}

/** A Buffer field's bytes; empty when absent (undefined). */
inline std::string Bytes(Napi::Env env, const Napi::Object& o, const char* k, const std::string& where) {
  Napi::Value v = o.Get(k);
  if (v.IsUndefined()) return {};
  if (!v.IsBuffer()) ThrowArg(env, where + "." + k + " must be a Buffer, got " + What(v));
  auto b = v.As<Napi::Buffer<char>>();
  return std::string(b.Data(), b.Length());
}

inline Napi::Array Arr(Napi::Env env, const Napi::Object& o, const char* k, const std::string& where) {
  Napi::Value v = o.Get(k);
  if (!v.IsArray()) ThrowArg(env, where + "." + k + " must be an array, got " + What(v));
  return v.As<Napi::Array>();
}

}  // namespace mx::js
