/* SPDX-License-Identifier: MIT */
/* Metrics: per-worker counters that cost one array increment on the hot path, and their
 * Prometheus text exposition (format 0.0.4) summed over all workers. No libuv, no locks, no
 * string handling on the hot path: events are counted by small integer ids (listener,
 * upstream, outcome, ...) and names are joined to ids only when a scrape formats them.
 *
 * Threads. Each worker owns one struct sr_metrics and is its only writer. A scrape may run on
 * any thread and reads every worker's counters while they change: counters are _Atomic
 * uint64_t written with a relaxed load plus a relaxed store (one plain add on x86-64 and
 * arm64, no lock prefix) and read with relaxed loads, so a scrape sees each counter whole,
 * never torn, though not all counters at the same instant.
 *
 * Files: metrics.c sets up the rows, the name tables and the words for ids; metrics_text.c
 * formats the exposition. */
#ifndef SR_METRICS_H
#define SR_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sniroute/wire/hello.h"
#include "sniroute/wire/quic.h"
#include "sniroute/config/route.h"

/* How a connection ended: the access log's outcome, as an id. Keep in step with the README's
 * list; sr_metrics_outcome_parse() maps the log's strings here. */
enum sr_metrics_outcome {
    SR_METRICS_OUTCOME_OK = 0,
    SR_METRICS_OUTCOME_NO_ROUTE,
    SR_METRICS_OUTCOME_NO_SNI,
    SR_METRICS_OUTCOME_NOT_TLS,
    SR_METRICS_OUTCOME_MALFORMED,
    SR_METRICS_OUTCOME_TOO_LARGE,
    SR_METRICS_OUTCOME_INCOMPLETE,
    SR_METRICS_OUTCOME_HELLO_TIMEOUT,
    SR_METRICS_OUTCOME_RESOLVE_FAILED,
    SR_METRICS_OUTCOME_CONNECT_FAILED,
    SR_METRICS_OUTCOME_CONNECT_TIMEOUT,
    SR_METRICS_OUTCOME_IDLE_TIMEOUT,
    SR_METRICS_OUTCOME_CLIENT_RESET,
    SR_METRICS_OUTCOME_BACKEND_RESET,
    SR_METRICS_OUTCOME_UNTRUSTED_PROXY,
    SR_METRICS_OUTCOME_PROXY_INVALID,
    SR_METRICS_OUTCOME_NOT_HTTP,
    SR_METRICS_OUTCOME_HOST_CHANGED,
    SR_METRICS_OUTCOME_OVER_IP_LIMIT, /* behind a load balancer: refused once the PROXY
                                         header named a client over max_connections_per_ip */
    SR_METRICS_OUTCOME_OVER_RATE, /* behind a load balancer: refused once the PROXY header
                                     named a client over max_new_connections_per_ip */
    SR_METRICS_OUTCOME_DENIED,        /* refused by an allow or deny rule (issue 15) */
    SR_METRICS_OUTCOME_DRAINED,
    SR_METRICS_OUTCOME_HANDED_OVER, /* to the new process of a binary upgrade (metrics only) */
    SR_METRICS_OUTCOME_ERROR,
    SR_METRICS_N_OUTCOMES
};

/* How reading the ClientHello ended: exactly one per accepted connection that got that far.
 * NOT_TLS and MALFORMED carry the parser's reason; the others count under reason "none". */
enum sr_metrics_hello {
    SR_METRICS_HELLO_FOUND = 0,    /* sr_hello_parse: FOUND */
    SR_METRICS_HELLO_NO_SNI,       /* sr_hello_parse: NO_SNI */
    SR_METRICS_HELLO_NOT_TLS,      /* sr_hello_parse: NOT_TLS (+ reason) */
    SR_METRICS_HELLO_MALFORMED,    /* sr_hello_parse: MALFORMED (+ reason) */
    SR_METRICS_HELLO_TOO_LARGE,    /* would not fit max_hello_size */
    SR_METRICS_HELLO_INCOMPLETE,   /* the client sent FIN first */
    SR_METRICS_HELLO_TIMEOUT,      /* hello_timeout ran out */
    SR_METRICS_HELLO_CLIENT_RESET, /* the client reset the connection first */
    SR_METRICS_HELLO_ERROR,        /* our side failed (out of memory) */
    SR_METRICS_N_HELLO
};

/* Reasons are enum sr_hello_reason values. hello.h has no count of them: this one must follow
 * its last value. A larger reason is counted under "other". */
