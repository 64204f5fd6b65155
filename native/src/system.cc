// Kernel feature probe, cgroup ids, netns cookie and the shared-header layout export.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "api.h"
#include "inherited.h"
#include "shared_socket.h"
#include "errors.h"
#include "engine/sockaddr.h"
#include "meshext_maps.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace mx {
namespace {

Napi::Object Fail(Napi::Object o, const std::string& reason) {
  o.Set("ok", false);
  o.Set("reason", reason);
  return o;
}

bool Helper(bpf_prog_type t, bpf_func_id id) { return libbpf_probe_bpf_helper(t, id, nullptr) == 1; }

}  // namespace

// probe() → {ok, reason?, features}: can this process load and attach our programs?
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  Napi::Object f = Napi::Object::New(env);
  o.Set("features", f);

  int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "mx_probe", 8, 8, 1, nullptr);
  if (fd < 0) {
    int err = errno;
    return Fail(o, std::string("bpf(BPF_MAP_CREATE) failed: ") + std::strerror(err) +
                            (err == EPERM ? " (needs root, or CAP_BPF with CAP_NET_ADMIN)" : ""));
  }
  uint64_t key = 0, val = 0;
  bool lad = bpf_map_lookup_and_delete_elem(fd, &key, &val) < 0 && errno == ENOENT;
  close(fd);
  f.Set("lookupAndDeleteHash", lad);

  bool sock_addr = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, nullptr) == 1;
  bool sock_ops = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCK_OPS, nullptr) == 1;
  bool sk_lookup = Helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_sk_lookup_tcp) &&
                   Helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_sk_lookup_udp);
  bool netns_cookie = Helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_netns_cookie);
  bool cookie = Helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_FUNC_get_socket_cookie);
  bool lru = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_LRU_HASH, nullptr) == 1;
  f.Set("cgroupSockAddr", sock_addr);
  f.Set("sockOps", sock_ops);
  f.Set("skLookup", sk_lookup);
  f.Set("netnsCookie", netns_cookie);
  f.Set("socketCookie", cookie);
  f.Set("lruHash", lru);

  if (!sock_addr || !sock_ops) return Fail(o, "kernel lacks cgroup sock_addr/sock_ops programs");
  if (!sk_lookup || !netns_cookie || !cookie) return Fail(o, "kernel lacks bpf_sk_lookup/get_netns_cookie/get_socket_cookie in cgroup sock_addr programs (need >= 5.10)");
  if (!lru || !lad) return Fail(o, "kernel lacks LRU hash maps or lookup-and-delete on hash maps (need >= 5.14)");
  o.Set("ok", true);
  return o;
}

// cgroupId(path) → bigint: the cgroup-v2 id (what bpf_get_current_cgroup_id returns).
Napi::Value CgroupId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "cgroupPath");
  struct {
    struct file_handle fh;
    uint64_t id;
  } h;
  h.fh.handle_bytes = sizeof(uint64_t);
  int mount_id;
  if (name_to_handle_at(AT_FDCWD, path.c_str(), &h.fh, &mount_id, 0) < 0)
    ThrowErrno(env, "MESHEXT_E_BPF_CGROUP", "name_to_handle_at", errno, path);
  uint64_t id;
  std::memcpy(&id, h.fh.f_handle, sizeof(id));
  return Napi::BigInt::New(env, id);
}

// netnsCookie() → bigint: cookie of this process's network namespace (bpf_get_netns_cookie).
Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) ThrowErrno(env, "MESHEXT_E_BPF_NETNS", "socket", errno);
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  int rc = getsockopt(s, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
  int err = errno;
  close(s);
  if (rc < 0) ThrowErrno(env, "MESHEXT_E_BPF_NETNS", "getsockopt(SO_NETNS_COOKIE)", err);
  return Napi::BigInt::New(env, cookie);
}

// fdLimit() → {soft, hard}: RLIMIT_NOFILE (Node has no getrlimit; it raises the soft limit to the hard one at
// start itself). -1: unlimited.
Napi::Value FdLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) ThrowErrno(env, "MESHEXT_E_RLIMIT", "getrlimit(RLIMIT_NOFILE)", errno);
  Napi::Object o = Napi::Object::New(env);
  auto num = [&](rlim_t v) { return Napi::Number::New(env, v == RLIM_INFINITY ? -1.0 : static_cast<double>(v)); };
  o.Set("soft", num(rl.rlim_cur));
  o.Set("hard", num(rl.rlim_max));
  return o;
}

