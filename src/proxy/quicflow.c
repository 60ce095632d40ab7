/* SPDX-License-Identifier: MIT */
/* QUIC flows (quicflow.h): the UDP listening sockets of protocol = quic listeners, a flow
 * per client address and port, the ClientHello from its Initial packets, the route, a
 * connected socket per flow, and the relay both ways. Not here: the Initial reader
 * (wire/quic.c), the routing decision (config/decide.c), the socket calls (udp.c). */
#include "sniroute/proxy/quicflow.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sniroute/config/decide.h"
#include "sniroute/config/pool.h"
#include "sniroute/core/deadline.h"
#include "sniroute/core/flowtab.h"
#include "sniroute/core/ipcount.h"
#include "sniroute/core/reactor.h"
#include "sniroute/core/upgrade.h"
#include "sniroute/observe/log.h"
#include "sniroute/observe/metrics.h"
#include "sniroute/core/generation.h"
#include "sniroute/core/shared.h"
#include "sniroute/core/upgrade_msg.h"
#include "sniroute/proxy/udp.h"
#include "sniroute/wire/quic.h"

/* Batches read from one socket per wakeup: a listening socket gets a few (it serves every
 * flow of the worker), a flow's socket fewer; level-triggered epoll comes back for the
 * rest once the others have had their turn. */
#define SR_QUIC_LISTEN_ROUNDS 8
#define SR_QUIC_FLOW_ROUNDS   2

/* One bound UDP socket of a QUIC listener. Kept across reloads while its address is
 * configured; when it is not any more, it is "retired": it takes no new flow and closes once
 * the flows keyed on it have ended (a flow's client sends to it and hears from it). */
struct udp_sock {
    struct sr_watch watch; /* first: the reactor hands this back */
    struct sr_quic *q;
    struct udp_sock *next;
    struct sr_addr addr;                   /* as configured: the key across reloads */
    const struct sr_listener_config *lcfg; /* in q->gen (or the generation being prepared) */
    uint32_t lid;                          /* its metrics row */
    uint32_t id;                           /* in flow keys */
    size_t n_flows;                        /* flows keyed on it, refused ones included */
    bool has_pktinfo;                      /* bound to a wildcard: replies say their source */
    bool is_kept;                          /* prepare/commit bookkeeping */
    bool is_new;                           /* bound by the prepare in progress */
    bool is_retired;
    char addr_text[SR_SOCKADDR_TEXT_MAX];
};

enum qflow_state {
    QF_HELLO,     /* reading the ClientHello from Initial packets; datagrams held */
    QF_RESOLVING, /* routed to a host name being resolved; datagrams held */
    QF_RELAYING,  /* connected: datagrams both ways */
    QF_REFUSED,   /* ended without a working upstream; kept so retransmits cost nothing */
    QF_CLOSED,    /* out of the table; freed after the batch (or the resolver's callback) */
};

/* What only an unrouted flow needs; freed once it relays. */
struct qflow_setup {
    uint8_t *held; /* datagrams as received: 2-byte length (host order), bytes; repeated */
    size_t held_len;
    unsigned n_held;
    enum sr_quic_reason last_bad; /* of the last datagram refused as MALFORMED */
    struct qflow *older;          /* q's list of flows in QF_HELLO, oldest first */
    struct qflow *newer;
    uv_getaddrinfo_t resolve_req;
    struct addrinfo *addrs;
};

struct qflow {
    struct sr_flownode node; /* the key: socket id, client address and port */
    struct sr_watch backend; /* the connected socket to the upstream; fd -1 until then */
    struct sr_deadline deadline;
    struct sr_quic *q;
    struct qflow *prev; /* q->flows: every flow in the table */
    struct qflow *next;
    struct qflow *next_dead;
    struct udp_sock *sock;
    /* The config the flow began under (a reference; dropped when it is refused), its
     * [listener] section, and where it goes. */
    struct sr_generation *gen;
    const struct sr_listener_config *lcfg;
    const struct sr_upstream *upstream;
    const struct sr_addr *target; /* the route's HOST:PORT, or a server of its pool */
    struct sr_pool *pool;         /* the worker's copy, or NULL */
    size_t pool_index;
    struct qflow_setup *setup; /* until relaying */
    char *sni;                 /* normalized, for the log (heap); NULL: none */
    const char *alpn_route;    /* the ALPN condition of the route (config text), or NULL */
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
    bool has_answer; /* the upstream has sent a datagram */
};

struct sr_quic {
    struct sr_quic_host host;
    struct sr_generation *gen; /* new flows begin under it; the server holds the reference */
    struct udp_sock *socks;
    struct udp_sock *dead_socks; /* closed, freed after the batch */
    uint32_t next_sock_id;
    struct sr_flowtab table;
    struct qflow *flows; /* every flow in the table */
    size_t n_flows;      /* of those, not refused */
    size_t n_refused;
    size_t n_alloc; /* flows allocated and not yet freed */
    struct qflow *unrouted_oldest;
    struct qflow *unrouted_newest;
    size_t n_unrouted;
    struct qflow *dead;
    struct sr_deadline_heap deadlines;
    uv_timer_t timer;
    uint64_t timer_due; /* UINT64_MAX: not armed */
    uv_idle_t reaper;
    bool has_handles;
    bool is_closed;
    bool is_draining;
    uint64_t drain_due_ms;
    /* Client datagrams for one flow, gathered from a batch and sent in one sendmmsg. */
    struct qflow *run_flow;
    struct iovec run[SR_UDP_BATCH];
    size_t n_run;
    struct sr_udp_batch batch;
    struct sr_quic_initial initial; /* scratch: each read starts from a flow's datagram 0 */
    struct sr_quic_ctx crypto;
};

static void flow_end(struct qflow *f, const char *outcome);
static void flow_deadline(struct qflow *f, uint64_t due_ms);
static void quic_reap_later(struct sr_quic *q);

static uint64_t
now_ms(const struct sr_quic *q)
{
    return uv_now(q->host.loop);
}

