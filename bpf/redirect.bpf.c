// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * meshext cgroup socket hooks.
 *
 * TCP connects to the VIP CIDR are rewritten to the local proxy; the original VIP:port is kept by
 * socket cookie and, once the kernel has chosen the local port (sockops TCP_CONNECT_CB, before the
 * SYN), copied to mx_peer_orig where the proxy takes it with lookup-and-delete right after accept.
 * An entry is removed by the socket that made it if its connection dies first, and is refused and swept
 * once older than MX_ORIG_MAX_AGE_MS, so it can only ever match that socket's connection.
 * DNS to the listed nameservers goes to the embedded resolver while it is up (fail open), and
 * replies/peer names are rewritten back so applications see the server they asked for.
 *
 * Built against UAPI headers only (no vmlinux.h, no CO-RE), so no kernel BTF is needed at load.
 * The price: clang may merge or widen loads/stores on the context, which the verifier rejects
 * ("dereference of modified ctx ptr", "invalid bpf_context access"). Every context access is
 * therefore a separate statement fenced by barrier().
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "meshext_maps.h"

#define barrier() asm volatile("" ::: "memory")

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef SOCK_STREAM
#define SOCK_STREAM 1
#endif
#ifndef SOCK_DGRAM
#define SOCK_DGRAM 2
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mx_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mx_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MX_NAMESERVERS_MAX_ENTRIES);
	__type(key, struct mx_addr);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mx_nameservers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MX_EXEMPT_MAX_ENTRIES);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mx_exempt_cg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MX_COOKIE_MAX_ENTRIES);
	__type(key, __u64);
	__type(value, struct mx_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mx_cookie_orig SEC(".maps");

/* LRU: the proxy deletes on take; entries of connections it never accepted age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MX_PEER_MAX_ENTRIES);
	__type(key, struct mx_peer_key);
	__type(value, struct mx_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mx_peer_orig SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MX_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mx_counters SEC(".maps");

/* Workload identity: cgroup id → identity index. The agent lists pod/unit cgroups and the sub-cgroups it has seen. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MX_CG_IDENT_MAX_ENTRIES);
	__type(key, __u64);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mx_cg_ident SEC(".maps");

/* VIP:port of a service with a MeshTrafficPermission → its index and default verdicts. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MX_SVC_ACCESS_MAX_ENTRIES);
	__type(key, struct mx_svc_key);
	__type(value, struct mx_svc_access);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mx_svc_access SEC(".maps");

/* (service, identity) → MX_V_*, only where the verdict differs from the service's `unlisted` one. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MX_VERDICT_MAX_ENTRIES);
	__type(key, struct mx_verdict_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mx_verdict SEC(".maps");

/* LRU: if the agent is slow to take denials, the oldest go; the counters below still count them. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MX_DENIALS_MAX_ENTRIES);
	__type(key, struct mx_denial_key);
	__type(value, struct mx_denial);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mx_denials SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MX_ACCESS_SVC_MAX * MX_ACNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mx_access_cnt SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&mx_counters, &idx);

	if (v)
		*v += 1; /* per-CPU slot: no atomic needed */
}

static __always_inline const struct mx_config *config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&mx_config, &zero);
}

static __always_inline int is_v4mapped(const struct mx_addr *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0xffff);
}

static __always_inline void set_v4mapped(struct mx_addr *a, __u32 ip4)
{
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0xffff);
	a->w[3] = ip4;
}

static __always_inline int addr_eq(const struct mx_addr *a, const struct mx_addr *b)
{
	return a->w[0] == b->w[0] && a->w[1] == b->w[1] && a->w[2] == b->w[2] && a->w[3] == b->w[3];
}

static __always_inline int exempt(const struct mx_config *cfg)
{
	__u64 id;

	if (!(cfg->flags & MX_F_EXEMPT_CGROUPS))
		return 0;
	id = bpf_get_current_cgroup_id();
	if (bpf_map_lookup_elem(&mx_exempt_cg, &id)) {
		count(MX_CNT_EXEMPT_SKIP);
		return 1;
	}
	return 0;
}

