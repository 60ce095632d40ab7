/* SPDX-License-Identifier: MIT */
/* The ceiling relay: the least an SNI router must do, as a yardstick for the benchmark.
 * Single-threaded epoll; per connection it reads until the first TLS record is complete
 * (5-byte header plus its length), then connects to its one backend, forwards those bytes
 * and relays both ways through two plain buffers with backpressure and half-close. It
 * parses nothing inside the record, routes nowhere, keeps no timers and logs nothing: not
 * a product, only the practical limit of a user-space relay on this machine. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define BUF_SIZE   (16 * 1024)
#define RECORD_MAX (5 + 16384 + 2048) /* a TLS record may carry up to 2^14 + 2048 bytes */

/* One direction: bytes read from <src> wait in <buf> until written to <dst>. */
struct half {
    struct conn *conn;
    int src;
    int dst;
    char *buf;
    size_t len; /* bytes in buf */
    size_t off; /* bytes of buf already written */
    bool is_eof;
    bool is_shut;
};

struct conn {
    int client;
    int backend;
    bool is_connected;
    struct half up;   /* client to backend; also holds the first record before connecting */
    struct half down; /* backend to client */
    /* epoll tags: &tag_client and &tag_backend tell which socket woke us */
    struct half *tag_client;
    struct half *tag_backend;
    uint32_t ev_client;
    uint32_t ev_backend;
    bool is_dead; /* closed; freed after this batch of events */
    struct conn *next_dead;
};

static int epfd;
static struct sockaddr_in backend_addr;
static volatile sig_atomic_t is_stopping;
static unsigned long n_accepted;
static struct conn *dead; /* closed this batch: a later event in it may still name them */
/* Freed connections, buffers included, kept for the next accept: without this, malloc
 * hands 36 KiB back and forth to the kernel and every connection pays ~9 page faults. */
static struct conn *spare;

static void
on_signal(int sig)
{
    (void)sig;
    is_stopping = 1;
}

