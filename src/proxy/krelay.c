/* SPDX-License-Identifier: MIT */
/* The kernel path of the relay (krelay.h). The BPF program (core/sockmap.bpf.c) takes each
 * socket's bytes and queues them on its peer's socket, where the kernel pushes them into
 * the peer's send queue as it has room. So a byte the program counted may still be in that
 * queue between the two sockets: before a FIN is passed on (shutdown) or the sockets leave
 * the maps (which would drop such bytes), the peer's send queue must have grown by exactly
 * what the program counted. What went into a send queue is bytes acknowledged plus bytes
 * still in the queue (TCP_INFO's tcpi_bytes_acked plus SIOCOUTQ, read until stable), taken
 * relative to the join. */
#include "sniroute/proxy/krelay.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include <linux/sockios.h>

#include <uv.h>

#include "sniroute/core/shared.h"
#include "sniroute/core/sockmap.h"

/* A FIN waits for the bytes before it: look again after this, doubling up to the cap (a
 * peer that does not read may keep them queued for as long as it likes). */
#define SR_KRELAY_RECHECK_MIN_MS 1
#define SR_KRELAY_RECHECK_MAX_MS 250

/* Socket 0 is the client's, 1 the backend's (the order of the pair's cookies). */
struct sr_krelay {
    struct sr_sockmap_pair pair;
    uint64_t sent_base[2]; /* what had gone into socket i's send queue at the join */
    uint64_t recheck_ms;   /* next wait for a FIN still held back; 0: none */
    bool is_unhooked;      /* out of the program's map: bytes wait in the sockets */
};

/* Watched on a joined socket: its FIN (once: edge-triggered) and errors (always). */
#define SR_KRELAY_EVENTS (EPOLLRDHUP | EPOLLET)

static struct sr_sockmap *
krelay_map(const struct sr_conn *conn)
{
    return conn->set->shared->sockmap;
}

static int
side_fd(const struct sr_conn *conn, int i)
{
    return i == 0 ? conn->client.fd : conn->backend.fd;
}

static struct sr_flow *
side_flow(struct sr_conn *conn, int i)
{
    return i == 0 ? &conn->up : &conn->down; /* the flow whose src is socket i */
}

bool
sr_krelay_start(struct sr_conn *conn)
{
    struct sr_sockmap *sm = krelay_map(conn);
    struct sr_reactor *reactor = &conn->set->res->reactor;
    struct sr_krelay *kr;
    int i;

    if (sm == NULL || conn->http_track != NULL || conn->up.pending != 0 ||
        conn->down.pending != 0 || conn->up.is_eof || conn->down.is_eof ||
        conn->up.wait != SR_FLOW_WAIT_SRC || conn->down.wait != SR_FLOW_WAIT_SRC ||
        !conn->up.is_whole || !conn->down.is_whole) {
        return false;
    }
    kr = calloc(1, sizeof(*kr));
    if (kr == NULL) {
        return false;
    }
    for (i = 0; i < 2; i++) {
        if (sr_sockmap_sent(side_fd(conn, i), &kr->sent_base[i]) != 0) {
            free(kr);
            return false;
        }
    }
    if (sr_sockmap_join(sm, conn->client.fd, conn->backend.fd, &kr->pair) != 0) {
        free(kr);
        return false;
    }
    conn->krelay = kr;
    /* Bytes that came before the join wait in the receive queues until the next segment:
     * have the program take them now. Then watch for FINs and errors only. */
    if (sr_sockmap_kick(conn->client.fd) != 0 || sr_sockmap_kick(conn->backend.fd) != 0 ||
        sr_watch_set(reactor, &conn->client, SR_KRELAY_EVENTS) != 0 ||
        sr_watch_set(reactor, &conn->backend, SR_KRELAY_EVENTS) != 0) {
        /* The sockets are in the maps: the connection cannot go back to the worker without
         * the checks of a leave. Let the next event or the deadline find the error. */
        conn->detail = "cannot watch a kernel-relayed connection";
    }
    return true;
}