#define SR_METRICS_N_HELLO_REASONS (SR_HELLO_REASON_SUPPORTED_VERSIONS + 1)

/* Route kinds are enum sr_route_kind values (MISS is labelled "none", as in the access log). */
#define SR_METRICS_N_ROUTE_KINDS (SR_ROUTE_DEFAULT + 1)

/* Why a connect to an upstream failed, coarsely: label values must stay few. */
enum sr_metrics_connect_error {
    SR_METRICS_CONNECT_REFUSED = 0, /* ECONNREFUSED */
    SR_METRICS_CONNECT_TIMEOUT,     /* connect_timeout ran out, or ETIMEDOUT */
    SR_METRICS_CONNECT_UNREACHABLE, /* EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL */
    SR_METRICS_CONNECT_RESET,       /* ECONNRESET, EPIPE */
    SR_METRICS_CONNECT_RESOLVE,     /* the name did not resolve (any UV_EAI_*) */
    SR_METRICS_CONNECT_OTHER,
    SR_METRICS_N_CONNECT_ERRORS
};

/* Connections refused by a limit right after accept(2) (issue 5 part 5). */
enum sr_metrics_limit {
    SR_METRICS_LIMIT_GLOBAL = 0, /* [sniroute] max_connections */
    SR_METRICS_LIMIT_LISTENER,   /* [listener] max_connections */
    SR_METRICS_LIMIT_PER_IP,     /* max_connections_per_ip */
    SR_METRICS_LIMIT_RATE,       /* [listener] max_new_connections_per_ip */
    SR_METRICS_N_LIMITS
};

/* QUIC (issue 13): why a datagram from a client was not relayed. */
enum sr_metrics_quic_drop {
    SR_METRICS_QDROP_NOT_QUIC = 0,     /* no flow, and it starts none: not a v1/v2 long header
                                          (a short header from an unknown client, garbage) */
    SR_METRICS_QDROP_MALFORMED,        /* breaks a rule of the Initial packets (see the Initial
                                          results for which) */
    SR_METRICS_QDROP_REFUSED,          /* its client's flow was refused a moment ago (no route,
                                          no SNI, ...): retransmits cost nothing */
    SR_METRICS_QDROP_MAX_FLOWS,        /* a new flow over max_quic_flows */
    SR_METRICS_QDROP_MAX_FLOWS_PER_IP, /* a new flow over max_quic_flows_per_ip */
    SR_METRICS_QDROP_DESCRIPTORS,      /* a new flow with no descriptor to spare */
    SR_METRICS_QDROP_HOLD,             /* an unrouted flow's held datagrams are at their limit */
    SR_METRICS_QDROP_DRAINING,         /* a new flow while the process drains */
    SR_METRICS_QDROP_SEND_FAILED,      /* the send failed (a full socket buffer, no route) */
    SR_METRICS_QDROP_RATE,             /* a new flow over max_new_connections_per_ip */
    SR_METRICS_N_QUIC_DROPS
};

/* Reasons of the QUIC Initial reader are enum sr_quic_reason values, as for hellos. */
#define SR_METRICS_N_QUIC_STATUS  (SR_QUIC_ERROR + 1)
#define SR_METRICS_N_QUIC_REASONS (SR_QUIC_REASON_LIBCRYPTO + 1)

/* Upstream connect latency buckets, upper bounds in microseconds: 0.5 ms to 5 s, roughly
 * 1-2.5-5 per decade. Loopback connects land in the first, a far region in the middle, and
 * anything over 5 s has hit connect_timeout's default. Changing them changes the bucket
 * labels; the formatter prints each bound in seconds. */
#define SR_METRICS_LATENCY_BOUNDS_US                                                               \
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000
#define SR_METRICS_N_LATENCY_BUCKETS 14 /* the bounds above plus +Inf */

/* Access rules (issue 15): distinct rule labels ("listener:https:deny:203.0.113.0/24") the
 * denial counter has rows for, over the life of the process; any further label counts under
 * "_other". 8 KiB a worker. */
#define SR_METRICS_RULES_MAX 1024

