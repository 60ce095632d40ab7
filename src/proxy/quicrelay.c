/* SPDX-License-Identifier: MIT */
/* The relay of a routed QUIC flow (quicrelay.h): its connected socket, the held datagrams
 * sent in order, then client datagrams up (gathered per flow from a batch, one sendmmsg) and
 * the upstream's down (recvmmsg, then sendmmsg from the address the client sent to), each
 * counted. Not here: the datagrams' way to their flow (quicflow.c), routing (quicintake.c),
 * timeouts and the end (quiclife.c). */
#include "sniroute/proxy/quicrelay.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <uv.h>

#include "sniroute/config/pool.h"
#include "sniroute/core/generation.h"
#include "sniroute/core/reactor.h"
#include "sniroute/observe/log.h"
#include "sniroute/observe/metrics.h"
#include "sniroute/proxy/quiclife.h"
#include "sniroute/proxy/quicmigrate.h"
#include "sniroute/proxy/udp.h"

/* Batches read from a flow's socket per wakeup: fewer than from a listening socket (see
 * quicflow.c); level-triggered epoll comes back for the rest once the others have had their
 * turn. */
#define SR_QUIC_FLOW_ROUNDS 2

static void on_backend_ready(struct sr_watch *watch, uint32_t events);

/* An error <err> (a negated errno) of the flow's socket: the upstream refused (ICMP port
 * unreachable) or cannot be reached. Before any answer that is a failed connect; after,
 * the upstream went away. */
static void
flow_upstream_error(struct sr_quic_flow *f, int err)
{
    f->detail = uv_err_name(err);
    if (!f->has_answer && f->uid != UINT32_MAX) {
        sr_metrics_connect_failed(f->q->host.metrics, f->uid,
                                  sr_metrics_connect_error_from_errno(err));
    }
    sr__quic_flow_end(f, f->has_answer ? "backend_reset" : "connect_failed");
}

static bool
is_flow_fatal(int err)
{
    return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH;
}

/* Send <iov>[0..n) from the client to the upstream; count what went. */
static void
send_up(struct sr_quic_flow *f, struct iovec *iov, size_t n)
{
    size_t sent;
    size_t i;
    int err;

    sent = sr_udp_send(f->backend.fd, NULL, NULL, iov, NULL, n, &f->up_gso, &err);
    for (i = 0; i < sent; i++) {
        f->bytes_in += iov[i].iov_len;
    }
    f->n_in += sent;
    for (i = sent; i < n; i++) {
        sr__quic_dropped(f->q, f->lid, SR_METRICS_QDROP_SEND_FAILED);
    }
    if (sent < n && is_flow_fatal(err)) {
        flow_upstream_error(f, -err);
    }
}

void
sr__quic_run_flush(struct sr_quic *q)
{
    struct sr_quic_flow *f = q->run_flow;
    size_t n = q->n_run;

    q->run_flow = NULL;
    q->n_run = 0;
    if (f != NULL && n > 0 && f->state == SR_QF_RELAYING) {
        send_up(f, q->run, n);
    }
}

/* Connected: hold nothing more, watch the socket, send what was held and <cur>/<cur_len>
 * (a datagram not held, or NULL), in the order received. */
static void
flow_relay(struct sr_quic_flow *f, const uint8_t *cur, size_t cur_len)
{
    struct sr_quic *q = f->q;
    struct iovec iov[SR_QUIC_HOLD_DGRAMS_MAX + 1];
    struct sr_quic_flow_setup *st = f->setup;
    size_t n = 0;
    size_t off = 0;
    int rc;

    f->state = SR_QF_RELAYING;
    rc = sr_watch_set(q->host.reactor, &f->backend, EPOLLIN);
    if (rc != 0) {
        f->detail = uv_err_name(rc);
        sr__quic_flow_end(f, "error");
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
    if (f->state != SR_QF_RELAYING) {
        return; /* the upstream refused at once */
    }
    /* The setup goes: an established flow costs what struct sr_quic_flow does. */
    if (st != NULL) {
        if (st->addrs != NULL) {
            uv_freeaddrinfo(st->addrs);
        }
        free(st->held);
        free(st);
        f->setup = NULL;
    }
    sr__quic_flow_deadline(f, f->routed_ms + f->gen->cfg.connect_timeout_ms);
}

void
sr__quic_flow_connect(struct sr_quic_flow *f, const struct addrinfo *ai, const uint8_t *cur,
                      size_t cur_len)
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
        sr__quic_flow_end(f, fd == UV_EMFILE || fd == UV_ENFILE ? "error" : "connect_failed");
        return;
    }
    sr_watch_init(&f->backend, fd, on_backend_ready);
    flow_relay(f, cur, cur_len);
}

static void
on_backend_ready(struct sr_watch *watch, uint32_t events)
{
    struct sr_quic_flow *f =
        (struct sr_quic_flow *)((char *)watch - offsetof(struct sr_quic_flow, backend));
    struct sr_quic *q = f->q;
    bool was_gso;
    size_t sent;
    int round;
    int err;
    int n;
    int i;

    (void)events;
    for (round = 0; round < SR_QUIC_FLOW_ROUNDS && f->state == SR_QF_RELAYING; round++) {
        n = sr_udp_recv(watch->fd, &q->batch, SR_UDP_RUNS);
        if (n < 0) {
            if (is_flow_fatal(-n)) {
                flow_upstream_error(f, n);
            }
            return;
        }
        if (n == 0) {
            return;
        }
        if (!f->has_answer && f->is_pool_counted) {
            sr_pool_report_success(f->pool, f->pool_index); /* the server took the flow */
        }
        f->has_answer = true;
        f->last_out_ms = sr__quic_now_ms(q);
        for (i = 0; i < n; i++) {
            sr__quic_cid_learn(f, q->batch.iov[i].iov_base, q->batch.iov[i].iov_len);
        }
        /* A run the kernel coalesced leaves as one buffer too, cut by the kernel into the
         * datagrams the upstream sent: the client sees the same datagrams either way. */
        was_gso = !f->sock->gso.no_gso;
        sent = sr_udp_send(f->sock->watch.fd, &f->client, &f->local, q->batch.iov, q->batch.seg,
                           (size_t)n, &f->sock->gso, &err);
        if (was_gso && f->sock->gso.no_gso) {
            sr_log_notice("QUIC socket %s: the kernel will not send UDP GSO buffers from it; "
                          "datagrams go one by one from now on",
                          f->sock->addr_text);
        }
        for (i = 0; i < n; i++) {
            uint64_t dgrams = sr_udp_datagrams(q->batch.iov[i].iov_len, q->batch.seg[i]);

            if (i < (int)sent) {
                f->bytes_out += q->batch.iov[i].iov_len;
                f->n_out += dgrams;
                continue;
            }
            while (dgrams-- > 0) {
                sr__quic_dropped(q, f->lid, SR_METRICS_QDROP_SEND_FAILED);
            }
        }
        if (n < SR_UDP_BATCH) {
            return;
        }
    }
}
