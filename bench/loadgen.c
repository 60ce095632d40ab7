/* SPDX-License-Identifier: MIT */
/* Benchmark load generator: one single-threaded epoll client that sends a real ClientHello
 * (a fixture file; no TLS library) to an SNI router or straight to bench/backend, then
 *   rate       C concurrent clients: connect, hello, read the reply, FIN, wait for EOF;
 *              connections/s and connect-to-reply latency p50/p99/max;
 *   bulk       S long-lived streams moving a verified pattern both ways for T seconds;
 *   idle       N connections past the hello, held for H seconds (the harness samples the
 *              router's memory when the "ready" line appears);
 *   integrity  N connections opened first, then all moving B bytes each way at once, every
 *              byte checked (lost, reordered, mixed between connections).
 * One JSON object per run on stdout (idle also prints a "ready" object first). Every phase
 * has a deadline. Wire format: bench/pattern.h. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "pattern.h"

#define IO_CHUNK       (64 * 1024)
#define WRITE_BUDGET   (256 * 1024)
#define MAX_CONNECTING 256     /* connects in flight at once when opening many */
#define MAX_SAMPLES    4000000 /* latency samples kept (16 MB) */

enum mode { M_RATE, M_BULK, M_IDLE, M_INTEGRITY };

enum lstate {
    L_FREE,       /* slot unused */
    L_CONNECTING, /* non-blocking connect in flight */
    L_HELLO,      /* sending the ClientHello */
    L_REPLY,      /* reading the backend's reply */
    L_DRAIN,      /* rate: FIN sent, waiting for EOF */
    L_READY,      /* idle, bulk, integrity: past the hello, waiting */
    L_STREAM,     /* bulk, integrity: patterns flowing */
    L_DONE,       /* finished (slot not reused) */
};

struct lconn {
    int fd;
    enum lstate state;
    uint32_t events;
    uint32_t id;
    uint64_t t0_ns;
    size_t hello_off;
    uint8_t reply[BP_REPLY_LEN];
    size_t reply_len;
    uint8_t hdr[BP_HDR_LEN];
    size_t hdr_off;
    uint64_t up_pos;
    uint64_t up_target;
    bool is_up_shut;
    struct bp_check down;
};

struct totals {
    uint64_t opened;
    uint64_t completed;
    uint64_t completed_in_window;
    uint64_t connect_errors;
    uint64_t reply_errors; /* short, reset or BAD reply */
    uint64_t resets;       /* reset or EOF at the wrong time */
    uint64_t dropped;      /* idle: held connection closed by the far side */
    uint64_t ready;
    uint64_t up_sent;
    uint64_t up_verified;
    uint64_t down_verified;
    uint64_t lost;
    uint64_t mixed;
    uint64_t reordered;
    uint64_t corrupt;
    uint64_t no_trailer;  /* streams that ended without the backend's trailer */
    uint64_t unconfirmed; /* upstream bytes sent on those streams */
};

static enum mode mode;
static struct sockaddr_in target;
static uint8_t *hello;
static size_t hello_len;
static const char *hello_path = "";
static const char *label = "";
static unsigned concurrency = 50;
static double duration_s = 5;
static uint64_t max_conns = 0;  /* rate: stop after this many (0: duration only) */
static uint64_t n_conns = 1000; /* idle, integrity, bulk (streams) */
static uint64_t stream_bytes = 64 * 1024;
static double hold_s = 2;
static double timeout_s = 120;

static struct lconn *slots;
static size_t n_slots;
static int epfd;
static uint8_t scratch[IO_CHUNK];
static struct totals tot;
static uint32_t *samples;
static size_t n_samples;
static unsigned n_connecting;
static uint32_t next_id;
static bool is_go;
static bool is_stopping_up; /* bulk: time is up, finish the current block and FIN */
static bool is_down_only;   /* bulk -D: send no pattern up, only read the backend's */
static uint64_t down_rate;  /* bulk -R: bytes per second the backend paces each stream to */
static uint64_t t_go_ns;

