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
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <uv.h>

#include "sniroute/core/shared.h"
#include "sniroute/core/sockmap.h"

/* A FIN waits for the bytes before it, or a paused socket for its bytes on the peer to
 * drain: look again after this, doubling up to the cap (a peer that does not read may keep
 * them queued for as long as it likes). */
#define SR_KRELAY_RECHECK_MIN_MS 1
#define SR_KRELAY_RECHECK_MAX_MS 250

/* A paused backend socket goes back to the program once no more than this of its bytes
 * wait on the client's socket (the program reports it past 4 MiB: sockmap.bpf.c). */
#define SR_KRELAY_RESUME_AT (1u << 20)

/* No pause for this long after our own system calls held a socket's lock (a join's kick, a
 * resume, a FIN passed on): bytes that came meanwhile are parsed later by the kernel's work
 * item, which a pause must not meet halfway (sr_sockmap_pause). The program reports the
 * socket again every millisecond while it is over its limit. */
#define SR_KRELAY_SETTLE_MS 2

/* A client socket paused for a slow backend, its bytes through, waits this long for the
 * whole connection to leave the kernel path before its direction goes to the worker alone
 * (a split). Both directions in the worker moved 5.0-5.6 Gbit/s each way in bench_loadgen
 * bulk, a split 4.4: the worker's writes into the backend's socket hold its lock, so the
 * kernel's receive on it waits for the stream parser's work item. */
#define SR_KRELAY_SPLIT_AFTER_MS 100

/* Socket 0 is the client's, 1 the backend's (the order of the pair's cookies). */
struct sr_krelay {
    struct sr_sockmap_pair pair;
    uint64_t sent_base[2]; /* what had gone into socket i's send queue at the join */
    uint64_t read_base[2]; /* what the worker had read from socket i at the join */
    uint64_t recheck_ms;   /* next wait for a FIN still held back; 0: none */
    uint32_t slot;         /* in the worker's table (the reports' tag) */
    bool is_unhooked;      /* out of the program's map (a leave): bytes wait in the sockets */
    bool is_paused[2];     /* socket i is out of the program's map until its bytes drain */
    bool is_split;         /* the client's direction is the worker's, the backend's the kernel's */
    /* While paused: what waited on the peer at the last look, and when (to time the next
     * look by how fast it drains), and that next look in ms (0: back off as for a FIN). */
    uint64_t drain_seen[2];
    uint64_t drain_seen_ms[2];
    uint64_t drain_next_ms;
    uint64_t locked_ms[2]; /* when our last call that holds socket i's lock ran */
    uint64_t split_due_ms; /* when a drained client socket splits; 0: not drained yet */
};

/* A worker's end of the program's reports: its ring, watched in its reactor, and a table
 * of its kernel-relayed connections, which a report names by slot and generation (the
 * tag), so that a report that comes after its connection closed finds nothing. */