/* The counters of one listener id, in one row. */
enum {
    SR__ML_ACCEPTED = 0,
    SR__ML_BYTES_IN,
    SR__ML_BYTES_OUT,
    SR__ML_CLOSED,                                          /* + outcome */
    SR__ML_ROUTE = SR__ML_CLOSED + SR_METRICS_N_OUTCOMES,   /* + route kind */
    SR__ML_LIMIT = SR__ML_ROUTE + SR_METRICS_N_ROUTE_KINDS, /* + limit */
    SR__ML_ADOPTED = SR__ML_LIMIT + SR_METRICS_N_LIMITS,    /* taken over in an upgrade */
    /* QUIC flows: started, closed (+ outcome), datagrams relayed each way, dropped (+ why) */
    SR__ML_QFLOWS,
    SR__ML_QCLOSED,
    SR__ML_QDGRAMS_IN = SR__ML_QCLOSED + SR_METRICS_N_OUTCOMES,
    SR__ML_QDGRAMS_OUT,
    SR__ML_QDROPPED,
    SR__ML_N = SR__ML_QDROPPED + SR_METRICS_N_QUIC_DROPS
};

/* The counters of one upstream id, in one row. */
enum {
    SR__MU_CONNECTIONS = 0,
    SR__MU_BYTES_IN,
    SR__MU_BYTES_OUT,
    SR__MU_FAILURES, /* + connect error */
    SR__MU_LATENCY_SUM_US = SR__MU_FAILURES + SR_METRICS_N_CONNECT_ERRORS,
    SR__MU_LATENCY_BUCKET, /* + bucket, not cumulative */
    SR__MU_N = SR__MU_LATENCY_BUCKET + SR_METRICS_N_LATENCY_BUCKETS
};

/* One worker's counters. Ids index rows: listener ids 0 .. n_listeners - 2 and upstream ids
 * 0 .. n_upstreams - 2 are named by the scrape's name tables; the last row of each collects
 * every id beyond (labelled "_other"), so a bad or late id is counted, never out of bounds.
 * Fields are read-only outside metrics.c and the inline functions below. */
struct sr_metrics {
    size_t n_listeners;         /* rows, the "_other" row included */
    size_t n_upstreams;         /* rows, the "_other" row included */
    _Atomic uint64_t *listener; /* [n_listeners][SR__ML_N] */
    _Atomic uint64_t *upstream; /* [n_upstreams][SR__MU_N] */
    _Atomic uint64_t hello[SR_METRICS_N_HELLO][SR_METRICS_N_HELLO_REASONS + 1]; /* + "other" */
    _Atomic uint64_t hello_ech; /* complete hellos that carried Encrypted Client Hello */
    /* QUIC: what the Initial reader said of each datagram it read, by status and reason. */
    _Atomic uint64_t quic_initial[SR_METRICS_N_QUIC_STATUS][SR_METRICS_N_QUIC_REASONS + 1];
    /* Connections, request heads and QUIC flows refused by an access rule, by rule id
     * (names: sr_metrics_info.rules); the last row is "_other". */
    _Atomic uint64_t denied[SR_METRICS_RULES_MAX + 1];
};

/* Names for ids: listener section names, upstream addresses as configured. Append-only, so
 * an id keeps its meaning for the life of the process and counters stay monotonic across
 * reloads (Prometheus requires it): a reload interns each name of the new config and uses the
 * ids it gets back; a listener that is gone keeps its counts. At most <cap> names; any further
 * name gets id <cap>, the "_other" row. */
struct sr_metrics_names {
    char **names;
    size_t n;
    size_t cap;
};

/* Process-wide values and the name tables, for one scrape. Owned by the caller; read only
 * during sr_metrics_format(). Update them on the thread that scrapes (or pass a copy). */
struct sr_metrics_info {
    const char *version;        /* sniroute_build_info{version} */
    uint64_t start_time_ms;     /* wall clock at process start, ms since the epoch */
    uint64_t config_generation; /* 1 for the config loaded at start, +1 per good reload */
    uint64_t reloads_ok;
    uint64_t reloads_failed;
    /* Lock acquisitions: of locks every worker may take (none on the way of a connection),
     * and of the shards of the per-address tables. */
    uint64_t process_locks;
    uint64_t shard_locks;
    /* max_new_connections_per_ip: buckets in the table now, and dropped for room so far. */
    uint64_t rate_entries;
    uint64_t rate_evictions;
    const struct sr_metrics_names *listeners;
    const struct sr_metrics_names *upstreams;
    const struct sr_metrics_names *rules; /* access rule labels; NULL: none */
    const char *relay_path; /* sniroute_relay_path{path}: "sockmap" or "splice"; NULL: none */
    uint64_t n_kernel_relayed; /* sniroute_kernel_relayed_total */
    uint64_t n_kernel_paused;  /* sniroute_kernel_relay_pauses_total */
    uint64_t n_kernel_split;   /* sniroute_kernel_relay_splits_total */
};

