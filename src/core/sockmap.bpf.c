/* SPDX-License-Identifier: MIT */
/* The kernel relay's BPF program (sockmap.c loads it): an sk_skb verdict program on a
 * sockhash of relayed sockets, keyed by socket cookie. Each socket's received bytes go out
 * through its peer's socket (the peer's cookie is in sr_sides), counted, with the time of
 * the last byte. It reads no payload and can only send a socket's bytes to the one peer
 * user space paired it with; a socket with no pair entry, or whose peer has left the map,
 * has its bytes dropped (the connection is being torn down).
 *
 * Backpressure. The kernel queues redirected bytes on the peer without limit and without
 * slowing the sender (the source socket's receive window stays open). So the program
 * measures that queue (what it redirected, less what has entered the peer's send queue:
 * the peer's write_seq, read through BTF) and, once it holds more than SR_BACKLOG_MAX,
 * holds this socket's bytes back instead (SK_PASS): they wait in the socket's own queue,
 * charged to its receive buffer, so TCP closes the window and the sender stops. User space
 * moves the held bytes on once the queue has drained, then says so (sr_ctl); only then,
 * so that no byte overtakes another, does the program redirect again. */
#include <linux/bpf.h>

#include <bpf/bpf_helpers.h>

/* Redirected bytes that may wait for room in the peer's send queue, per direction: about
 * one socket buffer's worth of loopback segments. */
#define SR_BACKLOG_MAX (2u << 20)

#define SR_SIDE_HAS_BASE 1u /* ws_base is set */
#define SR_SIDE_HOLDING  2u /* bytes are held back for user space */

/* Keep in step with struct sockmap_side in sockmap.c. */
struct sr_side {
    __u64 peer;    /* the cookie of the socket this one's bytes go out through */
    __u64 bytes;   /* redirected so far */
    __u64 last_ns; /* bpf_ktime_get_ns() of the last byte; 0: none */
    __u64 held;    /* held back for user space so far (SK_PASS) */
    __u32 ws_base; /* the peer's write_seq before the first redirect */
    __u32 flags;   /* SR_SIDE_* */
};

/* Only the field we read: CO-RE finds its offset in the running kernel's BTF. */
struct tcp_sock {
    __u32 write_seq;
} __attribute__((preserve_access_index));

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

/* Written by user space: of a socket's held bytes, how many it has moved into the peer's
 * send queue. The program only reads it. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 2); /* set at load */
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, __u64);
    __type(value, __u64);
} sr_ctl SEC(".maps");

static __always_inline int
hold(struct sr_side *side, __u32 len)
{
    side->flags |= SR_SIDE_HOLDING;
    side->held += len;
    return SK_PASS;
}

SEC("sk_skb")
int
sr_verdict(struct __sk_buff *skb)
{
    __u64 cookie = bpf_get_socket_cookie(skb);
    struct sr_side *side = bpf_map_lookup_elem(&sr_sides, &cookie);
    struct bpf_sock *peer;
    struct tcp_sock *tp;
    __u32 write_seq;
    __u32 queued;
    __u64 *moved;

    if (side == NULL) {
        return SK_DROP;
    }
    if (skb->len == 0) {
        /* A bare FIN comes as an empty segment: the worker passes FINs on (a shutdown),
         * and this one, sent after it, would fail with EPIPE on the peer. */
        return SK_DROP;
    }
    side->last_ns = bpf_ktime_get_ns();
    if (side->flags & SR_SIDE_HOLDING) {
        moved = bpf_map_lookup_elem(&sr_ctl, &cookie);
        if (moved == NULL || *moved != side->held) {
            return hold(side, skb->len); /* behind the held bytes */
        }
        side->flags &= ~SR_SIDE_HOLDING; /* all moved on: redirect again */
    }
    peer = bpf_map_lookup_elem(&sr_targets, &side->peer);
    if (peer == NULL) {
        return SK_DROP;
    }
    tp = bpf_skc_to_tcp_sock(peer);
    write_seq = tp != NULL ? tp->write_seq : 0;
    bpf_sk_release(peer);
    if (tp == NULL) {
        return SK_DROP;
    }
    if (!(side->flags & SR_SIDE_HAS_BASE)) {
        /* The first redirect: nothing of ours is queued on the peer yet. */
        side->ws_base = write_seq;
        side->flags |= SR_SIDE_HAS_BASE;
    }
    /* What went to the peer (redirected, and held bytes user space moved: all of them,
     * when not holding), less what entered its send queue, modulo 2^32. */
    queued = (__u32)(side->bytes + side->held) - (write_seq - side->ws_base);
    if (queued > SR_BACKLOG_MAX) {
        return hold(side, skb->len);
    }
    __sync_fetch_and_add(&side->bytes, skb->len);
    return bpf_sk_redirect_hash(skb, &sr_targets, &side->peer, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