static int64_t
wall_ms(void)
{
    uv_timeval64_t tv;

    if (uv_gettimeofday(&tv) != 0) {
        return 0;
    }
    return tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void
dropped(struct sr_quic *q, uint32_t lid, enum sr_metrics_quic_drop why)
{
    sr_metrics_quic_dropped(q->host.metrics, lid, why);
}

/* --- Process-wide limits ----------------------------------------------------------------- */

/* Count <f> against the flow limits of every worker; false with <*why> the limit it is
 * over. */
static bool
limits_admit(struct sr_quic *q, struct qflow *f, enum sr_metrics_quic_drop *why)
{
    if (!sr_shared_admit_flow(q->host.shared, &q->gen->cfg, &f->ipkey, &f->has_ipkey, why)) {
        return false;
    }
    f->is_counted = true;
    return true;
}

static void
limits_release(struct qflow *f)
{
    if (!f->is_counted) {
        return;
    }
    f->is_counted = false;
    sr_shared_release_flow(f->q->host.shared, &f->ipkey, f->has_ipkey);
    f->has_ipkey = false;
}

/* --- Deadlines and the reaper ------------------------------------------------------------- */

static void on_timer(uv_timer_t *timer);

static void
timer_rearm(struct sr_quic *q)
{
    struct sr_deadline *first = sr_deadline_first(&q->deadlines);
    uint64_t now;

    if (q->is_closed) {
        return;
    }
    if (first == NULL) {
        if (q->timer_due != UINT64_MAX) {
            uv_timer_stop(&q->timer);
            q->timer_due = UINT64_MAX;
        }
        return;
    }
    if (first->due_ms == q->timer_due) {
        return;
    }
    now = now_ms(q);
    q->timer_due = first->due_ms;
    uv_timer_start(&q->timer, on_timer, first->due_ms > now ? first->due_ms - now : 0, 0);
}

static void
flow_deadline(struct qflow *f, uint64_t due_ms)
{
    struct sr_quic *q = f->q;

    if (q->is_draining && due_ms > q->drain_due_ms) {
        due_ms = q->drain_due_ms;
    }
    if (sr_deadline_set(&q->deadlines, &f->deadline, due_ms) != 0) {
        sr_log_notice("out of memory for a timeout");
        return;
    }
    timer_rearm(q);
}

static void
flow_deadline_clear(struct qflow *f)
{
    if (f->deadline.index != SR_DEADLINE_NONE) {
        sr_deadline_clear(&f->q->deadlines, &f->deadline);
        timer_rearm(f->q);
    }
}

static void flow_on_deadline(struct qflow *f);

static void
on_timer(uv_timer_t *timer)
{
    struct sr_quic *q = timer->data;
    uint64_t now = now_ms(q);
    struct sr_deadline *d;

    q->timer_due = UINT64_MAX;
    while ((d = sr_deadline_first(&q->deadlines)) != NULL && d->due_ms <= now) {
        sr_deadline_clear(&q->deadlines, d);
        flow_on_deadline((struct qflow *)((char *)d - offsetof(struct qflow, deadline)));
    }
    timer_rearm(q);
}

static void
flow_free(struct qflow *f)
{
    struct sr_quic *q = f->q;

    if (f->setup != NULL) {
        if (f->setup->addrs != NULL) {
            uv_freeaddrinfo(f->setup->addrs);
        }
        free(f->setup->held);
        free(f->setup);
    }
    free(f->sni);
    sr_generation_unref(f->gen);
    free(f);
    q->n_alloc--;
}

static void
on_reap(uv_idle_t *idle)
{
    struct sr_quic *q = idle->data;
    struct qflow *f;
    struct udp_sock *s;

    uv_idle_stop(idle);
    while ((f = q->dead) != NULL) {
        q->dead = f->next_dead;
        flow_free(f);
    }
    while ((s = q->dead_socks) != NULL) {
        q->dead_socks = s->next;
        free(s);
    }
    if (q->is_draining && sr_quic_is_stopped(q) && q->host.on_idle != NULL) {
        q->host.on_idle(q->host.data);
    }
}

static void
quic_reap_later(struct sr_quic *q)
{
    if (!q->is_closed) {
        uv_idle_start(&q->reaper, on_reap);
    }
}

/* --- Sockets ------------------------------------------------------------------------------ */

static void on_sock_ready(struct sr_watch *watch, uint32_t events);

/* Close <s> now (its descriptor, so the address is free) and free it after the batch. */
static void
sock_close(struct udp_sock *s)
{
    struct sr_quic *q = s->q;
    struct udp_sock **link = &q->socks;

    while (*link != NULL && *link != s) {
        link = &(*link)->next;
    }
    if (*link == s) {
        *link = s->next;
    }
    sr_watch_clear(q->host.reactor, &s->watch);
    sr_watch_close(q->host.reactor, &s->watch);
    s->next = q->dead_socks;
    q->dead_socks = s;
    quic_reap_later(q);
}

/* Retired or draining, and its last flow gone: nobody needs it any more. */
static void
sock_maybe_close(struct udp_sock *s)
{
    if (s->n_flows == 0 && (s->is_retired || s->q->is_draining)) {
        sock_close(s);
    }
}

/* Bind a socket for address <addr> of listener <lc> (<lid> its metrics row). */
static struct udp_sock *
sock_open(struct sr_quic *q, const struct sr_listener_config *lc, uint32_t lid,
          const struct sr_addr *addr)
{
    struct udp_sock *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char want[SR_ADDR_HOST_MAX + 16];
    int fd = -1;
    int rc;

    if (s == NULL) {
        sr_log_notice("listener %s: out of memory", lc->name);
        return NULL;
    }
    memset(&ss, 0, sizeof(ss));
    rc = addr->kind == SR_ADDR_IPV6
             ? uv_ip6_addr(addr->host, addr->port, (struct sockaddr_in6 *)&ss)
             : uv_ip4_addr(addr->host, addr->port, (struct sockaddr_in *)&ss);
    if (rc == 0) {
        /* Binary upgrade: the old process's socket, its queued datagrams included. */
        fd = sr_inherited_take_type(q->host.shared->inherited, (const struct sockaddr *)&ss,
                                    SOCK_DGRAM, q->host.worker);
        fd = sr_udp_listen((const struct sockaddr *)&ss, q->host.is_reuseport, fd, &s->has_pktinfo);
        rc = fd < 0 ? fd : 0;
    }
    if (rc == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        rc = -errno;
    }
    if (rc == 0) {
        sr_watch_init(&s->watch, fd, on_sock_ready);
        rc = sr_watch_set(q->host.reactor, &s->watch, EPOLLIN);
    }
    if (rc != 0) {
        if (fd >= 0) {
            close(fd);
        }
        free(s);
        sr_addr_format(addr, want, sizeof(want));
        sr_log_notice("listener %s: cannot listen on %s (UDP): %s", lc->name, want,
                      uv_strerror(rc));
        return NULL;
    }
    s->q = q;
    s->addr = *addr;
    s->lcfg = lc;
    s->lid = lid;
    s->id = q->next_sock_id++;
    sr_addr_format_sockaddr((const struct sockaddr *)&ss, s->addr_text, sizeof(s->addr_text));
    sr_log_notice("listening on %s (listener %s)", s->addr_text, lc->name);
    return s;
}

static bool
is_same_addr(const struct sr_addr *a, const struct sr_addr *b)
{
    /* Port 0 means "any free port": such a socket is never the one asked for again. */
    return a->port != 0 && a->kind == b->kind && a->port == b->port &&
           strcmp(a->host, b->host) == 0;
}

int
sr_quic_prepare(struct sr_quic *q, struct sr_generation *gen)
{
    const struct sr_config *cfg = &gen->cfg;
    struct udp_sock *s;
    size_t i;
    size_t j;

    for (s = q->socks; s != NULL; s = s->next) {
        s->is_kept = false;
        s->is_new = false;
    }
    for (i = 0; i < cfg->n_listeners; i++) {
        const struct sr_listener_config *lc = &cfg->listeners[i];

        for (j = 0; lc->is_quic && j < lc->n_listen; j++) {
            for (s = q->socks; s != NULL; s = s->next) {
                if (!s->is_kept && is_same_addr(&s->addr, &lc->listen[j])) {
                    break;
                }
            }
            if (s != NULL) {
                s->is_kept = true;
                continue;
            }
            s = sock_open(q, lc, gen->listener_ids[i], &lc->listen[j]);
            if (s == NULL) {
                sr_quic_abort(q);
                return UV_EADDRINUSE;
            }
            s->is_kept = true;
            s->is_new = true;
            s->next = q->socks;
            q->socks = s;
        }
    }
    return 0;
}

void
sr_quic_abort(struct sr_quic *q)
{
    struct udp_sock *s;
    struct udp_sock *next;

    for (s = q->socks; s != NULL; s = next) {
        next = s->next;
        if (s->is_new) {
            sock_close(s);
        }
    }
}

void
sr_quic_commit(struct sr_quic *q, struct sr_generation *gen)
{
    const struct sr_config *cfg = &gen->cfg;
    struct udp_sock *s;
    struct udp_sock *next;
    size_t i;
    size_t j;

    q->gen = gen;
    for (s = q->socks; s != NULL; s = next) {
        next = s->next;
        s->is_new = false;
        if (!s->is_kept) {
            if (!s->is_retired) {
                sr_log_notice("no longer listening on %s (listener %s)%s", s->addr_text,
                              s->lcfg->name, s->n_flows > 0 ? "; its flows go on" : "");
            }
            s->is_retired = true;
            s->lcfg = NULL; /* of an older generation, which may go away */
            sock_maybe_close(s);
            continue;
        }
        if (s->is_retired) {
            sr_log_notice("listening on %s again", s->addr_text);
        }
        s->is_retired = false;
        for (i = 0; i < cfg->n_listeners; i++) {
            for (j = 0; cfg->listeners[i].is_quic && j < cfg->listeners[i].n_listen; j++) {
                if (is_same_addr(&s->addr, &cfg->listeners[i].listen[j])) {
                    s->lcfg = &cfg->listeners[i];
                    s->lid = gen->listener_ids[i];
                }
            }
        }
    }
}

size_t
sr_quic_listen_fds(const struct sr_quic *q, struct sr_listen_fd *out, size_t cap)
{
    const struct udp_sock *s;
    size_t n = 0;

    for (s = q != NULL ? q->socks : NULL; s != NULL && n < cap; s = s->next) {
        if (s->is_retired) {
            continue;
        }
        out[n].fd = fcntl(s->watch.fd, F_DUPFD_CLOEXEC, 0);
        if (out[n].fd >= 0) {
            snprintf(out[n].addr_text, sizeof(out[n].addr_text), "%s", s->addr_text);
            n++;
        }
    }
    return n;
}

/* --- Flows: the table, the log line, the end --------------------------------------------- */

static const char *
route_name(enum sr_route_kind kind)
{
    switch (kind) {
    case SR_ROUTE_EXACT:
        return "exact";
    case SR_ROUTE_WILDCARD:
        return "wildcard";
    case SR_ROUTE_DEFAULT:
        return "default";
    case SR_ROUTE_MISS:
        break;
    }
    return "none";
}

static void
flow_log(struct qflow *f)
{
    struct sr_access_record rec;
    char upstream[SR_ADDR_HOST_MAX + SR_CONFIG_NAME_MAX + 24];
    char client[SR_SOCKADDR_TEXT_MAX];
    char line[1024];
    size_t len;
    int n;

    if (!atomic_load_explicit(&f->q->host.shared->is_logging, memory_order_relaxed)) {
        return;
    }
    upstream[0] = '\0';
    if (f->pool != NULL && f->target != NULL) {
        /* "pool/server", as the TCP path writes it. */
        n = snprintf(upstream, sizeof(upstream), "%s/",
                     f->gen->cfg.pools[f->upstream->pool - 1].name);
        if (n > 0 && (size_t)n < sizeof(upstream)) {
            sr_addr_format(f->target, upstream + n, sizeof(upstream) - (size_t)n);
        }
    } else if (f->upstream != NULL && f->upstream->pool == 0) {
        sr_addr_format(&f->upstream->addr, upstream, sizeof(upstream));
    } else if (f->upstream != NULL) {
        snprintf(upstream, sizeof(upstream), "%s", f->gen->cfg.pools[f->upstream->pool - 1].name);
    }
    sr_addr_format_sockaddr(&f->client.sa, client, sizeof(client));
    memset(&rec, 0, sizeof(rec));
    rec.time_ms = wall_ms();
    rec.listener = f->lcfg->name;
    rec.client = client;
    rec.sni = f->sni;
    rec.route = route_name((enum sr_route_kind)f->route);
    rec.upstream = upstream;
    rec.bytes_in = f->bytes_in;
    rec.bytes_out = f->bytes_out;
    rec.has_dgrams = true;
    rec.dgrams_in = f->n_in;
    rec.dgrams_out = f->n_out;
    rec.duration_ms = now_ms(f->q) - f->start_ms;
    rec.outcome = f->outcome;
    rec.detail = f->detail;
    rec.has_ech = f->has_ech;
    rec.alpn_route = f->alpn_route;
    len = f->gen->cfg.log_format == SR_LOG_FORMAT_JSON
              ? sr_log_format_access_json(line, sizeof(line), &rec)
              : sr_log_format_access(line, sizeof(line), &rec);
    sr_shared_log(f->q->host.shared, line, len);
}

static void
unrouted_unlink(struct qflow *f)
{
    struct sr_quic *q = f->q;
    struct qflow_setup *st = f->setup;

    if (st == NULL || (st->older == NULL && st->newer == NULL && q->unrouted_oldest != f)) {
        return;
    }
    if (st->older != NULL) {
        st->older->setup->newer = st->newer;
    } else {
        q->unrouted_oldest = st->newer;
    }
    if (st->newer != NULL) {
        st->newer->setup->older = st->older;
    } else {
        q->unrouted_newest = st->older;
    }
    st->older = NULL;
    st->newer = NULL;
    q->n_unrouted--;
}

/* Out of the table and the list: nothing finds it any more. */
static void
flow_unlink(struct qflow *f)
{
    struct sr_quic *q = f->q;

    sr_flowtab_remove(&q->table, &f->node);
    if (f->prev != NULL) {
        f->prev->next = f->next;
    } else {
        q->flows = f->next;
    }
    if (f->next != NULL) {
        f->next->prev = f->prev;
    }
    f->prev = NULL;
    f->next = NULL;
    f->sock->n_flows--;
    sock_maybe_close(f->sock);
}

/* A refused flow's memory goes; the client's next datagram is read afresh. */
static void
refused_forget(struct qflow *f)
{
    struct sr_quic *q = f->q;

    assert(f->state == QF_REFUSED);
    flow_deadline_clear(f);
    flow_unlink(f);
    q->n_refused--;
    f->state = QF_CLOSED;
    f->next_dead = q->dead;
    q->dead = f;
    quic_reap_later(q);
}

/* End <f> with <outcome> (kept if one is set): one access-log line, the metrics, its socket
 * and counts released. A flow that never reached a working upstream stays in the table as
 * refused until its client has been quiet for hello_timeout, so that retransmits of a
 * refused Initial cost a lookup and nothing more; any other is gone. */
static void
flow_end(struct qflow *f, const char *outcome)
{
    struct sr_quic *q = f->q;
    bool is_marker;

    if (f->state == QF_REFUSED || f->state == QF_CLOSED) {
        return;
    }
    if (q->run_flow == f) {
        q->run_flow = NULL; /* its gathered datagrams go nowhere now */
        q->n_run = 0;
    }
    if (f->outcome == NULL) {
        f->outcome = outcome;
    }
    flow_log(f);
    if (f->is_started) {
        sr_metrics_quic_closed(q->host.metrics, f->lid, sr_metrics_outcome_parse(f->outcome));
        sr_metrics_quic_datagrams(q->host.metrics, f->lid, f->n_in, f->n_out);
        sr_metrics_bytes(q->host.metrics, f->lid, f->uid, f->bytes_in, f->bytes_out);
    }
    if (f->state == QF_RESOLVING && f->is_resolving) {
        uv_cancel((uv_req_t *)&f->setup->resolve_req); /* it still calls back */
    }
    flow_deadline_clear(f);
    if (f->backend.fd >= 0) {
        sr_watch_close(q->host.reactor, &f->backend);
    }
    if (f->is_pool_counted) {
        sr_pool_conn_end(f->pool, f->pool_index);
        f->is_pool_counted = false;
    }
    unrouted_unlink(f);
    limits_release(f);
    q->n_flows--;
    is_marker =
        !f->has_answer && !q->is_draining && q->n_refused < SR_QUIC_REFUSED_MAX && !f->is_resolving;
    if (is_marker) {
        /* Keep the key, the socket and the metrics row; nothing that needs the config. */
        f->state = QF_REFUSED;
        q->n_refused++;
        if (f->setup != NULL) {
            free(f->setup->held);
            free(f->setup);
            f->setup = NULL;
        }
        free(f->sni);
        f->sni = NULL;
        sr_generation_unref(f->gen);
        f->gen = NULL;
        f->lcfg = NULL;
        f->upstream = NULL;
        f->target = NULL;
        f->pool = NULL;
        flow_deadline(f, f->last_in_ms + q->gen->cfg.hello_timeout_ms);
        return;
    }
    f->state = QF_CLOSED;
    flow_unlink(f);
    if (!f->is_resolving) {
        f->next_dead = q->dead;
        q->dead = f;
        quic_reap_later(q);
    }
}

/* A new flow for the client at <peer> on <s>, in the table, in state QF_HELLO. NULL when out
 * of memory. */
static struct qflow *
flow_new(struct sr_quic *q, struct udp_sock *s, const struct sr_flowkey *key,
         const union sr_udp_peer *peer, const struct sr_udp_local *local)
{
    struct qflow *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return NULL;
    }
    q->n_alloc++;
    f->q = q;
    f->node.key = *key;
    f->sock = s;
    f->client = *peer;
    f->local = *local;
    f->lid = s->lid;
    f->uid = UINT32_MAX;
    f->backend.fd = -1;
    sr_deadline_init(&f->deadline);
    f->start_ms = now_ms(q);
    f->last_in_ms = f->start_ms;
    f->start_wall_ms = wall_ms();
    (void)sr_ipkey_from_sockaddr(&f->ipkey, &peer->sa);
    f->state = QF_HELLO;
    sr_flowtab_insert(&q->table, &f->node);
    f->next = q->flows;
    if (q->flows != NULL) {
        q->flows->prev = f;
    }
    q->flows = f;
    s->n_flows++;
    return f;
}

