/* SPDX-License-Identifier: MIT */
/* What the workers of one process share: the connection limits (open connections in all,
 * per [listener] name and per client address, and the refusals over them), each worker's
 * access-log batch, the metric row names, and the binary upgrade's sockets. The only state
 * a worker's thread touches that another thread also touches; everything else of a worker
 * is its own. No lock that every worker takes is on the way of a connection: counts are
 * atomics, the per-address tables are sharded (a lock each). Owned by main, it outlives
 * every server. */
#ifndef SR_SHARED_H
#define SR_SHARED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "sniroute/config/config.h"
#include "sniroute/core/ipcount.h"
#include "sniroute/core/ratelimit.h"
#include "sniroute/observe/accesslog.h"
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
 * to the section of the same name in the new config). A slot never moves once made: main
 * adds slots (sr_shared_listener_slot) before it hands a generation to the workers, and
 * the workers count in them with atomics. Padded so two listeners never share a line. */
struct sr_listener_count {
    char name[SR_CONFIG_NAME_MAX + 1];
    _Atomic size_t n_conns;
} __attribute__((aligned(64)));

/* Listener slots come in chunks that never move; at most this many names in a process's
 * life (a name beyond them is not counted against its listener's max_connections). */
#define SR_LISTENER_CHUNK  256
#define SR_LISTENER_CHUNKS 256

/* The per-address tables are split in this many shards, each behind its own lock: two
 * workers contend only when their clients' addresses fall in the same shard. */
#define SR_IP_SHARDS 64

/* One shard of a per-address table. n_locks counts its acquisitions (written under the
 * lock, read by a scrape). Padded so two shards never share a line. */
struct sr_ip_shard {
    uv_mutex_t lock;
    struct sr_ipcount *counts;
    _Atomic uint64_t n_locks;
} __attribute__((aligned(64)));

/* Counts per client address, sharded by a keyed hash of the address (the key is random
 * per process, so which addresses share a shard cannot be chosen from outside). */
struct sr_ip_shards {
    struct sr_ip_shard shard[SR_IP_SHARDS];
    uint64_t key[2];
};

/* A notice summing events of every worker, at most once per period, without a lock: each
 * event is an atomic add; the one thread that wins the compare-and-swap on <last_ms> says
 * what happened since the notice before. */
struct sr_notice_rate {
    _Atomic uint64_t last_ms; /* uv_hrtime() / 1e6 of the last notice; 0: none yet */
    _Atomic uint64_t n[3];
    _Atomic uint64_t n_noticed[3]; /* n[] as of the last notice */
};

/* Count <n> events of kind <kind> (< 3). */
void sr_notice_rate_count(struct sr_notice_rate *r, size_t kind, uint64_t n);

/* True in the one caller that should log a notice now (at most once per <period_ms>, the
 * clock <now_ms> in ms), with <delta> what was counted since the last notice. */
bool sr_notice_rate_due(struct sr_notice_rate *r, uint64_t now_ms, uint64_t period_ms,
                        uint64_t delta[3]);

/* What the workers of one process share: owned by main, outlives every server. Nothing in
 * it is behind a lock all workers take: counts are atomics, the per-address tables have a
 * lock per shard, each worker writes the access log from its own batch (accesslog.h), and
 * the names are written only by main, between loads. */
struct sr_shared {
    size_t n_workers;
    /* Each worker's access-log batch, [n_workers], touched by that worker only. */
    struct sr_alog_buf *alogs;
    _Atomic bool is_logging; /* the current config logs: main sets it at load and reload */
    /* Open connections, all workers: [sniroute] max_connections. Every worker writes it
     * at every accept and close: on a line of its own, so that the fields every accept
     * reads (above, and the slots below) do not move between cores with it. */
    _Alignas(64) _Atomic size_t n_conns;
    _Alignas(64) struct sr_listener_count *lchunks[SR_LISTENER_CHUNKS];
    size_t n_lcounts; /* slots in use (main only) */
    struct sr_ip_shards per_ip; /* open connections per client address */
    struct sr_notice_rate refusals; /* by enum sr_metrics_limit */
    /* Accept stuck (out of descriptors or memory), all workers: [0] queued connections
     * closed unread, [1] listener pauses. */
    struct sr_notice_rate accept_stuck;
    /* Locks taken that every worker may take (the workers' mailbox, the inherited
     * sockets): none on the way of a connection; /metrics shows it. */
    _Atomic uint64_t n_process_locks;
    struct sr_metrics_names listener_names;
    struct sr_metrics_names upstream_names;
    struct sr_metrics_names rule_names; /* access rule labels (issue 15), for the denials */
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
     * the TCP connections' descriptors. */
    _Alignas(64) _Atomic size_t n_quic_flows; /* a line of its own, as n_conns */
    _Alignas(64) size_t quic_fd_budget;
    struct sr_ip_shards quic_per_ip;
    struct sr_notice_rate quic_refusals; /* over max_quic_flows, per IP, the budget */
    /* max_new_connections_per_ip: every listener's token buckets, process state (kept
     * across reloads, not across a binary upgrade), and the refusals for a notice: [0] TCP
     * connections, [1] QUIC flows. */
    struct sr_ratelimit rate;
    struct sr_notice_rate rate_refusals;
};