/*
 * Fail open: DNS is only redirected while the resolver can answer. In the resolver's own netns a
 * socket lookup tells the truth at once; from other netns (pods) the listener is invisible, so the
 * agent's heartbeat stands in for it.
 */
static __always_inline int resolver_up(struct bpf_sock_addr *ctx, const struct mx_config *cfg, __u32 proto)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__u32 tlen;

	if (cfg->agent_netns_cookie && bpf_get_netns_cookie(ctx) != cfg->agent_netns_cookie) {
		__u64 now, max_age;

		if (!(cfg->flags & MX_F_DNS_HEARTBEAT) || !cfg->heartbeat_ns)
			return 0;
		now = bpf_ktime_get_ns();
		max_age = (__u64)cfg->heartbeat_max_age_ms * 1000000ull;
		return now >= cfg->heartbeat_ns && now - cfg->heartbeat_ns <= max_age;
	}

	if (is_v4mapped(&cfg->dns_addr)) {
		t.ipv4.daddr = cfg->dns_addr.w[3];
		t.ipv4.dport = cfg->dns_port;
		tlen = sizeof(t.ipv4);
	} else {
		t.ipv6.daddr[0] = cfg->dns_addr.w[0];
		t.ipv6.daddr[1] = cfg->dns_addr.w[1];
		t.ipv6.daddr[2] = cfg->dns_addr.w[2];
		t.ipv6.daddr[3] = cfg->dns_addr.w[3];
		t.ipv6.dport = cfg->dns_port;
		tlen = sizeof(t.ipv6);
	}
	if (proto == IPPROTO_TCP)
		sk = bpf_sk_lookup_tcp(ctx, &t, tlen, BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_udp(ctx, &t, tlen, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

static __always_inline int remember(struct bpf_sock_addr *ctx, const struct mx_addr *dst, __u16 port, __u32 proto,
				    __u8 flags)
{
	struct mx_orig o = {};
	__u64 cookie = bpf_get_socket_cookie(ctx);

	o.addr = *dst;
	o.port = port;
	o.proto = (__u8)proto;
	o.flags = flags;
	o.pid = (__u32)(bpf_get_current_pid_tgid() >> 32);
	o.cgroup_id = bpf_get_current_cgroup_id();
	o.cookie = cookie;
	o.created_ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&mx_cookie_orig, &cookie, &o, BPF_ANY)) {
		count(MX_CNT_COOKIE_STORE_FAILED);
		return 0;
	}
	return 1;
}

/*
 * The identity of the calling task's cgroup: its own entry, else the nearest listed ancestor (a process in a
 * container sub-cgroup of a pod, or in a sub-cgroup of a unit, that the agent has not listed yet). 0 = none.
 */
static __always_inline __u32 current_identity(void)
{
	__u64 id = bpf_get_current_cgroup_id();
	__u32 *ident = bpf_map_lookup_elem(&mx_cg_ident, &id);
	int level;

	if (ident)
		return *ident;
	for (level = MX_CG_MAX_LEVEL; level > 0; level--) {
		__u64 anc = bpf_get_current_ancestor_cgroup_id(level);

		if (!anc || anc == id)
			continue; /* deeper than the task's cgroup, or the cgroup itself (already missed) */
		ident = bpf_map_lookup_elem(&mx_cg_ident, &anc);
		if (ident)
			return *ident;
	}
	return 0;
}

static __always_inline void count_access(__u32 svc, __u32 slot)
{
	__u32 idx;
	__u64 *v;

	if (svc >= MX_ACCESS_SVC_MAX)
		return;
	idx = svc * MX_ACNT_MAX + slot;
	v = bpf_map_lookup_elem(&mx_access_cnt, &idx);
	if (v)
		*v += 1;
}