/* A client whose first datagram is refused outright (malformed) is remembered, not served:
 * a refused flow from the start, with no log line (a flood of them would flood the log). */
static void
refused_new(struct sr_quic *q, struct udp_sock *s, const struct sr_flowkey *key,
            const union sr_udp_peer *peer, const struct sr_udp_local *local)
{
    struct qflow *f;

    if (q->n_refused >= SR_QUIC_REFUSED_MAX || q->is_draining) {
        return;
    }
    f = flow_new(q, s, key, peer, local);
    if (f == NULL) {
        return;
    }
    f->state = QF_REFUSED;
    q->n_refused++;
    flow_deadline(f, f->last_in_ms + q->gen->cfg.hello_timeout_ms);
}

/* --- Upstream: connect, relay ------------------------------------------------------------- */

static void on_backend_ready(struct sr_watch *watch, uint32_t events);

/* An error <err> (a negated errno) of the flow's socket: the upstream refused (ICMP port
 * unreachable) or cannot be reached. Before any answer that is a failed connect; after,
 * the upstream went away. */
static void
flow_upstream_error(struct qflow *f, int err)
{
    f->detail = uv_err_name(err);
    if (!f->has_answer && f->uid != UINT32_MAX) {
        sr_metrics_connect_failed(f->q->host.metrics, f->uid,
                                  sr_metrics_connect_error_from_errno(err));
    }
    flow_end(f, f->has_answer ? "backend_reset" : "connect_failed");
}

