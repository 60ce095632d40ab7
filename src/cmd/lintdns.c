/* SPDX-License-Identifier: MIT */
/* The lint as `sniroute -t` runs it: findings printed to stderr, and the resolver it hands
 * the lint: every upstream host name looked up at once by a few threads of our own, each
 * calling getaddrinfo, within one deadline for all of them, so a config with hundreds of
 * names that time out still finishes in bounded time. Apart from lint.c because it does
 * I/O and starts threads. */
#include "sniroute/config/lint.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* Threads looking names up at once: enough that a few slow names do not hold up the rest,
 * few enough for a container's thread limit. */
#define LOOKUP_THREADS 16

/* One batch of lookups, shared with its threads. When every lookup answered in time the
 * threads are joined: one that had just signalled its last answer may otherwise still be
 * running when the process exits, with glibc's per-thread resolver state not yet freed
 * (LeakSanitizer reported it, about one run in 150). Otherwise the batch is never freed: a
 * thread still waiting for an answer at the deadline goes on using it after we return, so
 * it stays, reachable from <kept>, until the process exits (this runs once, in
 * `sniroute -t`). glibc's getaddrinfo_a was used before; its helper thread could still be
 * inside __gai_notify() after gai_error() said a lookup was done and crash the process at
 * its end (about one run in seven), or leave a lookup pending until the deadline. */
struct lookups {
    pthread_mutex_t lock;
    pthread_cond_t done;
    char **hosts; /* copies: the caller's strings may go before a thread is done */
    int *rc;      /* per host: getaddrinfo's answer, or EAI_INPROGRESS while pending */
    size_t n;
    size_t next; /* the next host a thread takes */
    size_t n_done;
};

static struct lookups *kept;

static void *
lookup_thread(void *arg)
{
    static const struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct lookups *l = arg;

    for (;;) {
        struct addrinfo *res = NULL;
        size_t i;
        int rc;

        pthread_mutex_lock(&l->lock);
        i = l->next < l->n ? l->next++ : l->n;
        pthread_mutex_unlock(&l->lock);
        if (i == l->n) {
            return NULL;
        }
        rc = getaddrinfo(l->hosts[i], NULL, &hints, &res);
        if (rc == 0) {
            freeaddrinfo(res);
        }
        pthread_mutex_lock(&l->lock);
        l->rc[i] = rc;
        l->n_done++;
        pthread_cond_signal(&l->done);
        pthread_mutex_unlock(&l->lock);
    }
}

static void
not_checked(const char **why, size_t n, const char *reason)
{
    size_t i;

    for (i = 0; i < n; i++) {
        why[i] = reason;
    }
}

void
sr_lint_resolve_system(void *ctx, const char *const *hosts, size_t n, const char **why)
{
    unsigned timeout_ms = ctx != NULL ? *(const unsigned *)ctx : SR_LINT_RESOLVE_TIMEOUT_MS;
    struct lookups *l = calloc(1, sizeof(*l));
    size_t n_threads = 0;
    pthread_t threads[LOOKUP_THREADS];
    struct timespec deadline;
    bool is_all_done;
    size_t i;

    if (n == 0) {
        free(l);
        return;
    }
    if (l == NULL || (l->hosts = calloc(n, sizeof(*l->hosts))) == NULL ||
        (l->rc = calloc(n, sizeof(*l->rc))) == NULL) {
        if (l != NULL) {
            free(l->hosts);
        }
        free(l);
        not_checked(why, n, "not checked (out of memory)");
        return;
    }
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->done, NULL);
    l->n = n;
    for (i = 0; i < n; i++) {
        l->hosts[i] = strdup(hosts[i]);
        l->rc[i] = EAI_INPROGRESS;
        if (l->hosts[i] == NULL) {
            l->rc[i] = EAI_MEMORY;
            l->n_done++;
        }
    }
    /* Taken by the threads in order; a host whose copy failed is counted done already. */
    for (i = 0; i < n; i++) {
        if (l->hosts[i] == NULL) {
            l->hosts[i] = (char *)"";
        }
    }
    kept = l;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)(timeout_ms / 1000);
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    for (i = 0; i < n && i < LOOKUP_THREADS; i++) {
        if (pthread_create(&threads[n_threads], NULL, lookup_thread, l) == 0) {
            n_threads++;
        }
    }
    pthread_mutex_lock(&l->lock);
    if (n_threads == 0) {
        pthread_mutex_unlock(&l->lock);
        not_checked(why, n, "not checked (no thread for the lookups)");
        return;
    }
    while (l->n_done < n) {
        if (pthread_cond_timedwait(&l->done, &l->lock, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    is_all_done = l->n_done == n;
    for (i = 0; i < n; i++) {
        int rc = l->rc[i];

        if (rc == 0) {
            why[i] = NULL;
        } else if (rc == EAI_INPROGRESS) {
            why[i] = "no answer in time";
        } else if (rc == EAI_NONAME) {
            why[i] = "no such name";
        } else {
            why[i] = gai_strerror(rc);
        }
    }
    pthread_mutex_unlock(&l->lock);
    /* Every thread has taken its last host or is about to find none left: each returns at
     * once. Those still in getaddrinfo at the deadline are left to it. */
    for (i = 0; i < n_threads; i++) {
        if (is_all_done) {
            (void)pthread_join(threads[i], NULL);
        } else {
            (void)pthread_detach(threads[i]);
        }
    }
}

static void
on_finding(void *ctx, enum sr_lint_severity severity, const char *msg)
{
    (void)severity;
    fprintf(ctx, "%s\n", msg);
}

size_t
sr_lint_print(const struct sr_config *cfg, const char *path, FILE *out)
{
    unsigned timeout_ms = SR_LINT_RESOLVE_TIMEOUT_MS;
    struct sr_lint_options opt = {sr_lint_resolve_system, &timeout_ms, 0};

    return sr_lint_run(cfg, path, &opt, on_finding, out);
}
