/* SPDX-License-Identifier: MIT */
/* Benchmark backend: a single-threaded epoll server that checks each connection's
 * ClientHello byte for byte against the fixtures it was given, answers a short reply, and
 * for streaming clients verifies the upstream pattern and sends the downstream one (wire
 * format in bench/pattern.h). It counts errors and prints them as JSON when stopped
 * (SIGTERM or SIGINT). It does not speak TLS: the hello is only compared. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "pattern.h"

#define MAX_FIXTURES 8
#define IO_CHUNK     (64 * 1024)
#define WRITE_BUDGET (256 * 1024) /* per connection per wakeup, so one stream cannot starve */

struct fixture {
    uint8_t *bytes;
    size_t len;
};

struct bconn {
    int fd;
    uint32_t events;  /* current epoll interest */
    size_t hello_got; /* hello bytes compared so far */
    unsigned cand;    /* fixtures the bytes so far still match */
    bool is_hello_done;
    bool is_hello_bad;
    size_t reply_off; /* reply bytes written */
    uint8_t hdr[BP_HDR_LEN];
    size_t hdr_len;
    bool is_stream;
    struct bp_header h;
    struct bp_check up;
    bool is_up_eof;
    uint64_t down_pos;
    uint64_t down_target; /* UINT64_MAX until known */
    uint8_t trailer[BP_TRAILER_LEN];
    size_t trailer_off;
    bool has_trailer;
    uint64_t pace_t0_ns;            /* when a paced stream started */
    struct bconn *pace_next;        /* in the list of paced streams waiting for their time */
    struct bconn **pace_prev_next;  /* NULL when not listed */
};

struct stats {
    uint64_t accepted;
    uint64_t hello_ok;
    uint64_t hello_bad;
    uint64_t streams;
    uint64_t up_bytes;
    uint64_t down_bytes;
    uint64_t bad_blocks;
    uint64_t resets;
    uint64_t accept_errors;
};

static struct fixture fixtures[MAX_FIXTURES];
static unsigned n_fixtures;
static struct stats st;
static int epfd;
static uint8_t scratch[IO_CHUNK];
static volatile sig_atomic_t is_stopping;
static struct bconn *pace_waiting; /* paced streams ahead of their pace: flushed by the tick */

static void
pace_unlist(struct bconn *c)
{
    if (c->pace_prev_next != NULL) {
        *c->pace_prev_next = c->pace_next;
        if (c->pace_next != NULL) {
            c->pace_next->pace_prev_next = c->pace_prev_next;
        }
        c->pace_prev_next = NULL;
        c->pace_next = NULL;
    }
}

static void
pace_list(struct bconn *c)
{
    if (c->pace_prev_next == NULL) {
        c->pace_next = pace_waiting;
        if (pace_waiting != NULL) {
            pace_waiting->pace_prev_next = &c->pace_next;
        }
        pace_waiting = c;
        c->pace_prev_next = &pace_waiting;
    }
}

/* The stream position a paced stream may have reached by now: its rate times the time since
 * it began, plus one chunk so it starts at once. The tick (1 ms) bounds how far behind the
 * pace a waiting stream falls; it catches up in the next write. */
static uint64_t
pace_due(const struct bconn *c)
{
    double elapsed_s = (double)(bench_now_ns() - c->pace_t0_ns) / 1e9;

    return (uint64_t)((double)c->h.down_rate * elapsed_s) + IO_CHUNK;
}

static void
on_signal(int sig)
{
    (void)sig;
    is_stopping = 1;
}

static int
load_fixture(const char *path, struct fixture *f)
{
    FILE *fp = fopen(path, "rb");
    long len;

    if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (len = ftell(fp)) <= 0 ||
        fseek(fp, 0, SEEK_SET) != 0) {
        fprintf(stderr, "backend: cannot read %s\n", path);
        if (fp != NULL) {
            fclose(fp);
        }
        return -1;
    }
    f->bytes = malloc((size_t)len);
    f->len = (size_t)len;
    if (f->bytes == NULL || fread(f->bytes, 1, f->len, fp) != f->len) {
        fclose(fp);
        return -1;
    }
    fclose(fp);
    return 0;
}

static void
set_interest(struct bconn *c, uint32_t events)
{
    bench_set_interest(epfd, c->fd, c, &c->events, events);
}