static bool
is_flow_fatal(int err)
{
    return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH;
}

/* Send <iov>[0..n) from the client to the upstream; count what went. */
static void
send_up(struct qflow *f, struct iovec *iov, size_t n)
{
    size_t sent;
    size_t i;
    int err;

    sent = sr_udp_send(f->backend.fd, NULL, NULL, iov, n, &err);
    for (i = 0; i < sent; i++) {
        f->bytes_in += iov[i].iov_len;
    }
    f->n_in += sent;
    for (i = sent; i < n; i++) {
        dropped(f->q, f->lid, SR_METRICS_QDROP_SEND_FAILED);
    }
    if (sent < n && is_flow_fatal(err)) {
        flow_upstream_error(f, -err);
    }
}

/* The datagrams gathered for one flow go out. */
static void
run_flush(struct sr_quic *q)
{
    struct qflow *f = q->run_flow;
    size_t n = q->n_run;

    q->run_flow = NULL;
    q->n_run = 0;
    if (f != NULL && n > 0 && f->state == QF_RELAYING) {
        send_up(f, q->run, n);
    }
}

/* Connected: hold nothing more, watch the socket, send what was held and <cur>/<cur_len>
 * (a datagram not held, or NULL), in the order received. */
static void
flow_relay(struct qflow *f, const uint8_t *cur, size_t cur_len)
{
    struct sr_quic *q = f->q;
    struct iovec iov[SR_QUIC_HOLD_DGRAMS_MAX + 1];
    struct qflow_setup *st = f->setup;
    size_t n = 0;
    size_t off = 0;
    int rc;

    f->state = QF_RELAYING;
    rc = sr_watch_set(q->host.reactor, &f->backend, EPOLLIN);
    if (rc != 0) {
        f->detail = uv_err_name(rc);
        flow_end(f, "error");
        return;
    }
    while (st != NULL && off < st->held_len && n < SR_QUIC_HOLD_DGRAMS_MAX) {
        uint16_t len;

        memcpy(&len, st->held + off, 2);
        iov[n].iov_base = st->held + off + 2;
        iov[n].iov_len = len;
        n++;
        off += 2 + (size_t)len;
    }
    if (cur != NULL) {
        iov[n].iov_base = (void *)cur;
        iov[n].iov_len = cur_len;
        n++;
    }
    if (n > 0) {
        send_up(f, iov, n);
    }
    if (f->state != QF_RELAYING) {
        return; /* the upstream refused at once */
    }
    /* The setup goes: an established flow costs what struct qflow does. */
    if (st != NULL) {
        if (st->addrs != NULL) {
            uv_freeaddrinfo(st->addrs);
        }
        free(st->held);
        free(st);
        f->setup = NULL;
    }
    flow_deadline(f, f->routed_ms + f->gen->cfg.connect_timeout_ms);
}