/* Has every byte the program took from socket <i> gone into its peer's send queue, and is
 * nothing left in socket <i> for the program to take? */
static bool
is_passed_on(struct sr_conn *conn, int i)
{
    struct sr_krelay *kr = conn->krelay;
    struct sr_sockmap_count count;
    uint64_t sent;
    int inq = 0;

    if (!kr->is_unhooked) {
        if (ioctl(side_fd(conn, i), SIOCINQ, &inq) != 0 || inq != 0) {
            (void)sr_sockmap_kick(side_fd(conn, i));
            return false;
        }
    }
    if (sr_sockmap_count(krelay_map(conn), &kr->pair, i, &count) != 0 ||
        sr_sockmap_sent(side_fd(conn, 1 - i), &sent) != 0) {
        return false;
    }
    return sent - kr->sent_base[1 - i] == count.bytes;
}

/* Look again soon (a FIN or a leave waits for the kernel), backing off. */
static void
recheck(struct sr_conn *conn)
{
    struct sr_krelay *kr = conn->krelay;

    kr->recheck_ms = kr->recheck_ms == 0 ? SR_KRELAY_RECHECK_MIN_MS : kr->recheck_ms * 2;
    if (kr->recheck_ms > SR_KRELAY_RECHECK_MAX_MS) {
        kr->recheck_ms = SR_KRELAY_RECHECK_MAX_MS;
    }
    sr_resources_deadline_set(conn->set->res, &conn->deadline, sr_conn_now(conn) + kr->recheck_ms);
}

static enum sr_krelay_result
krelay_fail(struct sr_conn *conn, int i, int err)
{
    conn->detail = uv_err_name(err);
    return i == 0 ? SR_KRELAY_CLIENT_RESET : SR_KRELAY_BACKEND_RESET;
}

/* Pass on every FIN whose bytes are through. Returns DONE once both ways are, else GOING
 * (with kr->recheck_ms set while a FIN is held back). */
static enum sr_krelay_result
krelay_finish(struct sr_conn *conn)
{
    struct sr_krelay *kr = conn->krelay;
    bool is_waiting = false;
    int i;

    for (i = 0; i < 2; i++) {
        struct sr_flow *flow = side_flow(conn, i);

        if (!flow->is_eof || flow->is_shut) {
            continue;
        }
        if (!is_passed_on(conn, i)) {
            is_waiting = true;
            continue;
        }
        flow->wait = SR_FLOW_DONE;
        if (!side_flow(conn, 1 - i)->is_shut && shutdown(flow->dst_fd, SHUT_WR) != 0 &&
            errno != ENOTCONN) {
            return krelay_fail(conn, 1 - i, SR_ERRNO(errno));
        }
        flow->is_shut = true;
    }
    if (conn->up.is_shut && conn->down.is_shut) {
        return SR_KRELAY_DONE;
    }
    if (is_waiting || kr->is_unhooked) {
        recheck(conn);
    } else {
        kr->recheck_ms = 0;
    }
    return SR_KRELAY_GOING;
}

enum sr_krelay_result
sr_krelay_event(struct sr_conn *conn, bool is_client, uint32_t events)
{
    int i = is_client ? 0 : 1;
    int fd = side_fd(conn, i);

    if (events & EPOLLERR) {
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
            return krelay_fail(conn, i, SR_ERRNO(err));
        }
    }
    if (events & (EPOLLRDHUP | EPOLLHUP)) {
        side_flow(conn, i)->is_eof = true;
    }
    return krelay_finish(conn);
}

static uint64_t
monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

