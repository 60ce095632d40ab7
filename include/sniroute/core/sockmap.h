/* SPDX-License-Identifier: MIT */
/* The kernel relay's BPF side: one sk_skb verdict program and its maps, loaded once per
 * process and shared by the workers (the bpf(2) calls below are safe from any thread).
 * A pair of connected TCP sockets joined here has each socket's received bytes sent out
 * through the other by the kernel, counted per socket; user space never sees them. This
 * module only loads, pairs, counts and unpairs: when to do so (and what a FIN, a reset or
 * an idle timeout means) is proxy/krelay.c's. Linux only; needs CAP_BPF and CAP_NET_ADMIN
 * (or CAP_SYS_ADMIN) at load. */
#ifndef SR_SOCKMAP_H
#define SR_SOCKMAP_H

#include <stddef.h>
#include <stdint.h>

struct sr_sockmap;

/* Two sockets relayed by the kernel: their cookies (SO_COOKIE), the map keys. */
struct sr_sockmap_pair {
    uint64_t cookie[2];
};

/* What the program has done for one socket of a pair since it was joined. */
struct sr_sockmap_count {
    uint64_t bytes;   /* received on this socket and sent on through its peer */
    uint64_t last_ns; /* CLOCK_MONOTONIC of the last such byte (0: none yet) */
};

/* Load the program and its maps, room for <max_pairs> pairs and one report ring per
 * worker (<n_rings>), and attach it. Returns the loaded object, or NULL with why not in
 * <why> (<why_cap> bytes: "no CAP_BPF", the libbpf error): the caller relays in user space
 * then. Logs nothing. */
struct sr_sockmap *sr_sockmap_new(size_t max_pairs, size_t n_rings, char *why, size_t why_cap);

/* Pairs joined since the load (any thread; 0 for NULL). */
uint64_t sr_sockmap_joined(const struct sr_sockmap *sm);

/* Sockets paused since the load (sr_sockmap_pause; any thread; 0 for NULL). */
uint64_t sr_sockmap_paused(const struct sr_sockmap *sm);

/* Count a pair whose paused socket's direction went back to user space for good, its
 * peer's staying in the program (krelay.c's split), and read that count (any thread; 0
 * for NULL). */
void sr_sockmap_note_split(struct sr_sockmap *sm);
uint64_t sr_sockmap_splits(const struct sr_sockmap *sm);

/* Detach and free (the sockets still joined leave the maps when closed). NULL is fine. */
void sr_sockmap_free(struct sr_sockmap *sm);

/* Join <fd_a> and <fd_b> (connected TCP sockets, nothing of theirs in flight in user
 * space): from now on the bytes each receives go out through the other. Bytes already
 * waiting in either receive queue go too once the caller kicks it (sr_sockmap_kick).
 * When more than a few MiB of one socket's bytes wait for room on its peer, the program
 * reports (<tag>, that socket's cookie) to ring <ring> (sr_sockmap_reports_open), again
 * every millisecond while it takes more: the owner pauses the socket. Returns 0 with
 * <*pair> set, or a negative UV_E* code with both sockets left as they were (UV_ENOSPC:
 * the maps are full). */
int sr_sockmap_join(struct sr_sockmap *sm, int fd_a, int fd_b, uint64_t tag, size_t ring,
                    struct sr_sockmap_pair *pair);

/* Pause socket <i> (0 or 1) of <pair> (its descriptor <fd>): the program stops taking its
 * bytes, which then wait in its receive queue (TCP closes the window), while what it took
 * still goes out to the peer, and the peer's bytes still come in. On return the program has
 * finished with the socket, so its count is final until sr_sockmap_resume. Returns 0 or a
 * negative UV_E* code. */
int sr_sockmap_pause(struct sr_sockmap *sm, const struct sr_sockmap_pair *pair, int i, int fd);

/* Undo sr_sockmap_pause: the program takes the bytes that waited, in order, and goes on.
 * Returns 0 or a negative UV_E* code. */
int sr_sockmap_resume(struct sr_sockmap *sm, const struct sr_sockmap_pair *pair, int i, int fd);

/* One worker's reader of its ring: calls <fn>(<ctx>, tag, cookie) for each report. */
typedef void (*sr_sockmap_report_fn)(void *ctx, uint64_t tag, uint64_t cookie);
struct sr_sockmap_reports;

/* Open ring <ring> (< n_rings). Returns NULL when out of memory. */
struct sr_sockmap_reports *sr_sockmap_reports_open(struct sr_sockmap *sm, size_t ring,
                                                   sr_sockmap_report_fn fn, void *ctx);

/* The descriptor to watch: readable (EPOLLIN) while reports wait. */
int sr_sockmap_reports_fd(const struct sr_sockmap_reports *r);

/* Hand every waiting report to the callback. */
void sr_sockmap_reports_read(struct sr_sockmap_reports *r);

/* NULL is fine. The ring itself lives as long as the sr_sockmap. */
void sr_sockmap_reports_free(struct sr_sockmap_reports *r);

/* Have <fd> (joined) look at its receive queue now: bytes that arrived before the join
 * wait there until the next segment otherwise. Returns 0 or a negative UV_E* code. */
int sr_sockmap_kick(int fd);

/* Take both sockets of <pair> (<fd_a>, <fd_b>) out of the program's map only: the program
 * no longer takes their bytes (they wait in the sockets), while what it took still goes out
 * to the peers. On return the program has finished with both. */
void sr_sockmap_unhook(struct sr_sockmap *sm, const struct sr_sockmap_pair *pair, int fd_a,
                       int fd_b);

/* Take both sockets of <pair>, already out of the program's map (sr_sockmap_unhook), out of
 * the targets' map too: they are plain sockets again. Bytes the program already redirected
 * and the kernel has not yet pushed into the peer's send queue are dropped by this: the
 * caller first makes sure there are none (krelay.c compares the counts). Their counts stay
 * until sr_sockmap_forget. */
void sr_sockmap_leave(struct sr_sockmap *sm, const struct sr_sockmap_pair *pair);

/* The count of socket <i> (0 or 1) of <pair>. Returns 0 or a negative UV_E* code. */
int sr_sockmap_count(const struct sr_sockmap *sm, const struct sr_sockmap_pair *pair, int i,
                     struct sr_sockmap_count *out);

/* What has gone into TCP socket <fd>'s send queue since it was created, in <*out>: bytes
 * acknowledged plus bytes still queued (TCP_INFO and SIOCOUTQ, read again until no ACK
 * came in between). Off by a constant (the SYN, for a connecting socket): compare two
 * readings. Returns 0, UV_EAGAIN (ACKs kept coming: try later) or a negative UV_E* code. */
int sr_sockmap_sent(int fd, uint64_t *out);

/* What has arrived on TCP socket <fd> since it was created, in <*out> (TCP_INFO's
 * tcpi_bytes_received: a FIN counts 1). Returns 0 or a negative UV_E* code. */
int sr_sockmap_received(int fd, uint64_t *out);

/* What user space has read from TCP socket <fd>, not yet joined (no psock, so SIOCINQ
 * counts the receive queue): bytes received less bytes queued, read again until no byte
 * came in between, in <*out>. Everything received beyond it is the program's once the
 * socket is joined. Returns 0, UV_EAGAIN (bytes kept coming) or a negative UV_E* code. */
int sr_sockmap_read_so_far(int fd, uint64_t *out);

/* Drop <pair>'s counts (after the last sr_sockmap_count). */
void sr_sockmap_forget(struct sr_sockmap *sm, const struct sr_sockmap_pair *pair);

#endif