/* Open the flow's socket to the first address of <ai> that takes a connect (UDP: a route
 * exists); then relay. */
static void
flow_connect(struct qflow *f, const struct addrinfo *ai, const uint8_t *cur, size_t cur_len)
{
    int fd = UV_EAI_NONAME;

    for (; ai != NULL; ai = ai->ai_next) {
        fd = sr_udp_connect(ai->ai_addr, ai->ai_addrlen);
        if (fd >= 0) {
            break;
        }
    }
    if (fd < 0) {
        f->detail = uv_err_name(fd);
        if (f->uid != UINT32_MAX) {
            sr_metrics_connect_failed(f->q->host.metrics, f->uid,
                                      sr_metrics_connect_error_from_errno(fd));
        }
        flow_end(f, fd == UV_EMFILE || fd == UV_ENFILE ? "error" : "connect_failed");
        return;
    }
    sr_watch_init(&f->backend, fd, on_backend_ready);
    flow_relay(f, cur, cur_len);
}

/* Keep <d>/<len> with the flow until it can be sent. False (and the flow ended) when that
 * would pass quic_hold_bytes or SR_QUIC_HOLD_DGRAMS_MAX. */
static bool
flow_hold(struct qflow *f, const uint8_t *d, size_t len)
{
    struct qflow_setup *st = f->setup;
    uint8_t *grown;
    uint16_t len16 = (uint16_t)len;

    /* quic_hold_bytes counts the datagrams' bytes, not our 2-byte lengths. */
    if (st->n_held >= SR_QUIC_HOLD_DGRAMS_MAX ||
        st->held_len - 2 * (size_t)st->n_held + len > f->gen->cfg.quic_hold_bytes) {
        dropped(f->q, f->lid, SR_METRICS_QDROP_HOLD);
        f->detail = "over quic_hold_bytes before the ClientHello was complete";
        flow_end(f, "too_large");
        return false;
    }
    grown = realloc(st->held, st->held_len + 2 + len);
    if (grown == NULL) {
        f->detail = "out of memory";
        flow_end(f, "error");
        return false;
    }
    st->held = grown;
    memcpy(st->held + st->held_len, &len16, 2);
    memcpy(st->held + st->held_len + 2, d, len);
    st->held_len += 2 + len;
    st->n_held++;
    return true;
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *addrs)
{
    struct qflow *f = req->data;

    f->is_resolving = false;
    f->setup->addrs = addrs; /* freed with the setup */
    if (f->state != QF_RESOLVING) {
        /* Ended meanwhile: it waited for this callback to be freed. */
        struct sr_quic *q = f->q;

        f->next_dead = q->dead;
        q->dead = f;
        quic_reap_later(q);
        return;
    }
    if (status != 0 || addrs == NULL) {
        f->detail = uv_err_name(status != 0 ? status : UV_EAI_NONAME);
        if (f->uid != UINT32_MAX) {
            sr_metrics_connect_failed(f->q->host.metrics, f->uid, SR_METRICS_CONNECT_RESOLVE);
        }
        flow_end(f, "resolve_failed");
        return;
    }
    flow_connect(f, addrs, NULL, 0);
}

/* Route target <index> of the flow's generation: a HOST:PORT, or a server of its pool (no
 * retry on another: UDP has no connect to fail). <cur>: the datagram that completed the
 * ClientHello, not held. */
static void
flow_connect_upstream(struct qflow *f, size_t index, const uint8_t *cur, size_t cur_len)
{
    struct sr_quic *q = f->q;
    const struct sr_config *cfg = &f->gen->cfg;
    struct sockaddr_storage ss;
    struct addrinfo ai;
    struct addrinfo hints;
    char port[8];
    int rc;

    f->upstream = &cfg->upstreams[index];
    f->uid = f->gen->upstream_ids[index];
    f->routed_ms = now_ms(q);
    sr_metrics_upstream_selected(q->host.metrics, f->uid);
    if (f->upstream->pool != 0) {
        const struct sr_pool_config *pc = &cfg->pools[f->upstream->pool - 1];
        size_t i;

        f->pool = &f->gen->pools[q->host.worker * cfg->n_pools + f->upstream->pool - 1];
        if (sr_pool_pick(f->pool, f->routed_ms, f->ipkey.bytes, 0, &i) == SR_POOL_NONE_LEFT) {
            f->detail = "no server available";
            flow_end(f, "connect_failed");
            return;
        }
        f->pool_index = i;
        f->target = &pc->servers[i];
        sr_pool_conn_start(f->pool, i);
        f->is_pool_counted = true;
    } else {
        f->target = &f->upstream->addr;
    }
    memset(&ss, 0, sizeof(ss));
    if (f->target->kind == SR_ADDR_NAME) {
        /* Resolved at each flow, as the TCP path does at each connect. */
        if (cur != NULL && !flow_hold(f, cur, cur_len)) {
            return;
        }
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_DGRAM;
        snprintf(port, sizeof(port), "%u", (unsigned)f->target->port);
        f->state = QF_RESOLVING;
        f->setup->resolve_req.data = f;
        rc = uv_getaddrinfo(q->host.loop, &f->setup->resolve_req, on_resolved, f->target->host,
                            port, &hints);
        if (rc != 0) {
            f->detail = uv_err_name(rc);
            flow_end(f, "resolve_failed");
            return;
        }
        f->is_resolving = true;
        flow_deadline(f, f->routed_ms + cfg->connect_timeout_ms);
        return;
    }
    rc = f->target->kind == SR_ADDR_IPV6
             ? uv_ip6_addr(f->target->host, f->target->port, (struct sockaddr_in6 *)&ss)
             : uv_ip4_addr(f->target->host, f->target->port, (struct sockaddr_in *)&ss);
    if (rc != 0) {
        f->detail = uv_err_name(rc);
        flow_end(f, "connect_failed");
        return;
    }
    memset(&ai, 0, sizeof(ai));
    ai.ai_family = ss.ss_family;
    ai.ai_addr = (struct sockaddr *)&ss;
    ai.ai_addrlen =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    flow_connect(f, &ai, cur, cur_len);
}

