/* SPDX-License-Identifier: MIT */
/* The relay: once the first bytes have reached the backend, move bytes both ways between
 * the two sockets until both directions are done. A direction starts by reading into a
 * pool buffer and sending it on (two system calls, the cheapest for the small records of
 * a handshake or a request); once a read fills a whole buffer it is a bulk stream and
 * splices through a kernel pipe from then on (socket to pipe to socket: the bytes never
 * enter user space). A pipe or buffer is held only while bytes are in flight, so an idle
 * connection holds neither. The worker's reactor watches the sockets. */
#include "sniroute/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "sniroute/reactor.h"

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
            sr__pipe_put(conn->server, flow->pipe_fds);
        } else {
            /* Bytes left in a pipe on a broken connection: the pipe cannot be reused. */
            close(flow->pipe_fds[0]);
            close(flow->pipe_fds[1]);
        }
        flow->pipe_fds[0] = -1;
        flow->pipe_fds[1] = -1;
    }
    if (flow->buf != NULL) {
        sr__pool_put(conn->server, flow->buf);
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
sr__relay_release(struct sr_conn *conn)
{
    flow_release(conn, &conn->up);
    flow_release(conn, &conn->down);
}

/* Take a pipe, or failing that (descriptors exhausted) a buffer. */
static int
flow_acquire(struct sr_conn *conn, struct sr_flow *flow)
{
    if (flow->buf != NULL && flow->is_bulk && !flow->is_tracked) {
        sr__pool_put(conn->server, flow->buf); /* empty: a bulk stream moves to a pipe */
        flow->buf = NULL;
    }
    if (flow->pipe_fds[0] >= 0 || flow->buf != NULL) {
        return 0;
    }
    /* A tracked HTTP direction reads its bytes: no splice there. */
    if (flow->is_bulk && !flow->is_tracked && sr__pipe_get(conn->server, flow->pipe_fds) == 0) {
        return 0;
    }
    flow->buf = sr__pool_get(conn->server);
    return flow->buf != NULL ? 0 : UV_ENOMEM;
}

/* Move bytes from src into the pipe or buffer. Returns the count, 0 at EOF, or a negative
 * UV_E* code (UV_EAGAIN: nothing to read now). */
static ssize_t
flow_fill(struct sr_flow *flow)
{
    ssize_t n;

    do {
        if (flow->pipe_fds[0] >= 0) {
            n = splice(flow->src_fd, NULL, flow->pipe_fds[1], NULL, SR_SPLICE_MAX,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        } else {
            n = recv(flow->src_fd, flow->buf, SR_RELAY_BUF_SIZE, 0);
        }
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return errno == EWOULDBLOCK ? UV_EAGAIN : SR_ERRNO(errno);
    }
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

/* A socket failed: pass the reset on to the other side so neither end mistakes a broken
 * stream for a complete one. */
static void
relay_fail(struct sr_conn *conn, int fd, int err)
{
    bool is_client = is_client_fd(conn, fd);

    conn->detail = uv_err_name(err);
    sr__conn_close_ex(conn, is_client ? "client_reset" : "backend_reset", !is_client, is_client);
}

/* Move as much as the sockets allow in one direction, then note what it waits for. */
static void
flow_pump(struct sr_conn *conn, struct sr_flow *flow)
{
    bool is_drained = false;
    ssize_t n;
    int round;

    for (round = 0; round < SR_FLOW_ROUNDS; round++) {
        if (flow->pending > 0) {
            n = flow_flush(conn, flow);
            if (n == UV_EAGAIN) {
                flow->wait = SR_FLOW_WAIT_DST; /* backpressure: src is not read meanwhile */
                return;
            }
            if (n < 0) {
                relay_fail(conn, flow->dst_fd, (int)n);
                return;
            }
            flow->pending -= (uint32_t)n;
            flow->buf_off += (uint32_t)n;
            continue;
        }
        flow->buf_off = 0;
        if (is_drained && !flow->is_eof) {
            flow_release(conn, flow);
            flow->wait = SR_FLOW_WAIT_SRC;
            return;
        }
        if (flow->is_eof) {
            /* Half-close: pass the FIN on; the other direction keeps flowing. */
            flow_release(conn, flow);
            flow->wait = SR_FLOW_DONE;
            if ((flow == &conn->up ? &conn->down : &conn->up)->is_shut) {
                /* The other way is done too, and both sockets have been read to their
                 * end: closing them sends the FIN, no shutdown needed. */
                flow->is_shut = true;
                sr_conn_close(conn, "ok");
                return;
            }
            if (shutdown(flow->dst_fd, SHUT_WR) != 0 && errno != ENOTCONN) {
                relay_fail(conn, flow->dst_fd, SR_ERRNO(errno));
                return;
            }
            flow->is_shut = true;
            if (conn->up.is_shut && conn->down.is_shut) {
                sr_conn_close(conn, "ok");
            }
            return;
        }
        if (flow_acquire(conn, flow) != 0) {
            conn->detail = uv_err_name(UV_ENOMEM);
            sr_conn_close(conn, "error");
            return;
        }
        n = flow_fill(flow);
        if (n == UV_EAGAIN) {
            flow_release(conn, flow); /* empty: an idle direction holds no pipe or buffer */
            flow->wait = SR_FLOW_WAIT_SRC;
            return;
        }
        if (n < 0) {
            relay_fail(conn, flow->src_fd, (int)n);
            return;
        }
        if (n == 0) {
            flow->is_eof = true;
            continue;
        }
        flow->n_bytes += (uint64_t)n;
        conn->last_active_ms = uv_now(conn->server->loop);
        /* A short read of a small exchange emptied the socket: after this flush, wait for
         * the next wakeup rather than pay a read that says EAGAIN. A bulk stream reads on:
         * its sender is still writing, and a wakeup costs more than a read. */
        is_drained = flow->pipe_fds[0] < 0 && n < SR_RELAY_BUF_SIZE;
        if (flow->is_tracked) {
            /* HTTP: only what the tracker lets through goes on; a new head waits until it
             * is whole and its host checked. */
            enum sr_track_result r;

            conn->http_out.len = 0;
            r = sr_http_track_feed(conn->http_track, (const uint8_t *)flow->buf, (size_t)n,
                                   &conn->http_out);
            if (r != SR_TRACK_OK) {
                sr__conn_http_refused(conn, r);
                return;
            }
            flow->pending = (uint32_t)conn->http_out.len;
            continue;
        }
        flow->pending = (uint32_t)n;
    }
    /* Out of rounds with work left: epoll is level-triggered, so the wakeup comes again. */
    flow->wait = flow->pending > 0 ? SR_FLOW_WAIT_DST : SR_FLOW_WAIT_SRC;
}

/* Watch each socket for what its two directions wait for. */
static void
relay_watch(struct sr_conn *conn)
{
    struct sr_reactor *reactor = &conn->server->reactor;
    uint32_t client = 0;
    uint32_t backend = 0;
    int rc;

    if (conn->state == SR_CONN_CLOSING) {
        return;
    }
    client |= conn->up.wait == SR_FLOW_WAIT_SRC ? EPOLLIN : 0;
    client |= conn->down.wait == SR_FLOW_WAIT_DST ? EPOLLOUT : 0;
    backend |= conn->down.wait == SR_FLOW_WAIT_SRC ? EPOLLIN : 0;
    backend |= conn->up.wait == SR_FLOW_WAIT_DST ? EPOLLOUT : 0;
    rc = sr_watch_set(reactor, &conn->client, client);
    if (rc == 0) {
        rc = sr_watch_set(reactor, &conn->backend, backend);
    }
    if (rc != 0) {
        conn->detail = uv_err_name(rc);
        sr_conn_close(conn, "error");
    }
}

void
sr__relay_event(struct sr_conn *conn, bool is_client, uint32_t events)
{
    struct sr_flow *in = is_client ? &conn->up : &conn->down;  /* this socket is its src */
    struct sr_flow *out = is_client ? &conn->down : &conn->up; /* this socket is its dst */
    bool is_error = (events & (EPOLLERR | EPOLLHUP)) != 0;

    if (is_error) {
        /* Bytes that arrived before an error (a reset, most often) are still readable:
         * let the pumps forward them and meet the error through their own reads and
         * writes. */
        events |= EPOLLIN | EPOLLOUT;
    }
    if ((events & EPOLLOUT) && out->wait == SR_FLOW_WAIT_DST) {
        flow_pump(conn, out);
    }
    if ((events & EPOLLIN) && in->wait == SR_FLOW_WAIT_SRC && conn->state != SR_CONN_CLOSING) {
        flow_pump(conn, in);
    }
    if ((events & EPOLLERR) && conn->state != SR_CONN_CLOSING) {
        /* The pumps did not meet the error (this socket is not being read or written just
         * now): take it from the socket itself rather than wait for the next byte. */
        int fd = in->src_fd;
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
            relay_fail(conn, fd, SR_ERRNO(err));
            return;
        }
    }
    relay_watch(conn);
}

static void
flow_init(struct sr_flow *flow, int src_fd, int dst_fd)
{
    flow->src_fd = src_fd;
    flow->dst_fd = dst_fd;
    flow->pipe_fds[0] = -1;
    flow->pipe_fds[1] = -1;
    flow->wait = SR_FLOW_WAIT_SRC;
}

void
sr__relay_start(struct sr_conn *conn)
{
    flow_init(&conn->up, conn->client.fd, conn->backend.fd);
    flow_init(&conn->down, conn->backend.fd, conn->client.fd);
    conn->up.is_tracked = conn->http_track != NULL;

    /* The first bytes were just sent: the backend has nothing to say yet, and the client
     * is watched for more as before. Pump on the next events. */
    relay_watch(conn);
}
