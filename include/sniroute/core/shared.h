/* SPDX-License-Identifier: MIT */
/* What the workers of one process share, behind one lock: the connection limits (open
 * connections in all, per [listener] name and per client address, and the refusals over
 * them), the access log, the metric row names, and the binary upgrade's sockets. The only
 * state a worker's thread touches that another thread also touches; everything else of a
 * worker is its own. Owned by main, it outlives every server. */
#ifndef SR_SHARED_H
#define SR_SHARED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "sniroute/config/config.h"
#include "sniroute/core/ipcount.h"
#include "sniroute/observe/metrics.h"

struct sockaddr;
struct sr_inherited;
struct sr_sockmap;

/* workers = N: at most this many loops, one thread each. */
#define SR_WORKERS_MAX 64

/* Metric rows: listener names and upstream addresses beyond these share an "_other" row. */
#define SR_METRICS_LISTENERS_MAX 256
#define SR_METRICS_UPSTREAMS_MAX 1024

/* Open connections per [listener] name, kept across reloads (a name's count carries over
 * to the section of the same name in the new config). */
struct sr_listener_count {
    char name[SR_CONFIG_NAME_MAX + 1];
    size_t n_conns;
};

/* What the workers of one process share: owned by main, outlives every server. The lock
 * guards the limits and the access log (a connection takes it at accept, at its end, and
 * to write its line); the names are written only by main, between loads. */
struct sr_shared {
    uv_mutex_t lock;
    size_t n_workers;
    FILE *access_log;        /* NULL: access log off (lock) */
    _Atomic bool is_logging; /* access_log != NULL, readable without the lock */
    size_t n_conns;          /* open connections, all workers: [sniroute] max_connections */
    struct sr_listener_count *lcounts;
    size_t n_lcounts;
    struct sr_ipcount *per_ip;                       /* open connections per client address */
    uint64_t n_refused[SR_METRICS_N_LIMITS];         /* by enum sr_metrics_limit */
    uint64_t n_refused_noticed[SR_METRICS_N_LIMITS]; /* as of the last notice */
    uint64_t refusal_notice_ms;                      /* uv_hrtime() / 1e6 of the last notice */
    /* Accept stuck (out of descriptors or memory), all workers: queued connections
     * closed unread, listener pauses, and the same as of the last notice. */
    uint64_t n_shed;
    uint64_t n_accept_paused;
    uint64_t n_shed_noticed;
    uint64_t n_accept_paused_noticed;
    uint64_t accept_notice_ms; /* uv_hrtime() / 1e6 of the last notice */
    struct sr_metrics_names listener_names;
    struct sr_metrics_names upstream_names;
    uint64_t start_time_ms;
    /* The kernel relay's BPF program and maps (sockmap.h), loaded by main before the
     * workers start; NULL: every connection relays in its worker (splice). */
    struct sr_sockmap *sockmap;
    /* Binary upgrade: sockets handed over by the old process, taken before binding
     * (owned by main; NULL when not an upgrade). */
    struct sr_inherited *inherited;
    /* Binary upgrade, old side: the socket idle connections are handed to the new process
     * over (upgrade.h), set by main before it asks the workers to drain and closed by main
     * once they have stopped; -1: none. Broken: a send failed (the new process is gone),
     * so every worker drains what it still has. */
    _Atomic int handover_fd;
    _Atomic bool is_handover_broken;
    /* QUIC flows of every worker: max_quic_flows, max_quic_flows_per_ip, and a budget of
     * descriptors (one socket per routed flow) so flows cannot take the listeners' and
     * the TCP connections' descriptors. n_quic_flows is atomic; the rest is under lock. */
    _Atomic size_t n_quic_flows;
    size_t quic_fd_budget;
    struct sr_ipcount *quic_per_ip;
    uint64_t n_quic_refused[3]; /* over max_quic_flows, per IP, the descriptor budget */
    uint64_t n_quic_refused_noticed[3];
    uint64_t quic_notice_ms;
};

/* Where one connection is counted in the limits: filled by sr_shared_admit (or
 * sr_shared_count), given back by sr_shared_release. Zeroed: counted nowhere. */
struct sr_admission {
    struct sr_ipkey ipkey; /* the client address counted, when has_ipkey */
    uint32_t lcount;       /* 1 + index into shared->lcounts; 0: not counted */
    bool is_counted;       /* counted in shared->n_conns (and maybe the two above) */
    bool has_ipkey;
};

/* Set up (0 or a UV_E* code) and free what <shared> holds. */
int sr_shared_init(struct sr_shared *shared, size_t n_workers, FILE *access_log);
void sr_shared_fini(struct sr_shared *shared);

/* Write one access-log line, whole, under the shared lock. */
void sr_shared_log(struct sr_shared *shared, const char *line, size_t len);

/* Count a just-accepted connection on listener <lcfg> of <cfg> from <peer> (zeroed if
 * unknown) in <adm>, then compare with the limits: the counts stay right across reloads
 * that change the limits, and are released with sr_shared_release whatever happens.
 * Behind proxy_protocol = accept the peer is the load balancer, so no client address is
 * counted yet (sr_shared_admit_client does it). Returns NULL if the connection may
 * proceed, or the name of the limit it is over with <*over> its kind: the caller counts
 * it in its metrics and closes the connection at once; the refusal is summarized in a
 * notice at most once a second, for all workers. */
const char *sr_shared_admit(struct sr_shared *shared, struct sr_admission *adm,
                            const struct sr_config *cfg, const struct sr_listener_config *lcfg,
                            const struct sockaddr *peer, enum sr_metrics_limit *over);

/* proxy_protocol = accept: count the client a trusted PROXY header names against
 * max_connections_per_ip, once. Returns NULL, or the limit's name with <*over> its kind
 * (as sr_shared_admit). */
const char *sr_shared_admit_client(struct sr_shared *shared, struct sr_admission *adm,
                                   const struct sr_config *cfg, const struct sockaddr *client,
                                   enum sr_metrics_limit *over);

/* Count a connection that is open already (adopted in a binary upgrade) like
 * sr_shared_admit, its client address included, but never refuse it. */
void sr_shared_count(struct sr_shared *shared, struct sr_admission *adm,
                     const struct sr_listener_config *lcfg, const struct sockaddr *peer);

/* Give back what <adm> counts (nothing if it counts nothing). */
void sr_shared_release(struct sr_shared *shared, struct sr_admission *adm);

/* Count a new QUIC flow from <ipkey> against the flow limits of <cfg>. Returns true if it
 * may begin (release it with sr_shared_release_flow, passing the <*has_ipkey> set here);
 * false with <*why> the limit it is over (counted for a notice at most once a second, for
 * all workers). */
bool sr_shared_admit_flow(struct sr_shared *shared, const struct sr_config *cfg,
                          const struct sr_ipkey *ipkey, bool *has_ipkey,
                          enum sr_metrics_quic_drop *why);
void sr_shared_release_flow(struct sr_shared *shared, const struct sr_ipkey *ipkey,
                            bool has_ipkey);

#endif
