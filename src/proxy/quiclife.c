/* SPDX-License-Identifier: MIT */
/* A QUIC flow's lifetime (quiclife.h): the flow table and the list of flows, the process-wide
 * limits, deadlines on one timer per worker, the end of a flow (its access-log line, its
 * metrics, refused flows kept a while) and of a socket, and the reaper. Not here: what a
 * flow does between its start and its end (quicintake.c, quicrelay.c), and opening sockets
 * (quicsock.c). */
#include "sniroute/proxy/quiclife.h"

#include <assert.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "sniroute/config/addr.h"
#include "sniroute/config/pool.h"
#include "sniroute/core/generation.h"
#include "sniroute/core/shared.h"
#include "sniroute/observe/log.h"
#include "sniroute/proxy/quicmigrate.h"

static int64_t
wall_ms(void)
{
    uv_timeval64_t tv;

    if (uv_gettimeofday(&tv) != 0) {
        return 0;
    }
    return tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* --- Process-wide limits ------------------------------------------------------------------ */

bool
sr__quic_limits_admit(struct sr_quic *q, struct sr_quic_flow *f, enum sr_metrics_quic_drop *why)
{
    if (!sr_shared_admit_flow(q->host.shared, &q->gen->cfg, &f->ipkey, &f->has_ipkey, why)) {
        return false;
    }
    f->is_counted = true;
    return true;
}

void
sr__quic_limits_release(struct sr_quic_flow *f)
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
    now = sr__quic_now_ms(q);
    q->timer_due = first->due_ms;
    uv_timer_start(&q->timer, on_timer, first->due_ms > now ? first->due_ms - now : 0, 0);
}

void
sr__quic_flow_deadline(struct sr_quic_flow *f, uint64_t due_ms)
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
flow_deadline_clear(struct sr_quic_flow *f)
{
    if (f->deadline.index != SR_DEADLINE_NONE) {
        sr_deadline_clear(&f->q->deadlines, &f->deadline);
        timer_rearm(f->q);
    }
}

static void flow_on_deadline(struct sr_quic_flow *f);

static void
on_timer(uv_timer_t *timer)
{
    struct sr_quic *q = timer->data;
    uint64_t now = sr__quic_now_ms(q);
    struct sr_deadline *d;

    q->timer_due = UINT64_MAX;
    while ((d = sr_deadline_first(&q->deadlines)) != NULL && d->due_ms <= now) {
        sr_deadline_clear(&q->deadlines, d);
        flow_on_deadline(
            (struct sr_quic_flow *)((char *)d - offsetof(struct sr_quic_flow, deadline)));
    }
    timer_rearm(q);
}

void
sr__quic_flow_free(struct sr_quic_flow *f)
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

void
sr__quic_reap(struct sr_reactor_task *task)
{
    struct sr_quic *q = (struct sr_quic *)((char *)task - offsetof(struct sr_quic, reaper));
    struct sr_quic_flow *f;
    struct sr_quic_sock *s;

    while ((f = q->dead) != NULL) {
        q->dead = f->next_dead;
        sr__quic_flow_free(f);
    }
    while ((s = q->dead_socks) != NULL) {
        q->dead_socks = s->next;
        free(s);
    }
    if (q->is_draining && sr__quic_is_stopped(q) && q->host.on_idle != NULL) {
        q->host.on_idle(q->host.data);
    }
}

void
sr__quic_reap_later(struct sr_quic *q)
{
    if (!q->is_closed) {
        sr_reactor_after_batch(q->host.reactor, &q->reaper);
    }
}

/* --- Sockets: the end --------------------------------------------------------------------- */

void
sr__quic_sock_close(struct sr_quic_sock *s)
{
    struct sr_quic *q = s->q;
    struct sr_quic_sock **link = &q->socks;

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
    sr__quic_reap_later(q);
}

void
sr__quic_sock_maybe_close(struct sr_quic_sock *s)
{
    if (s->n_flows == 0 && (s->is_retired || s->q->is_draining)) {
        sr__quic_sock_close(s);
    }
}

