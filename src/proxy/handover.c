/* SPDX-License-Identifier: MIT */
/* The connection handover of a binary upgrade (handover.h): which connections may move,
 * the record that goes with one, and a connection made from a record on the new side.
 * core/upgrade.c carries the messages. */
#include "sniroute/proxy/handover.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "sniroute/proxy/connect.h"
#include "sniroute/proxy/krelay.h"
#include "sniroute/proxy/relay.h"

/* A handed-over connection's texts fit the message (upgrade_msg.h): a listener name, a server
 * name, "pool/host:port" as the log writes it, an ALPN condition. */
_Static_assert(SR_UPGRADE_TEXT_MAX > SR_CONFIG_NAME_MAX + 1 + SR_ADDR_HOST_MAX + 16 &&
                   SR_UPGRADE_TEXT_MAX > SR_NAME_MAX + 1 &&
                   SR_UPGRADE_TEXT_MAX > SR_CONFIG_ALPN_MAX + 1,
               "SR_UPGRADE_TEXT_MAX too small");

static uint64_t
wall_clock_ms(void)
{
    uv_timeval64_t tv;

    if (uv_gettimeofday(&tv) != 0) {
        return 0;
    }
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* --- The old process ------------------------------------------------------------------ */

/* Nothing of <conn> is in flight in this process: it relays, both directions wait for
 * their source with no byte read and not yet written (so no pipe or buffer holds any), no
 * HTTP request tracker has state that could not move, and neither direction has met its
 * end (a half-closed connection is on its way out: it finishes here). Bytes still in the
 * kernel's socket buffers are fine: the new process reads them. */
static bool
is_idle_relay(const struct sr_conn *conn)
{
    return conn->state == SR_CONN_RELAYING && conn->http_track == NULL && !conn->up.is_tracked &&
           conn->up.pending == 0 && conn->down.pending == 0 && conn->up.wait == SR_FLOW_WAIT_SRC &&
           conn->down.wait == SR_FLOW_WAIT_SRC && !conn->up.is_eof && !conn->down.is_eof &&
           conn->client.fd >= 0 && conn->backend.fd >= 0;
}

/* What the new process needs to know about <conn>. */
static void
conn_record(const struct sr_conn *conn, struct sr_upgrade_conn *rec)
{
    uint64_t wall_ms = wall_clock_ms();
    uint64_t age_ms = sr_conn_now(conn) - conn->start_ms;

    memset(rec, 0, sizeof(*rec));
    rec->start_ms = wall_ms > age_ms ? wall_ms - age_ms : 0;
    rec->bytes_in = conn->up.n_bytes;
    rec->bytes_out = conn->down.n_bytes;
    if (conn->client_addr.sa.sa_family == AF_INET) {
        memcpy(&rec->client, &conn->client_addr.in4, sizeof(conn->client_addr.in4));
    } else if (conn->client_addr.sa.sa_family == AF_INET6) {
        memcpy(&rec->client, &conn->client_addr.in6, sizeof(conn->client_addr.in6));
    }
    rec->route = conn->route;
    rec->flags = (conn->is_fallback ? SR_UPGRADE_CONN_FALLBACK : 0) |
                 (conn->has_ech ? SR_UPGRADE_CONN_ECH : 0) |
                 (conn->lcfg->is_http ? SR_UPGRADE_CONN_HTTP : 0);
    snprintf(rec->listener, sizeof(rec->listener), "%s", conn->lcfg->name);
    snprintf(rec->sni, sizeof(rec->sni), "%s", sr_conn_sni(conn));
    sr_connect_upstream_text(conn, rec->upstream, sizeof(rec->upstream));
    sr_connect_upstream_label(conn, rec->label, sizeof(rec->label));
    if (conn->alpn_route != NULL) {
        snprintf(rec->alpn_route, sizeof(rec->alpn_route), "%s", conn->alpn_route);
    }
}

int
sr_handover_send(struct sr_conn *conn, int sock, bool *is_broken)
{
    struct sr_reactor *reactor = &conn->set->res->reactor;
    struct sr_upgrade_conn rec;
    uint32_t client_events = conn->client.events;
    uint32_t backend_events = conn->backend.events;
    int rc;

    if (conn->krelay != NULL) {
        /* Out of the kernel path first, once what it took is through (krelay.h); a
         * half-closed connection finishes here, as in the worker's relay. */
        if (conn->up.is_eof || conn->down.is_eof || sr_krelay_leave(conn) != 0) {
            return UV_EBUSY;
        }
        client_events = conn->client.events;
        backend_events = conn->backend.events;
    }
    if (!is_idle_relay(conn)) {
        return UV_EBUSY;
    }
    conn_record(conn, &rec);
    if (sr_upgrade_msg_check_conn(&rec, -1, -1) != NULL) {
        return UV_EBUSY; /* the new process would refuse it (a config text it cannot log) */
    }
    sr_relay_release(conn); /* an empty pipe or buffer some flow still holds */
    /* Stop watching first: from here on this process never reads these sockets again. */
    sr_watch_clear(reactor, &conn->client);
    sr_watch_clear(reactor, &conn->backend);
    rc = sr_upgrade_msg_send_conn(sock, &rec, conn->client.fd, conn->backend.fd);
    if (rc != 0) {
        /* Not sent: watch again as before and go on relaying here. */
        int err = sr_watch_set(reactor, &conn->client, client_events);

        if (err == 0) {
            err = sr_watch_set(reactor, &conn->backend, backend_events);
        }
        if (err != 0) {
            conn->detail = uv_err_name(err);
            *is_broken = true;
        }
        return rc;
    }
    return 0;
}

/* --- The new process ------------------------------------------------------------------ */

/* The [listener] of the current config an adopted connection counts under: the one of
 * the same name, else the first of the same protocol, else the first. */
static const struct sr_listener_config *
adopt_listener(const struct sr_config *cfg, const struct sr_upgrade_conn *rec)
{
    bool is_http = (rec->flags & SR_UPGRADE_CONN_HTTP) != 0;
    size_t i;

    for (i = 0; i < cfg->n_listeners; i++) {
        if (strcmp(cfg->listeners[i].name, rec->listener) == 0) {
            return &cfg->listeners[i];
        }
    }
    for (i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].is_http == is_http) {
            return &cfg->listeners[i];
        }
    }
    return &cfg->listeners[0];
}

