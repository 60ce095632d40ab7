/* SPDX-License-Identifier: MIT */
/* The state of one worker's QUIC path (issue 13), shared by the files of that path: the path
 * (struct sr_quic), its listening sockets (struct sr_quic_sock) and its flows (struct
 * sr_quic_flow; what only an unrouted flow needs in struct sr_quic_flow_setup). Types and
 * limits only. quicflow.c (the path's start and end, each datagram to its flow) calls down
 * into quicintake.c, quicrelay.c, quicsock.c and quiclife.c; none of them calls up. */
#ifndef SR_QUICFLOW_TYPES_H
#define SR_QUICFLOW_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netdb.h>
#include <sys/uio.h>

#include <uv.h>

#include "sniroute/config/config.h"
#include "sniroute/core/deadline.h"
#include "sniroute/core/flowtab.h"
#include "sniroute/core/ipcount.h"
#include "sniroute/core/reactor.h"
#include "sniroute/observe/metrics.h"
#include "sniroute/proxy/udp.h"
#include "sniroute/wire/quic.h"

struct sr_generation;
struct sr_shared;
struct sr_quic;
struct sr_quic_cidnode;

/* Flows per worker waiting for the rest of their ClientHello (held datagrams): a flood of
 * partial Initials from spoofed addresses fills this, not memory. Past it the oldest such
 * flow gives way to the new one: a real client's second datagram follows its first within
 * a round trip, so it is through before a flood can push it out. */
#define SR_QUIC_UNROUTED_MAX 256
/* Datagrams held per unrouted flow at most (bytes: quic_hold_bytes). Each new datagram
 * re-reads the held ones (see quicintake.c), so this also bounds that work. A ClientHello
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

/* One bound UDP socket of a QUIC listener. Kept across reloads while its address is
 * configured; when it is not any more, it is "retired": it takes no new flow and closes once
 * the flows keyed on it have ended (a flow's client sends to it and hears from it). */
struct sr_quic_sock {
    struct sr_watch watch; /* first: the reactor hands this back */
    struct sr_quic *q;
    struct sr_quic_sock *next;
    struct sr_addr addr;                   /* as configured: the key across reloads */
    const struct sr_listener_config *lcfg; /* in q->gen (or the generation being prepared) */
    uint32_t lid;                          /* its metrics row */
    uint32_t id;                           /* in flow keys */
    size_t n_flows;                        /* flows keyed on it, refused ones included */
    bool has_pktinfo;                      /* bound to a wildcard: replies say their source */
    struct sr_udp_gso gso;                 /* whether the kernel cuts runs sent from it */
    bool is_kept;                          /* prepare/commit bookkeeping */
    bool is_new;                           /* bound by the prepare in progress */
    bool is_retired;
    char addr_text[SR_SOCKADDR_TEXT_MAX];
};

enum sr_quic_flow_state {
    SR_QF_HELLO,     /* reading the ClientHello from Initial packets; datagrams held */
    SR_QF_RESOLVING, /* routed to a host name being resolved; datagrams held */
    SR_QF_RELAYING,  /* connected: datagrams both ways */
    SR_QF_REFUSED,   /* ended without a working upstream; kept so retransmits cost nothing */
    SR_QF_CLOSED,    /* out of the table; freed after the batch (or the resolver's callback) */
};

/* What only an unrouted flow needs; freed once it relays. */
struct sr_quic_flow_setup {
    uint8_t *held; /* datagrams as received: 2-byte length (host order), bytes; repeated */
    size_t held_len;
    unsigned n_held;
    enum sr_quic_reason last_bad; /* of the last datagram refused as MALFORMED */
    struct sr_quic_flow *older;   /* q's list of flows in SR_QF_HELLO, oldest first */
    struct sr_quic_flow *newer;
    uv_getaddrinfo_t resolve_req;
    struct addrinfo *addrs;
};

