/* SPDX-License-Identifier: MIT */
/* The kernel relay's BPF program (sockmap.c loads it): an sk_skb verdict program on a
 * sockhash of relayed sockets, keyed by socket cookie. Each socket's received bytes go out
 * through its peer's socket (the peer's cookie is in sr_sides), counted, with the time of
 * the last byte. It reads no payload and can only send a socket's bytes to the one peer
 * user space paired it with; a socket with no pair entry, or whose peer has left the map,
 * has its bytes dropped (the connection is being torn down). */
#include <linux/bpf.h>

#include <bpf/bpf_helpers.h>

/* Keep in step with struct sr_sockmap_side in sockmap.c. */
struct sr_side {
    __u64 peer;    /* the cookie of the socket this one's bytes go out through */
    __u64 bytes;   /* redirected so far */
    __u64 last_ns; /* bpf_ktime_get_ns() of the last redirect; 0: none */
};

struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, 2); /* set at load */
    __type(key, __u64);
    __type(value, __u64);
} sr_socks SEC(".maps");

/* The same sockets, without the program: where bytes are sent (sockmap.c says why two). */
struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, 2); /* set at load */
    __type(key, __u64);
    __type(value, __u64);
} sr_targets SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 2); /* set at load */
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u64);
    __type(value, struct sr_side);
} sr_sides SEC(".maps");

SEC("sk_skb")
int
sr_verdict(struct __sk_buff *skb)
{
    __u64 cookie = bpf_get_socket_cookie(skb);
    struct sr_side *side = bpf_map_lookup_elem(&sr_sides, &cookie);

    if (side == NULL) {
        return SK_DROP;
    }
    if (skb->len == 0) {
        /* A bare FIN comes as an empty segment: the worker passes FINs on (a shutdown),
         * and this one, sent after it, would fail with EPIPE on the peer. */
        return SK_DROP;
    }
    __sync_fetch_and_add(&side->bytes, skb->len);
    side->last_ns = bpf_ktime_get_ns();
    return bpf_sk_redirect_hash(skb, &sr_targets, &side->peer, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
