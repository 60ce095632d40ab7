/* SPDX-License-Identifier: MIT */
/* Workers: one server per loop, one loop per thread. Nothing of a connection is ever
 * touched by two threads; what the workers share (limits, metric names) lives in struct
 * sr_shared, with no lock on the way of a connection. Requests from the main thread go
 * through a mutex-guarded mailbox (each lock counted in sr_shared) and uv_async_send, the
 * only libuv call that is thread-safe. */
#include "sniroute/proxy/worker.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sniroute/core/reactor.h"
#include "sniroute/observe/log.h"

static void
worker_finished(struct sr_worker *w)
{
    struct sr_workers *set = w->set;

    atomic_fetch_add(&set->n_finished, 1);
    if (w->has_thread) {
        uv_async_send(&set->finished); /* the main loop counts in on_finished */
    } else if (atomic_load(&set->n_finished) == set->n) {
        set->is_all_stopped = true;
        uv_close((uv_handle_t *)&set->finished, NULL);
        set->on_all_stopped(set);
    }
}

static void
on_finished(uv_async_t *handle)
{
    struct sr_workers *set = handle->data;

    /* Sends coalesce: count, do not assume one callback per worker. */
    if (!set->is_all_stopped && atomic_load(&set->n_finished) == set->n) {
        set->is_all_stopped = true;
        uv_close((uv_handle_t *)&set->finished, NULL);
        set->on_all_stopped(set);
    }
}

/* With set->lock held, on <w>'s loop: answer sr_workers_listen_fds if it asked. */
static void
collect_fds(struct sr_worker *w)
{
    struct sr_workers *set = w->set;

    if (!w->is_collecting) {
        return;
    }
    w->is_collecting = false;
    set->n_fds +=
        sr_server_listen_fds(&w->server, set->fds + set->n_fds, set->fds_cap - set->n_fds);
    set->n_collecting--;
    uv_cond_signal(&set->collected);
}

static void
on_server_stopped(struct sr_server *server)
{
    struct sr_worker *w = server->data;

    /* The last handle of ours on this loop: the worker's uv_run can return. Under the
     * lock, so the main thread never sends to a closing handle. */
    sr_shared_process_lock(w->set->shared, &w->set->lock);
    collect_fds(w); /* nothing listens any more: an empty answer */
    w->is_closed = true;
    uv_close((uv_handle_t *)&w->wake, NULL);
    sr_shared_process_unlock(&w->set->lock);
    if (!w->has_thread) {
        worker_finished(w);
    }
}

static void
adoption_free(struct sr_adoption *a)
{
    close(a->client_fd);
    close(a->backend_fd);
    free(a);
}

static void
on_wake(uv_async_t *handle)
{
    struct sr_worker *w = handle->data;
    struct sr_adoption *adoptions;
    struct sr_adoption *a;
    struct sr_generation *next;
    unsigned n_drains;

    sr_shared_process_lock(w->set->shared, &w->set->lock);
    adoptions = w->adoptions;
    w->adoptions = NULL;
    next = w->pending;
    w->pending = NULL;
    n_drains = w->n_drains_asked - w->n_drains_done;
    w->n_drains_done = w->n_drains_asked;
    sr_shared_process_unlock(&w->set->lock);

    if (next != NULL) {
        int rc = sr_server_reload(&w->server, next); /* takes the reference either way */

        if (rc != 0 && w->set->n > 1) {
            sr_log_notice("worker %zu: reload not applied: %s", w->index, uv_strerror(rc));
        }
    }
    /* Taken-over connections, under the newest config. */
    while ((a = adoptions) != NULL) {
        adoptions = a->next;
        if (w->server.is_stopped) {
            adoption_free(a); /* unlikely: a stop between the post and now */
            continue;
        }
        (void)sr_server_adopt(&w->server, &a->rec, a->client_fd, a->backend_fd, a->uid);
        free(a);
    }
    /* After the reload (its sockets are the current ones), before a drain closes them. */
    sr_shared_process_lock(w->set->shared, &w->set->lock);
    collect_fds(w);
    sr_shared_process_unlock(&w->set->lock);
    while (n_drains-- > 0 && !w->server.is_stopped) {
        sr_server_drain(&w->server);
    }
}

