/* SPDX-License-Identifier: MIT */
/* The relay: once the first bytes have reached the backend, move bytes both ways between
 * the two sockets until both directions are done. A direction starts by reading into a
 * pool buffer and sending it on (two system calls, the cheapest for the small records of
 * a handshake or a request); once a read fills a whole buffer it is a bulk stream and
 * splices through a kernel pipe from then on (socket to pipe to socket: the bytes never
 * enter user space). A pipe or buffer is held only while bytes are in flight, so an idle
 * connection holds neither. The worker's reactor watches the sockets. The relay does not
 * close the connection: it reports what happened (relay.h) and conn.c acts on it. */
#include "sniroute/proxy/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "sniroute/core/reactor.h"
#include "sniroute/core/resources.h"
#include "sniroute/proxy/krelay.h"
#include "sniroute/wire/httpresp.h"

/* A pipe holds 64 KiB by default: one splice moves at most that much. */
#define SR_SPLICE_MAX (64 * 1024)
/* Moves per direction per wakeup before yielding to other connections: a fast stream
 * must not starve the loop (libuv caps its reads per wakeup for the same reason). */
#define SR_FLOW_ROUNDS 8

static void
flow_release(struct sr_conn *conn, struct sr_flow *flow)
{
    if (flow->pipe_fds[0] >= 0) {
        if (flow->pending == 0) {
            sr_resources_pipe_put(conn->set->res, flow->pipe_fds);
        } else {
            /* Bytes left in a pipe on a broken connection: the pipe cannot be reused. */
            close(flow->pipe_fds[0]);
            close(flow->pipe_fds[1]);
        }
        flow->pipe_fds[0] = -1;
        flow->pipe_fds[1] = -1;
    }
    if (flow->buf != NULL) {
        sr_resources_buf_put(conn->set->res, flow->buf);
        flow->buf = NULL;
    }
    if (flow->is_tracked) {
        /* What the tracker let through is sent from http_out: it goes with the buffer, or
         * an idle keep-alive connection would keep the largest request it ever carried. */
        free(conn->http_out.p);
        memset(&conn->http_out, 0, sizeof(conn->http_out));
    }
    flow->pending = 0;
    flow->buf_off = 0;
}

void
sr_relay_release(struct sr_conn *conn)
{
    sr_krelay_settle(conn);
    flow_release(conn, &conn->up);
    flow_release(conn, &conn->down);
}

/* How many bytes the next read may move without user space seeing them: all of them,
 * except on an HTTP listener, where the client's bytes are always read (the request
 * tracker) and the backend's are read up to the end of the body or chunk data in hand
 * (the response reader must see every head). */
static uint64_t
flow_opaque_len(const struct sr_conn *conn, const struct sr_flow *flow)
{
    if (flow->is_tracked) {
        return 0;
    }
    return flow->is_scanned ? sr_http_resp_opaque_len(&conn->http_track->resp) : UINT64_MAX;
}

/* Take a pipe, or failing that (descriptors exhausted) a buffer. */
static int
flow_acquire(struct sr_conn *conn, struct sr_flow *flow)
{
    bool may_splice = flow->is_bulk && flow_opaque_len(conn, flow) > 0;

    if (flow->buf != NULL && may_splice) {
        sr_resources_buf_put(conn->set->res, flow->buf); /* empty: a bulk stream moves to a pipe */
        flow->buf = NULL;
    }
    if (flow->pipe_fds[0] >= 0 && !may_splice) {
        /* Empty (nothing is pending here): a response head comes next, to be read. */
        sr_resources_pipe_put(conn->set->res, flow->pipe_fds);
        flow->pipe_fds[0] = -1;
        flow->pipe_fds[1] = -1;
    }
    if (flow->pipe_fds[0] >= 0 || flow->buf != NULL) {
        return 0;
    }
    if (may_splice && sr_resources_pipe_get(conn->set->res, flow->pipe_fds) == 0) {
        return 0;
    }
    flow->buf = sr_resources_buf_get(conn->set->res);
    return flow->buf != NULL ? 0 : UV_ENOMEM;
}