static __always_inline void report_denial(__u32 svc, __u32 ident, __u32 verdict)
{
	struct mx_denial_key k = {};
	struct mx_denial *d;

	k.cgroup_id = bpf_get_current_cgroup_id();
	k.svc = svc;
	d = bpf_map_lookup_elem(&mx_denials, &k);
	if (d) {
		__sync_fetch_and_add(&d->count, 1);
		d->last_ns = bpf_ktime_get_ns();
		d->ident = ident;
		d->verdict = verdict;
	} else {
		struct mx_denial n = {};

		n.count = 1;
		n.last_ns = bpf_ktime_get_ns();
		n.ident = ident;
		n.verdict = verdict;
		bpf_map_update_elem(&mx_denials, &k, &n, BPF_NOEXIST);
	}
}

/*
 * Whether this task may connect to the VIP:port (MeshTrafficPermission). Only VIPs listed in mx_svc_access cost
 * anything beyond one lookup, and that lookup only runs while some service has a policy (MX_F_ACCESS).
 */
static __always_inline int access_allowed(const struct mx_config *cfg, __u32 vip, __u16 port)
{
	struct mx_svc_key sk = {};
	struct mx_verdict_key vk = {};
	const struct mx_svc_access *sa;
	__u32 *vp, verdict, ident;

	if (!(cfg->flags & MX_F_ACCESS))
		return 1;
	sk.vip = vip;
	sk.port = port;
	sa = bpf_map_lookup_elem(&mx_svc_access, &sk);
	if (!sa)
		return 1;
	ident = current_identity();
	if (!ident) {
		verdict = sa->no_identity;
	} else {
		vk.svc = sa->svc;
		vk.ident = ident;
		vp = bpf_map_lookup_elem(&mx_verdict, &vk);
		verdict = vp ? *vp : sa->unlisted;
	}
	switch (verdict) {
	case MX_V_DENY_RULE:
		count_access(sa->svc, MX_ACNT_DENIED_RULE);
		break;
	case MX_V_DENY_DEFAULT:
		count_access(sa->svc, MX_ACNT_DENIED_DEFAULT);
		break;
	case MX_V_DENY_NO_IDENTITY:
		count_access(sa->svc, MX_ACNT_DENIED_NO_IDENTITY);
		break;
	case MX_V_SHADOW_DENY:
		count_access(sa->svc, MX_ACNT_SHADOW_DENIED);
		report_denial(sa->svc, ident, verdict);
		return 1;
	default:
		count_access(sa->svc, MX_ACNT_ALLOWED);
		return 1;
	}
	report_denial(sa->svc, ident, verdict);
	return 0;
}

enum verdict { MX_PASS, MX_TO_PROXY, MX_TO_RESOLVER, MX_REFUSE };

/* Decides where a connect/sendmsg to dst:port should go; stores the original when redirecting. */
static __always_inline enum verdict classify(struct bpf_sock_addr *ctx, const struct mx_config *cfg,
					     const struct mx_addr *dst, __u16 port, __u32 type, __u32 proto)
{
	if (type == SOCK_STREAM && proto == IPPROTO_TCP && (cfg->flags & MX_F_REDIRECT_TCP) && is_v4mapped(dst) &&
	    (dst->w[3] & cfg->vip_mask) == cfg->vip_net) {
		if (exempt(cfg))
			return MX_PASS;
		if (!access_allowed(cfg, dst->w[3], port))
			return MX_REFUSE;
		if (!remember(ctx, dst, port, proto, MX_ORIG_TCP_VIP))
			return MX_PASS;
		count(MX_CNT_TCP_REDIRECT);
		return MX_TO_PROXY;
	}
	if (port == bpf_htons(MX_DNS_PORT) && (cfg->flags & MX_F_REDIRECT_DNS) &&
	    (proto == IPPROTO_UDP || proto == IPPROTO_TCP) && bpf_map_lookup_elem(&mx_nameservers, dst)) {
		if (exempt(cfg))
			return MX_PASS;
		if (!resolver_up(ctx, cfg, proto)) {
			count(MX_CNT_DNS_PASSTHROUGH);
			return MX_PASS;
		}
		if (!remember(ctx, dst, port, proto, MX_ORIG_DNS))
			return MX_PASS;
		count(MX_CNT_DNS_REDIRECT);
		return MX_TO_RESOLVER;
	}
	return MX_PASS;
}

