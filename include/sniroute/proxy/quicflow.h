/* SPDX-License-Identifier: MIT */
/* The QUIC path (issue 13): protocol = quic listeners, one worker's UDP flows. A flow is a
 * client address and port on a listening socket. Its first datagrams go to the Initial
 * reader (wire/quic.h) and are held until the ClientHello is complete; then the routing
 * decision (config/decide.h, the same as TLS's) picks the upstream, a connected UDP socket
 * per flow is opened towards it (the route's HOST:PORT over UDP, or a server of its pool),
 * the held datagrams go out in order and every later datagram is relayed both ways,
 * unmodified. sniroute never sends a datagram of its own: a refused or malformed client
 * gets nothing back, so nothing here can be used to amplify or to reach an address that
 * has not proven it sent the datagram.
 *
 * Events: the sockets are in the worker's reactor (core/reactor.h), like the TCP path's:
 * 16 bytes and an epoll_ctl per socket, one epoll wakeup serving many flows, and nothing
 * here that a uv_udp_t would add (libuv reads one datagram per system call where recvmmsg
 * reads 32, and it has no way to send from a chosen source address). Timeouts are a
 * min-heap of deadlines (core/deadline.h) with one timer, checked lazily: a datagram only
 * stores the time, so the heap is touched once per timeout, never per datagram.
 *
 * The server (proxy.c) calls the functions below at its start, reload, drain and end; they
 * are its only contact with this file. */
#ifndef SR_QUICFLOW_H
#define SR_QUICFLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct sr_generation;
struct sr_listen_fd;
struct sr_metrics;
struct sr_reactor;
struct sr_shared;
struct sr_quic;

/* Flows per worker waiting for the rest of their ClientHello (held datagrams): a flood of
 * partial Initials from spoofed addresses fills this, not memory. Past it the oldest such
 * flow gives way to the new one: a real client's second datagram follows its first within
 * a round trip, so it is through before a flood can push it out. */
#define SR_QUIC_UNROUTED_MAX 256
/* Datagrams held per unrouted flow at most (bytes: quic_hold_bytes). Each new datagram
 * re-reads the held ones (see quicflow.c), so this also bounds that work. A ClientHello
 * of 16 KB, the reader's limit, fits in 14 full Initial packets. */
#define SR_QUIC_HOLD_DGRAMS_MAX 16
/* Refused client addresses remembered per worker (a retransmit of a refused Initial is then
 * dropped without being read again), each until it has been quiet for hello_timeout. */
#define SR_QUIC_REFUSED_MAX 4096

/* What the server lends the QUIC path. Copied by sr_quic_new(); everything pointed to must
 * outlive the struct sr_quic. */
struct sr_quic_host {
    uv_loop_t *loop;
    struct sr_shared *shared;   /* the flow limits, the access log */
    struct sr_reactor *reactor; /* the worker's epoll set */
    struct sr_metrics *metrics; /* the worker's registry */
    size_t worker;              /* 0 .. shared->n_workers - 1: the worker's pools */
    bool is_reuseport;          /* several workers: SO_REUSEPORT sockets */
    /* Called when, draining, the last flow and socket are gone (sr_quic_is_stopped() turned
     * true): the server then checks whether it has stopped. */
    void (*on_idle)(void *data);
    void *data;
};


/* One worker's QUIC path, with no socket yet. NULL when out of memory or when libcrypto
 * cannot give AES-128-GCM, AES-128-ECB and HKDF (logged). */
struct sr_quic *sr_quic_new(const struct sr_quic_host *host);

/* A reload or the start, in two steps so that TCP and UDP change together or not at all.
 * prepare: bind a UDP socket for each address of <gen>'s quic listeners that has none yet
 * (taking an inherited one after a binary upgrade; "listening on ADDR (listener NAME)" for
 * each); 0, or a negative UV_E* code after closing what it bound (logged) -- then nothing
 * changed. commit: new flows now use <gen> (the caller holds a reference for as long as
 * this path may use it: until the next commit or the end); sockets whose address is gone
 * take no new flows and close once their flows end. abort: undo a prepare. */
int sr_quic_prepare(struct sr_quic *q, struct sr_generation *gen);
void sr_quic_commit(struct sr_quic *q, struct sr_generation *gen);
void sr_quic_abort(struct sr_quic *q);

/* Drain: take no new flow; relay the open ones until they end, or until drain_timeout
 * (then "drained"). After a binary upgrade (shared->handover_fd set) the new process reads
 * the same sockets, and a flow's datagrams would reach either process: so the sockets are
 * no longer read here and the flows end at once (flows are not handed over). A second call
 * ends every flow now. <q> may be NULL. */
void sr_quic_drain(struct sr_quic *q);

/* Draining, and no flow or socket left. True for NULL. */
bool sr_quic_is_stopped(const struct sr_quic *q);

/* After sr_quic_is_stopped(): close the timers; the loop may then end. Idempotent. */
void sr_quic_close(struct sr_quic *q);

/* After the loop has ended: free everything. NULL is accepted. */
void sr_quic_free(struct sr_quic *q);

/* Duplicates (close-on-exec) of the listening UDP sockets still configured, at most <cap>,
 * for a binary upgrade. Returns how many. */
size_t sr_quic_listen_fds(const struct sr_quic *q, struct sr_listen_fd *out, size_t cap);

#endif