/* Move bytes from src into the pipe or buffer, into the pipe at most <opaque_len>.
 * Returns the count, 0 at EOF, or a negative UV_E* code (UV_EAGAIN: nothing to read now). */
static ssize_t
flow_fill(struct sr_flow *flow, uint64_t opaque_len)
{
    size_t max = opaque_len < SR_SPLICE_MAX ? (size_t)opaque_len : SR_SPLICE_MAX;
    ssize_t n;

    do {
        if (flow->pipe_fds[0] >= 0) {
            n = splice(flow->src_fd, NULL, flow->pipe_fds[1], NULL, max,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        } else {
            n = recv(flow->src_fd, flow->buf, SR_RELAY_BUF_SIZE, 0);
        }
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        flow->is_whole = errno == EWOULDBLOCK;
        return errno == EWOULDBLOCK ? UV_EAGAIN : SR_ERRNO(errno);
    }
    /* A short recv took everything there was. A short splice may have stopped at a full
     * pipe (it holds 16 pieces, not 64 KiB) in the middle of a segment: only EAGAIN says. */
    flow->is_whole = flow->pipe_fds[0] < 0 && n < SR_RELAY_BUF_SIZE;
    if (n == SR_RELAY_BUF_SIZE && flow->pipe_fds[0] < 0) {
        flow->is_bulk = true;
    }
    return n;
}

/* Move pending bytes from the pipe or buffer to dst. Returns the count or a negative UV_E*
 * code (UV_EAGAIN: dst cannot take more now). */
static ssize_t
flow_flush(struct sr_conn *conn, struct sr_flow *flow)
{
    ssize_t n;

    do {
        if (flow->pipe_fds[0] >= 0) {
            n = splice(flow->pipe_fds[0], NULL, flow->dst_fd, NULL, flow->pending,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        } else {
            /* send, not write: MSG_NOSIGNAL keeps a closed peer from raising SIGPIPE even if
             * someone embeds us without ignoring it. */
            const uint8_t *from = flow->is_tracked ? conn->http_out.p : (uint8_t *)flow->buf;

            n = send(flow->dst_fd, from + flow->buf_off, flow->pending, MSG_NOSIGNAL);
        }
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return errno == EWOULDBLOCK ? UV_EAGAIN : SR_ERRNO(errno);
    }
    return n;
}

static bool
is_client_fd(const struct sr_conn *conn, int fd)
{
    return fd == conn->up.src_fd;
}

/* A socket failed: the caller passes the reset on to the other side so neither end
 * mistakes a broken stream for a complete one. */
static enum sr_relay_result
relay_fail(struct sr_conn *conn, int fd, int err)
{
    conn->detail = uv_err_name(err);
    return is_client_fd(conn, fd) ? SR_RELAY_CLIENT_RESET : SR_RELAY_BACKEND_RESET;
}

/* --- protocol = http -------------------------------------------------------------------- */

enum http_step {
    HTTP_READ,   /* nothing in the way: read src */
    HTTP_FLUSH,  /* bytes to write are pending now */
    HTTP_RETURN, /* the flow waits, or the relay ends (<*res>): stop pumping it */
};

/* What a refused request gets, once the responses owed before it are through. */
static int
http_refusal_code(enum sr_track_result r)
{
    switch (r) {
    case SR_TRACK_STOP:
        return 421; /* RFC 9110 15.5.20: the client may retry on a new connection */
    case SR_TRACK_BAD:
    case SR_TRACK_TOO_LARGE:
        return 400;
    default:
        return 0; /* UNDECIDABLE: the responses cannot be followed, so no answer fits */
    }
}

bool
sr_relay_http_refuse(struct sr_conn *conn, enum sr_track_result r)
{
    if (r == SR_TRACK_NOMEM) {
        conn->detail = uv_err_name(UV_ENOMEM);
        return false;
    }
    conn->http_refused = (uint8_t)r;
    conn->http_refusal = (uint16_t)http_refusal_code(r);
    if (r == SR_TRACK_STOP && conn->denied_by != NULL) {
        conn->http_refusal = 403; /* the head's upstream refuses this client (issue 15) */
    }
    conn->http_stop = SR_HTTP_STOP_DRAINING;
    return true;
}

/* Feed the client's bytes (<n> of them at <in>, or none to pass on what the tracker held)
 * through the request tracker: what it lets through becomes pending; a refusal stops the
 * connection after what came before it. */
static enum http_step
http_feed(struct sr_conn *conn, struct sr_flow *flow, const uint8_t *in, size_t n,
          enum sr_relay_result *res)
{
    enum sr_track_result r;

    conn->http_out.len = 0;
    r = sr_http_track_feed(conn->http_track, in, n, &conn->http_out);
    if (r != SR_TRACK_OK && !sr_relay_http_refuse(conn, r)) {
        *res = SR_RELAY_ERROR;
        return HTTP_RETURN;
    }
    flow->pending = (uint32_t)conn->http_out.len;
    return HTTP_FLUSH;
}

/* The client direction, before it reads: is it refused (shut the backend's write side:
 * no request comes after the refused one), waiting for the backend's answer, or due to
 * pass on what the tracker held? */
static enum http_step
http_up_step(struct sr_conn *conn, struct sr_flow *flow, enum sr_relay_result *res)
{
    if (conn->http_stop != SR_HTTP_STOP_NONE) {
        flow_release(conn, flow);
        flow->wait = SR_FLOW_DONE;
        if (!flow->is_shut) {
            if (shutdown(flow->dst_fd, SHUT_WR) != 0 && errno != ENOTCONN) {
                *res = relay_fail(conn, flow->dst_fd, SR_ERRNO(errno));
                return HTTP_RETURN;
            }
            flow->is_shut = true;
        }
        if (conn->down.wait == SR_FLOW_DONE) {
            /* The backend had already closed and its FIN reached the client: nothing more
             * can come, and no answer of ours fits after that FIN. */
            *res = SR_RELAY_HTTP_REFUSED;
        }
        return HTTP_RETURN;
    }
    if (sr_http_track_is_holding(conn->http_track)) {
        flow_release(conn, flow); /* the held bytes are the tracker's, not the buffer's */
        flow->wait = SR_FLOW_WAIT_PEER;
        return HTTP_RETURN;
    }
    if (conn->http_track->held.len > 0) {
        return http_feed(conn, flow, NULL, 0, res);
    }
    return HTTP_READ;
}

/* The backend direction of a refused connection, with nothing pending: once every request
 * forwarded has its whole response (or the backend has closed), send the refusal after
 * them if one can be placed there, then end with a lingering close. */
static enum http_step
http_down_step(struct sr_conn *conn, struct sr_flow *flow, enum sr_relay_result *res)
{
    size_t len;

    if (conn->http_stop == SR_HTTP_STOP_ANSWERING) {
        *res = SR_RELAY_HTTP_REFUSED; /* the answer is out */
        return HTTP_RETURN;
    }
    if (!sr_http_track_is_answered(conn->http_track) && !flow->is_eof) {
        return HTTP_READ;
    }
    if (conn->http_refusal == 0 || !sr_http_track_is_answered(conn->http_track)) {
        *res = SR_RELAY_HTTP_REFUSED;
        return HTTP_RETURN;
    }
    if (flow->pipe_fds[0] >= 0) {
        flow_release(conn, flow);
    }
    if (flow->buf == NULL) {
        flow->buf = sr_resources_buf_get(conn->set->res);
        if (flow->buf == NULL) {
            conn->detail = uv_err_name(UV_ENOMEM);
            *res = SR_RELAY_ERROR;
            return HTTP_RETURN;
        }
    }
    len = sr_http_error_response(flow->buf, SR_RELAY_BUF_SIZE, conn->http_refusal);
    flow->pending = (uint32_t)len;
    flow->buf_off = 0;
    conn->down.n_bytes += len; /* bytes_out tells what the client was sent */
    conn->http_stop = SR_HTTP_STOP_ANSWERING;
    return HTTP_FLUSH;
}

/* Move as much as the sockets allow in one direction, then note what it waits for. */
static enum sr_relay_result
flow_pump(struct sr_conn *conn, struct sr_flow *flow)
{
    enum sr_relay_result res = SR_RELAY_GOING;
    bool is_drained = false;
    ssize_t n;
    int round;

    for (round = 0; round < SR_FLOW_ROUNDS; round++) {
        if (flow->pending > 0) {
            n = flow_flush(conn, flow);
            if (n == UV_EAGAIN) {
                flow->wait = SR_FLOW_WAIT_DST; /* backpressure: src is not read meanwhile */
                return SR_RELAY_GOING;
            }
            if (n < 0) {
                return relay_fail(conn, flow->dst_fd, (int)n);
            }
            flow->pending -= (uint32_t)n;
            flow->buf_off += (uint32_t)n;
            continue;
        }
        flow->buf_off = 0;
        if (flow->is_tracked || (flow == &conn->down && conn->http_stop != SR_HTTP_STOP_NONE)) {
            enum http_step step = flow->is_tracked ? http_up_step(conn, flow, &res)
                                                   : http_down_step(conn, flow, &res);

            if (step == HTTP_RETURN) {
                return res;
            }
            if (step == HTTP_FLUSH) {
                continue;
            }
        }
        if (is_drained && !flow->is_eof) {
            flow_release(conn, flow);
            flow->wait = SR_FLOW_WAIT_SRC;
            return SR_RELAY_GOING;
        }
        if (flow->is_eof) {
            /* Half-close: pass the FIN on; the other direction keeps flowing. */
            flow_release(conn, flow);
            flow->wait = SR_FLOW_DONE;
            if ((flow == &conn->up ? &conn->down : &conn->up)->is_shut) {
                /* The other way is done too, and both sockets have been read to their
                 * end: closing them sends the FIN, no shutdown needed. */
                flow->is_shut = true;
                return SR_RELAY_DONE;
            }
            if (shutdown(flow->dst_fd, SHUT_WR) != 0 && errno != ENOTCONN) {
                return relay_fail(conn, flow->dst_fd, SR_ERRNO(errno));
            }
            flow->is_shut = true;
            return conn->up.is_shut && conn->down.is_shut ? SR_RELAY_DONE : SR_RELAY_GOING;
        }
        if (flow_acquire(conn, flow) != 0) {
            conn->detail = uv_err_name(UV_ENOMEM);
            return SR_RELAY_ERROR;
        }
        n = flow_fill(flow, flow_opaque_len(conn, flow));
        if (n == UV_EAGAIN) {
            flow_release(conn, flow); /* empty: an idle direction holds no pipe or buffer */
            flow->wait = SR_FLOW_WAIT_SRC;
            return SR_RELAY_GOING;
        }
        if (n < 0) {
            return relay_fail(conn, flow->src_fd, (int)n);
        }
        if (n == 0) {
            flow->is_eof = true;
            continue;
        }
        flow->n_bytes += (uint64_t)n;
        conn->last_active_ms = sr_conn_now(conn);
        /* A short read of a small exchange emptied the socket: after this flush, wait for
         * the next wakeup rather than pay a read that says EAGAIN. A bulk stream reads on:
         * its sender is still writing, and a wakeup costs more than a read. */
        is_drained = flow->pipe_fds[0] < 0 && n < SR_RELAY_BUF_SIZE;
        if (flow->is_tracked) {
            /* HTTP: only what the tracker lets through goes on; a new head waits until it
             * is whole and its host checked. */
            if (http_feed(conn, flow, (const uint8_t *)flow->buf, (size_t)n, &res) == HTTP_RETURN) {
                return res;
            }
            continue;
        }
        if (flow->is_scanned && flow->pipe_fds[0] >= 0) {
            /* Body bytes, spliced: counted, not seen (flow_opaque_len). */
            sr_http_resp_skip(&conn->http_track->resp, (uint64_t)n);
        } else if (flow->is_scanned) {
            /* HTTP responses: seen by the response reader, passed on unchanged. */
            enum sr_track_result r =
                sr_http_track_response(conn->http_track, (const uint8_t *)flow->buf, (size_t)n);

            flow->is_scanned = sr_http_track_reads_responses(conn->http_track);
            if (r != SR_TRACK_OK && !sr_relay_http_refuse(conn, r)) {
                return SR_RELAY_ERROR;
            }
        }
        flow->pending = (uint32_t)n;
    }
    /* Out of rounds with work left: epoll is level-triggered, so the wakeup comes again. */
    flow->wait = flow->pending > 0 ? SR_FLOW_WAIT_DST : SR_FLOW_WAIT_SRC;
    return SR_RELAY_GOING;
}

static enum sr_relay_result
krelay_result(enum sr_krelay_result r)
{
    switch (r) {
    case SR_KRELAY_DONE:
        return SR_RELAY_DONE;
    case SR_KRELAY_CLIENT_RESET:
        return SR_RELAY_CLIENT_RESET;
    case SR_KRELAY_BACKEND_RESET:
        return SR_RELAY_BACKEND_RESET;
    default:
        return SR_RELAY_GOING;
    }
}

/* Watch each socket for what its two directions wait for (those the worker moves; a split
 * connection's backend direction is the kernel's, and krelay.c adds what it needs). */
static enum sr_relay_result
relay_watch(struct sr_conn *conn)
{
    struct sr_reactor *reactor = &conn->set->res->reactor;
    uint32_t client = 0;
    uint32_t backend = 0;
    int rc;

    client |= conn->up.wait == SR_FLOW_WAIT_SRC ? EPOLLIN : 0;
    backend |= conn->up.wait == SR_FLOW_WAIT_DST ? EPOLLOUT : 0;
    if (conn->krelay == NULL) {
        client |= conn->down.wait == SR_FLOW_WAIT_DST ? EPOLLOUT : 0;
        backend |= conn->down.wait == SR_FLOW_WAIT_SRC ? EPOLLIN : 0;
    } else {
        client = sr_krelay_watch(conn, true, client);
        backend = sr_krelay_watch(conn, false, backend);
    }
    rc = sr_watch_set(reactor, &conn->client, client);
    if (rc == 0) {
        rc = sr_watch_set(reactor, &conn->backend, backend);
    }
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        return SR_RELAY_ERROR;
    }
    return SR_RELAY_GOING;
}

/* What one direction of an HTTP connection did may let the other go on, though its socket
 * has nothing new to report: the backend's answer ends the client direction's wait, and a
 * refusal shuts the backend's write side and may find the responses already through. */
static enum sr_relay_result
http_kick(struct sr_conn *conn)
{
    bool is_stopped = conn->http_stop != SR_HTTP_STOP_NONE;
    enum sr_relay_result res;

    if (conn->http_track == NULL) {
        return SR_RELAY_GOING;
    }
    if ((conn->up.wait == SR_FLOW_WAIT_PEER &&
         (is_stopped || !sr_http_track_is_holding(conn->http_track))) ||
        (conn->up.wait == SR_FLOW_WAIT_SRC && is_stopped)) {
        conn->up.wait = SR_FLOW_WAIT_SRC;
        res = flow_pump(conn, &conn->up);
        if (res != SR_RELAY_GOING) {
            return res;
        }
    }
    if (conn->http_stop == SR_HTTP_STOP_DRAINING && conn->down.wait == SR_FLOW_WAIT_SRC) {
        return flow_pump(conn, &conn->down);
    }
    return SR_RELAY_GOING;
}

/* <events> on a split connection (krelay.h): the client's direction is pumped here, then
 * the kernel's side looks at its FIN and at errors on both sockets. */
static enum sr_relay_result
split_event(struct sr_conn *conn, bool is_client, uint32_t events)
{
    uint32_t wanted = is_client ? EPOLLIN | EPOLLHUP | EPOLLERR : EPOLLOUT | EPOLLERR;
    enum sr_flow_wait wait = is_client ? SR_FLOW_WAIT_SRC : SR_FLOW_WAIT_DST;
    enum sr_relay_result res;

    if ((events & wanted) && conn->up.wait == wait) {
        res = flow_pump(conn, &conn->up);
        if (res != SR_RELAY_GOING) {
            return res;
        }
    }
    res = krelay_result(sr_krelay_event(conn, is_client, events));
    if (res != SR_RELAY_GOING || conn->krelay == NULL) {
        return res;
    }
    return relay_watch(conn);
}

enum sr_relay_result
sr_relay_event(struct sr_conn *conn, bool is_client, uint32_t events)
{
    struct sr_flow *in = is_client ? &conn->up : &conn->down;  /* this socket is its src */
    struct sr_flow *out = is_client ? &conn->down : &conn->up; /* this socket is its dst */
    bool is_error = (events & (EPOLLERR | EPOLLHUP)) != 0;
    enum sr_relay_result res;

    if (conn->krelay != NULL) {
        /* (Asked only here: the worker's relay pays no call per event for it.) */
        return sr_krelay_is_split(conn) ? split_event(conn, is_client, events)
                                        : krelay_result(sr_krelay_event(conn, is_client, events));
    }
    if (is_error) {
        /* Bytes that arrived before an error (a reset, most often) are still readable:
         * let the pumps forward them and meet the error through their own reads and
         * writes. */
        events |= EPOLLIN | EPOLLOUT;
    }
    if ((events & EPOLLOUT) && out->wait == SR_FLOW_WAIT_DST) {
        res = flow_pump(conn, out);
        if (res != SR_RELAY_GOING) {
            return res;
        }
    }
    if ((events & EPOLLIN) && in->wait == SR_FLOW_WAIT_SRC) {
        res = flow_pump(conn, in);
        if (res != SR_RELAY_GOING) {
            return res;
        }
    }
    if (events & EPOLLERR) {
        /* The pumps did not meet the error (this socket is not being read or written just
         * now): take it from the socket itself rather than wait for the next byte. */
        int fd = in->src_fd;
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
            return relay_fail(conn, fd, SR_ERRNO(err));
        }
    }
    res = http_kick(conn);
    if (res != SR_RELAY_GOING) {
        return res;
    }
    if (sr_krelay_start(conn)) {
        /* A plain relay with nothing in flight: the kernel moves the bytes from now on. */
        return SR_RELAY_GOING;
    }
    return relay_watch(conn);
}

