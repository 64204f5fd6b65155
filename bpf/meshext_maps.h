/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one contract between bpf/redirect.bpf.c, native/ and src/redirect/codec.ts.
 *
 * Every struct a BPF map stores lives here, with explicit padding so the layout is the same for
 * clang -target bpf, the host C++ compiler and the TypeScript codec (a test compares them).
 * Addresses are always 16 bytes, IPv4 as ::ffff:a.b.c.d, so one layout serves both families.
 * Addresses and ports are in network byte order, as the kernel hands them to the hooks.
 *
 * Changing anything here that alters a map's key/value size or max_entries makes libbpf refuse
 * the pinned map (EINVAL), so such a change must bump MX_LAYOUT_VERSION (pins live under v<N>/).
 */
#ifndef MESHEXT_MAPS_H
#define MESHEXT_MAPS_H

#include <linux/types.h>

#define MX_LAYOUT_VERSION 2

#define MX_COOKIE_MAX_ENTRIES 65536
#define MX_PEER_MAX_ENTRIES 65536
#define MX_NAMESERVERS_MAX_ENTRIES 64
#define MX_EXEMPT_MAX_ENTRIES 256
#define MX_CG_IDENT_MAX_ENTRIES 65536
#define MX_SVC_ACCESS_MAX_ENTRIES 16384
#define MX_VERDICT_MAX_ENTRIES 262144
#define MX_DENIALS_MAX_ENTRIES 4096
/* Access counters are indexed by service index * MX_ACCESS_CNT_MAX + enum mx_access_cnt. */
#define MX_ACCESS_SVC_MAX 4096
/* Deepest cgroup level the connect hooks climb to find a workload's identity (pod/unit/sub-cgroups). */
#define MX_CG_MAX_LEVEL 16

/*
 * An mx_peer_orig entry older than this is stale: the proxy refuses it and the agent sweeps it. A
 * redirected connection waits in the proxy's accept queue for microseconds; an entry this old belongs to
 * a connection the proxy never took (the agent was down), and another socket could reuse its port.
 */
#define MX_ORIG_MAX_AGE_MS 30000

/* mx_config.flags */
#define MX_F_REDIRECT_TCP (1u << 0) /* TCP to the VIP CIDR goes to the proxy */
#define MX_F_REDIRECT_DNS (1u << 1) /* port 53 to a listed nameserver goes to the resolver */
#define MX_F_EXEMPT_CGROUPS (1u << 2) /* consult mx_exempt_cg */
#define MX_F_DNS_HEARTBEAT (1u << 3) /* other netns: resolver counts as up while heartbeat is fresh */
#define MX_F_ACCESS (1u << 4) /* some VIP has a MeshTrafficPermission: consult mx_svc_access */

/* mx_orig.flags: why a socket was redirected */
#define MX_ORIG_TCP_VIP 1
#define MX_ORIG_DNS 2

#define MX_DNS_PORT 53

struct mx_addr {
	__u32 w[4];
};

/* mx_config[0]: runtime settings, rewritten by the agent without reloading programs. */
struct mx_config {
	__u32 vip_net; /* VIP CIDR network, IPv4 */
	__u32 vip_mask; /* VIP CIDR mask, IPv4 */
	struct mx_addr proxy_addr; /* where TCP to a VIP goes */
	__u16 proxy_port;
	__u16 dns_port; /* resolver port */
	__u32 flags; /* MX_F_* */
	struct mx_addr dns_addr; /* resolver address */
	__u32 heartbeat_max_age_ms;
	__u32 _pad0;
	__u64 heartbeat_ns; /* CLOCK_MONOTONIC of the agent's last heartbeat */
	__u64 agent_netns_cookie; /* netns where the resolver listens (sk_lookup works there) */
};

/* mx_cookie_orig value and mx_peer_orig value: the destination the application asked for. */
struct mx_orig {
	struct mx_addr addr;
	__u16 port;
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 flags; /* MX_ORIG_* */
	__u32 pid;
	__u64 cgroup_id;
	__u64 cookie; /* the client socket's cookie: only that socket removes the entry */
	__u64 created_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) when the socket was redirected */
};

/* mx_peer_orig key: the redirected connection as the proxy sees it after accept. */
struct mx_peer_key {
	struct mx_addr addr; /* client address */
	__u16 port; /* client port */
	__u16 proxy_port; /* proxy listener port (several listeners may exist) */
};

/*
 * Access verdicts, computed by the agent (one TypeScript evaluation of Kuma's MeshTrafficPermission rules) and only
 * looked up here. Zero means "no entry".
 */
#define MX_V_ALLOW 1
#define MX_V_DENY_RULE 2 /* a deny matcher matched */
#define MX_V_DENY_DEFAULT 3 /* no matcher matched and the mesh forbids by default */
#define MX_V_DENY_NO_IDENTITY 4 /* the socket's cgroup has no identity (yet) and the mesh forbids by default */
#define MX_V_SHADOW_DENY 5 /* allowWithShadowDeny: let through, counted and logged as denied */

/* mx_svc_access key: a VIP:port whose service has a MeshTrafficPermission. */
struct mx_svc_key {
	__u32 vip; /* IPv4, network order */
	__u16 port; /* network order */
	__u16 _pad0;
};

/* mx_svc_access value: the service's index and its verdicts for identities without an mx_verdict entry. */
struct mx_svc_access {
	__u32 svc; /* service index, < MX_ACCESS_SVC_MAX */
	__u8 unlisted; /* MX_V_* for an identity with no mx_verdict entry */
	__u8 no_identity; /* MX_V_* for a socket whose cgroup has no identity */
	__u16 _pad0;
};

/* mx_verdict key: (service index, identity index) → __u32 MX_V_*. */
struct mx_verdict_key {
	__u32 svc;
	__u32 ident; /* identity index from mx_cg_ident, never 0 */
};

/* mx_denials key/value: the last denials per (client cgroup, service), taken by the agent for its log line. */
struct mx_denial_key {
	__u64 cgroup_id; /* the connecting socket's own cgroup */
	__u32 svc;
	__u32 _pad0;
};

struct mx_denial {
	__u64 count; /* denials since the agent last took this entry */
	__u64 last_ns; /* CLOCK_MONOTONIC of the last one */
	__u32 ident; /* identity index found for the cgroup, 0 = none */
	__u32 verdict; /* MX_V_* of the last one */
};

/* mx_access_cnt (per-CPU array of __u64) per-service slots. */
enum mx_access_cnt {
	MX_ACNT_ALLOWED = 0,
	MX_ACNT_DENIED_RULE,
	MX_ACNT_DENIED_DEFAULT,
	MX_ACNT_DENIED_NO_IDENTITY,
	MX_ACNT_SHADOW_DENIED,
	MX_ACNT_MAX,
};

/* mx_counters (per-CPU array of __u64) indexes. Names in src/redirect/codec.ts follow this order. */
enum mx_counter {
	MX_CNT_TCP_REDIRECT = 0,
	MX_CNT_DNS_REDIRECT,
	MX_CNT_DNS_PASSTHROUGH, /* resolver down: query left for the real nameserver */
	MX_CNT_RECV_REWRITE,
	MX_CNT_PEERNAME_REWRITE,
	MX_CNT_PEER_STORED,
	MX_CNT_PEER_STORE_FAILED,
	MX_CNT_EXEMPT_SKIP,
	MX_CNT_COOKIE_STORE_FAILED,
	MX_CNT_PEER_DROPPED, /* the client socket died before the proxy took its entry (refused, reset) */
	MX_CNT_MAX,
};

#endif /* MESHEXT_MAPS_H */