static void
conn_free(struct bconn *c)
{
    pace_unlist(c);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Compare newly arrived hello bytes; returns how many of <len> belong to the hello. */
static size_t
hello_feed(struct bconn *c, const uint8_t *data, size_t len)
{
    size_t used = 0;
    unsigned i;

    for (i = 0; i < n_fixtures; i++) {
        const struct fixture *f = &fixtures[i];
        size_t n;

        if (!(c->cand & (1u << i))) {
            continue;
        }
        n = f->len - c->hello_got < len ? f->len - c->hello_got : len;
        if (memcmp(f->bytes + c->hello_got, data, n) != 0) {
            c->cand &= ~(1u << i);
            continue;
        }
        if (c->hello_got + n == f->len) {
            c->is_hello_done = true;
            used = n;
            c->cand = 1u << i;
            break;
        }
        used = n > used ? n : used;
    }
    if (c->cand == 0) {
        /* Matches no fixture: answer BAD now so the client sees why. */
        c->is_hello_done = true;
        c->is_hello_bad = true;
        return len;
    }
    c->hello_got += used;
    return used;
}

static void
stream_feed(struct bconn *c, const uint8_t *data, size_t len)
{
    if (!c->is_stream) {
        size_t n = BP_HDR_LEN - c->hdr_len < len ? BP_HDR_LEN - c->hdr_len : len;

        memcpy(c->hdr + c->hdr_len, data, n);
        c->hdr_len += n;
        data += n;
        len -= n;
        if (c->hdr_len < BP_HDR_LEN) {
            return;
        }
        if (!bp_header_decode(c->hdr, &c->h)) {
            st.bad_blocks++;
            c->h.conn_id = BP_ID_MAX;
            c->h.down_bytes = 0;
            c->h.down_rate = 0;
        }
        c->is_stream = true;
        c->pace_t0_ns = bench_now_ns();
        st.streams++;
        bp_check_init(&c->up, c->h.conn_id, false);
        c->down_target = c->h.down_bytes != 0 ? c->h.down_bytes : UINT64_MAX;
    }
    if (len > 0) {
        bp_check_feed(&c->up, data, len);
        st.up_bytes += len;
    }
}

static void
make_trailer(struct bconn *c)
{
    struct bp_trailer t;

    t.conn_id = c->h.conn_id;
    t.down_sent = c->down_pos;
    t.up_received = bp_check_bytes(&c->up);
    t.up_mixed = c->up.n_mixed;
    t.up_reordered = c->up.n_reordered;
    t.up_corrupt = c->up.n_corrupt + (c->up.part_len != 0);
    st.bad_blocks += t.up_mixed + t.up_reordered + t.up_corrupt;
    bp_trailer_encode(c->trailer, &t);
    c->has_trailer = true;
}

/* Write what is due; returns false when the connection is finished or failed (freed). */
static bool
conn_flush(struct bconn *c)
{
    size_t budget = WRITE_BUDGET;
    ssize_t n;

    if (c->is_hello_done && c->reply_off < BP_REPLY_LEN) {
        uint8_t reply[BP_REPLY_LEN];

        memset(reply, '.', sizeof(reply));
        if (c->is_hello_bad) {
            memcpy(reply, BP_REPLY_BAD, strlen(BP_REPLY_BAD));
        } else {
            memcpy(reply, BP_REPLY_OK, strlen(BP_REPLY_OK));
        }
        n = send(c->fd, reply + c->reply_off, BP_REPLY_LEN - c->reply_off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN) {
            st.resets++;
            conn_free(c);
            return false;
        }
        if (n > 0) {
            c->reply_off += (size_t)n;
        }
        if (c->reply_off < BP_REPLY_LEN) {
            set_interest(c, EPOLLIN | EPOLLOUT);
            return true;
        }
    }
    if (c->is_stream) {
        uint64_t until;

        if (c->is_up_eof && c->down_target == UINT64_MAX) {
            c->down_target = (c->down_pos + BP_BLOCK - 1) / BP_BLOCK * BP_BLOCK;
        }
        until = c->down_target;
        if (c->h.down_rate != 0 && !c->is_up_eof) {
            uint64_t due = pace_due(c); /* the tail after the client's FIN goes unpaced */

            until = due < until ? due : until;
        }
        while (c->down_pos < until && budget > 0) {
            uint64_t left = until - c->down_pos;
            size_t len = left < IO_CHUNK ? (size_t)left : IO_CHUNK;

            bp_fill(scratch, c->h.conn_id | BP_DIR_DOWN, c->down_pos, len);
            n = send(c->fd, scratch, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN) {
                    break;
                }
                st.resets++;
                conn_free(c);
                return false;
            }
            c->down_pos += (uint64_t)n;
            st.down_bytes += (uint64_t)n;
            budget = (size_t)n < budget ? budget - (size_t)n : 0;
        }
        if (c->is_up_eof && c->down_pos == c->down_target) {
            if (!c->has_trailer) {
                make_trailer(c);
            }
            n = send(c->fd, c->trailer + c->trailer_off, BP_TRAILER_LEN - c->trailer_off,
                     MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN) {
                st.resets++;
                conn_free(c);
                return false;
            }
            if (n > 0) {
                c->trailer_off += (size_t)n;
            }
            if (c->trailer_off == BP_TRAILER_LEN) {
                conn_free(c); /* the client's FIN is in: a plain close is a clean FIN */
                return false;
            }
        }
        if (c->down_pos >= until && until < c->down_target) {
            pace_list(c); /* ahead of its pace: the tick flushes it, not EPOLLOUT */
        } else {
            pace_unlist(c);
        }
        set_interest(c, (c->is_up_eof ? 0 : EPOLLIN) |
                            (c->down_pos < until || c->is_up_eof ? EPOLLOUT : 0));
        return true;
    }
    if (c->is_up_eof) {
        conn_free(c); /* rate or idle client: reply sent, FIN received */
        return false;
    }
    set_interest(c, EPOLLIN);
    return true;
}