/* Where one connection is counted in the limits: filled by sr_shared_admit (or
 * sr_shared_count), given back by sr_shared_release. Zeroed: counted nowhere. */
struct sr_admission {
    struct sr_ipkey ipkey; /* the client address counted, when has_ipkey */
    uint32_t lslot;        /* the listener's slot (sr_shared_listener_slot); 0: not counted */
    bool is_counted;       /* counted in shared->n_conns (and maybe the two above) */
    bool has_ipkey;
};

/* Set up (0 or a UV_E* code) and free what <shared> holds. */
int sr_shared_init(struct sr_shared *shared, size_t n_workers);
void sr_shared_fini(struct sr_shared *shared);

/* The slot counting listener <name>'s open connections, made on first use and kept for
 * the process's life: 1 + its index, or 0 when the slots are all taken (the listener's
 * max_connections is then not enforced) . Main thread only, before the generation that
 * names it reaches a worker (sr_generation_prepare). */
uint32_t sr_shared_listener_slot(struct sr_shared *shared, const char *name);

/* Write one access-log line, whole, into worker <worker>'s batch (its thread only). */
void sr_shared_log(struct sr_shared *shared, size_t worker, const char *line, size_t len);

/* Admit a just-accepted connection on listener <lcfg> of <cfg>, counted in slot <lslot>
 * (0: none), from <peer> (zeroed if unknown), recording in <adm> what was counted: the
 * total and the listener's count go up by compare-and-swap only while under their limit,
 * so no more connections than a limit are ever admitted, however many workers accept at
 * once; the client address is counted under its shard's lock. Counts are released with
 * sr_shared_release whatever happens, and stay right across reloads that change the
 * limits. Behind proxy_protocol = accept the peer is the load balancer, so no client
 * address is counted yet (sr_shared_admit_client does it). Returns NULL if the connection
 * may proceed, or the name of the limit it is over with <*over> its kind, nothing left
 * counted: the caller counts it in its metrics and closes the connection at once; the
 * refusal is summarized in a notice at most once a second, for all workers. */
const char *sr_shared_admit(struct sr_shared *shared, struct sr_admission *adm,
                            const struct sr_config *cfg, const struct sr_listener_config *lcfg,
                            uint32_t lslot, const struct sockaddr *peer,
                            enum sr_metrics_limit *over);

/* proxy_protocol = accept: count the client a trusted PROXY header names against
 * max_connections_per_ip, once. Returns NULL, or the limit's name with <*over> its kind
 * (as sr_shared_admit). */
const char *sr_shared_admit_client(struct sr_shared *shared, struct sr_admission *adm,
                                   const struct sr_config *cfg, const struct sockaddr *client,
                                   enum sr_metrics_limit *over);

/* Count a connection that is open already (adopted in a binary upgrade) like
 * sr_shared_admit, its client address included, but never refuse it. */
void sr_shared_count(struct sr_shared *shared, struct sr_admission *adm, uint32_t lslot,
                     const struct sockaddr *peer);

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

/* max_new_connections_per_ip of listener <lcfg> of <cfg>, counted in slot <lslot>, for a
 * new connection (a new QUIC flow if <is_quic>) from <client>: true if it may begin (a
 * token taken from the bucket of that client and listener, under its shard's lock only);
 * false if the bucket is empty: the caller closes the connection (drops the datagram) at
 * once and counts it in its metrics; the refusal is summarized in a notice at most once a
 * second, for all workers. A listener without the limit, or a client of another family:
 * true, no lock taken. */
bool sr_shared_admit_rate(struct sr_shared *shared, const struct sr_config *cfg,
                          const struct sr_listener_config *lcfg, uint32_t lslot,
                          const struct sockaddr *client, bool is_quic);

/* Lock acquisitions so far: of locks every worker may take (<*process>), and of the
 * per-address shards (<*shard>), TCP and QUIC, max_new_connections_per_ip's included. Any
 * thread. */
void sr_shared_lock_counts(const struct sr_shared *shared, uint64_t *process, uint64_t *shard);

/* Take and give back <lock>, a lock every worker may take, counted in n_process_locks. */
void sr_shared_process_lock(struct sr_shared *shared, uv_mutex_t *lock);
void sr_shared_process_unlock(uv_mutex_t *lock);

/* Worker <worker>'s access-log batch: start it on <loop> writing to <file>, switch it to
 * another file (reload), write it out (drain), stop it (the server has stopped). */
int sr_shared_log_start(struct sr_shared *shared, size_t worker, uv_loop_t *loop,
                        struct sr_alog_file *file);
void sr_shared_log_switch(struct sr_shared *shared, size_t worker, struct sr_alog_file *file);
void sr_shared_log_flush(struct sr_shared *shared, size_t worker);
void sr_shared_log_stop(struct sr_shared *shared, size_t worker);

#endif