/* The ClientHello is complete: decide, as every protocol does, and go there or refuse.
 * <res>'s views live until the next feed. */
static void
flow_route(struct qflow *f, const struct sr_quic_result *res, const uint8_t *cur, size_t cur_len)
{
    struct sr_quic *q = f->q;
    struct sr_first_bytes said = {
        .said = res->status == SR_QUIC_FOUND ? SR_SAID_NAME : SR_SAID_NO_NAME,
        .name = res->hello.sni.ptr,
        .name_len = res->hello.sni.len,
        .alpn = res->hello.alpn.ptr,
        .alpn_len = res->hello.alpn.len,
        .has_ech = res->hello.has_ech,
    };
    struct sr_decision d;

    unrouted_unlink(f);
    if (res->hello.has_ech) {
        f->has_ech = true;
        sr_metrics_hello_ech(q->host.metrics);
    }
    sr_decide(&f->gen->cfg, f->lcfg, &said, &d);
    if (d.name_len > 0) {
        f->sni = strdup(d.name); /* NULL when out of memory: the log shows "-" */
    }
    f->route = (uint8_t)d.hit.kind;
    if (d.refusal != SR_REFUSAL_NO_SNI && d.refusal != SR_REFUSAL_BAD_NAME) {
        sr_metrics_route(q->host.metrics, f->lid, d.hit.kind);
    }
    if (d.verdict != SR_VERDICT_ROUTE) {
        /* Nothing is sent back: no alert, no datagram of ours to an unverified address. */
        dropped(q, f->lid, SR_METRICS_QDROP_REFUSED);
        flow_end(f, sr_refusal_outcome(d.refusal, false));
        return;
    }
    if (d.alpn != NULL) {
        f->alpn_route = d.alpn->proto;
    }
    flow_connect_upstream(f, d.target, cur, cur_len);
}

/* The metrics word of a refused datagram. */
static enum sr_metrics_quic_drop
drop_of(enum sr_quic_status status)
{
    return status == SR_QUIC_MALFORMED || status == SR_QUIC_ERROR ? SR_METRICS_QDROP_MALFORMED
                                                                  : SR_METRICS_QDROP_NOT_QUIC;
}

/* A later datagram of a flow still reading its ClientHello. The flow keeps only the
 * datagrams the reader took, not its reassembly state (18 KB): each new datagram is read
 * after the held ones again, from datagram 0, into the worker's scratch state. A real
 * client's hello takes one or two datagrams; SR_QUIC_HOLD_DGRAMS_MAX bounds the rest. */
static void
flow_hello_datagram(struct qflow *f, const uint8_t *d, size_t len)
{
    struct sr_quic *q = f->q;
    struct qflow_setup *st = f->setup;
    struct sr_quic_result res;
    size_t off = 0;

    sr_quic_initial_init(&q->initial, f->gen->cfg.max_hello_size);
    while (off < st->held_len) {
        uint16_t n;

        memcpy(&n, st->held + off, 2);
        sr_quic_feed(&q->crypto, &q->initial, st->held + off + 2, n, &res);
        off += 2 + (size_t)n;
    }
    sr_quic_feed(&q->crypto, &q->initial, d, len, &res);
    sr_metrics_quic_initial(q->host.metrics, res.status, res.reason);
    switch (res.status) {
    case SR_QUIC_NEED_MORE:
        (void)flow_hold(f, d, len);
        return;
    case SR_QUIC_FOUND:
    case SR_QUIC_NO_SNI:
        flow_route(f, &res, d, len);
        return;
    case SR_QUIC_MALFORMED:
        st->last_bad = res.reason;
        if (res.reason == SR_QUIC_REASON_TOO_LARGE) {
            dropped(q, f->lid, SR_METRICS_QDROP_MALFORMED);
            f->detail = sr_quic_reason_str(res.reason);
            flow_end(f, "too_large");
            return;
        }
        break;
    default:
        break;
    }
    /* Dropped, the flow kept: a spoofed datagram must not end someone else's flow. */
    dropped(q, f->lid, drop_of(res.status));
}