static void
set_interest(struct lconn *c, uint32_t events)
{
    bench_set_interest(epfd, c->fd, c, &c->events, events);
}

static void
conn_end(struct lconn *c, enum lstate next)
{
    if (c->state == L_CONNECTING) {
        n_connecting--;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = next;
}

static void
conn_open(struct lconn *c)
{
    struct epoll_event ev;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    memset(c, 0, sizeof(*c));
    c->fd = -1;
    tot.opened++;
    if (fd < 0) {
        tot.connect_errors++;
        c->state = L_DONE;
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->id = next_id++;
    c->t0_ns = bench_now_ns();
    c->state = L_CONNECTING;
    n_connecting++;
    if (connect(fd, (struct sockaddr *)&target, sizeof(target)) != 0 && errno != EINPROGRESS) {
        tot.connect_errors++;
        n_connecting--;
        close(fd);
        c->fd = -1;
        c->state = L_DONE;
        return;
    }
    c->events = EPOLLOUT;
    ev.events = EPOLLOUT;
    ev.data.ptr = c;
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void
record_latency(const struct lconn *c)
{
    uint64_t us = (bench_now_ns() - c->t0_ns) / 1000;

    if (samples != NULL && n_samples < MAX_SAMPLES) {
        samples[n_samples++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    }
}

/* The stream is over (EOF after the trailer, or failed): add what was verified. */
static void
stream_finish(struct lconn *c)
{
    const struct bp_check *d = &c->down;
    uint64_t got = bp_check_bytes(d);
    uint64_t want_down = mode == M_INTEGRITY ? stream_bytes : d->trailer.down_sent;

    tot.down_verified += d->n_good;
    tot.mixed += d->n_mixed;
    tot.reordered += d->n_reordered;
    /* A partial block at the end is a cut stream, which the missing trailer reports. */
    tot.corrupt += d->n_corrupt;
    if (!d->has_trailer || d->trailer.conn_id != c->id) {
        tot.no_trailer++;
        tot.unconfirmed += c->up_pos; /* the backend's account of them never arrived */
    } else {
        tot.up_verified +=
            d->trailer.up_received -
            BP_BLOCK * (d->trailer.up_mixed + d->trailer.up_reordered + d->trailer.up_corrupt);
        tot.mixed += d->trailer.up_mixed;
        tot.reordered += d->trailer.up_reordered;
        tot.corrupt += d->trailer.up_corrupt;
        if (d->trailer.up_received < c->up_pos) {
            tot.lost += c->up_pos - d->trailer.up_received;
        }
    }
    if (got < want_down) {
        tot.lost += want_down - got;
    }
    tot.completed++;
    conn_end(c, L_DONE);
}

static void
stream_start(struct lconn *c)
{
    struct bp_header h;

    h.conn_id = c->id;
    h.down_bytes = mode == M_INTEGRITY ? stream_bytes : 0;
    h.down_rate = mode == M_BULK ? down_rate : 0;
    bp_header_encode(c->hdr, &h);
    bp_check_init(&c->down, c->id | BP_DIR_DOWN, true);
    c->up_target = mode == M_INTEGRITY ? stream_bytes : UINT64_MAX;
    c->state = L_STREAM;
    set_interest(c, EPOLLIN | EPOLLOUT);
}

static void
stream_write(struct lconn *c)
{
    size_t budget = WRITE_BUDGET;
    ssize_t n;

    if (c->hdr_off < BP_HDR_LEN) {
        n = send(c->fd, c->hdr + c->hdr_off, BP_HDR_LEN - c->hdr_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN) {
                tot.resets++;
                stream_finish(c);
            }
            return;
        }
        c->hdr_off += (size_t)n;
        if (c->hdr_off < BP_HDR_LEN) {
            return;
        }
    }
    if (is_down_only && !is_stopping_up) {
        set_interest(c, EPOLLIN); /* nothing to send until the FIN at the end */
        return;
    }
    if (is_stopping_up && c->up_target == UINT64_MAX) {
        c->up_target = (c->up_pos + BP_BLOCK - 1) / BP_BLOCK * BP_BLOCK;
    }
    while (c->up_pos < c->up_target && budget > 0) {
        uint64_t left = c->up_target - c->up_pos;
        size_t len = left < IO_CHUNK ? (size_t)left : IO_CHUNK;

        bp_fill(scratch, c->id, c->up_pos, len);
        n = send(c->fd, scratch, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN) {
                tot.resets++;
                stream_finish(c);
                return;
            }
            break;
        }
        c->up_pos += (uint64_t)n;
        tot.up_sent += (uint64_t)n;
        budget = (size_t)n < budget ? budget - (size_t)n : 0;
    }
    if (c->up_pos == c->up_target && !c->is_up_shut) {
        shutdown(c->fd, SHUT_WR); /* half-close: every byte before it must still arrive */
        c->is_up_shut = true;
        set_interest(c, EPOLLIN);
    }
}

static void
stream_read(struct lconn *c)
{
    int round;

    for (round = 0; round < 4; round++) {
        ssize_t n = recv(c->fd, scratch, sizeof(scratch), 0);

        if (n == 0) {
            stream_finish(c);
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN) {
                tot.resets++;
                stream_finish(c);
            }
            return;
        }
        bp_check_feed(&c->down, scratch, (size_t)n);
        if ((size_t)n < sizeof(scratch)) {
            return;
        }
    }
}

static void
on_reply(struct lconn *c)
{
    if (memcmp(c->reply, BP_REPLY_OK, strlen(BP_REPLY_OK)) != 0) {
        tot.reply_errors++;
        conn_end(c, L_DONE);
        return;
    }
    if (mode == M_RATE) {
        record_latency(c);
        shutdown(c->fd, SHUT_WR);
        c->state = L_DRAIN;
        return;
    }
    c->state = L_READY;
    tot.ready++;
    set_interest(c, EPOLLIN); /* a held connection that ends is noticed */
    if (is_go) {
        stream_start(c);
    }
}

static void
on_event(struct lconn *c, uint32_t events)
{
    ssize_t n;
    int err = 0;
    socklen_t len = sizeof(err);

    switch (c->state) {
    case L_CONNECTING:
        n_connecting--;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            tot.connect_errors++;
            c->state = L_HELLO; /* n_connecting already dropped */
            conn_end(c, L_DONE);
            return;
        }
        c->state = L_HELLO;
        /* fall through */
    case L_HELLO:
        n = send(c->fd, hello + c->hello_off, hello_len - c->hello_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN) {
                tot.resets++;
                conn_end(c, L_DONE);
            }
            return;
        }
        c->hello_off += (size_t)n;
        if (c->hello_off == hello_len) {
            c->state = L_REPLY;
            set_interest(c, EPOLLIN);
        }
        return;
    case L_REPLY:
        n = recv(c->fd, c->reply + c->reply_len, BP_REPLY_LEN - c->reply_len, 0);
        if (n <= 0) {
            if (n == 0 || errno != EAGAIN) {
                tot.reply_errors++;
                conn_end(c, L_DONE);
            }
            return;
        }
        c->reply_len += (size_t)n;
        if (c->reply_len == BP_REPLY_LEN) {
            on_reply(c);
        }
        return;
    case L_DRAIN:
        n = recv(c->fd, scratch, sizeof(scratch), 0);
        if (n == 0) {
            tot.completed++;
            if (bench_now_ns() - t_go_ns <= (uint64_t)(duration_s * 1e9)) {
                tot.completed_in_window++;
            }
            conn_end(c, L_FREE);
        } else if (n > 0 || errno != EAGAIN) {
            tot.resets++;
            conn_end(c, L_FREE);
        }
        return;
    case L_READY:
        n = recv(c->fd, scratch, sizeof(scratch), 0);
        if (n >= 0 || errno != EAGAIN) {
            tot.dropped++;
            tot.ready--;
            conn_end(c, L_DONE);
        }
        return;
    case L_STREAM:
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            stream_read(c);
        }
        if (c->state == L_STREAM && (events & EPOLLOUT)) {
            stream_write(c);
        }
        return;
    case L_FREE:
    case L_DONE:
        return;
    }
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a;
    uint32_t y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static uint32_t
