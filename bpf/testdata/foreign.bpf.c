// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Another vendor's connect4 hook that allows everything: cleanup must leave it attached. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("cgroup/connect4")
int fx_foreign(struct bpf_sock_addr *ctx)
{
	return 1;
}