static void
conn_read(struct bconn *c)
{
    int round;

    for (round = 0; round < 4 && !c->is_up_eof; round++) {
        ssize_t n = recv(c->fd, scratch, sizeof(scratch), 0);
        size_t off = 0;

        if (n == 0) {
            c->is_up_eof = true;
            if (!c->is_hello_done) {
                st.hello_bad++; /* FIN before a whole hello */
                conn_free(c);
                return;
            }
            break;
        }
        if (n < 0) {
            if (errno == EAGAIN) {
                break;
            }
            st.resets++;
            conn_free(c);
            return;
        }
        if (!c->is_hello_done) {
            off = hello_feed(c, scratch, (size_t)n);
            if (c->is_hello_done) {
                if (c->is_hello_bad) {
                    st.hello_bad++;
                } else {
                    st.hello_ok++;
                }
            }
        }
        if (off < (size_t)n) {
            stream_feed(c, scratch + off, (size_t)n - off);
        }
        if ((size_t)n < sizeof(scratch)) {
            break;
        }
    }
    conn_flush(c);
}

static void
do_accept(int lfd)
{
    int i;

    for (i = 0; i < 256; i++) {
        struct epoll_event ev;
        struct bconn *c;
        int one = 1;
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                st.accept_errors++;
            }
            return;
        }
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            st.accept_errors++;
            continue;
        }
        st.accepted++;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->fd = fd;
        c->cand = (1u << n_fixtures) - 1;
        c->down_target = UINT64_MAX;
        c->events = EPOLLIN;
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
            st.accept_errors++;
        }
    }
}

int
main(int argc, char **argv)
{
    struct epoll_event events[256];
    struct sockaddr_in sin;
    int lfd;
    int opt;

    memset(&sin, 0, sizeof(sin));
    while ((opt = getopt(argc, argv, "f:l:")) != -1) {
        if (opt == 'f' && n_fixtures < MAX_FIXTURES) {
            if (load_fixture(optarg, &fixtures[n_fixtures]) != 0) {
                return 1;
            }
            n_fixtures++;
        } else if (opt == 'l') {
            if (bench_parse_addr(optarg, &sin) != 0) {
                fprintf(stderr, "backend: bad address %s\n", optarg);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: backend -l IP:PORT -f HELLO.bin [-f HELLO.bin ...]\n");
            return 2;
        }
    }
    if (n_fixtures == 0 || sin.sin_family != AF_INET) {
        fprintf(stderr, "usage: backend -l IP:PORT -f HELLO.bin [-f HELLO.bin ...]\n");
        return 2;
    }
    epfd = bench_serve("backend", &sin, on_signal, &lfd);
    if (epfd < 0) {
        return 1;
    }

    while (!is_stopping) {
        int n = epoll_wait(epfd, events, 256, pace_waiting != NULL ? 1 : 500);
        struct bconn *due;
        int i;

        for (i = 0; i < n; i++) {
            struct bconn *c = events[i].data.ptr;

            if (c == NULL) {
                do_accept(lfd);
            } else if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                conn_read(c);
            } else {
                conn_flush(c);
            }
        }
        /* The pace tick: each waiting stream writes what its pace allows by now (and lists
         * itself again if still ahead). Taken whole first: conn_flush may relist or free. */
        due = pace_waiting;
        pace_waiting = NULL;
        if (due != NULL) {
            due->pace_prev_next = &due;
        }
        while (due != NULL) {
            struct bconn *c = due;

            pace_unlist(c);
            conn_flush(c);
        }
    }
    printf("{\"accepted\":%" PRIu64 ",\"hello_ok\":%" PRIu64 ",\"hello_bad\":%" PRIu64
           ",\"streams\":%" PRIu64 ",\"up_bytes\":%" PRIu64 ",\"down_bytes\":%" PRIu64
           ",\"bad_blocks\":%" PRIu64 ",\"resets\":%" PRIu64 ",\"accept_errors\":%" PRIu64 "}\n",
           st.accepted, st.hello_ok, st.hello_bad, st.streams, st.up_bytes, st.down_bytes,
           st.bad_blocks, st.resets, st.accept_errors);
    return 0;
}
