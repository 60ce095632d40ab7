/* SPDX-License-Identifier: MIT */
/* A worker's QUIC path (quicflow.h): its start and end (new, drain, close, free), and each
 * datagram from a client handed to its flow: a new or unrouted flow's to the intake, a
 * routed one's to the relay. Not here: the listening sockets (quicsock.c), the ClientHello
 * and the route (quicintake.c), the relay (quicrelay.c), a flow's table, deadlines and end
 * (quiclife.c), the Initial reader (wire/quic.c), the socket calls (udp.c). */
#include "sniroute/proxy/quicflow.h"

#include <assert.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "sniroute/core/deadline.h"
#include "sniroute/core/flowtab.h"
#include "sniroute/core/generation.h"
#include "sniroute/core/reactor.h"
#include "sniroute/core/shared.h"
#include "sniroute/observe/log.h"
#include "sniroute/proxy/quicintake.h"
#include "sniroute/proxy/quiclife.h"
#include "sniroute/proxy/quicmigrate.h"
#include "sniroute/proxy/quicrelay.h"
#include "sniroute/proxy/udp.h"
#include "sniroute/wire/quic.h"

/* Batches read from a listening socket per wakeup: a few (it serves every flow of the
 * worker; a flow's socket gets fewer, see quicrelay.c); level-triggered epoll comes back for
 * the rest once the others have had their turn. */
#define SR_QUIC_LISTEN_ROUNDS 8