static void
watch(struct conn *c, int fd, uint32_t events)
{
    uint32_t *cur = fd == c->client ? &c->ev_client : &c->ev_backend;
    struct epoll_event ev;

    if (events == *cur) {
        return;
    }
    ev.events = events;
    ev.data.ptr = fd == c->client ? (void *)&c->tag_client : (void *)&c->tag_backend;
    epoll_ctl(epfd, *cur == UINT32_MAX ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
    *cur = events;
}

static void
conn_close(struct conn *c)
{
    close(c->client);
    if (c->backend >= 0) {
        close(c->backend);
    }
    c->is_dead = true;
    c->next_dead = dead;
    dead = c;
}

/* Recompute what each socket waits for: read a side only while its buffer is empty and
 * it has not ended; write a side while bytes for it are pending (or its connect runs). */
static void
conn_update(struct conn *c)
{
    uint32_t ev_client = 0;
    uint32_t ev_backend = 0;

    if (!c->is_connected) {
        ev_client = c->backend < 0 && c->up.len < RECORD_MAX ? EPOLLIN : 0;
        ev_backend = c->backend >= 0 ? EPOLLOUT : 0;
    } else {
        if (c->up.off < c->up.len) {
            ev_backend |= EPOLLOUT;
        } else if (!c->up.is_eof) {
            ev_client |= EPOLLIN;
        }
        if (c->down.off < c->down.len) {
            ev_client |= EPOLLOUT;
        } else if (!c->down.is_eof) {
            ev_backend |= EPOLLIN;
        }
    }
    watch(c, c->client, ev_client);
    if (c->backend >= 0) {
        watch(c, c->backend, ev_backend);
    }
}

/* Write what <h> holds; pass on a FIN once it is all out. Returns -1 on error. */
static int
half_flush(struct half *h)
{
    while (h->off < h->len) {
        ssize_t n = send(h->dst, h->buf + h->off, h->len - h->off, MSG_NOSIGNAL);

        if (n < 0) {
            return errno == EAGAIN ? 0 : -1;
        }
        h->off += (size_t)n;
    }
    h->off = h->len = 0;
    if (h->is_eof && !h->is_shut) {
        shutdown(h->dst, SHUT_WR);
        h->is_shut = true;
    }
    return 0;
}

/* Read once into an empty buffer and try to write it straight away. Returns -1 on error. */
static int
half_pump(struct half *h)
{
    ssize_t n = recv(h->src, h->buf, BUF_SIZE, 0);

    if (n == 0) {
        h->is_eof = true;
    } else if (n < 0) {
        return errno == EAGAIN ? 0 : -1;
    } else {
        h->len = (size_t)n;
    }
    return half_flush(h);
}

static int
start_connect(struct conn *c)
{
    int one = 1;

    c->backend = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->backend < 0) {
        return -1;
    }
    setsockopt(c->backend, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->up.dst = c->down.src = c->backend;
    if (connect(c->backend, (struct sockaddr *)&backend_addr, sizeof(backend_addr)) != 0 &&
        errno != EINPROGRESS) {
        return -1;
    }
    return 0;
}

/* Before the backend exists: collect the first record in up.buf. */
static int
on_first_record(struct conn *c)
{
    ssize_t n = recv(c->client, c->up.buf + c->up.len, RECORD_MAX - c->up.len, 0);
    size_t need;

    if (n <= 0) {
        return n < 0 && errno == EAGAIN ? 0 : -1;
    }
    c->up.len += (size_t)n;
    if (c->up.len < 5) {
        return 0;
    }
    need = 5 + (((size_t)(uint8_t)c->up.buf[3] << 8) | (uint8_t)c->up.buf[4]);
    if (need > RECORD_MAX) {
        return -1;
    }
    if (c->up.len < need || c->backend >= 0) {
        return 0;
    }
    return start_connect(c);
}

static void
on_event(struct half **tag, uint32_t events)
{
    struct conn *c = (*tag)->conn;
    bool is_client = tag == &c->tag_client;
    int rc = 0;

    if (c->is_dead) {
        return;
    }
    if (!c->is_connected) {
        if (is_client) {
            rc = on_first_record(c);
        } else {
            int err = 0;
            socklen_t len = sizeof(err);

            if (getsockopt(c->backend, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
                rc = -1;
            } else {
                c->is_connected = true;
                rc = half_flush(&c->up); /* the first record, as received */
            }
        }
    } else if (is_client) {
        /* client readable: pump up; client writable: flush down */
        if (c->up.len == 0 && !c->up.is_eof && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
            rc = half_pump(&c->up);
        }
        if (rc == 0 && c->down.off < c->down.len && (events & (EPOLLOUT | EPOLLERR))) {
            rc = half_flush(&c->down);
        }
    } else {
        if (c->down.len == 0 && !c->down.is_eof && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
            rc = half_pump(&c->down);
        }
        if (rc == 0 && c->up.off < c->up.len && (events & (EPOLLOUT | EPOLLERR))) {
            rc = half_flush(&c->up);
        }
    }
    if (rc != 0 || (c->up.is_shut && c->down.is_shut)) {
        conn_close(c);
        return;
    }
    conn_update(c);
}

static void
do_accept(int lfd)
{
    int i;

    for (i = 0; i < 256; i++) {
        int one = 1;
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct conn *c;

        if (fd < 0) {
            return;
        }
        /* One allocation: the struct, then the two buffers (up first: it also holds the
         * first record, which may be larger than BUF_SIZE). */
        c = spare;
        if (c != NULL) {
            spare = c->next_dead;
        } else {
            c = malloc(sizeof(*c) + RECORD_MAX + BUF_SIZE);
        }
        if (c == NULL) {
            close(fd);
            continue;
        }
        memset(c, 0, sizeof(*c));
        n_accepted++;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->client = fd;
        c->backend = -1;
        c->up.src = c->down.dst = fd;
        c->up.dst = c->down.src = -1;
        c->ev_client = c->ev_backend = UINT32_MAX;
        c->up.conn = c->down.conn = c;
        c->up.buf = (char *)(c + 1);
        c->down.buf = c->up.buf + RECORD_MAX;
        c->tag_client = &c->up;
        c->tag_backend = &c->down;
        conn_update(c);
    }
}

int
main(int argc, char **argv)
{
    struct epoll_event events[256];
    struct sockaddr_in listen_addr;
    int lfd;

    if (argc != 3 || bench_parse_addr(argv[1], &listen_addr) != 0 ||
        bench_parse_addr(argv[2], &backend_addr) != 0) {
        fprintf(stderr, "usage: relay LISTEN_IP:PORT BACKEND_IP:PORT\n");
        return 2;
    }
    epfd = bench_serve("relay", &listen_addr, on_signal, &lfd);
    if (epfd < 0) {
        return 1;
    }

    while (!is_stopping) {
        int n = epoll_wait(epfd, events, 256, 500);
        int i;

        for (i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) {
                do_accept(lfd);
            } else {
                on_event(events[i].data.ptr, events[i].events);
            }
        }
        while (dead != NULL) {
            struct conn *c = dead;

            dead = c->next_dead;
            c->next_dead = spare;
            spare = c;
        }
    }
    fprintf(stderr, "relay: %lu connections accepted\n", n_accepted);
    return 0;
}
