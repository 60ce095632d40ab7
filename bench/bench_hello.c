/* SPDX-License-Identifier: MIT */
/* ClientHello parser speed, per fixture: ns per parse of the whole hello; a client dribbling
 * one byte per write into a caller that re-parses only when <need> bytes have arrived (parses
 * and ns per hello); and, for contrast, a naive caller that re-parses on every byte. No
 * allocation inside the timed loops. A benchmark, not a test: it asserts nothing about time.
 * Usage: bench_hello [FIXTURE_DIR] */
#include "sniroute/wire/hello.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_FIXTURES 64
#define MAX_LEN      (1 << 18)
#define TARGET_NS    50000000.0 /* time each measurement for about 50 ms */

struct fixture {
    char name[64];
    uint8_t *buf;
    size_t len;
};

static volatile size_t sink; /* keeps the parses from being optimized away */

static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int
by_name(const void *a, const void *b)
{
    return strcmp(((const struct fixture *)a)->name, ((const struct fixture *)b)->name);
}

static size_t
load_all(const char *dir, struct fixture *fx)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    if (d == NULL) {
        perror(dir);
        exit(2);
    }
    while ((e = readdir(d)) != NULL && n < MAX_FIXTURES) {
        size_t nl = strlen(e->d_name);
        char path[1024];
        FILE *f;

        if (nl < 5 || nl >= sizeof(fx[n].name) || strcmp(e->d_name + nl - 4, ".bin") != 0) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        f = fopen(path, "rb");
        if (f == NULL) {
            perror(path);
            exit(2);
        }
        fx[n].buf = malloc(MAX_LEN);
        if (fx[n].buf == NULL) {
            exit(2);
        }
        fx[n].len = fread(fx[n].buf, 1, MAX_LEN, f);
        fclose(f);
        snprintf(fx[n].name, sizeof(fx[n].name), "%s", e->d_name);
        n++;
    }
    closedir(d);
    qsort(fx, n, sizeof(fx[0]), by_name);
    return n;
}

/* One dribbled hello: parse at 0 bytes, then each time <need> more have arrived. */
static unsigned
dribble(const struct fixture *f, struct sr_hello_scratch *sc)
{
    struct sr_hello_result res;
    size_t have = 0;
    unsigned parses = 0;

    for (;;) {
        sr_hello_parse(f->buf, have, sc, &res);
        parses++;
        if (res.status != SR_HELLO_NEED_MORE || have == f->len) {
            break;
        }
        have = have + res.need < f->len ? have + res.need : f->len;
    }
    sink += res.sni.len;
    return parses;
}

/* The naive caller: a parse after every byte. */
static void
every_byte(const struct fixture *f, struct sr_hello_scratch *sc)
{
    struct sr_hello_result res;
    size_t have;

    for (have = 0; have <= f->len; have++) {
        sr_hello_parse(f->buf, have, sc, &res);
        if (res.status != SR_HELLO_NEED_MORE) {
            break;
        }
    }
    sink += res.sni.len;
}

/* Run <fn> over <f> until about TARGET_NS has passed; ns per call. */
static double
measure(void (*fn)(const struct fixture *, struct sr_hello_scratch *), const struct fixture *f,
        struct sr_hello_scratch *sc)
{
    unsigned long iters = 1;
    unsigned long i;
    double t0;
    double t;

    for (;;) {
        t0 = now_ns();
        for (i = 0; i < iters; i++) {
            fn(f, sc);
        }
        t = now_ns() - t0;
        if (t >= TARGET_NS || iters > (1ul << 30)) {
            return t / (double)iters;
        }
        iters = t < TARGET_NS / 100 ? iters * 10 : (unsigned long)(iters * TARGET_NS / t) + 1;
    }
}

static void
whole(const struct fixture *f, struct sr_hello_scratch *sc)
{
    struct sr_hello_result res;
    sr_hello_parse(f->buf, f->len, sc, &res);
    sink += res.sni.len;
}

static void
dribble_fn(const struct fixture *f, struct sr_hello_scratch *sc)
{
    (void)dribble(f, sc);
}

int
main(int argc, char **argv)
{
    static struct fixture fx[MAX_FIXTURES];
    static struct sr_hello_scratch sc;
    const char *dir = argc > 1 ? argv[1] : SR_FIXTURE_DIR;
    size_t n = load_all(dir, fx);
    size_t i;

    printf("%-28s %6s %4s %-9s %9s %7s %11s %9s %13s\n", "fixture", "bytes", "recs", "status",
           "ns/whole", "parses", "ns/dribbled", "ns/parse", "ns/every-byte");
    for (i = 0; i < n; i++) {
        struct sr_hello_result res;
        unsigned parses = dribble(&fx[i], &sc);
        double t_whole = measure(whole, &fx[i], &sc);
        double t_drib = measure(dribble_fn, &fx[i], &sc);
        double t_naive = fx[i].len <= 4096 ? measure(every_byte, &fx[i], &sc) : 0.0;

        sr_hello_parse(fx[i].buf, fx[i].len, &sc, &res);
        printf("%-28s %6zu %4u %-9s %9.1f %7u %11.1f %9.1f", fx[i].name, fx[i].len, res.n_records,
               sr_hello_status_str(res.status), t_whole, parses, t_drib, t_drib / parses);
        if (t_naive > 0) {
            printf(" %13.0f\n", t_naive);
        } else {
            printf(" %13s\n", "-");
        }
        free(fx[i].buf);
    }
    return 0;
}