enum sr_krelay_result
sr_krelay_tick(struct sr_conn *conn, uint64_t *recheck_ms)
{
    struct sr_krelay *kr = conn->krelay;
    struct sr_sockmap_count count;
    uint64_t last_ns = 0;
    uint64_t now_ns;
    enum sr_krelay_result res;
    int i;

    for (i = 0; i < 2; i++) {
        if (sr_sockmap_count(krelay_map(conn), &kr->pair, i, &count) == 0 &&
            count.last_ns > last_ns) {
            last_ns = count.last_ns;
        }
    }
    now_ns = monotonic_ns(); /* after the counts: a byte may have come meanwhile */
    if (last_ns != 0) {
        /* bpf_ktime_get_ns() and the loop's clock are both CLOCK_MONOTONIC. */
        uint64_t quiet_ms = last_ns < now_ns ? (now_ns - last_ns) / 1000000u : 0;
        uint64_t now_ms = sr_conn_now(conn);
        uint64_t at_ms = now_ms > quiet_ms ? now_ms - quiet_ms : 0;

        if (at_ms > conn->last_active_ms) {
            conn->last_active_ms = at_ms;
        }
    }
    if (kr->is_unhooked) {
        /* A leave that could neither finish nor go back: finish it once it can, and the
         * worker relays the connection from then on. */
        if (sr_krelay_leave(conn) == 0) {
            *recheck_ms = 0;
            return SR_KRELAY_GOING;
        }
    }
    res = kr->recheck_ms != 0 ? krelay_finish(conn) : SR_KRELAY_GOING;
    *recheck_ms = conn->krelay != NULL ? conn->krelay->recheck_ms : 0;
    return res;
}

int
sr_krelay_leave(struct sr_conn *conn)
{
    struct sr_reactor *reactor = &conn->set->res->reactor;
    struct sr_sockmap *sm = krelay_map(conn);
    struct sr_krelay *kr = conn->krelay;

    if (kr == NULL) {
        return 0;
    }
    /* Quiet now? Then stop the program and look again: a byte may have come in between.
     * Never wait out of the program's map: the other direction would stop with it, and a
     * peer that waits for it to move before it reads would never let this one drain. */
    if (!is_passed_on(conn, 0) || !is_passed_on(conn, 1)) {
        return UV_EBUSY;
    }
    sr_sockmap_unhook(sm, &kr->pair);
    kr->is_unhooked = true;
    if (!is_passed_on(conn, 0) || !is_passed_on(conn, 1)) {
        kr->is_unhooked = false;
        if (sr_sockmap_rehook(sm, conn->client.fd, conn->backend.fd, &kr->pair) != 0 ||
            sr_sockmap_kick(conn->client.fd) != 0 || sr_sockmap_kick(conn->backend.fd) != 0) {
            /* Cannot go back in, cannot leave yet: the deadline's check finds the rest. */
            kr->is_unhooked = true;
            recheck(conn);
        }
        return UV_EBUSY;
    }
    sr_sockmap_leave(sm, conn->client.fd, conn->backend.fd, &kr->pair);
    sr_krelay_settle(conn);
    conn->up.wait = SR_FLOW_WAIT_SRC;
    conn->down.wait = SR_FLOW_WAIT_SRC;
    if (sr_watch_set(reactor, &conn->client, EPOLLIN) != 0 ||
        sr_watch_set(reactor, &conn->backend, EPOLLIN) != 0) {
        return UV_EBUSY; /* the hand-over clears and sets the watches again anyway */
    }
    return 0;
}

void
sr_krelay_settle(struct sr_conn *conn)
{
    struct sr_krelay *kr = conn->krelay;
    struct sr_sockmap_count count;
    int i;

    if (kr == NULL) {
        return;
    }
    for (i = 0; i < 2; i++) {
        if (sr_sockmap_count(krelay_map(conn), &kr->pair, i, &count) == 0) {
            side_flow(conn, i)->n_bytes += count.bytes;
        }
    }
    sr_sockmap_forget(krelay_map(conn), &kr->pair);
    free(kr);
    conn->krelay = NULL;
}
