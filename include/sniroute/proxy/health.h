/* SPDX-License-Identifier: MIT */
/* Active health checks for upstream pools (health_check = INTERVAL): every interval, a TCP
 * connect to each server (its name resolved anew, each address tried in turn) decides
 * whether the pool may choose it. A check holds a reference to the generation whose pool
 * it updates; a reload stops the old checks and starts the new ones. */
#ifndef SR_HEALTH_H
#define SR_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct sr_generation;
struct sr_health_check;

/* The checks of one generation: one per server of every pool with health_check set. */
struct sr_health {
    struct sr_health_check *checks; /* a list */
    size_t n_open;                  /* checks whose handles are not all closed yet */
};

/* Start checking every pool of <gen> that asks for it, on <loop>; the first check runs at
 * once. Only worker 0 checks: each verdict goes to the copies of the pool of all
 * <n_workers> workers (the flag is atomic), so a server gets one probe per round however
 * many workers run. For another <worker> this does nothing. Returns 0 or a UV_E* code
 * (what started keeps running; stop it as usual). */
int sr_health_start(struct sr_health *health, uv_loop_t *loop, struct sr_generation *gen,
                    size_t worker, size_t n_workers);

/* Stop every check and close its handles; each drops its generation reference once
 * closed. <health> may be reused for the next generation at once. */
void sr_health_stop(struct sr_health *health);

#endif