/* --- Flows: the table, the log line, the end ---------------------------------------------- */

static void
flow_log(struct sr_quic_flow *f)
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
    rec.route = sr_route_kind_name((enum sr_route_kind)f->route);
    rec.upstream = upstream;
    rec.bytes_in = f->bytes_in;
    rec.bytes_out = f->bytes_out;
    rec.has_dgrams = true;
    rec.dgrams_in = f->n_in;
    rec.dgrams_out = f->n_out;
    rec.duration_ms = sr__quic_now_ms(f->q) - f->start_ms;
    rec.outcome = f->outcome;
    rec.detail = f->detail;
    rec.has_ech = f->has_ech;
    rec.alpn_route = f->alpn_route;
    rec.rule = f->denied_by;
    len = f->gen->cfg.log_format == SR_LOG_FORMAT_JSON
              ? sr_log_format_access_json(line, sizeof(line), &rec)
              : sr_log_format_access(line, sizeof(line), &rec);
    sr_shared_log(f->q->host.shared, f->q->host.worker, line, len);
}

void
sr__quic_unrouted_unlink(struct sr_quic_flow *f)
{
    struct sr_quic *q = f->q;
    struct sr_quic_flow_setup *st = f->setup;

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
flow_unlink(struct sr_quic_flow *f)
{
    struct sr_quic *q = f->q;

    sr_flowtab_remove(&q->table, &f->node);
    sr__quic_cid_forget(f);
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
    sr__quic_sock_maybe_close(f->sock);
}

void
sr__quic_refused_forget(struct sr_quic_flow *f)
{
    struct sr_quic *q = f->q;

    assert(f->state == SR_QF_REFUSED);
    flow_deadline_clear(f);
    flow_unlink(f);
    q->n_refused--;
    f->state = SR_QF_CLOSED;
    f->next_dead = q->dead;
    q->dead = f;
    sr__quic_reap_later(q);
}

/* The flow's pool server is done with. A server that refused (ICMP) or never answered an
 * Initial counts as a failed connect, as on the TCP path, so the next flows go elsewhere
 * once it has failed fail_max times in a row; a QUIC server answers every Initial it takes. */
static void
pool_report_end(struct sr_quic_flow *f)
{
    char text[SR_ADDR_HOST_MAX + 16];
    bool is_failure = !f->has_answer && (strcmp(f->outcome, "connect_failed") == 0 ||
                                         strcmp(f->outcome, "connect_timeout") == 0);

    if (is_failure && sr_pool_report_failure(f->pool, f->pool_index, sr__quic_now_ms(f->q))) {
        sr_addr_format(f->target, text, sizeof(text));
        sr_log_notice("upstream %s: server %s failed repeatedly; out for a while",
                      f->gen->cfg.pools[f->upstream->pool - 1].name, text);
    }
    sr_pool_conn_end(f->pool, f->pool_index);
    f->is_pool_counted = false;
}

void
sr__quic_flow_end(struct sr_quic_flow *f, const char *outcome)
{
    struct sr_quic *q = f->q;
    bool is_marker;

    if (f->state == SR_QF_REFUSED || f->state == SR_QF_CLOSED) {
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
    if (f->state == SR_QF_RESOLVING && f->is_resolving) {
        uv_cancel((uv_req_t *)&f->setup->resolve_req); /* it still calls back */
    }
    flow_deadline_clear(f);
    if (f->backend.fd >= 0) {
        sr_watch_close(q->host.reactor, &f->backend);
    }
    if (f->is_pool_counted) {
        pool_report_end(f);
    }
    sr__quic_unrouted_unlink(f);
    sr__quic_limits_release(f);
    q->n_flows--;
    is_marker =
        !f->has_answer && !q->is_draining && q->n_refused < SR_QUIC_REFUSED_MAX && !f->is_resolving;
    if (is_marker) {
        /* Keep the key, the socket and the metrics row; nothing that needs the config. */
        f->state = SR_QF_REFUSED;
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
        sr__quic_flow_deadline(f, f->last_in_ms + q->gen->cfg.hello_timeout_ms);
        return;
    }
    f->state = SR_QF_CLOSED;
    flow_unlink(f);
    if (!f->is_resolving) {
        f->next_dead = q->dead;
        q->dead = f;
        sr__quic_reap_later(q);
    }
}

struct sr_quic_flow *
sr__quic_flow_new(struct sr_quic *q, struct sr_quic_sock *s, const struct sr_flowkey *key,
                  const union sr_udp_peer *peer, const struct sr_udp_local *local)
{
    struct sr_quic_flow *f = calloc(1, sizeof(*f));

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
    f->start_ms = sr__quic_now_ms(q);
    f->last_in_ms = f->start_ms;
    f->start_wall_ms = wall_ms();
    (void)sr_ipkey_from_sockaddr(&f->ipkey, &peer->sa);
    f->state = SR_QF_HELLO;
    sr_flowtab_insert(&q->table, &f->node);
    f->next = q->flows;
    if (q->flows != NULL) {
        q->flows->prev = f;
    }
    q->flows = f;
    s->n_flows++;
    return f;
}

/* --- Timeouts ----------------------------------------------------------------------------- */

static void
flow_on_deadline(struct sr_quic_flow *f)
{
    struct sr_quic *q = f->q;
    uint64_t now = sr__quic_now_ms(q);
    const struct sr_config *cfg;
    uint64_t idle;
    uint64_t in_quiet;
    uint64_t out_quiet;
    uint64_t due;

    if (f->state == SR_QF_REFUSED) {
        due = f->last_in_ms + (q->gen != NULL ? q->gen->cfg.hello_timeout_ms : 0);
        if (now < due && !q->is_draining) {
            sr__quic_flow_deadline(f, due);
        } else {
            sr__quic_refused_forget(f);
        }
        return;
    }
    if (q->is_draining && now >= q->drain_due_ms) {
        sr__quic_flow_end(f, "drained");
        return;
    }
    cfg = &f->gen->cfg;
    switch ((enum sr_quic_flow_state)f->state) {
    case SR_QF_HELLO:
        due = f->start_ms + cfg->hello_timeout_ms;
        if (now < due) {
            sr__quic_flow_deadline(f, due);
        } else if (f->setup->last_bad != SR_QUIC_REASON_NONE) {
            f->detail = sr_quic_reason_str(f->setup->last_bad);
            sr__quic_flow_end(f, "malformed");
        } else {
            sr__quic_flow_end(f, "hello_timeout");
        }
        return;
    case SR_QF_RESOLVING:
        due = f->routed_ms + cfg->connect_timeout_ms;
        if (now < due) {
            sr__quic_flow_deadline(f, due);
        } else {
            f->detail = "resolving";
            sr__quic_flow_end(f, "connect_timeout");
        }
        return;
    case SR_QF_RELAYING:
        break;
    default:
        return;
    }
    if (!f->has_answer) {
        due = f->routed_ms + cfg->connect_timeout_ms;
        if (now < due) {
            sr__quic_flow_deadline(f, due);
        } else {
            f->detail = "no datagram from the upstream";
            sr__quic_flow_end(f, "connect_timeout");
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
        sr__quic_flow_end(f, "ok");
        return;
    }
    if ((in_quiet >= idle && f->last_out_ms - f->last_in_ms >= idle / 2) ||
        (out_quiet >= idle && f->last_in_ms - f->last_out_ms >= idle / 2)) {
        f->detail = in_quiet >= idle ? "the client went quiet" : "the upstream went quiet";
        sr__quic_flow_end(f, "idle_timeout");
        return;
    }
    due = (f->last_in_ms > f->last_out_ms ? f->last_in_ms : f->last_out_ms) + idle;
    sr__quic_flow_deadline(f, due > now ? due : now + 1);
}

/* --- The path's end ----------------------------------------------------------------------- */

bool
sr__quic_is_stopped(const struct sr_quic *q)
{
    return q->is_draining && q->socks == NULL && q->flows == NULL && q->n_alloc == 0 &&
           q->dead_socks == NULL;
}