/* On the worker's loop: the mailbox, then the server. */
static int
worker_setup(struct sr_worker *w)
{
    int rc = uv_async_init(w->loop, &w->wake, on_wake);

    if (rc != 0) {
        return rc;
    }
    w->wake.data = w;
    sr_shared_process_lock(w->set->shared, &w->set->lock);
    w->is_open = true;
    sr_shared_process_unlock(&w->set->lock);
    w->server.on_stopped = on_server_stopped;
    w->server.data = w;
    rc = sr_server_start(&w->server, w->loop, w->set->shared, w->index, w->start);
    w->start = NULL; /* the server owns that reference now */
    return rc;
}

static void
worker_thread(void *arg)
{
    struct sr_worker *w = arg;
    int rc;

    w->own_loop.data = NULL; /* uv_loop_init keeps it; the reactor's pointer goes there */
    w->start_rc = uv_loop_init(&w->own_loop);
    if (w->start_rc != 0) {
        sr_generation_unref(w->start);
        uv_sem_post(&w->started);
        worker_finished(w);
        return;
    }
    w->loop = &w->own_loop;
    w->start_rc = worker_setup(w);
    uv_sem_post(&w->started);
    sr_reactor_run(w->loop);
    /* sr_server_fini waits for the join: the main thread may scrape the server's metrics
     * until every worker has stopped. */
    rc = uv_loop_close(w->loop);
    if (rc != 0) {
        sr_log_notice("worker %zu: uv_loop_close: %s", w->index, uv_strerror(rc));
    }
    worker_finished(w);
}

int
sr_workers_start(struct sr_workers *set, uv_loop_t *main_loop, struct sr_shared *shared,
                 struct sr_generation *gen)
{
    int first_rc = 0;
    size_t i;
    int rc;

    set->shared = shared;
    set->main_loop = main_loop;
    set->n = shared->n_workers;
    atomic_store(&set->n_finished, 0);
    set->workers = calloc(set->n, sizeof(*set->workers));
    if (set->workers == NULL || uv_mutex_init(&set->lock) != 0 ||
        uv_cond_init(&set->collected) != 0) {
        return UV_ENOMEM;
    }
    rc = uv_async_init(main_loop, &set->finished, on_finished);
    if (rc != 0) {
        return rc;
    }
    set->finished.data = set;
    if (set->n == 1) {
        /* The one server's handles keep the main loop up; with threads, this handle does,
         * until every worker has finished. */
        uv_unref((uv_handle_t *)&set->finished);
    }

    for (i = 0; i < set->n; i++) {
        struct sr_worker *w = &set->workers[i];

        w->set = set;
        w->index = i;
        w->start = sr_generation_ref(gen);
        if (set->n == 1) {
            w->loop = main_loop; /* one worker: exactly as without workers */
            w->start_rc = worker_setup(w);
        } else {
            uv_sem_init(&w->started, 0);
            rc = uv_thread_create(&w->thread, worker_thread, w);
            if (rc != 0) {
                sr_generation_unref(w->start);
                w->start = NULL;
                w->start_rc = rc;
                atomic_fetch_add(&set->n_finished, 1);
                uv_sem_destroy(&w->started);
                continue;
            }
            w->has_thread = true;
            uv_sem_wait(&w->started);
            uv_sem_destroy(&w->started);
        }
        if (w->start_rc != 0 && first_rc == 0) {
            first_rc = w->start_rc;
        }
    }
    if (first_rc != 0) {
        sr_workers_drain(set);
    }
    return first_rc;
}

