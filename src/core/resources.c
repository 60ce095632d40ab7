/* SPDX-License-Identifier: MIT */
/* A worker's resources (resources.h): the deadline timer, the buffer and pipe pools, the
 * scratch buffer, the setup cache and the heap trim. Everything here is taken and given
 * back on the worker's loop thread; none of it knows what a connection is. */
#include "sniroute/core/resources.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sniroute/observe/log.h"

void *
sr_resources_buf_get(struct sr_resources *res)
{
    struct sr_buf_pool *pool = &res->pool;
    void *buf = pool->free_list;

    if (buf != NULL) {
        memcpy(&pool->free_list, buf, sizeof(void *));
        pool->n_free--;
    } else {
        buf = malloc(SR_RELAY_BUF_SIZE);
        if (buf == NULL) {
            return NULL;
        }
    }
    pool->n_out++;
    return buf;
}

void
sr_resources_buf_put(struct sr_resources *res, void *buf)
{
    struct sr_buf_pool *pool = &res->pool;

    assert(pool->n_out > 0);
    pool->n_out--;
    /* Keep a bounded number for reuse: a burst of traffic must not pin its peak memory. */
    if (pool->n_free >= SR_POOL_KEEP_MAX) {
        free(buf);
        return;
    }
    memcpy(buf, &pool->free_list, sizeof(void *));
    pool->free_list = buf;
    pool->n_free++;
}

int
sr_resources_pipe_get(struct sr_resources *res, int fds[2])
{
    struct sr_pipe_pool *pipes = &res->pipes;

    if (pipes->n_free > 0) {
        pipes->n_free--;
        fds[0] = pipes->fds[pipes->n_free][0];
        fds[1] = pipes->fds[pipes->n_free][1];
        return 0;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        fds[0] = -1;
        fds[1] = -1;
        return -errno; /* libuv's codes are negated errno values on Unix */
    }
    return 0;
}

void
sr_resources_pipe_put(struct sr_resources *res, const int fds[2])
{
    struct sr_pipe_pool *pipes = &res->pipes;

    if (pipes->n_free >= pipes->keep_max) {
        close(fds[0]);
        close(fds[1]);
        return;
    }
    pipes->fds[pipes->n_free][0] = fds[0];
    pipes->fds[pipes->n_free][1] = fds[1];
    pipes->n_free++;
}

static size_t
pipe_keep_max(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
        return SR_PIPE_KEEP_MAX;
    }
    return rl.rlim_cur / 64 < SR_PIPE_KEEP_MAX ? (size_t)(rl.rlim_cur / 64) : SR_PIPE_KEEP_MAX;
}

static void
pool_fini(struct sr_buf_pool *pool)
{
    void *buf = pool->free_list;
    void *next;

    while (buf != NULL) {
        memcpy(&next, buf, sizeof(void *));
        free(buf);
        buf = next;
    }
    pool->free_list = NULL;
    pool->n_free = 0;
}

int
sr_resources_init(struct sr_resources *res, uv_loop_t *loop, sr_deadline_fn on_deadline)
{
    res->loop = loop;
    res->on_deadline = on_deadline;
    uv_timer_init(loop, &res->trim_timer);
    res->trim_timer.data = res;
    uv_timer_init(loop, &res->deadline_timer);
    res->deadline_timer.data = res;
    res->deadline_armed_ms = UINT64_MAX;
    res->pipes.keep_max = pipe_keep_max();
    return sr_reactor_init(&res->reactor, loop);
}

void
sr_resources_close(struct sr_resources *res)
{
    res->is_closed = true;
    uv_close((uv_handle_t *)&res->trim_timer, NULL);
    uv_close((uv_handle_t *)&res->deadline_timer, NULL);
    sr_reactor_close(&res->reactor, NULL);
}

void
sr_resources_fini(struct sr_resources *res)
{
    assert(res->pool.n_out == 0);
    pool_fini(&res->pool);
    sr_deadline_heap_fini(&res->deadlines);
    free(res->scratch);
    res->scratch = NULL;
    while (res->setup_free != NULL) {
        void *next = *(void **)res->setup_free;

        free(res->setup_free);
        res->setup_free = next;
    }
    while (res->pipes.n_free > 0) {
        res->pipes.n_free--;
        close(res->pipes.fds[res->pipes.n_free][0]);
        close(res->pipes.fds[res->pipes.n_free][1]);
    }
}