/* One datagram from a client on <s>. */
static void
on_client_datagram(struct sr_quic *q, struct sr_quic_sock *s, int i)
{
    const union sr_udp_peer *peer = &q->batch.peers[i];
    uint8_t *d = q->batch.iov[i].iov_base;
    size_t len = q->batch.iov[i].iov_len;
    struct sr_udp_local local;
    struct sr_flownode *node;
    struct sr_flowkey key;
    struct sr_quic_flow *f;

    if ((q->batch.msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0 ||
        sr_flowkey_set(&key, s->id, &peer->sa) != 0) {
        sr__quic_dropped(q, s->lid, SR_METRICS_QDROP_NOT_QUIC);
        return;
    }
    node = sr_flowtab_find(&q->table, &key);
    if (node != NULL) {
        f = (struct sr_quic_flow *)node; /* the first member */
    } else {
        sr__quic_run_flush(q);
        sr_udp_local_of(&q->batch, i, &local);
        f = sr__quic_cid_find(q, s, d, len);
        if (f == NULL) {
            sr__quic_flow_start(q, s, &key, peer, &local, d, len);
            return;
        }
        sr__quic_flow_migrate(f, &key, peer, &local); /* NAT rebinding: same flow */
    }
    f->last_in_ms = sr__quic_now_ms(q);
    switch ((enum sr_quic_flow_state)f->state) {
    case SR_QF_RELAYING:
        if (q->run_flow != f || q->n_run == SR_UDP_BATCH) {
            sr__quic_run_flush(q);
            q->run_flow = f;
        }
        q->run[q->n_run].iov_base = d;
        q->run[q->n_run].iov_len = len;
        q->n_run++;
        return;
    case SR_QF_HELLO:
        sr__quic_run_flush(q);
        sr__quic_flow_hello_datagram(f, d, len);
        return;
    case SR_QF_RESOLVING:
        (void)sr__quic_flow_hold(f, d, len); /* retransmits while the name resolves */
        return;
    case SR_QF_REFUSED:
        sr__quic_dropped(q, f->lid, SR_METRICS_QDROP_REFUSED);
        return;
    case SR_QF_CLOSED:
        break;
    }
}

static void
on_sock_ready(struct sr_watch *watch, uint32_t events)
{
    struct sr_quic_sock *s = (struct sr_quic_sock *)watch; /* the first member */
    struct sr_quic *q = s->q;
    int round;
    int n;
    int i;

    (void)events;
    for (round = 0; round < SR_QUIC_LISTEN_ROUNDS; round++) {
        n = sr_udp_recv(watch->fd, &q->batch, SR_UDP_PEER | (s->has_pktinfo ? SR_UDP_PKTINFO : 0));
        for (i = 0; i < n; i++) {
            on_client_datagram(q, s, i);
        }
        sr__quic_run_flush(q); /* before the batch's buffers are read into again */
        if (n < SR_UDP_BATCH || watch->events == 0) {
            return; /* drained (or an error: level-triggered, it comes back if it lasts) */
        }
    }
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
    q->on_sock_ready = on_sock_ready;
    q->timer_due = UINT64_MAX;
    if (uv_random(NULL, NULL, key, sizeof(key), 0, NULL) != 0) {
        key[0] = uv_hrtime() ^ (uint64_t)(uintptr_t)q;
        key[1] = (uint64_t)(uintptr_t)&key ^ ((uint64_t)host->worker << 48);
    }
    if (sr_flowtab_init(&q->table, key[0], key[1]) != 0 ||
        sr_flowtab_init(&q->cids, key[1], key[0]) != 0 || sr_udp_batch_init(&q->batch) != 0) {
        sr_flowtab_fini(&q->table);
        sr_flowtab_fini(&q->cids);
        sr_udp_batch_fini(&q->batch);
        free(q);
        return NULL;
    }
    if (!sr_quic_ctx_init(&q->crypto)) {
        sr_log_notice("QUIC: libcrypto has no AES-128-GCM, AES-128-ECB or HKDF");
        sr_flowtab_fini(&q->table);
        sr_flowtab_fini(&q->cids);
        sr_udp_batch_fini(&q->batch);
        free(q);
        return NULL;
    }
    uv_timer_init(host->loop, &q->timer);
    q->timer.data = q;
    q->reaper.fn = sr__quic_reap;
    q->reaper.is_queued = false;
    q->has_handles = true;
    return q;
}

void
sr_quic_drain(struct sr_quic *q)
{
    bool is_handover;
    struct sr_quic_flow *f;
    struct sr_quic_flow *next;
    struct sr_quic_sock *s;
    struct sr_quic_sock *snext;

    if (q == NULL) {
        return;
    }
    is_handover = atomic_load(&q->host.shared->handover_fd) >= 0;
    if (!q->is_draining) {
        q->is_draining = true;
        q->drain_due_ms = sr__quic_now_ms(q) + (q->gen != NULL ? q->gen->cfg.drain_timeout_ms : 0);
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
            if (f->state == SR_QF_REFUSED) {
                sr__quic_refused_forget(f);
            } else if (is_handover) {
                f->detail = "binary upgrade";
                sr__quic_flow_end(f, "drained");
            } else if (f->deadline.index == SR_DEADLINE_NONE ||
                       f->deadline.due_ms > q->drain_due_ms) {
                sr__quic_flow_deadline(f, q->drain_due_ms);
            }
        }
    } else {
        for (f = q->flows; f != NULL; f = next) {
            next = f->next;
            if (f->state == SR_QF_REFUSED) {
                sr__quic_refused_forget(f);
            } else {
                sr__quic_flow_end(f, "drained");
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
        sr__quic_sock_maybe_close(s);
    }
}

bool
sr_quic_is_stopped(const struct sr_quic *q)
{
    return q == NULL || sr__quic_is_stopped(q);
}

void
sr_quic_close(struct sr_quic *q)
{
    if (q == NULL || q->is_closed) {
        return;
    }
    q->is_closed = true;
    uv_close((uv_handle_t *)&q->timer, NULL);
    sr_reactor_cancel(q->host.reactor, &q->reaper); /* sr_quic_free frees the dead */
}

void
sr_quic_free(struct sr_quic *q)
{
    struct sr_quic_flow *f;
    struct sr_quic_sock *s;

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
        sr__quic_flow_free(f);
    }
    assert(q->flows == NULL);
    sr_deadline_heap_fini(&q->deadlines);
    sr_flowtab_fini(&q->table);
    sr_flowtab_fini(&q->cids);
    sr_udp_batch_fini(&q->batch);
    sr_quic_ctx_fini(&q->crypto);
    free(q);
}
