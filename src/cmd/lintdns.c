/* SPDX-License-Identifier: MIT */
/* The lint as `sniroute -t` runs it: findings printed to stderr, and the resolver it hands
 * the lint: every upstream host name looked up at once with
 * glibc's getaddrinfo_a, within one deadline for all of them, so a config with hundreds of
 * names that time out still finishes in bounded time. Apart from lint.c because it does I/O
 * and starts threads (glibc's). */
#include "sniroute/config/lint.h"

#include <netdb.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
sr_lint_resolve_system(void *ctx, const char *const *hosts, size_t n, const char **why)
{
    /* Static: a lookup abandoned at the deadline may still read it after we return. */
    static const struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    unsigned timeout_ms = ctx != NULL ? *(const unsigned *)ctx : SR_LINT_RESOLVE_TIMEOUT_MS;
    struct gaicb *reqs = calloc(n, sizeof(*reqs));
    struct gaicb **wait = calloc(n, sizeof(*wait));
    uint64_t deadline = now_ms() + timeout_ms;
    size_t n_pending = 0;
    bool is_abandoned = false;
    size_t i;

    if (reqs == NULL || wait == NULL || n > INT32_MAX) {
        for (i = 0; i < n; i++) {
            why[i] = "not checked (out of memory)";
        }
        free(reqs);
        free(wait);
        return;
    }
    for (i = 0; i < n; i++) {
        reqs[i].ar_name = hosts[i];
        reqs[i].ar_request = &hints;
        wait[i] = &reqs[i];
    }
    if (getaddrinfo_a(GAI_NOWAIT, wait, (int)n, NULL) != 0) {
        for (i = 0; i < n; i++) {
            why[i] = "not checked (getaddrinfo_a failed)";
        }
        free(reqs);
        free(wait);
        return;
    }
    n_pending = n;
    while (n_pending > 0) {
        uint64_t now = now_ms();
        struct timespec left;

        for (i = 0; i < n; i++) {
            if (wait[i] != NULL && gai_error(wait[i]) != EAI_INPROGRESS) {
                wait[i] = NULL; /* gai_suspend ignores NULL entries */
                n_pending--;
            }
        }
        if (n_pending == 0 || now >= deadline) {
            break;
        }
        left.tv_sec = (time_t)((deadline - now) / 1000);
        left.tv_nsec = (long)((deadline - now) % 1000) * 1000000;
        gai_suspend((const struct gaicb *const *)wait, (int)n, &left);
    }
    for (i = 0; i < n; i++) {
        int rc = gai_error(&reqs[i]);

        if (rc == EAI_INPROGRESS && gai_cancel(&reqs[i]) != EAI_CANCELED) {
            is_abandoned = true; /* a glibc thread still owns it */
        }
        if (rc == 0) {
            why[i] = NULL;
            freeaddrinfo(reqs[i].ar_result);
        } else if (rc == EAI_INPROGRESS) {
            why[i] = "no answer in time";
        } else if (rc == EAI_NONAME) {
            why[i] = "no such name";
        } else {
            why[i] = gai_strerror(rc);
        }
    }
    if (!is_abandoned) {
        free(reqs);
    }
    /* Otherwise a lookup still running writes into <reqs>: leave it to the exit of the
     * process (this runs only in `sniroute -t`). */
    free(wait);
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