percentile(double p)
{
    size_t i;

    if (n_samples == 0) {
        return 0;
    }
    i = (size_t)(p * (double)(n_samples - 1) + 0.5);
    return samples[i];
}

/* Run the loop once for up to <wait_ms>. */
static void
poll_once(int wait_ms)
{
    struct epoll_event events[512];
    int n = epoll_wait(epfd, events, 512, wait_ms);
    int i;

    for (i = 0; i < n; i++) {
        on_event(events[i].data.ptr, events[i].events);
    }
}

static size_t
count_state(enum lstate s)
{
    size_t i;
    size_t n = 0;

    for (i = 0; i < n_slots; i++) {
        n += slots[i].state == s;
    }
    return n;
}

static void
print_common(const char *name, double elapsed_s)
{
    printf("{\"mode\":\"%s\",\"label\":\"%s\",\"hello\":\"%s\",\"hello_bytes\":%zu,"
           "\"elapsed_s\":%.3f,\"opened\":%" PRIu64 ",\"completed\":%" PRIu64
           ",\"connect_errors\":%" PRIu64 ",\"reply_errors\":%" PRIu64 ",\"resets\":%" PRIu64,
           name, label, hello_path, hello_len, elapsed_s, tot.opened, tot.completed,
           tot.connect_errors, tot.reply_errors, tot.resets);
}

