/* SPDX-License-Identifier: MIT */
/* The kernel relay's BPF program (sockmap.c loads it): an sk_skb verdict program on a
 * sockhash of relayed sockets, keyed by socket cookie. Each socket's received bytes go out
 * through its peer's socket (the peer's cookie is in sr_sides), counted, with the time of
 * the last byte. It reads no payload and can only send a socket's bytes to the one peer
 * user space paired it with; a socket with no pair entry, or whose peer has left the map,
 * has its bytes dropped (the connection is being torn down).
 *
 * Backpressure. The kernel queues redirected bytes on the peer without limit and keeps
 * the sender's window open, since the program empties the receive queue at once. So the
 * program measures that queue (what it redirected, less what has entered the peer's send
 * queue: the growth of the peer's write_seq, read through BTF) and, once it holds more than
 * SR_BACKLOG_MAX, reports the socket to its worker's ring buffer. The worker takes the
 * socket out of sr_socks (a pause): later bytes wait in the socket's own receive queue, TCP
 * closes the window and the sender stops; once the queue on the peer has drained, the
 * worker puts the socket back and the program takes the waiting bytes, in order. Bytes are
 * never passed back to user space (SK_PASS), whose reads would mix them up with the bytes
 * the socket sends (found the hard way: bench/results/sockmap.md). */
#include <linux/bpf.h>

#include <bpf/bpf_helpers.h>

/* Redirected bytes that may wait for room in the peer's send queue, per direction, before
 * the socket is reported: a little under one loopback socket buffer. */
#define SR_BACKLOG_MAX (4u << 20)
/* A socket still over the limit is reported again after this (the worker may not have
 * acted on the first report yet, or the ring was full). */
#define SR_REPORT_EVERY_NS 1000000u

#define SR_SIDE_HAS_BASE 1u /* ws_base is set */

/* Keep in step with struct sockmap_side in sockmap.c. */
struct sr_side {
    __u64 peer;      /* the cookie of the socket this one's bytes go out through */
    __u64 bytes;     /* redirected so far */
    __u64 last_ns;   /* bpf_ktime_get_ns() of the last redirect; 0: none */
    __u64 tag;       /* user space's name for the connection, echoed in reports */
    __u64 report_ns; /* bpf_ktime_get_ns() of the last report; 0: none */
    __u32 ring;      /* the index of the worker's ring buffer in sr_rings */
    __u32 ws_base;   /* the peer's write_seq before the first redirect */
    __u32 flags;     /* SR_SIDE_* */
    __u32 unused;
};

/* Keep in step with struct sockmap_report in sockmap.c. */
struct sr_report {
    __u64 tag;
    __u64 cookie; /* the socket whose bytes wait on its peer */
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

/* One ring buffer per worker (created and inserted by sockmap.c). */
struct sr_ring {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 64 * 1024);
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 1); /* set at load */
    __type(key, __u32);
    __array(values, struct sr_ring);
} sr_rings SEC(".maps");

/* What this side has waiting on its peer: bytes redirected less the peer's write_seq
 * growth, modulo 2^32 (the peer takes at most a few MiB beyond its send queue). */
static __always_inline __u32
backlog(struct sr_side *side)
{
    struct bpf_sock *peer = bpf_map_lookup_elem(&sr_targets, &side->peer);
    struct tcp_sock *tp;
    __u32 write_seq;

    if (peer == NULL) {
        return 0;
    }
    tp = bpf_skc_to_tcp_sock(peer);
    write_seq = tp != NULL ? tp->write_seq : 0;
    bpf_sk_release(peer);
    if (tp == NULL) {
        return 0;
    }
    if (!(side->flags & SR_SIDE_HAS_BASE)) {
        /* Before the first redirect: nothing of ours is queued on the peer yet. */
        side->ws_base = write_seq - (__u32)side->bytes;
        side->flags |= SR_SIDE_HAS_BASE;
    }
    return (__u32)side->bytes - (write_seq - side->ws_base);
}

static __always_inline void
report(struct sr_side *side, __u64 cookie, __u64 now)
{
    struct sr_report r = {.tag = side->tag, .cookie = cookie};
    void *ring;

    if (side->report_ns != 0 && now - side->report_ns < SR_REPORT_EVERY_NS) {
        return;
    }
    ring = bpf_map_lookup_elem(&sr_rings, &side->ring);
    if (ring != NULL && bpf_ringbuf_output(ring, &r, sizeof(r), 0) == 0) {
        side->report_ns = now; /* a full ring: the next byte tries again */
    }
}

/* Every byte that has arrived is one message: the parser exists only so that the kernel
 * reads through its stream parser, whose receive path takes the socket's callback lock. */
SEC("sk_skb")
int
sr_parser(struct __sk_buff *skb)
{
    return skb->len;
}

SEC("sk_skb")
int
sr_verdict(struct __sk_buff *skb)
{
    __u64 cookie = bpf_get_socket_cookie(skb);
    struct sr_side *side = bpf_map_lookup_elem(&sr_sides, &cookie);
    __u64 now;

    if (side == NULL) {
        return SK_DROP;
    }
    if (skb->len == 0) {
        /* A bare FIN comes as an empty segment: the worker passes FINs on (a shutdown),
         * and this one, sent after it, would fail with EPIPE on the peer. */
        return SK_DROP;
    }
    now = bpf_ktime_get_ns();
    if (backlog(side) > SR_BACKLOG_MAX) {
        report(side, cookie, now); /* this skb still goes: it is already here */
    }
    __sync_fetch_and_add(&side->bytes, skb->len);
    side->last_ns = now;
    return bpf_sk_redirect_hash(skb, &sr_targets, &side->peer, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