/* --- Timeouts, the scratch buffer, setups ---------------------------------------------- */

static void on_deadline_timer(uv_timer_t *timer);

/* Keep the one timer set for the earliest deadline; libuv's timer start is a heap
 * operation, no system call, but skip it when nothing changed. */
static void
deadline_rearm(struct sr_resources *res)
{
    struct sr_deadline *first = sr_deadline_first(&res->deadlines);
    uint64_t now;

    if (res->is_closed) {
        return;
    }
    if (first == NULL) {
        if (res->deadline_armed_ms != UINT64_MAX) {
            uv_timer_stop(&res->deadline_timer);
            res->deadline_armed_ms = UINT64_MAX;
        }
        return;
    }
    if (first->due_ms == res->deadline_armed_ms) {
        return;
    }
    now = uv_now(res->loop);
    res->deadline_armed_ms = first->due_ms;
    uv_timer_start(&res->deadline_timer, on_deadline_timer,
                   first->due_ms > now ? first->due_ms - now : 0, 0);
}

static void
on_deadline_timer(uv_timer_t *timer)
{
    struct sr_resources *res = timer->data;
    uint64_t now = uv_now(res->loop);
    struct sr_deadline *d;

    res->deadline_armed_ms = UINT64_MAX;
    while ((d = sr_deadline_first(&res->deadlines)) != NULL && d->due_ms <= now) {
        sr_deadline_clear(&res->deadlines, d);
        /* The connection sets a new deadline or closes. */
        res->on_deadline(d);
    }
    deadline_rearm(res);
}

void
sr_resources_deadline_set(struct sr_resources *res, struct sr_deadline *d, uint64_t due_ms)
{
    if (sr_deadline_set(&res->deadlines, d, due_ms) != 0) {
        /* Out of memory for the heap: a connection without a timeout would be a leak;
         * the drain timer is our last line, so just say it. */
        sr_log_notice("out of memory for a timeout");
        return;
    }
    deadline_rearm(res);
}

void
sr_resources_deadline_clear(struct sr_resources *res, struct sr_deadline *d)
{
    if (d->index != SR_DEADLINE_NONE) {
        sr_deadline_clear(&res->deadlines, d);
        deadline_rearm(res);
    }
}

uint8_t *
sr_resources_scratch(struct sr_resources *res, size_t len)
{
    uint8_t *p;

    if (len > res->scratch_cap) {
        p = realloc(res->scratch, len);
        if (p == NULL) {
            return NULL;
        }
        res->scratch = p;
        res->scratch_cap = len;
    }
    return res->scratch;
}

#define SR_SETUP_KEEP_MAX 64

void *
sr_resources_setup_get(struct sr_resources *res, size_t size)
{
    void *setup = res->setup_free;

    if (setup == NULL) {
        return calloc(1, size);
    }
    res->setup_free = *(void **)setup;
    res->n_setup_free--;
    memset(setup, 0, size);
    return setup;
}

void
sr_resources_setup_put(struct sr_resources *res, void *setup)
{
    if (res->n_setup_free >= SR_SETUP_KEEP_MAX) {
        free(setup);
        return;
    }
    *(void **)setup = res->setup_free;
    res->setup_free = setup;
    res->n_setup_free++;
}

/* glibc keeps freed heap pages that are not at the top of the heap: after a burst of
 * connections (a flood, a reconnect storm) the daemon would stay at its peak size although
 * the memory is free. Once closes stop coming for a moment, give it back. Under steady
 * traffic the timer keeps being pushed back and nothing is trimmed: that memory is in use. */
#define SR_TRIM_AFTER_CLOSES 256
#define SR_TRIM_QUIET_MS     250

static void
on_trim(uv_timer_t *timer)
{
    struct sr_resources *res = timer->data;

    if (res->n_closed_since_trim >= SR_TRIM_AFTER_CLOSES) {
        malloc_trim(0);
    }
    res->n_closed_since_trim = 0;
}

void
sr_resources_note_freed(struct sr_resources *res)
{
    if (++res->n_closed_since_trim >= SR_TRIM_AFTER_CLOSES / 4 && !res->is_closed) {
        uv_timer_start(&res->trim_timer, on_trim, SR_TRIM_QUIET_MS, 0);
    }
}
