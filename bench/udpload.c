/* SPDX-License-Identifier: MIT */
/* UDP load for the QUIC benchmark (bench/quic.py): a sink (optionally echoing) for the
 * backend side, a sender of QUIC-like client flows, and the ceiling UDP relay. Not part of
 * sniroute.
 *
 *   bench_udpload sink -l ADDR [-e ECHO_ADDR]
 *       Count the datagrams arriving on ADDR, and on ECHO_ADDR, where each is also sent
 *       back to its sender, whole. SIGUSR1 prints the counts so far as a JSON line on
 *       stdout; SIGTERM prints them and exits.
 *   bench_udpload send -a ADDR -f FIXTURE [-n FLOWS] [-t SECONDS] [-s SIZE] [-b BURST]
 *                      [-r RATE] [-w WINDOW] [-W WARMUP_MS] [-L LABEL]
 *       FLOWS client flows (default 16), each its own UDP socket on 127.0.0.1 connected to
 *       ADDR: first the datagrams of FIXTURE (a real client's Initial flight, each datagram
 *       a 2-byte big-endian length then its bytes, as in test/fixtures/quic), a WARMUP_MS
 *       pause (default 300) for the router to route the flow, then SECONDS of SIZE-byte
 *       datagrams (default 1200) that look like QUIC short-header packets, sent in bursts
 *       of BURST per flow (default 8, one sendmmsg) round robin over the flows.
 *         default   one way, as fast as the sender can go
 *         -r RATE   one way, paced to RATE datagrams per second in all
 *         -w WINDOW both ways, to an echoing backend (sink -e): each flow keeps at most WINDOW
 *                   datagrams in flight, and one silent for 100 ms counts them lost
 *       Prints one JSON line: datagrams sent, echoes received, lost, elapsed seconds.
 *   bench_udpload relay [-g] -p LISTEN=UPSTREAM [-p ...]
 *       The ceiling relay (below): UDP from each LISTEN address to its UPSTREAM and back,
 *       per client flow, until SIGTERM; -g: upstream datagrams taken with UDP_GRO and sent
 *       on with UDP_SEGMENT.
 * Bounded: every mode stops after its time; the sink stops on SIGTERM. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define MAX_FLOWS    4096
#define MAX_BURST    64
#define MAX_DGRAM    1500
#define MAX_FIXTURE  16
#define BATCH        64
#define SOCK_BUF     (4 * 1024 * 1024)
#define LOSS_TIMEOUT 0.1 /* seconds: a flow silent this long with datagrams in flight */

static volatile sig_atomic_t is_stopping;
static volatile sig_atomic_t is_report_due;

static void
on_stop(int sig)
{
    (void)sig;
    is_stopping = 1;
}

static void
on_report(int sig)
{
    (void)sig;
    is_report_due = 1;
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
usage(void)
{
    fprintf(stderr, "usage: bench_udpload sink -l ADDR [-e ECHO_ADDR]\n"
                    "       bench_udpload send -a ADDR -f FIXTURE [-n FLOWS] [-t SECONDS] "
                    "[-s SIZE] [-b BURST] [-r RATE] [-w WINDOW] [-W WARMUP_MS] [-L LABEL]\n"
                    "       bench_udpload relay [-g] -p LISTEN=UPSTREAM [-p ...]\n");
    exit(2);
}

static void
set_bufs(int fd)
{
    int buf = SOCK_BUF;

    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
}

/* --- sink ------------------------------------------------------------------------------- */

/* One socket of the sink: a counting one, or an echoing one. */
struct sink_sock {
    int fd;
    bool is_echo;
    unsigned long long dgrams;
    unsigned long long bytes;
    unsigned long long echoed;
    unsigned long long echo_failed;
};

static int
sink_open(int epfd, const char *addr, bool is_echo, struct sink_sock *ss)
{
    struct sockaddr_in sin;
    struct epoll_event ev;

    memset(ss, 0, sizeof(*ss));
    ss->is_echo = is_echo;
    if (bench_parse_addr(addr, &sin) != 0) {
        usage();
    }
    ss->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ss->fd < 0 || bind(ss->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        fprintf(stderr, "sink: bind %s: %s\n", addr, strerror(errno));
        return -1;
    }
    set_bufs(ss->fd);
    ev.events = EPOLLIN;
    ev.data.ptr = ss;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, ss->fd, &ev) != 0) {
        fprintf(stderr, "sink: epoll: %s\n", strerror(errno));
        return -1;
    }
    fprintf(stderr, "sink: %s on %s\n", is_echo ? "echoing" : "counting", addr);
    return 0;
}

