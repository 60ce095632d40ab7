/* SPDX-License-Identifier: MIT */
/* Route table benchmark: lookups per second at 10, 10k and 1M entries (exact hit,
 * wildcard hit, miss), and build time and resident-memory growth per size. Half the
 * entries are exact names, half wildcards. Queries are generated up front and visited in
 * a scrambled order so the cache sees what a busy router would. Prints a table; not a test. */
#include "sniroute/config/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N_QUERIES 1000000u
#define QUERY_MAX 64 /* every generated name fits */

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Resident set size in bytes, from /proc/self/statm; 0 if unavailable. */
static size_t
rss_bytes(void)
{
    unsigned long size;
    unsigned long resident;
    FILE *f = fopen("/proc/self/statm", "r");
    int n;

    if (f == NULL) {
        return 0;
    }
    n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? (size_t)resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

/* Spread consecutive query numbers over 0..n-1 (Knuth's multiplicative hash). */
static uint32_t
scramble(uint32_t i, uint32_t n)
{
    return (uint32_t)(((uint64_t)i * 2654435761u) % n);
}

enum query_kind { Q_EXACT, Q_WILDCARD, Q_MISS };

static int
make_query(char *out, enum query_kind kind, uint32_t i)
{
    switch (kind) {
    case Q_EXACT:
        return snprintf(out, QUERY_MAX, "host-%u.example.net", i * 2);
    case Q_WILDCARD:
        return snprintf(out, QUERY_MAX, "www.api.w%u.example.net", i * 2 + 1);
    case Q_MISS:
        break;
    }
    return snprintf(out, QUERY_MAX, "www.api.absent-%u.example.org", i);
}

static double
run_lookups(const struct sr_route_table *t, size_t n_entries, enum query_kind kind,
            enum sr_route_kind want)
{
    /* Names are stored up front so formatting is not timed. */
    uint32_t n_distinct = n_entries / 2 > 0 ? (uint32_t)(n_entries / 2) : 1;
    uint32_t n = n_distinct < N_QUERIES ? n_distinct : N_QUERIES;
    char *names = malloc((size_t)n * QUERY_MAX);
    uint8_t *lens = malloc(n);
    struct sr_route_hit hit;
    uint64_t sum = 0;
    uint32_t i;
    double t0;
    double elapsed;

    if (names == NULL || lens == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (i = 0; i < n; i++) {
        lens[i] = (uint8_t)make_query(names + (size_t)i * QUERY_MAX, kind, scramble(i, n_distinct));
    }
    t0 = now_s();
    for (i = 0; i < N_QUERIES; i++) {
        uint32_t q = i % n;

        if (sr_route_lookup(t, names + (size_t)q * QUERY_MAX, lens[q], &hit) != want) {
            fprintf(stderr, "unexpected result for %.*s\n", lens[q], names + (size_t)q * QUERY_MAX);
            exit(1);
        }
        sum += hit.value;
    }
    elapsed = now_s() - t0;
    free(names);
    free(lens);
    if (sum == 1) { /* keeps the loop from being optimized away */
        puts("");
    }
    return (double)N_QUERIES / elapsed;
}

static void
bench_size(size_t n_entries)
{
    size_t rss0 = rss_bytes();
    double t0 = now_s();
    struct sr_route_table *t = sr_route_table_new();
    char key[QUERY_MAX];
    double build_s;
    size_t rss1;
    uint32_t i;

    for (i = 0; i < n_entries; i++) {
        int len = (i % 2) ? snprintf(key, sizeof(key), "*.w%u.example.net", i)
                          : snprintf(key, sizeof(key), "host-%u.example.net", i);

        if (t == NULL || sr_route_add(t, key, (size_t)len, i, NULL) != SR_ROUTE_ADDED) {
            fprintf(stderr, "build failed at %u\n", i);
            exit(1);
        }
    }
    build_s = now_s() - t0;
    rss1 = rss_bytes();
    printf("%9zu %10.1f %9.1f %12.2f %12.2f %12.2f\n", n_entries, build_s * 1e3,
           (double)(rss1 > rss0 ? rss1 - rss0 : 0) / (1024.0 * 1024.0),
           run_lookups(t, n_entries, Q_EXACT, SR_ROUTE_EXACT) / 1e6,
           run_lookups(t, n_entries, Q_WILDCARD, SR_ROUTE_WILDCARD) / 1e6,
           run_lookups(t, n_entries, Q_MISS, SR_ROUTE_MISS) / 1e6);
    fflush(stdout);
    sr_route_table_free(t);
}

int
main(int argc, char **argv)
{
    static const size_t sizes[] = {10, 10000, 1000000};
    size_t i;

    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: bench_route\n");
        return 2;
    }
    printf("entries: half exact (host-N.example.net), half wildcard (*.wN.example.net)\n");
    printf("queries: exact host-N.example.net, wildcard www.api.wN.example.net,\n"
           "         miss www.api.absent-N.example.org (walks every label)\n\n");
    printf("%9s %10s %9s %12s %12s %12s\n", "entries", "build ms", "RSS MiB", "exact M/s",
           "wildcard M/s", "miss M/s");
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        bench_size(sizes[i]);
    }
    return 0;
}