static int
run_rate(void)
{
    uint64_t t_end;
    uint64_t t_hard;
    size_t i;

    n_slots = concurrency;
    slots = calloc(n_slots, sizeof(*slots));
    samples = malloc(sizeof(*samples) * MAX_SAMPLES);
    if (slots == NULL || samples == NULL) {
        return 1;
    }
    t_go_ns = bench_now_ns();
    t_end = t_go_ns + (uint64_t)(duration_s * 1e9);
    t_hard = t_end + 10000000000ull;
    for (;;) {
        uint64_t now = bench_now_ns();
        bool is_open = now < t_end && (max_conns == 0 || tot.opened < max_conns);
        size_t n_busy = 0;

        for (i = 0; i < n_slots; i++) {
            if ((slots[i].state == L_FREE || slots[i].state == L_DONE) && is_open &&
                (max_conns == 0 || tot.opened < max_conns)) {
                conn_open(&slots[i]);
            }
            n_busy += slots[i].state != L_FREE && slots[i].state != L_DONE;
        }
        if (n_busy == 0 || now > t_hard) {
            break;
        }
        poll_once(10);
    }
    qsort(samples, n_samples, sizeof(*samples), cmp_u32);
    {
        double window = (double)(bench_now_ns() - t_go_ns) / 1e9;

        if (max_conns == 0 && window > duration_s) {
            window = duration_s; /* connections/s counts those finished inside the window */
        }
        print_common("rate", window);
        printf(",\"concurrency\":%u,\"conn_per_s\":%.1f,\"lat_us\":{\"p50\":%u,\"p90\":%u,"
               "\"p99\":%u,\"max\":%u},\"unfinished\":%zu}\n",
               concurrency,
               (double)(max_conns == 0 ? tot.completed_in_window : tot.completed) / window,
               percentile(0.5), percentile(0.9), percentile(0.99), percentile(1.0),
               n_slots - count_state(L_FREE) - count_state(L_DONE));
    }
    return 0;
}

/* Open n_slots connections, MAX_CONNECTING at a time, until each is ready or failed. */
static void
open_all(uint64_t t_hard)
{
    size_t next = 0;

    while (bench_now_ns() < t_hard) {
        while (next < n_slots && n_connecting < MAX_CONNECTING) {
            conn_open(&slots[next++]);
        }
        if (next == n_slots && count_state(L_READY) + count_state(L_DONE) == n_slots) {
            break;
        }
        poll_once(10);
    }
}

