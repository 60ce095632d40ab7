/* SPDX-License-Identifier: MIT */
/* Small helpers the benchmark programs (loadgen.c, backend.c, relay.c) share, header-only
 * so each stays one standalone file to build. Not part of sniroute. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t
bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* "A.B.C.D:PORT" into <sin>; 0, or -1 if it is not that. */
static inline int
bench_parse_addr(const char *text, struct sockaddr_in *sin)
{
    char host[64];
    const char *colon = strrchr(text, ':');

    if (colon == NULL || (size_t)(colon - text) >= sizeof(host)) {
        return -1;
    }
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? 0 : -1;
}

/* Open files up to the hard limit: a proxy benchmark holds thousands of sockets. */
static inline void
bench_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Change the epoll interest of <fd> (registered with <ptr>) from *<current> to <events>;
 * no system call when it is the same. */
static inline void
bench_set_interest(int epfd, int fd, void *ptr, uint32_t *current, uint32_t events)
{
    struct epoll_event ev;

    if (events == *current) {
        return;
    }
    ev.events = events;
    ev.data.ptr = ptr;
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
    *current = events;
}

/* A non-blocking listening socket on <sin> (port 0: any; the port is written back). Returns
 * the descriptor, or -1 with errno set. */
static inline int
bench_listen(struct sockaddr_in *sin)
{
    socklen_t len = sizeof(*sin);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)sin, sizeof(*sin)) != 0 || listen(fd, 4096) != 0 ||
        getsockname(fd, (struct sockaddr *)sin, &len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* What every server program of the benchmark does first: open files raised, SIGTERM and
 * SIGINT to <on_signal>, SIGPIPE ignored, a listening socket on <sin> in a new epoll set
 * (registered with a NULL pointer, which tells it from connections), and a "NAME:
 * listening on" line. Returns the epoll set and puts the socket in <*lfd>, or returns -1
 * after saying why. */
static inline int
bench_serve(const char *name, struct sockaddr_in *sin, void (*on_signal)(int), int *lfd)
{
    struct epoll_event ev;
    struct sigaction sa;
    int epfd;

    bench_raise_nofile();
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    *lfd = bench_listen(sin);
    epfd = *lfd < 0 ? -1 : epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, *lfd, &ev) != 0) {
        fprintf(stderr, "%s: listen: %s\n", name, strerror(errno));
        return -1;
    }
    fprintf(stderr, "%s: listening on 127.0.0.1:%u\n", name, ntohs(sin->sin_port));
    return epfd;
}

#endif
