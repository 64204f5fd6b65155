// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Rejected by the verifier on purpose (user_family is read-only): load errors must carry the log. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("cgroup/connect4")
int mx_bad_write(struct bpf_sock_addr *ctx)
{
	ctx->user_family = 10;
	return 1;
}