static void
post(struct sr_workers *set, struct sr_generation *gen, bool is_drain)
{
    size_t i;

    for (i = 0; i < set->n; i++) {
        struct sr_worker *w = &set->workers[i];

        sr_shared_process_lock(set->shared, &set->lock);
        if (gen != NULL) {
            /* A reload not yet taken is replaced: only the newest config matters. */
            sr_generation_unref(w->pending);
            w->pending = sr_generation_ref(gen);
        }
        if (is_drain) {
            w->n_drains_asked++;
        }
        if (w->is_open && !w->is_closed) {
            uv_async_send(&w->wake);
        }
        sr_shared_process_unlock(&set->lock);
    }
}

void
sr_workers_reload(struct sr_workers *set, struct sr_generation *gen)
{
    post(set, gen, false);
}

void
sr_workers_drain(struct sr_workers *set)
{
    post(set, NULL, true);
}

size_t
sr_workers_listen_fds(struct sr_workers *set, struct sr_listen_fd *out, size_t cap)
{
    size_t n;
    size_t i;

    sr_shared_process_lock(set->shared, &set->lock);
    set->fds = out;
    set->fds_cap = cap;
    set->n_fds = 0;
    for (i = 0; i < set->n; i++) {
        struct sr_worker *w = &set->workers[i];

        if (w->is_open && !w->is_closed) {
            w->is_collecting = true;
            set->n_collecting++;
            if (w->has_thread) {
                uv_async_send(&w->wake);
            } else {
                collect_fds(w); /* the one worker runs on this very loop */
            }
        }
    }
    while (set->n_collecting > 0) {
        uv_cond_wait(&set->collected, &set->lock);
    }
    n = set->n_fds;
    set->fds = NULL;
    sr_shared_process_unlock(&set->lock);
    return n;
}

void
sr_workers_adopt(struct sr_workers *set, const struct sr_upgrade_conn *rec, int client_fd,
                 int backend_fd, uint32_t uid)
{
    struct sr_adoption *a = malloc(sizeof(*a));
    size_t i;

    if (a == NULL) {
        close(client_fd);
        close(backend_fd);
        sr_log_notice("upgrade: out of memory taking over a connection");
        return;
    }
    a->rec = *rec;
    a->client_fd = client_fd;
    a->backend_fd = backend_fd;
    a->uid = uid;
    sr_shared_process_lock(set->shared, &set->lock);
    for (i = 0; i < set->n; i++) {
        struct sr_worker *w = &set->workers[set->next_adopt++ % set->n];

        if (w->is_open && !w->is_closed) {
            a->next = w->adoptions;
            w->adoptions = a;
            uv_async_send(&w->wake);
            sr_shared_process_unlock(&set->lock);
            return;
        }
    }
    sr_shared_process_unlock(&set->lock);
    adoption_free(a);
    sr_log_notice("upgrade: no worker runs to take over a connection; closed");
}

size_t
sr_workers_servers(struct sr_workers *set, struct sr_server **out, size_t cap)
{
    size_t i;

    for (i = 0; i < set->n && i < cap; i++) {
        out[i] = &set->workers[i].server;
    }
    return i;
}

uint64_t
sr_workers_fini(struct sr_workers *set)
{
    uint64_t n_accepted = 0;
    size_t i;

    for (i = 0; i < set->n; i++) {
        struct sr_worker *w = &set->workers[i];

        if (w->has_thread) {
            uv_thread_join(&w->thread);
        }
        if (w->server.loop != NULL) {
            n_accepted += w->server.conns.n_accepted;
            sr_server_fini(&w->server);
        }
        sr_generation_unref(w->pending);
        sr_generation_unref(w->start);
        while (w->adoptions != NULL) {
            struct sr_adoption *a = w->adoptions;

            w->adoptions = a->next;
            adoption_free(a);
        }
    }
    free(set->workers);
    uv_cond_destroy(&set->collected);
    uv_mutex_destroy(&set->lock);
    memset(set, 0, sizeof(*set));
    return n_accepted;
}