/* Read up to BATCH datagrams from <ss>; echo them back whole if it is an echoing socket. */
static void
sink_read(struct sink_sock *ss)
{
    static char bufs[BATCH][MAX_DGRAM];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_in peers[BATCH];
    int off = 0;
    int i;
    int n;

    for (i = 0; i < BATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = MAX_DGRAM;
        memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &peers[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
    }
    n = recvmmsg(ss->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) {
        return;
    }
    ss->dgrams += (unsigned long long)n;
    for (i = 0; i < n; i++) {
        ss->bytes += msgs[i].msg_len;
        iov[i].iov_len = msgs[i].msg_len;
    }
    while (ss->is_echo && off < n) {
        int sent = sendmmsg(ss->fd, msgs + off, (unsigned)(n - off), MSG_DONTWAIT);

        if (sent <= 0) {
            ss->echo_failed += (unsigned long long)(n - off);
            break;
        }
        ss->echoed += (unsigned long long)sent;
        off += sent;
    }
}

static void
sink_report(const struct sink_sock *count, const struct sink_sock *echo)
{
    printf("{\"dgrams\":%llu,\"bytes\":%llu,\"echo_dgrams\":%llu,\"echoed\":%llu,"
           "\"echo_failed\":%llu}\n",
           count->dgrams, count->bytes, echo->dgrams, echo->echoed, echo->echo_failed);
    fflush(stdout);
}

static int
run_sink(int argc, char **argv)
{
    struct sink_sock count;
    struct sink_sock echo;
    struct epoll_event events[2];
    struct sigaction sa;
    const char *count_addr = NULL;
    const char *echo_addr = NULL;
    int epfd;
    int opt;
    int i;

    while ((opt = getopt(argc, argv, "l:e:")) != -1) {
        switch (opt) {
        case 'l':
            count_addr = optarg;
            break;
        case 'e':
            echo_addr = optarg;
            break;
        default:
            usage();
        }
    }
    if (count_addr == NULL) {
        usage();
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_report;
    sigaction(SIGUSR1, &sa, NULL);
    memset(&echo, 0, sizeof(echo));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0 || sink_open(epfd, count_addr, false, &count) != 0 ||
        (echo_addr != NULL && sink_open(epfd, echo_addr, true, &echo) != 0)) {
        return 1;
    }
    while (!is_stopping) {
        int n;

        if (is_report_due) {
            is_report_due = 0;
            sink_report(&count, &echo);
        }
        n = epoll_wait(epfd, events, 2, 50);
        for (i = 0; i < n; i++) {
            sink_read(events[i].data.ptr);
        }
    }
    sink_report(&count, &echo);
    return 0;
}

/* --- sender ----------------------------------------------------------------------------- */

struct flow {
    int fd;
    uint32_t id;
    uint64_t seq;
    long inflight;
    double last_rx;
};

struct fixture {
    uint8_t data[MAX_FIXTURE][MAX_DGRAM];
    size_t len[MAX_FIXTURE];
    int n;
};

static int
load_fixture(const char *path, struct fixture *fx)
{
    FILE *f = fopen(path, "rb");
    uint8_t hdr[2];

    if (f == NULL) {
        return -1;
    }
    fx->n = 0;
    while (fx->n < MAX_FIXTURE && fread(hdr, 1, 2, f) == 2) {
        size_t len = ((size_t)hdr[0] << 8) | hdr[1];

        if (len > MAX_DGRAM || fread(fx->data[fx->n], 1, len, f) != len) {
            fclose(f);
            return -1;
        }
        fx->len[fx->n++] = len;
    }
    fclose(f);
    return fx->n > 0 ? 0 : -1;
}

/* A QUIC-like short-header packet: header form 0, fixed bit 1, then an 8-byte connection ID
 * (the flow), a sequence number, and filler. Opaque to every relay measured here. */
static void
fill_dgram(uint8_t *d, size_t size, const struct flow *f, uint64_t seq)
{
    d[0] = 0x40 | (uint8_t)(seq & 0x03);
    memset(d + 1, 0, 4);
    memcpy(d + 5, &f->id, 4);
    memcpy(d + 9, &seq, 8);
    (void)size;
}

struct sender {
    struct flow *flows;
    int n_flows;
    size_t size;
    int burst;
    uint8_t (*bufs)[MAX_DGRAM]; /* burst buffers, filled once; the seq is rewritten */
    unsigned long long sent;
    unsigned long long send_failed;
};

/* Send up to <k> datagrams on flow <f> in one sendmmsg; returns how many went. */
static int
send_burst(struct sender *s, struct flow *f, int k)
{
    struct mmsghdr msgs[MAX_BURST];
    struct iovec iov[MAX_BURST];
    int i;
    int n;

    for (i = 0; i < k; i++) {
        fill_dgram(s->bufs[i], s->size, f, f->seq + (uint64_t)i);
        iov[i].iov_base = s->bufs[i];
        iov[i].iov_len = s->size;
        memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    n = sendmmsg(f->fd, msgs, (unsigned)k, MSG_DONTWAIT);
    if (n < 0) {
        s->send_failed += (unsigned long long)k;
        return 0;
    }
    s->send_failed += (unsigned long long)(k - n);
    s->sent += (unsigned long long)n;
    f->seq += (uint64_t)n;
    return n;
}

/* Read every datagram waiting on <f>; returns how many. */
static long
drain(struct flow *f)
{
    static char bufs[BATCH][MAX_DGRAM];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    long total = 0;
    int i;

    for (;;) {
        int n;

        for (i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = MAX_DGRAM;
            memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        n = recvmmsg(f->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            return total;
        }
        total += n;
    }
}

static void
sleep_s(double s)
{
    struct timespec ts;

    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
}

static int
run_send(int argc, char **argv)
{
    static struct flow flows[MAX_FLOWS];
    static uint8_t bufs[MAX_BURST][MAX_DGRAM];
    static struct fixture fx;
    struct epoll_event events[256];
    struct sockaddr_in to;
    struct sockaddr_in from;
    struct sender s;
    const char *addr = NULL;
    const char *fixture = NULL;
    const char *label = "";
    const char *mode;
    double seconds = 5;
    double rate = 0;
    double warmup_ms = 300;
    double t0;
    double t_end;
    double elapsed;
    unsigned long long echoed = 0;
    unsigned long long lost = 0;
    unsigned long long stray = 0;
    long window = 0;
    int epfd;
    int opt;
    int i;

    memset(&s, 0, sizeof(s));
    s.n_flows = 16;
    s.size = 1200;
    s.burst = 8;
    s.flows = flows;
    s.bufs = bufs;
    while ((opt = getopt(argc, argv, "a:f:n:t:s:b:r:w:W:L:")) != -1) {
        switch (opt) {
        case 'a':
            addr = optarg;
            break;
        case 'f':
            fixture = optarg;
            break;
        case 'n':
            s.n_flows = atoi(optarg);
            break;
        case 't':
            seconds = atof(optarg);
            break;
        case 's':
            s.size = (size_t)atol(optarg);
            break;
        case 'b':
            s.burst = atoi(optarg);
            break;
        case 'r':
            rate = atof(optarg);
            break;
        case 'w':
            window = atol(optarg);
            break;
        case 'W':
            warmup_ms = atof(optarg);
            break;
        case 'L':
            label = optarg;
            break;
        default:
            usage();
        }
    }
    if (addr == NULL || fixture == NULL || bench_parse_addr(addr, &to) != 0 || s.n_flows < 1 ||
        s.n_flows > MAX_FLOWS || s.size < 32 || s.size > MAX_DGRAM || s.burst < 1 ||
        s.burst > MAX_BURST || seconds <= 0 || seconds > 600 || window < 0) {
        usage();
    }
    if (load_fixture(fixture, &fx) != 0) {
        fprintf(stderr, "send: cannot read fixture %s\n", fixture);
        return 1;
    }
    for (i = 0; i < MAX_BURST; i++) {
        memset(bufs[i] + 17, 0xa5, s.size - 17);
    }
    bench_raise_nofile();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    memset(&from, 0, sizeof(from));
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (i = 0; i < s.n_flows; i++) {
        struct flow *f = &flows[i];
        struct epoll_event ev;
        int k;

        f->id = (uint32_t)i;
        f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (f->fd < 0 || bind(f->fd, (struct sockaddr *)&from, sizeof(from)) != 0 ||
            connect(f->fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
            fprintf(stderr, "send: flow %d: %s\n", i, strerror(errno));
            return 1;
        }
        set_bufs(f->fd);
        ev.events = EPOLLIN;
        ev.data.ptr = f;
        epoll_ctl(epfd, EPOLL_CTL_ADD, f->fd, &ev);
        for (k = 0; k < fx.n; k++) {
            if (send(f->fd, fx.data[k], fx.len[k], 0) < 0) {
                fprintf(stderr, "send: flow %d: Initial: %s\n", i, strerror(errno));
            }
        }
    }
    /* The router routes each flow on its Initial: datagrams sent meanwhile would be held
     * (bounded) or dropped, which is not what is measured here. Echoes of the Initials are
     * read and dropped. */
    sleep_s(warmup_ms / 1000);
    for (i = 0; i < s.n_flows; i++) {
        (void)drain(&flows[i]);
    }

    mode = window > 0 ? "echo" : rate > 0 ? "paced" : "flood";
    t0 = now_s();
    t_end = t0 + seconds;
    for (i = 0; i < s.n_flows; i++) {
        flows[i].last_rx = t0;
    }
    if (window > 0) {
        int next = 0;

        while (now_s() < t_end) {
            int n = epoll_wait(epfd, events, 256, 0);
            double now;

            for (i = 0; i < n; i++) {
                struct flow *f = events[i].data.ptr;
                long got = drain(f);

                echoed += (unsigned long long)got;
                f->inflight -= got;
                if (f->inflight < 0) {
                    stray += (unsigned long long)(-f->inflight);
                    f->inflight = 0;
                }
                f->last_rx = now_s();
            }
            now = now_s();
            for (i = 0; i < s.n_flows; i++) {
                struct flow *f = &flows[(next + i) % s.n_flows];

                if (f->inflight > 0 && now - f->last_rx > LOSS_TIMEOUT) {
                    lost += (unsigned long long)f->inflight;
                    f->inflight = 0;
                    f->last_rx = now;
                }
                if (window - f->inflight >= s.burst || f->inflight == 0) {
                    int k = (int)(window - f->inflight < s.burst ? window - f->inflight : s.burst);

                    if (f->inflight == 0) {
                        f->last_rx = now;
                    }
                    f->inflight += send_burst(&s, f, k);
                }
            }
            next = (next + 1) % s.n_flows;
            if (n == 0) {
                (void)epoll_wait(epfd, events, 1, 1); /* nothing back yet: wait a little */
            }
        }
        elapsed = now_s() - t0;
        /* What is still in flight has LOSS_TIMEOUT to come back, then counts as lost. */
        t_end = now_s() + LOSS_TIMEOUT;
        while (now_s() < t_end) {
            int n = epoll_wait(epfd, events, 256, 10);

            for (i = 0; i < n; i++) {
                struct flow *f = events[i].data.ptr;
                long got = drain(f);

                echoed += (unsigned long long)got;
                f->inflight -= got;
            }
        }
        for (i = 0; i < s.n_flows; i++) {
            if (flows[i].inflight > 0) {
                lost += (unsigned long long)flows[i].inflight;
            }
        }
    } else {
        int next = 0;

        for (;;) {
            double now = now_s();

            if (now >= t_end) {
                break;
            }
            if (rate > 0 && (double)s.sent >= rate * (now - t0)) {
                sleep_s(0.0002);
                continue;
            }
            (void)send_burst(&s, &flows[next], s.burst);
            next = (next + 1) % s.n_flows;
        }
        elapsed = now_s() - t0;
    }
    printf("{\"mode\":\"%s\",\"label\":\"%s\",\"flows\":%d,\"size\":%zu,\"burst\":%d,"
           "\"rate\":%.0f,\"window\":%ld,\"elapsed_s\":%.4f,\"sent\":%llu,\"send_failed\":%llu,"
           "\"echoed\":%llu,\"lost\":%llu,\"stray\":%llu,\"initial_dgrams\":%d}\n",
           mode, label, s.n_flows, s.size, s.burst, rate, window, elapsed, s.sent, s.send_failed,
           echoed, lost, stray, fx.n * s.n_flows);
    return 0;
}

/* --- relay ------------------------------------------------------------------------------ */

/* The ceiling UDP relay: the least a QUIC router must do once flows are routed, as a
 * yardstick. Per listening address one upstream; per client address and port a connected
 * upstream socket, found in an open-addressing table; datagrams move both ways in batches
 * (recvmmsg, then one sendmmsg per run of one flow's datagrams). No parsing, no timers, no
 * limits beyond the table's size, no logs: not a product. */

#define RELAY_MAX_PAIRS 8
#define RELAY_SLOTS     16384 /* a power of two; flows beyond RELAY_SLOTS / 2 are dropped */

struct rflow {
    bool is_listener; /* first in both: tells an epoll event's pointer apart */
    int fd;           /* connected to the pair's upstream; 0: slot free */
    int pair;
    struct sockaddr_in client;
};

struct rpair {
    bool is_listener; /* true */
    int fd;
    struct sockaddr_in upstream;
};

static struct rpair pairs[RELAY_MAX_PAIRS];
static struct rflow rflows[RELAY_SLOTS];
static int n_rflows;
static unsigned long long relay_dropped;

/* With -g: a flow socket takes coalesced datagrams (UDP_GRO: a run of equal-size datagrams
 * from the upstream arrives as one buffer, as a GSO sender sent it) and they leave for the
 * client the same way (UDP_SEGMENT), one buffer per run instead of one datagram at a time. */
static bool is_gro;

static uint32_t
rflow_hash(int pair, const struct sockaddr_in *sin)
{
    uint32_t h = sin->sin_addr.s_addr * 2654435761u;

    h ^= ((uint32_t)sin->sin_port << 16 | (uint32_t)pair) * 2246822519u;
    return h & (RELAY_SLOTS - 1);
}

/* The flow of <sin> on <pair>, made if new; NULL if the table is full or a socket fails. */
static struct rflow *
rflow_get(int epfd, int pair, const struct sockaddr_in *sin)
{
    uint32_t i = rflow_hash(pair, sin);
    struct epoll_event ev;
    struct rflow *f;

    for (;; i = (i + 1) & (RELAY_SLOTS - 1)) {
        f = &rflows[i];
        if (f->fd == 0) {
            break;
        }
        if (f->pair == pair && f->client.sin_port == sin->sin_port &&
            f->client.sin_addr.s_addr == sin->sin_addr.s_addr) {
            return f;
        }
    }
    if (n_rflows >= RELAY_SLOTS / 2) {
        return NULL;
    }
    f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f->fd <= 0 || connect(f->fd, (struct sockaddr *)&pairs[pair].upstream,
                              sizeof(pairs[pair].upstream)) != 0) {
        if (f->fd > 0) {
            close(f->fd);
        }
        f->fd = 0;
        return NULL;
    }
    if (is_gro) {
        int one = 1;

        (void)setsockopt(f->fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
    }
    f->pair = pair;
    f->client = *sin;
    ev.events = EPOLLIN;
    ev.data.ptr = f;
    epoll_ctl(epfd, EPOLL_CTL_ADD, f->fd, &ev);
    n_rflows++;
    return f;
}

#define RELAY_BUF 65536 /* a coalesced buffer is at most 64 KiB */

struct rbatch {
    char bufs[BATCH][RELAY_BUF];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_in peers[BATCH];
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctrl[BATCH];
};

/* The segment size the kernel reported for a coalesced buffer (UDP_GRO), or 0. */
static int
gro_size(struct msghdr *mh)
{
    struct cmsghdr *c;
    int size = 0;

    for (c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            memcpy(&size, CMSG_DATA(c), sizeof(size));
        }
    }
    return size;
}

static int
rbatch_recv(int fd, struct rbatch *b)
{
    int i;

    for (i = 0; i < BATCH; i++) {
        b->iov[i].iov_base = b->bufs[i];
        b->iov[i].iov_len = RELAY_BUF;
        memset(&b->msgs[i].msg_hdr, 0, sizeof(b->msgs[i].msg_hdr));
        b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
        b->msgs[i].msg_hdr.msg_iovlen = 1;
        b->msgs[i].msg_hdr.msg_name = &b->peers[i];
        b->msgs[i].msg_hdr.msg_namelen = sizeof(b->peers[i]);
        if (is_gro) {
            b->msgs[i].msg_hdr.msg_control = b->ctrl[i].buf;
            b->msgs[i].msg_hdr.msg_controllen = sizeof(b->ctrl[i].buf);
        }
    }
    return recvmmsg(fd, b->msgs, BATCH, MSG_DONTWAIT, NULL);
}

/* Send b->msgs[from, to) on <fd> (their names already set or cleared); count what fails. */
static void
rbatch_send(int fd, struct rbatch *b, int from, int to)
{
    while (from < to) {
        int n = sendmmsg(fd, b->msgs + from, (unsigned)(to - from), MSG_DONTWAIT);

        if (n <= 0) {
            relay_dropped += (unsigned long long)(to - from);
            return;
        }
        from += n;
    }
}

static int
run_relay(int argc, char **argv)
{
    static struct rbatch b;
    struct epoll_event events[64];
    struct sigaction sa;
    int n_pairs = 0;
    int epfd;
    int opt;
    int i;

    epfd = epoll_create1(EPOLL_CLOEXEC);
    while ((opt = getopt(argc, argv, "gp:")) != -1) {
        struct sockaddr_in sin;
        struct epoll_event ev;
        char *eq;

        if (opt == 'g') {
            is_gro = true;
            continue;
        }
        eq = strchr(optarg, '=');
        if (opt != 'p' || eq == NULL || n_pairs == RELAY_MAX_PAIRS) {
            usage();
        }
        *eq = '\0';
        if (bench_parse_addr(optarg, &sin) != 0 ||
            bench_parse_addr(eq + 1, &pairs[n_pairs].upstream) != 0) {
            usage();
        }
        pairs[n_pairs].is_listener = true;
        pairs[n_pairs].fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (pairs[n_pairs].fd < 0 ||
            bind(pairs[n_pairs].fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
            fprintf(stderr, "relay: bind %s: %s\n", optarg, strerror(errno));
            return 1;
        }
        set_bufs(pairs[n_pairs].fd); /* 4 MiB, as sniroute asks on its listening sockets */
        ev.events = EPOLLIN;
        ev.data.ptr = &pairs[n_pairs];
        epoll_ctl(epfd, EPOLL_CTL_ADD, pairs[n_pairs].fd, &ev);
        n_pairs++;
    }
    if (n_pairs == 0) {
        usage();
    }
    bench_raise_nofile();
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fprintf(stderr, "relay: %d addresses\n", n_pairs);
    while (!is_stopping) {
        int n = epoll_wait(epfd, events, 64, 100);

        for (i = 0; i < n; i++) {
            void *ptr = events[i].data.ptr;
            int k;
            int got;

            if (*(const bool *)ptr) {
                /* From clients: one sendmmsg per run of one flow's datagrams. */
                int pair = (int)((struct rpair *)ptr - pairs);
                struct rflow *run = NULL;
                int start = 0;

                got = rbatch_recv(pairs[pair].fd, &b);
                for (k = 0; k < got; k++) {
                    struct rflow *f = rflow_get(epfd, pair, &b.peers[k]);

                    b.iov[k].iov_len = b.msgs[k].msg_len;
                    b.msgs[k].msg_hdr.msg_name = NULL;
                    b.msgs[k].msg_hdr.msg_namelen = 0;
                    b.msgs[k].msg_hdr.msg_control = NULL;
                    b.msgs[k].msg_hdr.msg_controllen = 0;
                    if (f != run) {
                        if (run != NULL) {
                            rbatch_send(run->fd, &b, start, k);
                        }
                        run = f;
                        start = k;
                    }
                    if (f == NULL) {
                        relay_dropped++;
                        start = k + 1;
                    }
                }
                if (run != NULL) {
                    rbatch_send(run->fd, &b, start, got);
                }
            } else {
                /* From the upstream: to the flow's client, from the listening socket. */
                struct rflow *f = ptr;

                got = rbatch_recv(f->fd, &b);
                for (k = 0; k < got; k++) {
                    struct msghdr *mh = &b.msgs[k].msg_hdr;
                    int seg = is_gro ? gro_size(mh) : 0;

                    b.iov[k].iov_len = b.msgs[k].msg_len;
                    mh->msg_name = &f->client;
                    mh->msg_namelen = sizeof(f->client);
                    mh->msg_control = NULL;
                    mh->msg_controllen = 0;
                    if (seg > 0 && b.msgs[k].msg_len > (unsigned)seg) {
                        uint16_t gso = (uint16_t)seg;
                        struct cmsghdr *c;

                        mh->msg_control = b.ctrl[k].buf;
                        mh->msg_controllen = CMSG_SPACE(sizeof(gso));
                        c = CMSG_FIRSTHDR(mh);
                        c->cmsg_level = SOL_UDP;
                        c->cmsg_type = UDP_SEGMENT;
                        c->cmsg_len = CMSG_LEN(sizeof(gso));
                        memcpy(CMSG_DATA(c), &gso, sizeof(gso));
                    }
                }
                if (got > 0) {
                    rbatch_send(pairs[f->pair].fd, &b, 0, got);
                }
            }
        }
    }
    printf("{\"flows\":%d,\"dropped\":%llu}\n", n_rflows, relay_dropped);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
    }
    if (strcmp(argv[1], "sink") == 0) {
        return run_sink(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "send") == 0) {
        return run_send(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "relay") == 0) {
        return run_relay(argc - 1, argv + 1);
    }
    usage();
    return 2;
}