static __always_inline void read_user_ip6(struct bpf_sock_addr *ctx, struct mx_addr *a)
{
	a->w[0] = ctx->user_ip6[0];
	barrier();
	a->w[1] = ctx->user_ip6[1];
	barrier();
	a->w[2] = ctx->user_ip6[2];
	barrier();
	a->w[3] = ctx->user_ip6[3];
	barrier();
}

static __always_inline void write_user_ip6(struct bpf_sock_addr *ctx, const struct mx_addr *a)
{
	ctx->user_ip6[0] = a->w[0];
	barrier();
	ctx->user_ip6[1] = a->w[1];
	barrier();
	ctx->user_ip6[2] = a->w[2];
	barrier();
	ctx->user_ip6[3] = a->w[3];
	barrier();
}

/* IPv4 sockets: the target must be an IPv4 address (stored v4-mapped). */
static __always_inline int redirect4(struct bpf_sock_addr *ctx, int is_sendmsg)
{
	const struct mx_config *cfg = config();
	struct mx_addr dst;
	const struct mx_addr *to;
	__u32 ip4, port, type, proto;
	__u16 to_port;
	enum verdict v;

	if (!cfg || !cfg->flags)
		return 1;
	ip4 = ctx->user_ip4;
	barrier();
	port = ctx->user_port;
	barrier();
	type = ctx->type;
	barrier();
	proto = ctx->protocol;
	barrier();
	if (is_sendmsg && type != SOCK_DGRAM)
		return 1;
	set_v4mapped(&dst, ip4);
	v = classify(ctx, cfg, &dst, (__u16)port, type, proto);
	if (v == MX_REFUSE)
		return 0; /* the kernel fails connect() with EPERM */
	if (v == MX_PASS)
		return 1;
	to = v == MX_TO_PROXY ? &cfg->proxy_addr : &cfg->dns_addr;
	to_port = v == MX_TO_PROXY ? cfg->proxy_port : cfg->dns_port;
	if (!is_v4mapped(to))
		return 1;
	ctx->user_ip4 = to->w[3];
	barrier();
	ctx->user_port = (__u32)to_port;
	barrier();
	return 1;
}

/* IPv6 sockets: VIPs arrive v4-mapped; nameservers may be native IPv6 or v4-mapped. */
static __always_inline int redirect6(struct bpf_sock_addr *ctx, int is_sendmsg)
{
	const struct mx_config *cfg = config();
	struct mx_addr dst;
	const struct mx_addr *to;
	__u32 port, type, proto;
	__u16 to_port;
	enum verdict v;

	if (!cfg || !cfg->flags)
		return 1;
	read_user_ip6(ctx, &dst);
	port = ctx->user_port;
	barrier();
	type = ctx->type;
	barrier();
	proto = ctx->protocol;
	barrier();
	if (is_sendmsg && type != SOCK_DGRAM)
		return 1;
	v = classify(ctx, cfg, &dst, (__u16)port, type, proto);
	if (v == MX_REFUSE)
		return 0; /* the kernel fails connect() with EPERM */
	if (v == MX_PASS)
		return 1;
	to = v == MX_TO_PROXY ? &cfg->proxy_addr : &cfg->dns_addr;
	to_port = v == MX_TO_PROXY ? cfg->proxy_port : cfg->dns_port;
	write_user_ip6(ctx, to);
	ctx->user_port = (__u32)to_port;
	barrier();
	return 1;
}

SEC("cgroup/connect4")
int mx_connect4(struct bpf_sock_addr *ctx)
{
	return redirect4(ctx, 0);
}

