/* SPDX-License-Identifier: MIT */
/* The per-connection path every worker shares (issue 14 part 1), without sockets: admit a
 * connection against the limits (max_connections, the listener's, max_connections_per_ip),
 * format its access-log line, add it to the thread's batch, release it. Driven by 1, 2, 4
 * and 8 threads for a fixed count of connections each; prints ops/s and lock acquisitions
 * per op, of locks every thread may take and of the per-address shards. "--old" runs the
 * design this replaced, for comparison: one mutex around the admission, around each
 * fwrite + fflush of a line and around the release. Prints a table; not a test.
 *
 *   bench_admit [--old] [--ops N] [--log PATH]   (the log defaults to /dev/null) */
#include "sniroute/core/shared.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sniroute/core/ipcount.h"
#include "sniroute/observe/log.h"

#define N_ADDRS 1024 /* client addresses per thread */

struct run {
    struct sr_shared *shared;
    const struct sr_config *cfg;
    const struct sr_listener_config *lcfg;
    uint32_t lslot;
    struct sr_alog_file *file;
    size_t ops;
    bool is_old;
    /* The old design's one lock and FILE, and its per-address table. */
    pthread_mutex_t *old_lock;
    FILE *old_log;
    struct sr_ipcount *old_per_ip;
    _Atomic uint64_t *old_n_locks;
    _Atomic size_t *old_n_conns;
};