/* Set up <m> with rows for listener ids below <n_listener_ids> and upstream ids below
 * <n_upstream_ids>, plus one "_other" row each; all counters zero. Call it before the worker
 * starts; rows never move after, which is what lets a scrape read them from another thread.
 * Returns 0, or -ENOMEM with <m> zeroed (sr_metrics_fini() is then still safe). */
int
sr_metrics_init(struct sr_metrics *m, size_t n_listener_ids, size_t n_upstream_ids);

/* Free <m>'s rows and zero it. No scrape may be reading it. */
void
sr_metrics_fini(struct sr_metrics *m);

/* Names: init with room for <cap> names (returns 0, or -ENOMEM); intern returns the id of
 * <name> (NUL-terminated, copied), adding it if new; "_other" (<cap>) when the table is full
 * or out of memory. Lookup is a linear scan: it runs per name per reload, never per
 * connection. Not thread-safe: intern on the thread that scrapes. */
int
sr_metrics_names_init(struct sr_metrics_names *names, size_t cap);
uint32_t
sr_metrics_names_intern(struct sr_metrics_names *names, const char *name);
void
sr_metrics_names_fini(struct sr_metrics_names *names);

/* Format the exposition of all <n_workers> registries in <workers> (each counter summed
 * over them) with <info>, into a new heap buffer: *<out> (NUL-terminated, to be free()d by
 * the caller) of *<len> bytes, NUL excluded. Every listener named in info->listeners gets
 * every series, zeros included; an upstream gets its series once anything was counted for
 * it; an "_other" row only when it is not zero. Returns 0, or -ENOMEM (*<out> NULL). */
int
sr_metrics_format(char **out, size_t *len, const struct sr_metrics *const *workers,
                  size_t n_workers, const struct sr_metrics_info *info);

const char *
sr_metrics_quic_reason_name(enum sr_quic_reason r);
const char *
sr_metrics_quic_drop_name(enum sr_metrics_quic_drop d);

/* The log's outcome string ("ok", "no_route", ...) as an id; unknown or NULL gives ERROR. */
enum sr_metrics_outcome
sr_metrics_outcome_parse(const char *outcome);

/* A failed connect's code as an error class: <err> is a negated errno (libuv's UV_E* codes
 * on Unix); UV_ECANCELED and friends are OTHER. Resolver failures: pass RESOLVE directly. */
enum sr_metrics_connect_error
sr_metrics_connect_error_from_errno(int err);

/* Label values, for tests and for logs that want the same words. */
const char *
sr_metrics_outcome_name(enum sr_metrics_outcome o);
const char *
sr_metrics_hello_name(enum sr_metrics_hello h);
const char *
sr_metrics_hello_reason_name(enum sr_hello_reason r);

/* The same words as arrays indexed by id, for the text exposition (metrics_text.c), which
 * passes them whole; elsewhere use the lookups above, which check the bounds. */
extern const char *const sr__metrics_outcome_names[SR_METRICS_N_OUTCOMES];
extern const char *const sr__metrics_hello_names[SR_METRICS_N_HELLO];
extern const char *const sr__metrics_quic_drop_names[SR_METRICS_N_QUIC_DROPS];

/* --- The hot path ----------------------------------------------------------------------
 * Each call is an index computation, one compare to fold an unknown id into "_other", and
 * one relaxed add. Only the worker that owns <m> may call them. */