SEC("cgroup/connect6")
int mx_connect6(struct bpf_sock_addr *ctx)
{
	return redirect6(ctx, 0);
}

SEC("cgroup/sendmsg4")
int mx_sendmsg4(struct bpf_sock_addr *ctx)
{
	return redirect4(ctx, 1);
}

SEC("cgroup/sendmsg6")
int mx_sendmsg6(struct bpf_sock_addr *ctx)
{
	return redirect6(ctx, 1);
}

/*
 * Shared by recvmsg (datagram source) and getpeername (connected peer): if the address the app is
 * about to see is our redirect target and this socket was redirected, show the original instead.
 */
static __always_inline int reverse(struct bpf_sock_addr *ctx, struct mx_addr *seen, __u16 seen_port,
				   struct mx_addr *out, __u16 *out_port)
{
	const struct mx_config *cfg = config();
	const struct mx_orig *o;
	__u64 cookie;

	if (!cfg || !cfg->flags)
		return 0;
	cookie = bpf_get_socket_cookie(ctx);
	o = bpf_map_lookup_elem(&mx_cookie_orig, &cookie);
	if (!o)
		return 0;
	if (o->flags == MX_ORIG_TCP_VIP) {
		if (!addr_eq(seen, &cfg->proxy_addr) || seen_port != cfg->proxy_port)
			return 0;
	} else if (o->flags == MX_ORIG_DNS) {
		if (!addr_eq(seen, &cfg->dns_addr) || seen_port != cfg->dns_port)
			return 0;
	} else {
		return 0;
	}
	*out = o->addr;
	*out_port = o->port;
	return 1;
}

static __always_inline int reverse4(struct bpf_sock_addr *ctx, __u32 counter)
{
	struct mx_addr seen, orig;
	__u32 ip4, port;
	__u16 orig_port;

	ip4 = ctx->user_ip4;
	barrier();
	port = ctx->user_port;
	barrier();
	set_v4mapped(&seen, ip4);
	if (!reverse(ctx, &seen, (__u16)port, &orig, &orig_port) || !is_v4mapped(&orig))
		return 1;
	ctx->user_ip4 = orig.w[3];
	barrier();
	ctx->user_port = (__u32)orig_port;
	barrier();
	count(counter);
	return 1;
}

static __always_inline int reverse6(struct bpf_sock_addr *ctx, __u32 counter)
{
	struct mx_addr seen, orig;
	__u32 port;
	__u16 orig_port;

	read_user_ip6(ctx, &seen);
	port = ctx->user_port;
	barrier();
	if (!reverse(ctx, &seen, (__u16)port, &orig, &orig_port))
		return 1;
	write_user_ip6(ctx, &orig);
	ctx->user_port = (__u32)orig_port;
	barrier();
	count(counter);
	return 1;
}

SEC("cgroup/recvmsg4")
int mx_recvmsg4(struct bpf_sock_addr *ctx)
{
	return reverse4(ctx, MX_CNT_RECV_REWRITE);
}

SEC("cgroup/recvmsg6")
int mx_recvmsg6(struct bpf_sock_addr *ctx)
{
	return reverse6(ctx, MX_CNT_RECV_REWRITE);
}

SEC("cgroup/getpeername4")
int mx_getpeername4(struct bpf_sock_addr *ctx)
{
	return reverse4(ctx, MX_CNT_PEERNAME_REWRITE);
}

SEC("cgroup/getpeername6")
int mx_getpeername6(struct bpf_sock_addr *ctx)
{
	return reverse6(ctx, MX_CNT_PEERNAME_REWRITE);
}