/* The first datagram from a client that has no flow on <s>. */
static void
flow_start(struct sr_quic *q, struct udp_sock *s, const struct sr_flowkey *key,
           const union sr_udp_peer *peer, const struct sr_udp_local *local, const uint8_t *d,
           size_t len)
{
    struct sr_quic_result res;
    enum sr_metrics_quic_drop why;
    struct qflow probe;
    struct qflow *f;

    if (q->is_draining || s->is_retired || q->gen == NULL) {
        dropped(q, s->lid, SR_METRICS_QDROP_DRAINING);
        return;
    }
    sr_quic_initial_init(&q->initial, q->gen->cfg.max_hello_size);
    /* The first five bytes say whether this can start anything; only then is it counted
     * against the limits (a lock) and decrypted (HKDF and AES). */
    if (!sr_quic_starts_initial(d, len)) {
        sr_quic_feed(&q->crypto, &q->initial, d, len, &res); /* for the reason */
        sr_metrics_quic_initial(q->host.metrics, res.status, res.reason);
        dropped(q, s->lid, drop_of(res.status));
        return;
    }
    memset(&probe, 0, sizeof(probe));
    probe.q = q;
    (void)sr_ipkey_from_sockaddr(&probe.ipkey, &peer->sa);
    if (!limits_admit(q, &probe, &why)) {
        dropped(q, s->lid, why);
        return;
    }
    sr_quic_feed(&q->crypto, &q->initial, d, len, &res);
    sr_metrics_quic_initial(q->host.metrics, res.status, res.reason);
    if (res.status != SR_QUIC_NEED_MORE && res.status != SR_QUIC_FOUND &&
        res.status != SR_QUIC_NO_SNI) {
        limits_release(&probe);
        dropped(q, s->lid, drop_of(res.status));
        if (res.status == SR_QUIC_MALFORMED) {
            refused_new(q, s, key, peer, local);
        }
        return;
    }
    f = flow_new(q, s, key, peer, local);
    if (f == NULL) {
        limits_release(&probe);
        return;
    }
    f->is_counted = probe.is_counted;
    f->has_ipkey = probe.has_ipkey;
    f->gen = sr_generation_ref(q->gen);
    f->lcfg = s->lcfg;
    f->is_started = true;
    q->n_flows++;
    sr_metrics_quic_started(q->host.metrics, f->lid);
    f->setup = calloc(1, sizeof(*f->setup));
    if (f->setup == NULL) {
        f->detail = "out of memory";
        flow_end(f, "error");
        return;
    }
    if (res.status != SR_QUIC_NEED_MORE) {
        flow_route(f, &res, d, len);
        return;
    }
    /* The ClientHello goes on in a later datagram (a post-quantum key share, say): hold
     * this one, and give way to it if too many flows wait so. */
    if (q->n_unrouted >= SR_QUIC_UNROUTED_MAX && q->unrouted_oldest != NULL) {
        struct qflow *oldest = q->unrouted_oldest;

        oldest->detail = "evicted: too many flows waiting for their ClientHello";
        flow_end(oldest, "hello_timeout");
    }
    f->setup->older = q->unrouted_newest;
    if (q->unrouted_newest != NULL) {
        q->unrouted_newest->setup->newer = f;
    } else {
        q->unrouted_oldest = f;
    }
    q->unrouted_newest = f;
    q->n_unrouted++;
    if (flow_hold(f, d, len)) {
        flow_deadline(f, f->start_ms + f->gen->cfg.hello_timeout_ms);
    }
}