/* The texts an adopted connection keeps, in one allocation. */
static struct sr_conn_adopted *
adopted_new(const struct sr_upgrade_conn *rec)
{
    size_t up_len = strlen(rec->upstream) + 1;
    size_t label_len = strlen(rec->label) + 1;
    size_t alpn_len = strlen(rec->alpn_route) + 1;
    struct sr_conn_adopted *ad = malloc(sizeof(*ad) + up_len + label_len + alpn_len);
    char *p;

    if (ad == NULL) {
        return NULL;
    }
    memset(ad, 0, sizeof(*ad));
    p = (char *)(ad + 1);
    ad->upstream = memcpy(p, rec->upstream, up_len);
    ad->label = memcpy(p + up_len, rec->label, label_len);
    ad->alpn_route =
        alpn_len > 1 ? memcpy(p + up_len + label_len, rec->alpn_route, alpn_len) : NULL;
    ad->base_in = rec->bytes_in;
    ad->base_out = rec->bytes_out;
    return ad;
}

struct sr_conn *
sr_handover_adopt(struct sr_generation *gen, const struct sr_upgrade_conn *rec, uint32_t uid,
                  uint64_t now_ms)
{
    const struct sr_listener_config *lcfg = adopt_listener(&gen->cfg, rec);
    uint64_t wall_ms = wall_clock_ms();
    uint64_t age_ms;
    struct sr_conn *conn;

    conn = calloc(1, sizeof(*conn));
    if (conn != NULL) {
        conn->adopted = adopted_new(rec);
        if (rec->sni[0] != '\0') {
            conn->sni = strdup(rec->sni);
        }
    }
    if (conn == NULL || conn->adopted == NULL || (rec->sni[0] != '\0' && conn->sni == NULL)) {
        if (conn != NULL) {
            free(conn->adopted);
            free(conn->sni);
            free(conn);
        }
        return NULL;
    }
    conn->gen = gen; /* held by the caller, which knows the worker (sr_conn_adopt) */
    conn->lcfg = lcfg;
    conn->routes = &gen->cfg.routes[lcfg->routes];
    conn->state = SR_CONN_RELAYING;
    conn->route = rec->route;
    conn->is_fallback = (rec->flags & SR_UPGRADE_CONN_FALLBACK) != 0;
    conn->has_ech = (rec->flags & SR_UPGRADE_CONN_ECH) != 0;
    conn->alpn_route = conn->adopted->alpn_route;
    sr_watch_init(&conn->client, -1, NULL);
    sr_watch_init(&conn->backend, -1, NULL);
    sr_deadline_init(&conn->deadline);
    conn->up.pipe_fds[0] = conn->up.pipe_fds[1] = -1;
    conn->down.pipe_fds[0] = conn->down.pipe_fds[1] = -1;
    conn->up.n_bytes = rec->bytes_in;
    conn->down.n_bytes = rec->bytes_out;
    if (rec->client.ss_family == AF_INET) {
        memcpy(&conn->client_addr, &rec->client, sizeof(conn->client_addr.in4));
    } else if (rec->client.ss_family == AF_INET6) {
        memcpy(&conn->client_addr, &rec->client, sizeof(conn->client_addr.in6));
    }
    /* The log's duration runs from the accept in the old process. */
    age_ms = wall_ms > rec->start_ms ? wall_ms - rec->start_ms : 0;
    conn->start_ms = now_ms > age_ms ? now_ms - age_ms : 0;
    conn->lid = gen->listener_ids[lcfg - gen->cfg.listeners];
    conn->uid = uid;
    conn->adopted->has_uid = uid != UINT32_MAX;
    return conn;
}
