/* SPDX-License-Identifier: MIT */
/* The listening UDP sockets of a worker's QUIC path (quicsock.h): bound per address of the
 * protocol = quic listeners (pktinfo on a wildcard), kept across reloads, retired when their
 * address is gone, duplicated for a binary upgrade. Not here: reading them (quicflow.c) and
 * freeing them (quiclife.c); the socket options themselves are udp.c's. */
#include "sniroute/proxy/quicsock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "sniroute/core/shared.h"
#include "sniroute/core/upgrade.h"
#include "sniroute/observe/log.h"
#include "sniroute/proxy/quiclife.h"
#include "sniroute/proxy/udp.h"

/* Bind a socket for address <addr> of listener <lc> (<lid> its metrics row). */
static struct sr_quic_sock *
sock_open(struct sr_quic *q, const struct sr_listener_config *lc, uint32_t lid,
          const struct sr_addr *addr)
{
    struct sr_quic_sock *s = calloc(1, sizeof(*s));
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
        sr_watch_init(&s->watch, fd, q->on_sock_ready);
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
    struct sr_quic_sock *s;
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
    struct sr_quic_sock *s;
    struct sr_quic_sock *next;

    for (s = q->socks; s != NULL; s = next) {
        next = s->next;
        if (s->is_new) {
            sr__quic_sock_close(s);
        }
    }
}

void
sr_quic_commit(struct sr_quic *q, struct sr_generation *gen)
{
    const struct sr_config *cfg = &gen->cfg;
    struct sr_quic_sock *s;
    struct sr_quic_sock *next;
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
            sr__quic_sock_maybe_close(s);
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
    const struct sr_quic_sock *s;
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