struct sr_quic_flow {
    struct sr_flownode node; /* the key: socket id, client address and port */
    struct sr_watch backend; /* the connected socket to the upstream; fd -1 until then */
    struct sr_deadline deadline;
    struct sr_quic *q;
    struct sr_quic_flow *prev; /* q->flows: every flow in the table */
    struct sr_quic_flow *next;
    struct sr_quic_flow *next_dead;
    struct sr_quic_sock *sock;
    /* The config the flow began under (a reference; dropped when it is refused), its
     * [listener] section, and where it goes. */
    struct sr_generation *gen;
    const struct sr_listener_config *lcfg;
    const struct sr_upstream *upstream;
    const struct sr_addr *target; /* the route's HOST:PORT, or a server of its pool */
    struct sr_pool *pool;         /* the worker's copy, or NULL */
    size_t pool_index;
    struct sr_quic_flow_setup *setup; /* until relaying */
    char *sni;                        /* normalized, for the log (heap); NULL: none */
    const char *alpn_route;           /* the ALPN condition of the route (config text), or NULL */
    const char *denied_by;            /* the access rule that refused it (config text), or NULL */
    const char *outcome;
    const char *detail;
    union sr_udp_peer client;
    struct sr_udp_local local; /* where the client sends to: replies leave from there */
    struct sr_ipkey ipkey;
    uint64_t start_ms; /* uv_now() */
    uint64_t routed_ms;
    uint64_t last_in_ms; /* the client's last datagram */
    uint64_t last_out_ms;
    uint64_t n_in; /* datagrams and bytes relayed: client to upstream */
    uint64_t bytes_in;
    uint64_t n_out; /* upstream to client */
    uint64_t bytes_out;
    int64_t start_wall_ms;
    uint32_t lid;
    uint32_t uid; /* UINT32_MAX: no upstream */
    uint8_t state;
    uint8_t route;   /* enum sr_route_kind */
    bool is_counted; /* in the limits (shared n_flows, per_ip when has_ipkey) */
    bool has_ipkey;
    bool is_started;      /* counted as started in the metrics */
    bool is_pool_counted; /* sr_pool_conn_start for pool_index */
    bool is_resolving;    /* a resolver request will still call back */
    bool has_ech;
    bool has_answer;             /* the upstream has sent a datagram */
    struct sr_udp_gso up_gso;    /* whether the kernel cuts runs sent to the upstream */
    uint32_t n_migrations;       /* times the client came back from another address */
    struct sr_quic_cidnode *cid; /* in q->cids: the ID its server chose (quicmigrate.c) */
};

struct sr_quic {
    struct sr_quic_host host;
    sr_watch_fn on_sock_ready; /* quicflow.c's reader, for the sockets quicsock.c opens */
    struct sr_generation *gen; /* new flows begin under it; the server holds the reference */
    struct sr_quic_sock *socks;
    struct sr_quic_sock *dead_socks; /* closed, freed after the batch */
    uint32_t next_sock_id;
    struct sr_flowtab table;
    struct sr_flowtab cids;                    /* relaying flows by their server's ID */
    size_t n_cids_by_len[SR_QUIC_MAX_CID + 1]; /* of q->cids, by ID length */
    struct sr_quic_flow *flows;                /* every flow in the table */
    size_t n_flows;                            /* of those, not refused */
    size_t n_refused;
    size_t n_alloc; /* flows allocated and not yet freed */
    struct sr_quic_flow *unrouted_oldest;
    struct sr_quic_flow *unrouted_newest;
    size_t n_unrouted;
    struct sr_quic_flow *dead;
    struct sr_deadline_heap deadlines;
    uv_timer_t timer;
    uint64_t timer_due; /* UINT64_MAX: not armed */
    struct sr_reactor_task reaper; /* frees the dead after the batch that killed them */
    bool has_handles;
    bool is_closed;
    bool is_draining;
    uint64_t drain_due_ms;
    /* Client datagrams for one flow, gathered from a batch and sent in one sendmmsg. */
    struct sr_quic_flow *run_flow;
    struct iovec run[SR_UDP_BATCH];
    size_t n_run;
    struct sr_udp_batch batch;
    struct sr_quic_initial initial; /* scratch: each read starts from a flow's datagram 0 */
    struct sr_quic_ctx crypto;
};

/* The loop's time, in ms (uv_now()). */
static inline uint64_t
sr__quic_now_ms(const struct sr_quic *q)
{
    return uv_now(q->host.loop);
}

/* A datagram from a client of listener row <lid> was not relayed, for <why>. */
static inline void
sr__quic_dropped(struct sr_quic *q, uint32_t lid, enum sr_metrics_quic_drop why)
{
    sr_metrics_quic_dropped(q->host.metrics, lid, why);
}

#endif