static int
run_idle(void)
{
    uint64_t t0 = bench_now_ns();
    uint64_t t_hold;
    size_t i;

    n_slots = n_conns;
    slots = calloc(n_slots, sizeof(*slots));
    if (slots == NULL) {
        return 1;
    }
    open_all(t0 + (uint64_t)(timeout_s * 1e9));
    printf("{\"event\":\"ready\",\"ready\":%" PRIu64 ",\"open_s\":%.3f}\n", tot.ready,
           (double)(bench_now_ns() - t0) / 1e9);
    fflush(stdout);
    t_hold = bench_now_ns() + (uint64_t)(hold_s * 1e9);
    while (bench_now_ns() < t_hold) {
        poll_once(50);
    }
    for (i = 0; i < n_slots; i++) {
        if (slots[i].state == L_READY) {
            tot.completed++;
        }
        if (slots[i].fd >= 0 && slots[i].state != L_DONE) {
            conn_end(&slots[i], L_DONE);
        }
    }
    print_common("idle", (double)(bench_now_ns() - t0) / 1e9);
    printf(",\"connections\":%" PRIu64 ",\"ready\":%" PRIu64 ",\"dropped\":%" PRIu64
           ",\"hold_s\":%.1f}\n",
           n_conns, tot.ready, tot.dropped, hold_s);
    return 0;
}

/* bulk and integrity: open everything, then start every stream at once. */
static int
run_streams(void)
{
    uint64_t t0 = bench_now_ns();
    uint64_t t_hard = t0 + (uint64_t)(timeout_s * 1e9);
    uint64_t t_stop = UINT64_MAX;
    uint64_t open_ns;
    double elapsed;
    size_t ready_at_go;
    size_t i;

    n_slots = n_conns;
    slots = calloc(n_slots, sizeof(*slots));
    if (slots == NULL) {
        return 1;
    }
    open_all(t_hard);
    open_ns = bench_now_ns() - t0;
    ready_at_go = count_state(L_READY);
    is_go = true;
    t_go_ns = bench_now_ns();
    if (mode == M_BULK) {
        t_stop = t_go_ns + (uint64_t)(duration_s * 1e9);
    }
    for (i = 0; i < n_slots; i++) {
        if (slots[i].state == L_READY) {
            stream_start(&slots[i]);
        }
    }
    while (count_state(L_STREAM) > 0 && bench_now_ns() < t_hard) {
        if (!is_stopping_up && bench_now_ns() >= t_stop) {
            is_stopping_up = true;
            for (i = 0; i < n_slots; i++) {
                if (slots[i].state == L_STREAM && !slots[i].is_up_shut) {
                    set_interest(&slots[i], EPOLLIN | EPOLLOUT);
                }
            }
        }
        poll_once(10);
    }
    elapsed = (double)(bench_now_ns() - t_go_ns) / 1e9;
    for (i = 0; i < n_slots; i++) {
        if (slots[i].state == L_STREAM) {
            tot.resets++; /* timed out: counted as unfinished, its bytes as lost */
            stream_finish(&slots[i]);
        }
    }
    print_common(mode == M_BULK ? "bulk" : "integrity", elapsed);
    printf(",\"connections\":%" PRIu64 ",\"ready_at_go\":%zu,\"open_s\":%.3f,"
           "\"bytes_per_conn\":%" PRIu64 ",\"up_sent\":%" PRIu64 ",\"up_verified\":%" PRIu64
           ",\"down_verified\":%" PRIu64 ",\"up_gbps\":%.3f,\"down_gbps\":%.3f,"
           "\"up_sent_gbps\":%.3f,\"lost\":%" PRIu64 ",\"reordered\":%" PRIu64 ",\"mixed\":%" PRIu64
           ",\"corrupt\":%" PRIu64 ",\"no_trailer\":%" PRIu64 ",\"unconfirmed\":%" PRIu64 "}\n",
           n_conns, ready_at_go, (double)open_ns / 1e9, mode == M_INTEGRITY ? stream_bytes : 0,
           tot.up_sent, tot.up_verified, tot.down_verified,
           (double)tot.up_verified * 8 / elapsed / 1e9,
           (double)tot.down_verified * 8 / elapsed / 1e9, (double)tot.up_sent * 8 / elapsed / 1e9,
           tot.lost, tot.reordered, tot.mixed, tot.corrupt, tot.no_trailer, tot.unconfirmed);
    return 0;
}