int OpenSharedSocket(int type, const sockaddr_storage& ss, socklen_t len, int backlog, int extraFlags, const char** failedStep) {
  // A socket systemd holds for us (socket activation) comes first: it outlives this process.
  int inherited = TakeInheritedSocket(type, ss);
  if (inherited >= 0) {
    if (extraFlags & SOCK_NONBLOCK) fcntl(inherited, F_SETFL, fcntl(inherited, F_GETFL) | O_NONBLOCK);
    if (type == SOCK_STREAM) ::listen(inherited, backlog);
    return inherited;
  }
  *failedStep = "socket";
  int fd = ::socket(ss.ss_family, type | SOCK_CLOEXEC | extraFlags, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (type == SOCK_STREAM) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Only a fixed port is shared: an ephemeral one is nobody else's to take over, and with SO_REUSEPORT the
  // kernel's choice of a free port may land in another group's port.
  uint16_t port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port)
                                           : ntohs(reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
  if (port != 0) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  *failedStep = "bind";
  int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&ss), len);
  if (rc == 0 && type == SOCK_STREAM) {
    *failedStep = "listen";
    rc = ::listen(fd, backlog);
  }
  if (rc != 0) {
    int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

// sharedSocket(kind, address, port, backlog) → fd: a TCP listening or UDP bound socket with SO_REUSEPORT, for
// the Node servers an agent shares with its successor during a restart (Node 20 cannot set SO_REUSEPORT).
// Errors carry the errno name, as Node's listen errors do.
Napi::Value SharedSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string kind = ArgString(info, 0, "kind");
  std::string address = ArgString(info, 1, "address");
  uint32_t port = ArgU32(info, 2, "port");
  uint32_t backlog = ArgU32(info, 3, "backlog");
  if (kind != "tcp" && kind != "udp") ThrowArg(env, "kind must be tcp or udp, got " + kind);
  if (port > 65535) ThrowArg(env, "port must be 0..65535, got " + std::to_string(port));
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!engine::IpSockaddr(address, static_cast<uint16_t>(port), &ss, &len)) ThrowArg(env, "address must be an IP literal, got " + address);
  const char* step = nullptr;
  int fd = OpenSharedSocket(kind == "tcp" ? SOCK_STREAM : SOCK_DGRAM, ss, len, static_cast<int>(backlog), 0, &step);
  if (fd < 0) ThrowErrno(env, "MESHEXT_E_LISTEN", step, -fd);
  return Napi::Number::New(env, fd);
}

// adoptHeldSockets(path) → number: adopts the sockets a holder process passes over the unix socket `path`.
Napi::Value AdoptHeldSockets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  std::string error;
  int n = mx::AdoptHeldSockets(path, &error);
  if (n < 0) ThrowArg(env, "cannot take the held sockets from " + path + ": " + error);
  return Napi::Number::New(env, n);
}

// releaseHeldSockets(path): the holder closes its sockets and exits (an agent stopping for good).
Napi::Value ReleaseHeldSockets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  std::string error;
  if (!mx::ReleaseHeldSockets(path, &error)) ThrowArg(env, "cannot release the held sockets at " + path + ": " + error);
  return env.Undefined();
}

// serveHeldSockets(path, fds) → fd: hands `fds` to every client of the unix socket `path` (a detached thread).
Napi::Value ServeHeldSockets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  if (info.Length() < 2 || !info[1].IsArray()) ThrowArg(env, "fds must be an array");
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < a.Length(); i++) fds.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  std::string error;
  int fd = mx::ServeHeldSockets(path, fds, &error);
  if (fd < 0) ThrowArg(env, "cannot hold sockets at " + path + ": " + error);
  return Napi::Number::New(env, fd);
}