/* One datagram from a client on <s>. */
static void
on_client_datagram(struct sr_quic *q, struct udp_sock *s, int i)
{
    const union sr_udp_peer *peer = &q->batch.peers[i];
    uint8_t *d = q->batch.iov[i].iov_base;
    size_t len = q->batch.iov[i].iov_len;
    struct sr_udp_local local;
    struct sr_flownode *node;
    struct sr_flowkey key;
    struct qflow *f;

    if ((q->batch.msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0 ||
        sr_flowkey_set(&key, s->id, &peer->sa) != 0) {
        dropped(q, s->lid, SR_METRICS_QDROP_NOT_QUIC);
        return;
    }
    node = sr_flowtab_find(&q->table, &key);
    if (node == NULL) {
        run_flush(q);
        sr_udp_local_of(&q->batch, i, &local);
        flow_start(q, s, &key, peer, &local, d, len);
        return;
    }
    f = (struct qflow *)node; /* the first member */
    f->last_in_ms = now_ms(q);
    switch ((enum qflow_state)f->state) {
    case QF_RELAYING:
        if (q->run_flow != f || q->n_run == SR_UDP_BATCH) {
            run_flush(q);
            q->run_flow = f;
        }
        q->run[q->n_run].iov_base = d;
        q->run[q->n_run].iov_len = len;
        q->n_run++;
        return;
    case QF_HELLO:
        run_flush(q);
        flow_hello_datagram(f, d, len);
        return;
    case QF_RESOLVING:
        (void)flow_hold(f, d, len); /* retransmits while the name resolves */
        return;
    case QF_REFUSED:
        dropped(q, f->lid, SR_METRICS_QDROP_REFUSED);
        return;
    case QF_CLOSED:
        break;
    }
}

static void
on_sock_ready(struct sr_watch *watch, uint32_t events)
{
    struct udp_sock *s = (struct udp_sock *)watch; /* the first member */
    struct sr_quic *q = s->q;
    int round;
    int n;
    int i;

    (void)events;
    for (round = 0; round < SR_QUIC_LISTEN_ROUNDS; round++) {
        n = sr_udp_recv(watch->fd, &q->batch, true, s->has_pktinfo);
        for (i = 0; i < n; i++) {
            on_client_datagram(q, s, i);
        }
        run_flush(q); /* before the batch's buffers are read into again */
        if (n < SR_UDP_BATCH || watch->events == 0) {
            return; /* drained (or an error: level-triggered, it comes back if it lasts) */
        }
    }
}

static void
on_backend_ready(struct sr_watch *watch, uint32_t events)
{
    struct qflow *f = (struct qflow *)((char *)watch - offsetof(struct qflow, backend));
    struct sr_quic *q = f->q;
    size_t sent;
    int round;
    int err;
    int n;
    int i;

    (void)events;
    for (round = 0; round < SR_QUIC_FLOW_ROUNDS && f->state == QF_RELAYING; round++) {
        n = sr_udp_recv(watch->fd, &q->batch, false, false);
        if (n < 0) {
            if (is_flow_fatal(-n)) {
                flow_upstream_error(f, n);
            }
            return;
        }
        if (n == 0) {
            return;
        }
        f->has_answer = true;
        f->last_out_ms = now_ms(q);
        sent = sr_udp_send(f->sock->watch.fd, &f->client, &f->local, q->batch.iov, (size_t)n, &err);
        for (i = 0; i < (int)sent; i++) {
            f->bytes_out += q->batch.iov[i].iov_len;
        }
        f->n_out += sent;
        for (i = (int)sent; i < n; i++) {
            dropped(q, f->lid, SR_METRICS_QDROP_SEND_FAILED);
        }
        if (n < SR_UDP_BATCH) {
            return;
        }
    }
}

/* --- Timeouts ----------------------------------------------------------------------------- */

static void
flow_on_deadline(struct qflow *f)
{
    struct sr_quic *q = f->q;
    uint64_t now = now_ms(q);
    const struct sr_config *cfg;
    uint64_t idle;
    uint64_t in_quiet;
    uint64_t out_quiet;
    uint64_t due;

    if (f->state == QF_REFUSED) {
        due = f->last_in_ms + (q->gen != NULL ? q->gen->cfg.hello_timeout_ms : 0);
        if (now < due && !q->is_draining) {
            flow_deadline(f, due);
        } else {
            refused_forget(f);
        }
        return;
    }
    if (q->is_draining && now >= q->drain_due_ms) {
        flow_end(f, "drained");
        return;
    }
    cfg = &f->gen->cfg;
    switch ((enum qflow_state)f->state) {
    case QF_HELLO:
        due = f->start_ms + cfg->hello_timeout_ms;
        if (now < due) {
            flow_deadline(f, due);
        } else if (f->setup->last_bad != SR_QUIC_REASON_NONE) {
            f->detail = sr_quic_reason_str(f->setup->last_bad);
            flow_end(f, "malformed");
        } else {
            flow_end(f, "hello_timeout");
        }
        return;
    case QF_RESOLVING:
        due = f->routed_ms + cfg->connect_timeout_ms;
        if (now < due) {
            flow_deadline(f, due);
        } else {
            f->detail = "resolving";
            flow_end(f, "connect_timeout");
        }
        return;
    case QF_RELAYING:
        break;
    default:
        return;
    }
    if (!f->has_answer) {
        due = f->routed_ms + cfg->connect_timeout_ms;
        if (now < due) {
            flow_deadline(f, due);
        } else {
            f->detail = "no datagram from the upstream";
            flow_end(f, "connect_timeout");
        }
        return;
    }
    /* Both sides quiet that long: the connection is over (its close is encrypted: this is
     * how every QUIC connection ends, seen from here). One side quiet that long while the
     * other kept sending through at least half of it: that side is gone (a live QUIC
     * connection has datagrams both ways, acknowledgements at least). */
    idle = cfg->quic_idle_timeout_ms;
    in_quiet = now - f->last_in_ms;
    out_quiet = now - f->last_out_ms;
    if (in_quiet >= idle && out_quiet >= idle) {
        flow_end(f, "ok");
        return;
    }
    if ((in_quiet >= idle && f->last_out_ms - f->last_in_ms >= idle / 2) ||
        (out_quiet >= idle && f->last_in_ms - f->last_out_ms >= idle / 2)) {
        f->detail = in_quiet >= idle ? "the client went quiet" : "the upstream went quiet";
        flow_end(f, "idle_timeout");
        return;
    }
    due = (f->last_in_ms > f->last_out_ms ? f->last_in_ms : f->last_out_ms) + idle;
    flow_deadline(f, due > now ? due : now + 1);
}

/* --- The path's life ---------------------------------------------------------------------- */

struct sr_quic *
sr_quic_new(const struct sr_quic_host *host)
{
    struct sr_quic *q = calloc(1, sizeof(*q));
    uint64_t key[2];

    if (q == NULL) {
        return NULL;
    }
    q->host = *host;
    q->timer_due = UINT64_MAX;
    if (uv_random(NULL, NULL, key, sizeof(key), 0, NULL) != 0) {
        key[0] = uv_hrtime() ^ (uint64_t)(uintptr_t)q;
        key[1] = (uint64_t)(uintptr_t)&key ^ ((uint64_t)host->worker << 48);
    }
    if (sr_flowtab_init(&q->table, key[0], key[1]) != 0 ||
        sr_udp_batch_init(&q->batch) != 0) {
        sr_flowtab_fini(&q->table);
        sr_udp_batch_fini(&q->batch);
        free(q);
        return NULL;
    }
    if (!sr_quic_ctx_init(&q->crypto)) {
        sr_log_notice("QUIC: libcrypto has no AES-128-GCM, AES-128-ECB or HKDF");
        sr_flowtab_fini(&q->table);
        sr_udp_batch_fini(&q->batch);
        free(q);
        return NULL;
    }
    uv_timer_init(host->loop, &q->timer);
    q->timer.data = q;
    uv_idle_init(host->loop, &q->reaper);
    q->reaper.data = q;
    q->has_handles = true;
    return q;
}

void
sr_quic_drain(struct sr_quic *q)
{
    bool is_handover;
    struct qflow *f;
    struct qflow *next;
    struct udp_sock *s;
    struct udp_sock *snext;

    if (q == NULL) {
        return;
    }
    is_handover = atomic_load(&q->host.shared->handover_fd) >= 0;
    if (!q->is_draining) {
        q->is_draining = true;
        q->drain_due_ms = now_ms(q) + (q->gen != NULL ? q->gen->cfg.drain_timeout_ms : 0);
        if (q->n_flows > 0 && !is_handover) {
            sr_log_notice("draining %zu QUIC flow(s) for up to %llu ms", q->n_flows,
                          (unsigned long long)(q->gen != NULL ? q->gen->cfg.drain_timeout_ms : 0));
        } else if (q->n_flows > 0) {
            sr_log_notice("upgrade: %zu QUIC flow(s) end here (flows are not handed over; "
                          "the new process reads the sockets now)",
                          q->n_flows);
        }
        for (f = q->flows; f != NULL; f = next) {
            next = f->next;
            if (f->state == QF_REFUSED) {
                refused_forget(f);
            } else if (is_handover) {
                f->detail = "binary upgrade";
                flow_end(f, "drained");
            } else if (f->deadline.index == SR_DEADLINE_NONE ||
                       f->deadline.due_ms > q->drain_due_ms) {
                flow_deadline(f, q->drain_due_ms);
            }
        }
    } else {
        for (f = q->flows; f != NULL; f = next) {
            next = f->next;
            if (f->state == QF_REFUSED) {
                refused_forget(f);
            } else {
                flow_end(f, "drained");
            }
        }
    }
    for (s = q->socks; s != NULL; s = snext) {
        snext = s->next;
        if (is_handover) {
            /* The new process holds the same socket: let it read every datagram. Replies of
             * the flows ending here could still go out through it, but there are none. */
            sr_watch_clear(q->host.reactor, &s->watch);
        }
        sock_maybe_close(s);
    }
}

bool
sr_quic_is_stopped(const struct sr_quic *q)
{
    return q == NULL || (q->is_draining && q->socks == NULL && q->flows == NULL &&
                         q->n_alloc == 0 && q->dead_socks == NULL);
}

void
sr_quic_close(struct sr_quic *q)
{
    if (q == NULL || q->is_closed) {
        return;
    }
    q->is_closed = true;
    uv_close((uv_handle_t *)&q->timer, NULL);
    uv_close((uv_handle_t *)&q->reaper, NULL);
}

void
sr_quic_free(struct sr_quic *q)
{
    struct qflow *f;
    struct udp_sock *s;

    if (q == NULL) {
        return;
    }
    /* Normally all gone by now; a failed start may leave sockets. */
    while (q->socks != NULL) {
        s = q->socks;
        q->socks = s->next;
        if (s->watch.fd >= 0) {
            close(s->watch.fd);
        }
        free(s);
    }
    while ((s = q->dead_socks) != NULL) {
        q->dead_socks = s->next;
        free(s);
    }
    while ((f = q->dead) != NULL) {
        q->dead = f->next_dead;
        flow_free(f);
    }
    assert(q->flows == NULL);
    sr_deadline_heap_fini(&q->deadlines);
    sr_flowtab_fini(&q->table);
    sr_udp_batch_fini(&q->batch);
    sr_quic_ctx_fini(&q->crypto);
    free(q);
}