struct sr_krelay_worker {
    struct sr_watch watch;
    struct sr_sockmap_reports *reports;
    struct sr_conn **conns; /* [cap], by slot; NULL: free */
    uint32_t *gens;         /* [cap]: bumped when the slot is freed */
    uint32_t *free;         /* [cap]: free slots below n_used, n_free of them */
    uint32_t n_free;
    uint32_t n_used; /* slots ever handed out */
    uint32_t cap;
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

static bool
slot_take(struct sr_krelay_worker *w, struct sr_conn *conn, uint32_t *slot)
{
    if (w->n_free > 0) {
        *slot = w->free[--w->n_free];
    } else {
        if (w->n_used == w->cap) {
            uint32_t cap = w->cap == 0 ? 64 : w->cap * 2;
            struct sr_conn **conns = realloc(w->conns, cap * sizeof(*conns));
            uint32_t *gens;
            uint32_t *free_slots;

            if (conns == NULL) {
                return false;
            }
            w->conns = conns;
            gens = realloc(w->gens, cap * sizeof(*gens));
            if (gens == NULL) {
                return false;
            }
            w->gens = gens;
            free_slots = realloc(w->free, cap * sizeof(*free_slots));
            if (free_slots == NULL) {
                return false;
            }
            w->free = free_slots;
            memset(w->gens + w->cap, 0, (cap - w->cap) * sizeof(*gens));
            w->cap = cap;
        }
        *slot = w->n_used++;
    }
    w->conns[*slot] = conn;
    return true;
}

static void
slot_give(struct sr_krelay_worker *w, uint32_t slot)
{
    w->conns[slot] = NULL;
    w->gens[slot]++;
    w->free[w->n_free++] = slot;
}

static uint64_t
slot_tag(const struct sr_krelay_worker *w, uint32_t slot)
{
    return (uint64_t)w->gens[slot] << 32 | slot;
}

static void krelay_pause(struct sr_conn *conn, int i);

/* A report from the program: socket <cookie> of connection <tag> has too much waiting. */
static void
on_report(void *ctx, uint64_t tag, uint64_t cookie)
{
    struct sr_krelay_worker *w = ctx;
    uint32_t slot = (uint32_t)tag;
    struct sr_conn *conn;

    if (slot >= w->n_used || w->gens[slot] != (uint32_t)(tag >> 32) || w->conns[slot] == NULL) {
        return; /* closed since */
    }
    conn = w->conns[slot];
    if (cookie == conn->krelay->pair.cookie[0]) {
        krelay_pause(conn, 0);
    } else if (cookie == conn->krelay->pair.cookie[1]) {
        krelay_pause(conn, 1);
    }
}

static void
on_reports(struct sr_watch *watch, uint32_t events)
{
    struct sr_krelay_worker *w =
        (struct sr_krelay_worker *)((char *)watch - offsetof(struct sr_krelay_worker, watch));

    (void)events;
    sr_sockmap_reports_read(w->reports);
}

int
sr_krelay_worker_open(struct sr_conn_set *set)
{
    struct sr_sockmap *sm = set->shared->sockmap;
    struct sr_krelay_worker *w;
    int rc;

    if (sm == NULL) {
        return 0;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return UV_ENOMEM;
    }
    w->reports = sr_sockmap_reports_open(sm, set->worker, on_report, w);
    if (w->reports == NULL) {
        free(w);
        return UV_ENOMEM;
    }
    sr_watch_init(&w->watch, sr_sockmap_reports_fd(w->reports), on_reports);
    rc = sr_watch_set(&set->res->reactor, &w->watch, EPOLLIN);
    if (rc != 0) {
        sr_sockmap_reports_free(w->reports);
        free(w);
        return rc;
    }
    set->krelay_worker = w;
    return 0;
}

void
sr_krelay_worker_close(struct sr_conn_set *set)
{
    struct sr_krelay_worker *w = set->krelay_worker;

    if (w == NULL) {
        return;
    }
    sr_watch_clear(&set->res->reactor, &w->watch); /* the ring's descriptor stays open */
    sr_sockmap_reports_free(w->reports);
    free(w->conns);
    free(w->gens);
    free(w->free);
    free(w);
    set->krelay_worker = NULL;
}

bool
sr_krelay_start(struct sr_conn *conn)
{
    struct sr_sockmap *sm = krelay_map(conn);
    struct sr_reactor *reactor = &conn->set->res->reactor;
    struct sr_krelay_worker *w = conn->set->krelay_worker;
    struct sr_krelay *kr;
    int i;

    if (sm == NULL || w == NULL || conn->http_track != NULL || conn->up.pending != 0 ||
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
        if (sr_sockmap_sent(side_fd(conn, i), &kr->sent_base[i]) != 0 ||
            sr_sockmap_read_so_far(side_fd(conn, i), &kr->read_base[i]) != 0) {
            free(kr);
            return false;
        }
    }
    if (!slot_take(w, conn, &kr->slot)) {
        free(kr);
        return false;
    }
    if (sr_sockmap_join(sm, conn->client.fd, conn->backend.fd, slot_tag(w, kr->slot),
                        conn->set->worker, &kr->pair) != 0) {
        slot_give(w, kr->slot);
        free(kr);
        return false;
    }
    conn->krelay = kr;
    /* Bytes that came before the join wait in the receive queues until the next segment:
     * have the program take them now. Then watch for FINs and errors only. */
    kr->locked_ms[0] = kr->locked_ms[1] = sr_conn_now(conn);
    if (sr_sockmap_kick(conn->client.fd) != 0 || sr_sockmap_kick(conn->backend.fd) != 0 ||
        sr_watch_set(reactor, &conn->client, SR_KRELAY_EVENTS) != 0 ||
        sr_watch_set(reactor, &conn->backend, SR_KRELAY_EVENTS) != 0) {
        /* The sockets are in the maps: the connection cannot go back to the worker without
         * the checks of a leave. Let the next event or the deadline find the error. */
        conn->detail = "cannot watch a kernel-relayed connection";
    }
    return true;
}

/* Look again soon (a FIN, a leave or a pause waits for the kernel), backing off. */
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

/* Is socket <i>'s direction the worker's now (a split: its bytes on the peer went through
 * before the worker read more)? */
static bool
is_workers(const struct sr_conn *conn, int i)
{
    return i == 0 && conn->krelay->is_split;
}

/* How many of the bytes the program took from socket <i> (<count>, read just before) have
 * not yet gone into its peer's send queue (they wait on the peer's socket), in <*waiting>.
 * Returns false when that cannot be read now. */
static bool
waiting_after(struct sr_conn *conn, int i, const struct sr_sockmap_count *count,
              uint64_t *waiting)
{
    uint64_t sent;

    if (sr_sockmap_sent(side_fd(conn, 1 - i), &sent) != 0) {
        return false;
    }
    *waiting = count->bytes - (sent - conn->krelay->sent_base[1 - i]);
    return true;
}

/* The same, reading the program's count. */
static bool
waiting_on_peer(struct sr_conn *conn, int i, uint64_t *waiting)
{
    struct sr_sockmap_count count;

    return sr_sockmap_count(krelay_map(conn), &conn->krelay->pair, i, &count) == 0 &&
           waiting_after(conn, i, &count, waiting);
}

/* Has every byte the program took from socket <i> gone into its peer's send queue? Once
 * its FIN has been passed on, yes (and the peer's count of bytes sent includes that FIN). */
static bool
is_taken_on(struct sr_conn *conn, int i)
{
    uint64_t waiting;

    if (side_flow(conn, i)->wait == SR_FLOW_DONE || is_workers(conn, i)) {
        return true;
    }
    return waiting_on_peer(conn, i, &waiting) && waiting == 0;
}

/* Has the program taken (<count>) every byte that arrived on socket <i> (<received>, read
 * before the count; its FIN, if it came, is counted by TCP and not by the program)? Bytes
 * that arrive while a system call holds the socket's lock wait in its receive queue for
 * the stream parser's work item, even after the FIN that followed them has woken us;
 * SIOCINQ cannot see them on a socket with a psock (tcp_bpf's ioctl counts only what was
 * passed back to user space). Passing that FIN on before them made the kernel's push fail
 * with EPIPE, a reset (bench_loadgen integrity: about 1 connection in 1,000). */
static bool
is_all_taken(struct sr_conn *conn, int i, uint64_t received, const struct sr_sockmap_count *count)
{
    /* (A FIN that came before the join would be counted in read_base too, but then the
     * join fails: a sockhash takes only established sockets.) */
    return count->bytes >=
           received - conn->krelay->read_base[i] - (side_flow(conn, i)->is_eof ? 1 : 0);
}

/* That, and is nothing left in socket <i> for the program to take? (While the worker is
 * leaving the kernel path, what is left is the worker's to read.) A paused socket may hold
 * bytes the program has not seen: so never. */
static bool
is_passed_on(struct sr_conn *conn, int i)
{
    struct sr_krelay *kr = conn->krelay;
    struct sr_sockmap_count count;
    uint64_t received;
    uint64_t waiting;

    if (side_flow(conn, i)->wait == SR_FLOW_DONE || is_workers(conn, i)) {
        return true;
    }
    if (kr->is_paused[i]) {
        return false; /* its bytes go on once it is resumed, or through the worker */
    }
    if (kr->is_unhooked) {
        return is_taken_on(conn, i);
    }
    if (sr_sockmap_received(side_fd(conn, i), &received) != 0 ||
        sr_sockmap_count(krelay_map(conn), &kr->pair, i, &count) != 0) {
        return false;
    }
    if (!is_all_taken(conn, i, received, &count)) {
        (void)sr_sockmap_kick(side_fd(conn, i)); /* the parser's work item may be idle */
        kr->locked_ms[i] = sr_conn_now(conn);
        return false;
    }
    return waiting_after(conn, i, &count, &waiting) && waiting == 0;
}

/* Pause socket <i>, which the program reported: too many of its bytes wait on the peer. */
static void
krelay_pause(struct sr_conn *conn, int i)
{
    struct sr_krelay *kr = conn->krelay;

    if (kr->is_paused[i] || kr->is_unhooked || is_workers(conn, i) || side_flow(conn, i)->is_eof) {
        return; /* already, leaving, the worker's, or nothing more comes */
    }
    if (sr_conn_now(conn) - kr->locked_ms[i] < SR_KRELAY_SETTLE_MS) {
        return; /* reported again soon */
    }
    if (sr_sockmap_pause(krelay_map(conn), &kr->pair, i, side_fd(conn, i)) != 0) {
        return; /* the program reports it again */
    }
    kr->is_paused[i] = true;
    kr->drain_seen[i] = UINT64_MAX; /* not looked at yet */
    kr->drain_seen_ms[i] = sr_conn_now(conn);
    kr->recheck_ms = 0;
    recheck(conn);
}

/* A paused socket still has <waiting> bytes on its peer: when to look again, from how fast
 * they drained since the last look (a client that reads at line rate is looked at just as
 * it reaches SR_KRELAY_RESUME_AT; one that reads nothing backs off to the cap). */
static void
drain_estimate(struct sr_conn *conn, int i, uint64_t waiting)
{
    struct sr_krelay *kr = conn->krelay;
    uint64_t now = sr_conn_now(conn);
    uint64_t dt = now - kr->drain_seen_ms[i];
    uint64_t next = 0;

    if (kr->drain_seen[i] != UINT64_MAX && kr->drain_seen[i] > waiting && dt > 0) {
        uint64_t per_ms = (kr->drain_seen[i] - waiting) / dt;

        if (per_ms > 0) {
            next = (waiting - SR_KRELAY_RESUME_AT) / per_ms;
            next = next < SR_KRELAY_RECHECK_MIN_MS   ? SR_KRELAY_RECHECK_MIN_MS
                   : next > SR_KRELAY_RECHECK_MAX_MS ? SR_KRELAY_RECHECK_MAX_MS
                                                     : next;
        }
    }
    kr->drain_seen[i] = waiting;
    kr->drain_seen_ms[i] = now;
    if (next != 0 && (kr->drain_next_ms == 0 || next < kr->drain_next_ms)) {
        kr->drain_next_ms = next;
    }
}

/* Has the drained client socket waited SR_KRELAY_SPLIT_AFTER_MS for a leave? */
static bool
is_split_due(struct sr_conn *conn)
{
    struct sr_krelay *kr = conn->krelay;
    uint64_t now = sr_conn_now(conn);

    if (kr->split_due_ms == 0) {
        kr->split_due_ms = now + SR_KRELAY_SPLIT_AFTER_MS;
    }
    return now >= kr->split_due_ms;
}

/* Resume every paused socket whose bytes on the peer have drained: the backend's goes back
 * to the program (a slow client holds its backend back for as long as it is slow). Two go
 * to the worker instead, once nothing of theirs waits on the peer. The client's socket,
 * paused because its backend reads slowly: putting an accepted socket back into the map
 * under bulk both ways sent backend bytes back to the backend while the program ran
 * without a stream parser, and with it starved the upload (thousands of pause cycles,
 * 0.3 Gbit/s; kernel 6.18, bench_loadgen bulk), while the backend's socket came back clean
 * every time. So the connection leaves the kernel path, and the worker's relay (with its
 * own backpressure) reads what waits in the sockets; if that cannot be done for a while,
 * the client's direction goes to the worker alone (a split) and the backend's stays in the
 * kernel, since it may wait on a client that reads nothing until its upload is through
 * (waiting for both to drain stalled such a connection for good). And a backend's socket
 * whose FIN came meanwhile (the kernel takes only established sockets into a sockhash):
 * the connection leaves. Returns false when it has left. */
static bool
krelay_resume(struct sr_conn *conn)
{
    struct sr_krelay *kr = conn->krelay;
    uint64_t waiting;
    int i;

    kr->drain_next_ms = 0;
    for (i = 0; i < 2; i++) {
        if (!kr->is_paused[i] || !waiting_on_peer(conn, i, &waiting)) {
            continue;
        }
        if (waiting > SR_KRELAY_RESUME_AT) {
            drain_estimate(conn, i, waiting);
            continue;
        }
        if (i == 1 && !side_flow(conn, i)->is_eof &&
            sr_sockmap_resume(krelay_map(conn), &kr->pair, i, side_fd(conn, i)) == 0) {
            kr->locked_ms[i] = sr_conn_now(conn);
            kr->is_paused[i] = false;
        } else if (waiting == 0 && sr_krelay_leave(conn) == 0) {
            return false;
        } else if (i == 0 && waiting == 0 && !kr->is_unhooked && is_split_due(conn)) {
            /* The worker reads the socket from here on, to its end (a FIN seen while it
             * was paused is read again); relay.c watches it. */
            kr->is_paused[0] = false;
            kr->is_split = true;
            sr_sockmap_note_split(krelay_map(conn));
            conn->up.wait = SR_FLOW_WAIT_SRC;
            conn->up.is_eof = false;
        }
    }
    return true;
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

        if (!flow->is_eof || flow->is_shut || is_workers(conn, i)) {
            continue;
        }
        if (!is_passed_on(conn, i)) {
            is_waiting = true;
            continue;
        }
        flow->wait = SR_FLOW_DONE;
        kr->locked_ms[1 - i] = sr_conn_now(conn);
        if (!side_flow(conn, 1 - i)->is_shut && shutdown(flow->dst_fd, SHUT_WR) != 0 &&
            errno != ENOTCONN) {
            return krelay_fail(conn, 1 - i, SR_ERRNO(errno));
        }
        flow->is_shut = true;
    }
    if (conn->up.is_shut && conn->down.is_shut) {
        return SR_KRELAY_DONE;
    }
    if ((kr->is_paused[0] || kr->is_paused[1]) && kr->drain_next_ms != 0) {
        kr->recheck_ms = kr->drain_next_ms; /* backs off from there if the drain stalls */
        sr_resources_deadline_set(conn->set->res, &conn->deadline,
                                  sr_conn_now(conn) + kr->recheck_ms);
    } else if (is_waiting || kr->is_unhooked || kr->is_paused[0] || kr->is_paused[1]) {
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
    if ((events & (EPOLLRDHUP | EPOLLHUP)) && !is_workers(conn, i)) {
        side_flow(conn, i)->is_eof = true; /* (the worker reads its own to the end) */
    }
    return krelay_finish(conn);
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
    now_ns = uv_hrtime(); /* after the counts: a byte may have come meanwhile */
    if (last_ns != 0) {
        /* bpf_ktime_get_ns() and uv_hrtime() both read CLOCK_MONOTONIC. */
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
    if (!krelay_resume(conn)) {
        *recheck_ms = 0; /* the worker relays it now */
        return SR_KRELAY_GOING;
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
    bool is_split;
    int i;

    if (kr == NULL) {
        return 0;
    }
    is_split = kr->is_split;
    /* Quiet now? Then stop the program and look again: a byte may have come in between.
     * Never wait out of the program's map: the other direction would stop with it, and a
     * peer that waits for it to move before it reads would never let this one drain. (A
     * paused socket is out already; what waits in it is the worker's to read.) */
    for (i = 0; i < 2; i++) {
        if (is_workers(conn, i)) {
            continue; /* out of the program's map already, and its bytes through */
        }
        if (kr->is_paused[i] ? !is_taken_on(conn, i) : !is_passed_on(conn, i)) {
            return UV_EBUSY;
        }
        if (!kr->is_unhooked && sr_conn_now(conn) - kr->locked_ms[i] < SR_KRELAY_SETTLE_MS) {
            recheck(conn); /* as for a pause (SR_KRELAY_SETTLE_MS) */
            return UV_EBUSY;
        }
    }
    sr_sockmap_unhook(sm, &kr->pair, conn->client.fd, conn->backend.fd);
    kr->is_unhooked = true;
    if (!is_taken_on(conn, 0) || !is_taken_on(conn, 1)) {
        kr->is_unhooked = false;
        for (i = 0; i < 2; i++) {
            kr->locked_ms[i] = sr_conn_now(conn);
            if (!kr->is_paused[i] && !is_workers(conn, i) &&
                sr_sockmap_resume(sm, &kr->pair, i, side_fd(conn, i)) != 0) {
                /* Cannot go back in, cannot leave yet: the deadline's check finds the rest. */
                kr->is_unhooked = true;
            }
        }
        if (kr->is_unhooked) {
            recheck(conn);
        }
        return UV_EBUSY;
    }
    sr_sockmap_leave(sm, &kr->pair); /* out of the program's map already (above) */
    sr_krelay_settle(conn);
    /* A direction whose FIN has not been passed on reads its socket to the end again: the
     * bytes before that FIN may still be in it (a paused socket's). */
    for (i = 0; i < 2; i++) {
        struct sr_flow *flow = side_flow(conn, i);

        if (flow->wait != SR_FLOW_DONE && !(i == 0 && is_split)) {
            flow->wait = SR_FLOW_WAIT_SRC;
            flow->is_eof = false;
        }
    }
    /* (After a split the client's direction may be waiting for the backend's socket.) */
    if (sr_watch_set(reactor, &conn->client, conn->up.wait == SR_FLOW_WAIT_SRC ? EPOLLIN : 0) !=
            0 ||
        sr_watch_set(reactor, &conn->backend,
                     (conn->down.wait == SR_FLOW_WAIT_SRC ? EPOLLIN : 0) |
                         (conn->up.wait == SR_FLOW_WAIT_DST ? EPOLLOUT : 0)) != 0) {
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
    slot_give(conn->set->krelay_worker, kr->slot);
    free(kr);
    conn->krelay = NULL;
}

bool
sr_krelay_is_split(const struct sr_conn *conn)
{
    return conn->krelay != NULL && conn->krelay->is_split;
}

uint32_t
sr_krelay_watch(const struct sr_conn *conn, bool is_client, uint32_t workers)
{
    if (workers == 0) {
        return SR_KRELAY_EVENTS; /* any watch reports errors; this one the FIN, once */
    }
    /* Level-triggered, as the worker's relay needs: the backend's FIN only until seen. */
    return workers | (!is_client && !conn->down.is_eof ? EPOLLRDHUP : 0);
}