struct thread_arg {
    struct run *run;
    size_t index;
    uint64_t n_refused;
    pthread_t thread;
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t
format_line(char *line, size_t cap, const struct sockaddr_in *peer, size_t i)
{
    struct sr_access_record rec;
    char client[32];

    snprintf(client, sizeof(client), "10.%u.%u.%u:%u", (peer->sin_addr.s_addr >> 8) & 0xff,
             (peer->sin_addr.s_addr >> 16) & 0xff, peer->sin_addr.s_addr >> 24,
             (unsigned)(i & 0xffff));
    memset(&rec, 0, sizeof(rec));
    rec.time_ms = 1795345200123 + (int64_t)i;
    rec.listener = "https";
    rec.client = client;
    rec.sni = "www.example.com";
    rec.route = "exact";
    rec.upstream = "10.0.0.1:443";
    rec.bytes_in = 517;
    rec.bytes_out = 4321;
    rec.duration_ms = 12;
    rec.outcome = "ok";
    return sr_log_format_access(line, cap, &rec);
}

/* The old path: admission, the line and the release each under the one lock. */
static void
old_op(struct run *r, const struct sockaddr_in *peer, const char *line, size_t len,
       uint64_t *n_refused)
{
    struct sr_ipkey key;

    sr_ipkey_from_sockaddr(&key, (const struct sockaddr *)peer);
    atomic_fetch_add(r->old_n_locks, 3);
    pthread_mutex_lock(r->old_lock);
    (*r->old_n_conns)++;
    if (sr_ipcount_add(r->old_per_ip, &key) > r->cfg->max_connections_per_ip) {
        (*n_refused)++;
    }
    pthread_mutex_unlock(r->old_lock);
    pthread_mutex_lock(r->old_lock);
    fwrite(line, 1, len, r->old_log);
    fflush(r->old_log);
    pthread_mutex_unlock(r->old_lock);
    pthread_mutex_lock(r->old_lock);
    (*r->old_n_conns)--;
    sr_ipcount_remove(r->old_per_ip, &key);
    pthread_mutex_unlock(r->old_lock);
}

static void *
thread_main(void *p)
{
    struct thread_arg *a = p;
    struct run *r = a->run;
    struct sockaddr_in peer;
    char line[1024];
    uv_loop_t loop;
    size_t i;

    uv_loop_init(&loop);
    if (!r->is_old) {
        /* A worker's batch on this thread's loop (its timer is armed, never run here:
         * batches go out on the size bound, and at the stop). */
        sr_shared_log_start(r->shared, a->index, &loop, r->file);
    }
    memset(&peer, 0, sizeof(peer));
    peer.sin_family = AF_INET;
    for (i = 0; i < r->ops; i++) {
        struct sr_admission adm;
        enum sr_metrics_limit over;
        size_t len;

        /* 10.T.x.y: each thread its own addresses, as clients spread over workers. */
        peer.sin_addr.s_addr = 10u | (uint32_t)a->index << 8 | (uint32_t)(i % N_ADDRS) << 16;
        len = format_line(line, sizeof(line), &peer, i);
        if (r->is_old) {
            old_op(r, &peer, line, len, &a->n_refused);
            continue;
        }
        memset(&adm, 0, sizeof(adm));
        if (sr_shared_admit(r->shared, &adm, r->cfg, r->lcfg, r->lslot,
                            (const struct sockaddr *)&peer, &over) != NULL) {
            a->n_refused++;
        }
        sr_shared_log(r->shared, a->index, line, len);
        sr_shared_release(r->shared, &adm);
    }
    if (!r->is_old) {
        sr_shared_log_stop(r->shared, a->index);
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* the timer's close */
    uv_loop_close(&loop);
    return NULL;
}

int
main(int argc, char **argv)
{
    static const size_t n_threads[] = {1, 2, 4, 8};
    const char *log_path = "/dev/null";
    size_t ops = 1000000;
    bool is_old = false;
    struct sr_listener_config lcfg;
    struct sr_config cfg;
    size_t t, i;

    for (i = 1; i < (size_t)argc; i++) {
        if (strcmp(argv[i], "--old") == 0) {
            is_old = true;
        } else if (strcmp(argv[i], "--ops") == 0 && i + 1 < (size_t)argc) {
            ops = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--log") == 0 && i + 1 < (size_t)argc) {
            log_path = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_admit [--old] [--ops N] [--log PATH]\n");
            return 2;
        }
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.max_connections = 100000;
    cfg.max_connections_per_ip = 1000;
    memset(&lcfg, 0, sizeof(lcfg));
    snprintf(lcfg.name, sizeof(lcfg.name), "https");
    lcfg.max_connections = 100000;

    printf("%s path, %zu connections per thread, log %s; a 2-core machine\n",
           is_old ? "old (one mutex, fwrite + fflush per line)" : "new (atomics, shards, batches)",
           ops, log_path);
    printf("%-8s %14s %14s %18s %16s\n", "threads", "ops/s", "ops/s/thread", "process locks/op",
           "shard locks/op");
    for (t = 0; t < sizeof(n_threads) / sizeof(n_threads[0]); t++) {
        struct thread_arg args[8];
        struct sr_shared shared;
        struct sr_alog_file *file;
        pthread_mutex_t old_lock = PTHREAD_MUTEX_INITIALIZER;
        _Atomic uint64_t old_n_locks = 0;
        _Atomic size_t old_n_conns = 0;
        struct run r;
        uint64_t p0, s0, p1, s1, refused = 0;
        double t0, dt;

        if (sr_shared_init(&shared, n_threads[t]) != 0 || sr_alog_file_open(log_path, &file) != 0) {
            return 1;
        }
        memset(&r, 0, sizeof(r));
        r.file = file; /* each thread's batch takes a reference */
        r.shared = &shared;
        r.cfg = &cfg;
        r.lcfg = &lcfg;
        r.lslot = sr_shared_listener_slot(&shared, lcfg.name);
        r.ops = ops;
        r.is_old = is_old;
        r.old_lock = &old_lock;
        r.old_log = is_old ? fopen(log_path, "a") : NULL;
        r.old_per_ip = sr_ipcount_new((const uint64_t[2]){1, 2});
        r.old_n_locks = &old_n_locks;
        r.old_n_conns = &old_n_conns;
        sr_shared_lock_counts(&shared, &p0, &s0);
        t0 = now_s();
        for (i = 0; i < n_threads[t]; i++) {
            args[i].run = &r;
            args[i].index = i;
            args[i].n_refused = 0;
            pthread_create(&args[i].thread, NULL, thread_main, &args[i]);
        }
        for (i = 0; i < n_threads[t]; i++) {
            pthread_join(args[i].thread, NULL);
            refused += args[i].n_refused;
        }
        dt = now_s() - t0;
        sr_shared_lock_counts(&shared, &p1, &s1);
        if (is_old) {
            p1 = p0 + atomic_load(&old_n_locks);
            s1 = s0;
        }
        printf("%-8zu %14.0f %14.0f %18.3f %16.3f%s\n", n_threads[t],
               (double)(ops * n_threads[t]) / dt, (double)ops / dt,
               (double)(p1 - p0) / (double)(ops * n_threads[t]),
               (double)(s1 - s0) / (double)(ops * n_threads[t]),
               refused != 0 ? "  (refusals: a bug)" : "");
        if (r.old_log != NULL) {
            fclose(r.old_log);
        }
        sr_ipcount_free(r.old_per_ip);
        sr_shared_fini(&shared); /* drops each batch's reference */
        sr_alog_file_unref(file);
    }
    return 0;
}
