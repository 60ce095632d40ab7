/* SPDX-License-Identifier: MIT */
/* Active health checks: per server a timer, and per round a fresh socket that connects
 * (after resolving a name) with a deadline. The verdict goes to the generation's pool with
 * sr_pool_set_healthy(), and a change is logged. A check frees itself from the close
 * callback of its last handle, like a connection. */
#include "sniroute/proxy/health.h"

#include <stdlib.h>
#include <string.h>

#include "sniroute/observe/log.h"
#include "sniroute/core/generation.h"

struct sr_health_check {
    struct sr_health_check *next;
    struct sr_health *health;
    struct sr_generation *gen; /* a reference, dropped when the check is freed */
    size_t pool_index; /* in the config; the pool of worker w is gen->pools[w * n_pools + i] */
    size_t n_workers;  /* every worker's copy of the pool gets the verdict */
    const struct sr_pool_config *pc;
    size_t index;     /* the server in the pool */
    uv_timer_t timer; /* the interval, then the deadline of a round */
    uv_tcp_t tcp;     /* the probe of the current round */
    uv_connect_t connect_req;
    uv_getaddrinfo_t resolve_req;
    struct addrinfo *addrs; /* this round's resolver answer */
    struct addrinfo *next_addr;
    struct sockaddr_storage literal;
    struct addrinfo literal_ai;
    int n_pending;   /* handles and requests that will call back */
    bool is_probing; /* a round is under way */
    bool is_tcp_open;
    bool is_stopped;
    bool was_healthy;
};

static void check_round_end(struct sr_health_check *c, bool is_ok);
static void check_try_next(struct sr_health_check *c);

static void
check_release(struct sr_health_check *c)
{
    struct sr_health_check **link;

    if (--c->n_pending > 0) {
        return;
    }
    for (link = &c->health->checks; *link != NULL; link = &(*link)->next) {
        if (*link == c) {
            *link = c->next;
            break;
        }
    }
    c->health->n_open--;
    if (c->addrs != NULL) {
        uv_freeaddrinfo(c->addrs);
    }
    sr_generation_unref(c->gen);
    free(c);
}

static void
on_check_handle_close(uv_handle_t *handle)
{
    check_release(handle->data);
}

static uint64_t
check_interval_ms(const struct sr_health_check *c)
{
    return c->pc->health_check_ms;
}

/* A round may take at most the interval, and at most connect_timeout. */
static uint64_t
check_deadline_ms(const struct sr_health_check *c)
{
    uint64_t t = c->gen->cfg.connect_timeout_ms;

    return t < check_interval_ms(c) ? t : check_interval_ms(c);
}

/* A failed probe socket is closed before the next address is tried: its memory is reused
 * only after its close callback. */
static void
on_probe_closed(uv_handle_t *handle)
{
    struct sr_health_check *c = handle->data;

    if (!c->is_stopped && c->is_probing) {
        check_try_next(c);
    }
    check_release(c);
}

static void
on_check_connect(uv_connect_t *req, int status)
{
    struct sr_health_check *c = req->data;

    if (status == UV_ECANCELED || c->is_stopped || !c->is_probing) {
        return;
    }
    if (status == 0) {
        check_round_end(c, true);
        return;
    }
    c->is_tcp_open = false;
    uv_close((uv_handle_t *)&c->tcp, on_probe_closed);
}

/* Connect to the round's next address; none left: the server failed this round. */
static void
check_try_next(struct sr_health_check *c)
{
    struct addrinfo *ai = c->next_addr;
    int rc;

    if (ai == NULL) {
        check_round_end(c, false);
        return;
    }
    c->next_addr = ai->ai_next;
    rc = uv_tcp_init(c->timer.loop, &c->tcp);
    if (rc != 0) {
        check_round_end(c, false);
        return;
    }
    c->tcp.data = c;
    c->is_tcp_open = true;
    c->n_pending++;
    c->connect_req.data = c;
    rc = uv_tcp_connect(&c->connect_req, &c->tcp, ai->ai_addr, on_check_connect);
    if (rc != 0) {
        c->is_tcp_open = false;
        uv_close((uv_handle_t *)&c->tcp, on_probe_closed);
    }
}

static void
on_check_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *addrs)
{
    struct sr_health_check *c = req->data;

    if (c->addrs != NULL) {
        uv_freeaddrinfo(c->addrs);
    }
    c->addrs = addrs;
    if (!c->is_stopped && c->is_probing) {
        if (status != 0 || addrs == NULL) {
            check_round_end(c, false);
        } else {
            c->next_addr = addrs;
            check_try_next(c);
        }
    }
    check_release(c);
}