static void
flow_init(struct sr_flow *flow, int src_fd, int dst_fd)
{
    flow->src_fd = src_fd;
    flow->dst_fd = dst_fd;
    flow->pipe_fds[0] = -1;
    flow->pipe_fds[1] = -1;
    flow->wait = SR_FLOW_WAIT_SRC;
    flow->is_whole = true; /* the backend's: nothing read yet (the client's: see below) */
}

enum sr_relay_result
sr_relay_start(struct sr_conn *conn)
{
    flow_init(&conn->up, conn->client.fd, conn->backend.fd);
    flow_init(&conn->down, conn->backend.fd, conn->client.fd);
    conn->up.is_tracked = conn->http_track != NULL;
    conn->down.is_scanned = conn->http_track != NULL;
    /* Intake may have read part of a segment: the kernel path waits for a read here. */
    conn->up.is_whole = false;

    /* The first bytes were just sent: the backend has nothing to say yet, and the client
     * is watched for more as before (unless the tracker waits for the backend's answer,
     * or refused a request pipelined behind the first). Pump on the next events. */
    if (conn->http_track != NULL &&
        (conn->http_stop != SR_HTTP_STOP_NONE || sr_http_track_is_holding(conn->http_track))) {
        enum sr_relay_result res;

        conn->up.wait = SR_FLOW_WAIT_PEER;
        res = http_kick(conn);
        if (res != SR_RELAY_GOING) {
            return res;
        }
    } else if (sr_krelay_start(conn)) {
        /* A plain relay with nothing in flight: the kernel moves the bytes from now on. */
        return SR_RELAY_GOING;
    }
    return relay_watch(conn);
}

enum sr_relay_result
sr_relay_tick(struct sr_conn *conn, uint64_t *recheck_ms)
{
    enum sr_relay_result res;

    *recheck_ms = 0;
    if (conn->krelay == NULL) {
        return SR_RELAY_GOING;
    }
    res = krelay_result(sr_krelay_tick(conn, recheck_ms));
    if (res == SR_RELAY_GOING && sr_krelay_is_split(conn)) {
        return relay_watch(conn); /* the tick may have split it */
    }
    return res;
}

void
sr_relay_settle(struct sr_conn *conn)
{
    sr_krelay_settle(conn);
}