// adoptListenFds() → [{fd, type: 'tcp'|'udp', address, port}]: the sockets systemd passed (LISTEN_FDS), and any
// adopted from a holder, which the listeners of the same address then take instead of binding their own.
Napi::Value AdoptListenFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& list = AdoptInheritedSockets();
  Napi::Array out = Napi::Array::New(env, list.size());
  for (size_t i = 0; i < list.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("fd", list[i].fd);
    o.Set("type", list[i].type == SOCK_STREAM ? "tcp" : list[i].type == SOCK_DGRAM ? "udp" : "other");
    o.Set("address", list[i].address);
    o.Set("port", list[i].port);
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

#define MX_FIELD(obj, T, f) obj.Set(#f, static_cast<uint32_t>(offsetof(T, f)))

// layout() → sizes and field offsets of every shared struct, for the codec test.
Napi::Value Layout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("layoutVersion", MX_LAYOUT_VERSION);
  o.Set("counterCount", static_cast<uint32_t>(MX_CNT_MAX));

  Napi::Object cfg = Napi::Object::New(env), cf = Napi::Object::New(env);
  cfg.Set("size", static_cast<uint32_t>(sizeof(mx_config)));
  MX_FIELD(cf, mx_config, vip_net);
  MX_FIELD(cf, mx_config, vip_mask);
  MX_FIELD(cf, mx_config, proxy_addr);
  MX_FIELD(cf, mx_config, proxy_port);
  MX_FIELD(cf, mx_config, dns_port);
  MX_FIELD(cf, mx_config, flags);
  MX_FIELD(cf, mx_config, dns_addr);
  MX_FIELD(cf, mx_config, heartbeat_max_age_ms);
  MX_FIELD(cf, mx_config, heartbeat_ns);
  MX_FIELD(cf, mx_config, agent_netns_cookie);
  cfg.Set("fields", cf);
  o.Set("mx_config", cfg);

  Napi::Object orig = Napi::Object::New(env), of = Napi::Object::New(env);
  orig.Set("size", static_cast<uint32_t>(sizeof(mx_orig)));
  MX_FIELD(of, mx_orig, addr);
  MX_FIELD(of, mx_orig, port);
  MX_FIELD(of, mx_orig, proto);
  MX_FIELD(of, mx_orig, flags);
  MX_FIELD(of, mx_orig, pid);
  MX_FIELD(of, mx_orig, cgroup_id);
  MX_FIELD(of, mx_orig, cookie);
  MX_FIELD(of, mx_orig, created_ns);
  orig.Set("fields", of);
  o.Set("mx_orig", orig);

  Napi::Object pk = Napi::Object::New(env), pf = Napi::Object::New(env);
  pk.Set("size", static_cast<uint32_t>(sizeof(mx_peer_key)));
  MX_FIELD(pf, mx_peer_key, addr);
  MX_FIELD(pf, mx_peer_key, port);
  MX_FIELD(pf, mx_peer_key, proxy_port);
  pk.Set("fields", pf);
  o.Set("mx_peer_key", pk);

  Napi::Object sk = Napi::Object::New(env), skf = Napi::Object::New(env);
  sk.Set("size", static_cast<uint32_t>(sizeof(mx_svc_key)));
  MX_FIELD(skf, mx_svc_key, vip);
  MX_FIELD(skf, mx_svc_key, port);
  sk.Set("fields", skf);
  o.Set("mx_svc_key", sk);

  Napi::Object sa = Napi::Object::New(env), saf = Napi::Object::New(env);
  sa.Set("size", static_cast<uint32_t>(sizeof(mx_svc_access)));
  MX_FIELD(saf, mx_svc_access, svc);
  MX_FIELD(saf, mx_svc_access, unlisted);
  MX_FIELD(saf, mx_svc_access, no_identity);
  sa.Set("fields", saf);
  o.Set("mx_svc_access", sa);

  Napi::Object vk = Napi::Object::New(env), vkf = Napi::Object::New(env);
  vk.Set("size", static_cast<uint32_t>(sizeof(mx_verdict_key)));
  MX_FIELD(vkf, mx_verdict_key, svc);
  MX_FIELD(vkf, mx_verdict_key, ident);
  vk.Set("fields", vkf);
  o.Set("mx_verdict_key", vk);

  Napi::Object dk = Napi::Object::New(env), dkf = Napi::Object::New(env);
  dk.Set("size", static_cast<uint32_t>(sizeof(mx_denial_key)));
  MX_FIELD(dkf, mx_denial_key, cgroup_id);
  MX_FIELD(dkf, mx_denial_key, svc);
  dk.Set("fields", dkf);
  o.Set("mx_denial_key", dk);

  Napi::Object dn = Napi::Object::New(env), dnf = Napi::Object::New(env);
  dn.Set("size", static_cast<uint32_t>(sizeof(mx_denial)));
  MX_FIELD(dnf, mx_denial, count);
  MX_FIELD(dnf, mx_denial, last_ns);
  MX_FIELD(dnf, mx_denial, ident);
  MX_FIELD(dnf, mx_denial, verdict);
  dn.Set("fields", dnf);
  o.Set("mx_denial", dn);

  Napi::Object ad = Napi::Object::New(env);
  ad.Set("size", static_cast<uint32_t>(sizeof(mx_addr)));
  ad.Set("fields", Napi::Object::New(env));
  o.Set("mx_addr", ad);

  Napi::Object flags = Napi::Object::New(env);
  flags.Set("MX_F_REDIRECT_TCP", MX_F_REDIRECT_TCP);
  flags.Set("MX_F_REDIRECT_DNS", MX_F_REDIRECT_DNS);
  flags.Set("MX_F_EXEMPT_CGROUPS", MX_F_EXEMPT_CGROUPS);
  flags.Set("MX_F_DNS_HEARTBEAT", MX_F_DNS_HEARTBEAT);
  flags.Set("MX_ORIG_TCP_VIP", MX_ORIG_TCP_VIP);
  flags.Set("MX_ORIG_DNS", MX_ORIG_DNS);
  flags.Set("MX_F_ACCESS", MX_F_ACCESS);
  flags.Set("MX_V_ALLOW", MX_V_ALLOW);
  flags.Set("MX_V_DENY_RULE", MX_V_DENY_RULE);
  flags.Set("MX_V_DENY_DEFAULT", MX_V_DENY_DEFAULT);
  flags.Set("MX_V_DENY_NO_IDENTITY", MX_V_DENY_NO_IDENTITY);
  flags.Set("MX_V_SHADOW_DENY", MX_V_SHADOW_DENY);
  flags.Set("MX_ACNT_MAX", static_cast<uint32_t>(MX_ACNT_MAX));
  flags.Set("MX_ACCESS_SVC_MAX", MX_ACCESS_SVC_MAX);
  o.Set("constants", flags);
  return o;
}

}  // namespace mx
