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