static void on_check_timer(uv_timer_t *timer);

static void
check_round_start(struct sr_health_check *c)
{
    const struct sr_addr *addr = &c->pc->servers[c->index];
    struct addrinfo hints;
    char port[8];
    int rc;

    c->is_probing = true;
    uv_timer_start(&c->timer, on_check_timer, check_deadline_ms(c), 0);
    if (addr->kind != SR_ADDR_NAME) {
        rc = addr->kind == SR_ADDR_IPV4
                 ? uv_ip4_addr(addr->host, addr->port, (struct sockaddr_in *)&c->literal)
                 : uv_ip6_addr(addr->host, addr->port, (struct sockaddr_in6 *)&c->literal);
        if (rc != 0) {
            check_round_end(c, false);
            return;
        }
        c->literal_ai.ai_addr = (struct sockaddr *)&c->literal;
        c->next_addr = &c->literal_ai;
        check_try_next(c);
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%u", (unsigned)addr->port);
    c->resolve_req.data = c;
    rc =
        uv_getaddrinfo(c->timer.loop, &c->resolve_req, on_check_resolved, addr->host, port, &hints);
    if (rc != 0) {
        check_round_end(c, false);
        return;
    }
    c->n_pending++;
}

/* The verdict of a round: tell the pool, log a change, wait for the next round. */
static void
check_round_end(struct sr_health_check *c, bool is_ok)
{
    char text[SR_ADDR_HOST_MAX + 16];
    size_t w;

    c->is_probing = false;
    c->next_addr = NULL;
    if (c->is_tcp_open) {
        c->is_tcp_open = false;
        uv_close((uv_handle_t *)&c->tcp, on_check_handle_close);
    }
    for (w = 0; w < c->n_workers; w++) {
        sr_pool_set_healthy(&c->gen->pools[w * c->gen->cfg.n_pools + c->pool_index], c->index,
                            is_ok);
    }
    if (is_ok != c->was_healthy) {
        sr_addr_format(&c->pc->servers[c->index], text, sizeof(text));
        sr_log_notice("upstream %s: server %s %s its health check", c->pc->name, text,
                      is_ok ? "passes" : "fails");
        c->was_healthy = is_ok;
    }
    uv_timer_start(&c->timer, on_check_timer, check_interval_ms(c), 0);
}

static void
on_check_timer(uv_timer_t *timer)
{
    struct sr_health_check *c = timer->data;

    if (c->is_probing) {
        check_round_end(c, false); /* the deadline: no answer in time */
        return;
    }
    check_round_start(c);
}

int
sr_health_start(struct sr_health *health, uv_loop_t *loop, struct sr_generation *gen, size_t worker,
                size_t n_workers)
{
    const struct sr_config *cfg = &gen->cfg;
    size_t i;
    size_t j;

    if (worker != 0) {
        return 0; /* worker 0 checks for all: one probe per server and round, not N */
    }

    for (i = 0; i < cfg->n_pools; i++) {
        if (cfg->pools[i].health_check_ms == 0) {
            continue;
        }
        for (j = 0; j < cfg->pools[i].n_servers; j++) {
            struct sr_health_check *c = calloc(1, sizeof(*c));

            if (c == NULL) {
                return UV_ENOMEM;
            }
            c->health = health;
            c->gen = sr_generation_ref(gen);
            c->pool_index = i;
            c->n_workers = n_workers;
            c->pc = &cfg->pools[i];
            c->index = j;
            c->was_healthy = true; /* as the pool starts: log only a change */
            uv_timer_init(loop, &c->timer);
            c->timer.data = c;
            c->n_pending = 1;
            c->next = health->checks;
            health->checks = c;
            health->n_open++;
            /* Not a reason to keep the loop alive after a drain. */
            uv_unref((uv_handle_t *)&c->timer);
            check_round_start(c);
        }
    }
    return 0;
}

void
sr_health_stop(struct sr_health *health)
{
    struct sr_health_check *c;

    for (c = health->checks; c != NULL; c = c->next) {
        if (c->is_stopped) {
            continue;
        }
        c->is_stopped = true;
        c->is_probing = false;
        if (c->is_tcp_open) {
            c->is_tcp_open = false;
            uv_close((uv_handle_t *)&c->tcp, on_check_handle_close);
        }
        uv_cancel((uv_req_t *)&c->resolve_req);
        uv_close((uv_handle_t *)&c->timer, on_check_handle_close);
    }
}