static inline void
sr__metrics_add(_Atomic uint64_t *c, uint64_t n)
{
    /* One writer per counter: load and store need not be one atomic step, which keeps the
     * lock prefix (and its ~20 cycles) off the hot path. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline _Atomic uint64_t *
sr__metrics_lrow(struct sr_metrics *m, uint32_t listener)
{
    size_t row = listener < m->n_listeners ? listener : m->n_listeners - 1;

    return &m->listener[row * SR__ML_N];
}

static inline _Atomic uint64_t *
sr__metrics_urow(struct sr_metrics *m, uint32_t upstream)
{
    size_t row = upstream < m->n_upstreams ? upstream : m->n_upstreams - 1;

    return &m->upstream[row * SR__MU_N];
}

/* A connection was accepted on <listener> (it now counts as active). */
static inline void
sr_metrics_conn_accepted(struct sr_metrics *m, uint32_t listener)
{
    sr__metrics_add(&sr__metrics_lrow(m, listener)[SR__ML_ACCEPTED], 1);
}

/* An open connection was taken over from the old process of a binary upgrade and counts
 * under <listener> (it now counts as active, as if accepted). */
static inline void
sr_metrics_conn_adopted(struct sr_metrics *m, uint32_t listener)
{
    sr__metrics_add(&sr__metrics_lrow(m, listener)[SR__ML_ADOPTED], 1);
}

/* A connection accepted (or adopted) on <listener> closed with <outcome>: call exactly once
 * per such connection (active = accepted + adopted - closed, so a missed call leaves it
 * active forever). */
static inline void
sr_metrics_conn_closed(struct sr_metrics *m, uint32_t listener, enum sr_metrics_outcome outcome)
{
    unsigned o =
        (unsigned)outcome < SR_METRICS_N_OUTCOMES ? (unsigned)outcome : SR_METRICS_OUTCOME_ERROR;

    sr__metrics_add(&sr__metrics_lrow(m, listener)[SR__ML_CLOSED + o], 1);
}

/* A connection refused by a limit before it became one: counted here only, not as accepted
 * or closed. */
static inline void
sr_metrics_limit_rejected(struct sr_metrics *m, uint32_t listener, enum sr_metrics_limit limit)
{
    unsigned l = (unsigned)limit < SR_METRICS_N_LIMITS ? (unsigned)limit : 0;

    sr__metrics_add(&sr__metrics_lrow(m, listener)[SR__ML_LIMIT + l], 1);
}

/* How reading the hello ended; <reason> matters for NOT_TLS and MALFORMED only. */
static inline void
sr_metrics_hello(struct sr_metrics *m, enum sr_metrics_hello result, enum sr_hello_reason reason)
{
    unsigned h = (unsigned)result < SR_METRICS_N_HELLO ? (unsigned)result : SR_METRICS_HELLO_ERROR;
    unsigned r = (unsigned)reason < SR_METRICS_N_HELLO_REASONS ? (unsigned)reason
                                                               : SR_METRICS_N_HELLO_REASONS;

    if (h != SR_METRICS_HELLO_NOT_TLS && h != SR_METRICS_HELLO_MALFORMED) {
        r = SR_HELLO_REASON_NONE;
    }
    sr__metrics_add(&m->hello[h][r], 1);
}

/* A complete hello carried Encrypted Client Hello (routed by its outer name). */
static inline void
sr_metrics_hello_ech(struct sr_metrics *m)
{
    sr__metrics_add(&m->hello_ech, 1);
}

/* The route lookup on <listener> gave <kind> (an enum sr_route_kind; MISS counts as "none"). */
static inline void
sr_metrics_route(struct sr_metrics *m, uint32_t listener, enum sr_route_kind kind)
{
    unsigned k = (unsigned)kind < SR_METRICS_N_ROUTE_KINDS ? (unsigned)kind : SR_ROUTE_MISS;

    sr__metrics_add(&sr__metrics_lrow(m, listener)[SR__ML_ROUTE + k], 1);
}

/* A connection was routed to <upstream> (before connecting). */
static inline void
sr_metrics_upstream_selected(struct sr_metrics *m, uint32_t upstream)
{
    sr__metrics_add(&sr__metrics_urow(m, upstream)[SR__MU_CONNECTIONS], 1);
}

/* A connect to <upstream> succeeded <latency_us> microseconds after it started (one
 * address's attempt; uv_hrtime() differences divided by 1000). */
static inline void
sr_metrics_connect_ok(struct sr_metrics *m, uint32_t upstream, uint64_t latency_us)
{
    static const uint64_t bounds[] = {SR_METRICS_LATENCY_BOUNDS_US};
    _Atomic uint64_t *row = sr__metrics_urow(m, upstream);
    size_t b = 0;

    while (b < sizeof(bounds) / sizeof(bounds[0]) && latency_us > bounds[b]) {
        b++;
    }
    sr__metrics_add(&row[SR__MU_LATENCY_BUCKET + b], 1);
    sr__metrics_add(&row[SR__MU_LATENCY_SUM_US], latency_us);
}

/* A connect to <upstream> failed with <error> (one per failed attempt: a name with three
 * addresses that all refuse counts three). */
static inline void
sr_metrics_connect_failed(struct sr_metrics *m, uint32_t upstream,
                          enum sr_metrics_connect_error error)
{
    unsigned e =
        (unsigned)error < SR_METRICS_N_CONNECT_ERRORS ? (unsigned)error : SR_METRICS_CONNECT_OTHER;

    sr__metrics_add(&sr__metrics_urow(m, upstream)[SR__MU_FAILURES + e], 1);
}

/* Add bytes relayed by a connection on <listener>: <in> from the client, <out> to the client
 * (the access log's bytes_in and bytes_out). Deltas, so it may be called once at close with
 * the totals or along the way; <upstream> is UINT32_MAX when there was none (then only the
 * listener counts them). */
static inline void
sr_metrics_bytes(struct sr_metrics *m, uint32_t listener, uint32_t upstream, uint64_t in,
                 uint64_t out)
{
    _Atomic uint64_t *lrow = sr__metrics_lrow(m, listener);
    _Atomic uint64_t *urow;

    sr__metrics_add(&lrow[SR__ML_BYTES_IN], in);
    sr__metrics_add(&lrow[SR__ML_BYTES_OUT], out);
    if (upstream != UINT32_MAX) {
        urow = sr__metrics_urow(m, upstream);
        sr__metrics_add(&urow[SR__MU_BYTES_IN], in);
        sr__metrics_add(&urow[SR__MU_BYTES_OUT], out);
    }
}

/* A connection, request head or QUIC flow was refused by the access rule with id <rule>
 * (sr_metrics_names of the rule labels). */
static inline void
sr_metrics_denied(struct sr_metrics *m, uint32_t rule)
{
    sr__metrics_add(&m->denied[rule < SR_METRICS_RULES_MAX ? rule : SR_METRICS_RULES_MAX], 1);
}

/* --- QUIC flows (issue 13) ------------------------------------------------------------- */

/* A flow began on <listener> (a new client address and port whose first datagram was a good
 * Initial); it now counts as active until sr_metrics_quic_closed(). */
static inline void
sr_metrics_quic_started(struct sr_metrics *m, uint32_t listener)
{
    sr__metrics_add(&sr__metrics_lrow(m, listener)[SR__ML_QFLOWS], 1);
}

/* A flow of <listener> ended with <outcome>: exactly once per started flow. */
static inline void
sr_metrics_quic_closed(struct sr_metrics *m, uint32_t listener, enum sr_metrics_outcome outcome)
{
    unsigned o =
        (unsigned)outcome < SR_METRICS_N_OUTCOMES ? (unsigned)outcome : SR_METRICS_OUTCOME_ERROR;

    sr__metrics_add(&sr__metrics_lrow(m, listener)[SR__ML_QCLOSED + o], 1);
}

/* Datagrams relayed for flows of <listener>: <in> from clients to upstreams, <out> from
 * upstreams to clients. Their bytes go to sr_metrics_bytes(), like a connection's. */
static inline void
sr_metrics_quic_datagrams(struct sr_metrics *m, uint32_t listener, uint64_t in, uint64_t out)
{
    _Atomic uint64_t *row = sr__metrics_lrow(m, listener);

    sr__metrics_add(&row[SR__ML_QDGRAMS_IN], in);
    sr__metrics_add(&row[SR__ML_QDGRAMS_OUT], out);
}

/* A datagram from a client of <listener> was dropped, for <why>. */
static inline void
sr_metrics_quic_dropped(struct sr_metrics *m, uint32_t listener, enum sr_metrics_quic_drop why)
{
    unsigned d = (unsigned)why < SR_METRICS_N_QUIC_DROPS ? (unsigned)why : 0;

    sr__metrics_add(&sr__metrics_lrow(m, listener)[SR__ML_QDROPPED + d], 1);
}

/* The Initial reader read a datagram and said <status> (<reason> for NOT_QUIC, MALFORMED and
 * ERROR; anything else counts under "none"). */
static inline void
sr_metrics_quic_initial(struct sr_metrics *m, enum sr_quic_status status,
                        enum sr_quic_reason reason)
{
    unsigned s = (unsigned)status < SR_METRICS_N_QUIC_STATUS ? (unsigned)status : SR_QUIC_ERROR;
    unsigned r =
        (unsigned)reason < SR_METRICS_N_QUIC_REASONS ? (unsigned)reason : SR_METRICS_N_QUIC_REASONS;

    if (s != SR_QUIC_NOT_QUIC && s != SR_QUIC_MALFORMED && s != SR_QUIC_ERROR) {
        r = SR_QUIC_REASON_NONE;
    }
    sr__metrics_add(&m->quic_initial[s][r], 1);
}

#endif
