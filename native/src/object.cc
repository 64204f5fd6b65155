// Opening and loading the BPF object; maps are pinned by name under the caller's pin root.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <map>
#include <string>

#include "api.h"
#include "errors.h"

namespace mx {
namespace {

// libbpf reports verifier logs only through its print callback; collect them while loading so the
// error can carry the log instead of it going to stderr. Only the JS thread loads objects.
std::string g_log;
bool g_capture = false;

int PrintCallback(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (!g_capture || level == LIBBPF_DEBUG) return 0;
  char buf[4096];
  int n = vsnprintf(buf, sizeof(buf), fmt, args);
  if (n > 0) g_log.append(buf, static_cast<size_t>(n) < sizeof(buf) ? n : sizeof(buf) - 1);
  return 0;
}

struct Capture {
  Capture() {
    g_log.clear();
    g_capture = true;
    libbpf_set_print(PrintCallback);
  }
  ~Capture() { g_capture = false; }
};

std::map<uint32_t, bpf_object*> g_objects;
uint32_t g_next_handle = 1;

// libbpf prefixes verifier messages with "prog 'NAME': "; the first such name is the failing one.
std::string FailingProgram(const std::string& log) {
  size_t p = log.find("prog '");
  if (p == std::string::npos) return "";
  size_t e = log.find('\'', p + 6);
  return e == std::string::npos ? "" : log.substr(p + 6, e - p - 6);
}

[[noreturn]] void ThrowLoad(Napi::Env env, const char* code, const char* op, int err, const std::string& path) {
  std::string log = g_log;
  try {
    ThrowErrno(env, code, op, err, path);
  } catch (Napi::Error& e) {
    e.Set("log", Napi::String::New(env, log));
    std::string prog = FailingProgram(log);
    if (!prog.empty()) e.Set("program", Napi::String::New(env, prog));
    throw;
  }
}

}  // namespace

// loadObject(objectPath, pinRootPath) → {handle, programs: [{name, section, fd, id, attachType}]}
Napi::Value LoadObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "objectPath");
  std::string pin_root = ArgString(info, 1, "pinRootPath");
  // Without pin_root_path libbpf pins by-name maps in the bpffs root; never allow that.
  if (pin_root.empty()) ThrowArg(env, "pinRootPath must not be empty");

  Capture capture;
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_root.c_str());
  bpf_object* obj = bpf_object__open_file(path.c_str(), &opts);
  if (!obj) ThrowLoad(env, "MESHEXT_E_BPF_OPEN", "bpf_object__open_file", errno, path);
  int err = bpf_object__load(obj);
  if (err) {
    bpf_object__close(obj);
    ThrowLoad(env, "MESHEXT_E_BPF_LOAD", "bpf_object__load", err, path);
  }

  uint32_t handle = g_next_handle++;
  g_objects[handle] = obj;
  Napi::Object out = Napi::Object::New(env);
  out.Set("handle", handle);
  Napi::Array progs = Napi::Array::New(env);
  uint32_t i = 0;
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj) {
    Napi::Object p = Napi::Object::New(env);
    int fd = bpf_program__fd(prog);
    bpf_prog_info pinfo = {};
    uint32_t len = sizeof(pinfo);
    if (bpf_obj_get_info_by_fd(fd, &pinfo, &len) == 0) p.Set("id", pinfo.id);
    p.Set("name", bpf_program__name(prog));
    p.Set("section", bpf_program__section_name(prog));
    p.Set("fd", fd);
    p.Set("attachType", static_cast<uint32_t>(bpf_program__expected_attach_type(prog)));
    progs.Set(i++, p);
  }
  out.Set("programs", progs);
  return out;
}

// closeObject(handle): closes program fds; pinned maps and links stay.
Napi::Value CloseObject(const Napi::CallbackInfo& info) {
  uint32_t handle = ArgU32(info, 0, "handle");
  auto it = g_objects.find(handle);
  if (it != g_objects.end()) {
    bpf_object__close(it->second);
    g_objects.erase(it);
  }
  return info.Env().Undefined();
}

}  // namespace mx
