// Pinned objects and cgroup bpf_links: create, update in place, detach, inspect.
#include <bpf/bpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "api.h"
#include "errors.h"

namespace mx {

// objGet(path) → fd of a pinned map/link/program.
Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0, "path");
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(info.Env(), "MESHEXT_E_BPF_PIN", "bpf_obj_get", errno, path);
  return Napi::Number::New(info.Env(), fd);
}

// objPin(fd, path)
Napi::Value ObjPin(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  std::string path = ArgString(info, 1, "path");
  if (bpf_obj_pin(fd, path.c_str()) < 0) ThrowErrno(info.Env(), "MESHEXT_E_BPF_PIN", "bpf_obj_pin", errno, path);
  return info.Env().Undefined();
}

// closeFd(fd)
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  close(ArgFd(info, 0, "fd"));
  return info.Env().Undefined();
}

// linkCreate(progFd, cgroupPath, attachType) → link fd (always a multi attachment).
Napi::Value LinkCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int prog_fd = ArgFd(info, 0, "progFd");
  std::string cg = ArgString(info, 1, "cgroupPath");
  uint32_t type = ArgU32(info, 2, "attachType");
  int cg_fd = open(cg.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg_fd < 0) ThrowErrno(env, "MESHEXT_E_BPF_CGROUP", "open", errno, cg);
  int fd = bpf_link_create(prog_fd, cg_fd, static_cast<bpf_attach_type>(type), nullptr);
  int err = errno;
  close(cg_fd);
  if (fd < 0) ThrowErrno(env, "MESHEXT_E_BPF_ATTACH", "bpf_link_create", err, cg);
  return Napi::Number::New(env, fd);
}

// linkUpdate(linkFd, progFd): atomic program swap, no window without a hook.
Napi::Value LinkUpdate(const Napi::CallbackInfo& info) {
  int link_fd = ArgFd(info, 0, "linkFd");
  int prog_fd = ArgFd(info, 1, "progFd");
  if (bpf_link_update(link_fd, prog_fd, nullptr) < 0)
    ThrowErrno(info.Env(), "MESHEXT_E_BPF_LINK_UPDATE", "bpf_link_update", errno);
  return info.Env().Undefined();
}

// linkDetach(linkFd): detaches even while other fds or pins still reference the link.
Napi::Value LinkDetach(const Napi::CallbackInfo& info) {
  int link_fd = ArgFd(info, 0, "linkFd");
  if (bpf_link_detach(link_fd) < 0) ThrowErrno(info.Env(), "MESHEXT_E_BPF_DETACH", "bpf_link_detach", errno);
  return info.Env().Undefined();
}

// linkInfo(fd) → {id, progId, type, attachType, cgroupId}
Napi::Value LinkInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "linkFd");
  bpf_link_info li = {};
  uint32_t len = sizeof(li);
  if (bpf_obj_get_info_by_fd(fd, &li, &len) < 0) ThrowErrno(env, "MESHEXT_E_BPF_INFO", "bpf_obj_get_info_by_fd", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", li.id);
  o.Set("progId", li.prog_id);
  o.Set("type", li.type);
  if (li.type == BPF_LINK_TYPE_CGROUP) {
    o.Set("attachType", li.cgroup.attach_type);
    o.Set("cgroupId", Napi::BigInt::New(env, static_cast<uint64_t>(li.cgroup.cgroup_id)));
  }
  return o;
}

// progInfoById(id) → {id, name, type} or null when the program is gone.
Napi::Value ProgInfoById(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id = ArgU32(info, 0, "progId");
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, "MESHEXT_E_BPF_INFO", "bpf_prog_get_fd_by_id", errno);
  }
  bpf_prog_info pi = {};
  uint32_t len = sizeof(pi);
  int rc = bpf_obj_get_info_by_fd(fd, &pi, &len);
  int err = errno;
  close(fd);
  if (rc < 0) ThrowErrno(env, "MESHEXT_E_BPF_INFO", "bpf_obj_get_info_by_fd", err);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", pi.id);
  o.Set("name", std::string(pi.name));
  o.Set("type", pi.type);
  return o;
}

}  // namespace mx