/* The redirected connection as the proxy will see it: the client's address and port, the proxy's port. */
static __always_inline int peer_key_of(struct bpf_sock_ops *ctx, struct mx_peer_key *k)
{
	__u32 family, lport, rport;

	family = ctx->family;
	barrier();
	if (family == AF_INET) {
		__u32 ip4 = ctx->local_ip4;

		barrier();
		set_v4mapped(&k->addr, ip4);
	} else if (family == AF_INET6) {
		k->addr.w[0] = ctx->local_ip6[0];
		barrier();
		k->addr.w[1] = ctx->local_ip6[1];
		barrier();
		k->addr.w[2] = ctx->local_ip6[2];
		barrier();
		k->addr.w[3] = ctx->local_ip6[3];
		barrier();
	} else {
		return 0;
	}
	lport = ctx->local_port; /* host byte order */
	barrier();
	rport = ctx->remote_port; /* network byte order, as a 32-bit value */
	barrier();
	k->port = bpf_htons((__u16)lport);
	k->proxy_port = bpf_htons((__u16)bpf_ntohl(rport));
	return 1;
}

/*
 * TCP_CONNECT_CB runs before the SYN with the local port chosen, so the peer entry exists before
 * the proxy can accept. It also asks for this socket's state changes, to remove the entry if the
 * connection dies before the proxy takes it (below).
 */
static __always_inline void on_connect(struct bpf_sock_ops *ctx)
{
	struct mx_peer_key k = {};
	const struct mx_orig *o;
	__u64 cookie;
	__u32 cb;

	cookie = bpf_get_socket_cookie(ctx);
	o = bpf_map_lookup_elem(&mx_cookie_orig, &cookie);
	if (!o || o->flags != MX_ORIG_TCP_VIP)
		return;
	if (!peer_key_of(ctx, &k))
		return;
	if (bpf_map_update_elem(&mx_peer_orig, &k, o, BPF_ANY)) {
		count(MX_CNT_PEER_STORE_FAILED);
		return;
	}
	count(MX_CNT_PEER_STORED);
	cb = ctx->bpf_sock_ops_cb_flags;
	barrier();
	bpf_sock_ops_cb_flags_set(ctx, cb | BPF_SOCK_OPS_STATE_CB_FLAG);
}

/*
 * A client socket that reaches CLOSE from SYN_SENT (refused, timed out), ESTABLISHED or FIN_WAIT1
 * (reset, aborted) was never taken by the proxy and never will be: its entry goes, so no later socket
 * that reuses the port can claim it. The cookie check leaves another socket's entry alone. From FIN_WAIT2
 * or CLOSING the socket may be an orphan whose connection still waits in the accept queue (the kernel
 * closes it into a timewait socket before the proxy accepts; verified), so those entries stay and age
 * out (MX_ORIG_MAX_AGE_MS).
 */
static __always_inline void on_state(struct bpf_sock_ops *ctx)
{
	struct mx_peer_key k = {};
	const struct mx_orig *o;
	__u32 from, to;
	__u64 cookie;

	from = ctx->args[0];
	barrier();
	to = ctx->args[1];
	barrier();
	if (to != BPF_TCP_CLOSE)
		return;
	if (from != BPF_TCP_SYN_SENT && from != BPF_TCP_ESTABLISHED && from != BPF_TCP_FIN_WAIT1)
		return;
	if (!peer_key_of(ctx, &k))
		return;
	o = bpf_map_lookup_elem(&mx_peer_orig, &k);
	if (!o)
		return;
	cookie = bpf_get_socket_cookie(ctx);
	if (o->cookie != cookie)
		return;
	if (!bpf_map_delete_elem(&mx_peer_orig, &k))
		count(MX_CNT_PEER_DROPPED);
}

SEC("sockops")
int mx_sockops(struct bpf_sock_ops *ctx)
{
	__u32 op;

	op = ctx->op;
	barrier();
	if (op == BPF_SOCK_OPS_TCP_CONNECT_CB)
		on_connect(ctx);
	else if (op == BPF_SOCK_OPS_STATE_CB)
		on_state(ctx);
	return 1;
}

SEC("cgroup/sock_release")
int mx_sock_release(struct bpf_sock *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	bpf_map_delete_elem(&mx_cookie_orig, &cookie);
	return 1;
}