static int
load_hello(const char *path)
{
    FILE *fp = fopen(path, "rb");
    long len;

    if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (len = ftell(fp)) <= 0 ||
        fseek(fp, 0, SEEK_SET) != 0) {
        fprintf(stderr, "loadgen: cannot read %s\n", path);
        if (fp != NULL) {
            fclose(fp);
        }
        return -1;
    }
    hello = malloc((size_t)len);
    hello_len = (size_t)len;
    if (hello == NULL || fread(hello, 1, hello_len, fp) != hello_len) {
        fclose(fp);
        return -1;
    }
    fclose(fp);
    hello_path = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
    return 0;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: loadgen rate|bulk|idle|integrity -a IP:PORT -f HELLO.bin [-L label]\n"
            "  rate:      -c concurrency (50) -t seconds (5) [-n max connections]\n"
            "  bulk:      -n streams (1000) -t seconds (5) [-D: the backend's stream only]\n"
            "             [-R Mbit/s: the backend paces each stream's download to this]\n"
            "  idle:      -n connections (1000) -H hold seconds (2)\n"
            "  integrity: -n connections (1000) -b bytes each way (65536)\n"
            "  all:       -T timeout seconds for opening and streaming (120)\n");
}

int
main(int argc, char **argv)
{
    bool has_addr = false;
    int opt;

    if (argc < 2) {
        usage();
        return 2;
    }
    if (strcmp(argv[1], "rate") == 0) {
        mode = M_RATE;
    } else if (strcmp(argv[1], "bulk") == 0) {
        mode = M_BULK;
    } else if (strcmp(argv[1], "idle") == 0) {
        mode = M_IDLE;
    } else if (strcmp(argv[1], "integrity") == 0) {
        mode = M_INTEGRITY;
    } else {
        usage();
        return 2;
    }
    optind = 2;
    while ((opt = getopt(argc, argv, "a:f:L:c:t:n:b:H:T:DR:")) != -1) {
        switch (opt) {
        case 'a':
            if (bench_parse_addr(optarg, &target) != 0) {
                fprintf(stderr, "loadgen: bad address %s\n", optarg);
                return 2;
            }
            has_addr = true;
            break;
        case 'f':
            if (load_hello(optarg) != 0) {
                return 1;
            }
            break;
        case 'L':
            label = optarg;
            break;
        case 'c':
            concurrency = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 't':
            duration_s = strtod(optarg, NULL);
            break;
        case 'n':
            max_conns = n_conns = strtoull(optarg, NULL, 10);
            break;
        case 'b':
            stream_bytes = strtoull(optarg, NULL, 10) / BP_BLOCK * BP_BLOCK;
            break;
        case 'H':
            hold_s = strtod(optarg, NULL);
            break;
        case 'T':
            timeout_s = strtod(optarg, NULL);
            break;
        case 'D':
            is_down_only = true;
            break;
        case 'R':
            down_rate = (uint64_t)(strtod(optarg, NULL) * 1e6 / 8);
            break;
        default:
            usage();
            return 2;
        }
    }
    if (!has_addr || hello == NULL || concurrency == 0 || n_conns == 0 || n_conns > BP_ID_MAX ||
        duration_s <= 0 || duration_s > 3600 || timeout_s > 3600 || hold_s > 3600) {
        usage();
        return 2;
    }
    bench_raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        perror("loadgen: epoll_create1");
        return 1;
    }
    switch (mode) {
    case M_RATE:
        return run_rate();
    case M_IDLE:
        return run_idle();
    case M_BULK:
    case M_INTEGRITY:
        return run_streams();
    }
    return 2;
}
