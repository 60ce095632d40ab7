/* SPDX-License-Identifier: MIT */
/* Config generations. A config is never changed once loaded: a reload brings a new
 * generation, the server holds the current one and each connection the one it was
 * accepted under (a reference), so a reload never changes the rules, or frees the strings,
 * under an open connection. A generation also carries what the config needs at run time:
 * metric row ids and every worker's copy of each pool. */
#ifndef SR_GENERATION_H
#define SR_GENERATION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sniroute/config/config.h"
#include "sniroute/config/pool.h"
#include "sniroute/observe/accesslog.h"

struct sr_shared;

/* A loaded, valid config with a reference count: the server holds the current one and
 * each connection the one it was accepted under, so a reload never changes the rules, or
 * frees the strings, under an open connection. */
/* What the connections of one worker hold of a generation: a plain count, written by that
 * worker's thread only, on a cache line of its own. */
struct sr_generation_hold {
    size_t n;
} __attribute__((aligned(64)));

struct sr_generation {
    struct sr_config cfg;
    uint64_t id; /* 1 for the config at start, then one more per successful reload */
    /* References: main's, each server's, each worker's hold while it has connections on
     * this generation. On a line of its own: accept reads the fields around it. */
    _Alignas(64) _Atomic size_t n_refs;
    /* [n_holds], one per worker (sr_generation_prepare): accept and close count here, so
     * they write nothing another worker writes (sr_generation_hold). */
    _Alignas(64) struct sr_generation_hold *holds;
    size_t n_holds;
    /* Metric row ids (sr_metrics_names) of cfg.listeners[i] and cfg.upstreams[i], set when
     * the server takes the generation. */
    uint32_t *listener_ids;
    uint32_t *upstream_ids;
    /* The slot counting cfg.listeners[i]'s open connections (sr_shared_listener_slot), set
     * with the ids: resolved once per generation, so accept looks up no name. */
    uint32_t *listener_slots;
    /* Where the access log goes under this config (access_log), a reference; NULL: off.
     * Set by main before the workers get the generation; a worker switches its batch to it
     * when it takes the generation. */
    struct sr_alog_file *alog;
    /* The runtime state of cfg.pools[i] (choice, passive health) for worker w at
     * pools[w * cfg.n_pools + i]: a pool is not shared between threads. Per generation,
     * so a reload starts every pool fresh. */
    struct sr_pool *pools;
};

/* Allocate a generation and load <path> into it; every problem goes to <on_error>.
 * Returns NULL with <*n_errors> set when the config is not valid (or memory ran out). */
struct sr_generation *sr_generation_load(const char *path, sr_config_error_fn on_error, void *ctx,
                                         size_t *n_errors);

struct sr_generation *sr_generation_ref(struct sr_generation *gen);

/* Drop a reference; the last one frees the config. NULL is accepted. */
void sr_generation_unref(struct sr_generation *gen);

/* A connection of worker <worker> takes <gen> (hold), or gives it back (release): counted
 * in that worker's hold, whose first connection takes one reference and whose last gives
 * it back, so a connection's start and end touch no line another worker writes. On
 * <worker>'s thread only; without holds (a generation not prepared, or a worker beyond
 * them), a plain reference. Release returns nothing to use: <gen> may be freed. */
struct sr_generation *sr_generation_hold(struct sr_generation *gen, size_t worker);
void sr_generation_release(struct sr_generation *gen, size_t worker);

/* Give <gen>'s listeners and upstreams their metric row ids and limit slots, and set up
 * its pools for <shared>'s workers. Call on the thread that owns <shared> before any server takes <gen>.
 * Returns 0 or a UV_E* code. */
int sr_generation_prepare(struct sr_generation *gen, struct sr_shared *shared);

#endif
