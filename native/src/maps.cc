// Map access by fd with Buffer keys/values; the TypeScript codec owns the byte layout.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "api.h"
#include "errors.h"
#include "orig_dst.h"

namespace mx {

// mapInfo(fd) → {id, name, type, keySize, valueSize, maxEntries}
Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "mapFd");
  bpf_map_info mi = {};
  uint32_t len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) < 0) ThrowErrno(env, "MESHEXT_E_BPF_INFO", "bpf_obj_get_info_by_fd", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", mi.id);
  o.Set("name", std::string(mi.name));
  o.Set("type", mi.type);
  o.Set("keySize", mi.key_size);
  o.Set("valueSize", mi.value_size);
  o.Set("maxEntries", mi.max_entries);
  return o;
}

// mapLookup(fd, key, valueSize) → Buffer | null
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "mapFd");
  auto key = ArgBuffer(info, 1, "key");
  uint32_t vsize = ArgU32(info, 2, "valueSize");
  std::vector<uint8_t> val(vsize);
  if (bpf_map_lookup_elem(fd, key.Data(), val.data()) < 0) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, "MESHEXT_E_BPF_MAP", "bpf_map_lookup_elem", errno);
  }
  return Napi::Buffer<uint8_t>::Copy(env, val.data(), val.size());
}

// mapUpdate(fd, key, value, flags)
Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "mapFd");
  auto key = ArgBuffer(info, 1, "key");
  auto val = ArgBuffer(info, 2, "value");
  uint32_t flags = ArgU32(info, 3, "flags");
  if (bpf_map_update_elem(fd, key.Data(), val.Data(), flags) < 0)
    ThrowErrno(info.Env(), "MESHEXT_E_BPF_MAP", "bpf_map_update_elem", errno);
  return info.Env().Undefined();
}

// mapDelete(fd, key) → true if an entry was removed
Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "mapFd");
  auto key = ArgBuffer(info, 1, "key");
  if (bpf_map_delete_elem(fd, key.Data()) < 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "MESHEXT_E_BPF_MAP", "bpf_map_delete_elem", errno);
  }
  return Napi::Boolean::New(env, true);
}

// origDstTake(mapFd, peerKey) → {orig: Buffer} | {stale: true} | null: mx_peer_orig's entry, taken by the rule the
// engine's transparent listener uses (TakeOriginalDst).
Napi::Value OrigDstTake(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "mapFd");
  auto key = ArgBuffer(info, 1, "key");
  if (key.Length() != sizeof(mx_peer_key)) ThrowArg(env, "key must be " + std::to_string(sizeof(mx_peer_key)) + " bytes");
  mx_peer_key k{};
  std::memcpy(&k, key.Data(), sizeof k);
  mx_orig o{};
  Napi::Object out = Napi::Object::New(env);
  switch (TakeOriginalDst(fd, k, &o)) {
    case OrigTake::kMissing:
      return env.Null();
    case OrigTake::kStale:
      out.Set("stale", true);
      return out;
    case OrigTake::kFound:
      break;
  }
  out.Set("orig", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(&o), sizeof o));
  return out;
}

// origDstSweep(mapFd) → number of stale mx_peer_orig entries removed.
Napi::Value OrigDstSweep(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), SweepOriginalDst(ArgFd(info, 0, "mapFd")));
}

// mapCount(fd, keySize) → number of entries (walks the keys).
Napi::Value MapCount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "mapFd");
  uint32_t ksize = ArgU32(info, 1, "keySize");
  std::vector<uint8_t> cur(ksize), next(ksize);
  uint32_t n = 0;
  void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
    n++;
    cur.swap(next);
    prev = cur.data();
  }
  if (errno != ENOENT) ThrowErrno(env, "MESHEXT_E_BPF_MAP", "bpf_map_get_next_key", errno);
  return Napi::Number::New(env, n);
}

// mapKeys(fd, keySize) → Buffer[] (small maps only: nameservers, exempt cgroups).
Napi::Value MapKeys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "mapFd");
  uint32_t ksize = ArgU32(info, 1, "keySize");
  std::vector<uint8_t> cur(ksize), next(ksize);
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
    out.Set(n++, Napi::Buffer<uint8_t>::Copy(env, next.data(), ksize));
    cur.swap(next);
    prev = cur.data();
  }
  if (errno != ENOENT) ThrowErrno(env, "MESHEXT_E_BPF_MAP", "bpf_map_get_next_key", errno);
  return out;
}

// percpuSumU64(fd, count) → bigint[count]: each per-CPU u64 slot summed over all possible CPUs.
Napi::Value PercpuSumU64(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "mapFd");
  uint32_t count = ArgU32(info, 1, "count");
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu < 0) ThrowErrno(env, "MESHEXT_E_BPF_MAP", "libbpf_num_possible_cpus", ncpu);
  std::vector<uint64_t> vals(static_cast<size_t>(ncpu));
  Napi::Array out = Napi::Array::New(env, count);
  for (uint32_t k = 0; k < count; k++) {
    if (bpf_map_lookup_elem(fd, &k, vals.data()) < 0) ThrowErrno(env, "MESHEXT_E_BPF_MAP", "bpf_map_lookup_elem", errno);
    uint64_t sum = 0;
    for (uint64_t v : vals) sum += v;
    out.Set(k, Napi::BigInt::New(env, sum));
  }
  return out;
}

}  // namespace mx
