/* SPDX-License-Identifier: MIT */
/* Config generations (generation.h): loading, reference counting across worker threads,
 * and the run-time state a generation carries (metric row ids, per-worker pools). */
#include "sniroute/core/generation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "sniroute/core/shared.h"

struct sr_generation *
sr_generation_load(const char *path, sr_config_error_fn on_error, void *ctx, size_t *n_errors)
{
    /* Aligned as its type says: n_refs and the holds sit on lines of their own. */
    struct sr_generation *gen = aligned_alloc(_Alignof(struct sr_generation), sizeof(*gen));

    if (gen != NULL) {
        memset(gen, 0, sizeof(*gen));
    }
    if (gen == NULL) {
        *n_errors = 1;
        on_error(ctx, "out of memory loading the config");
        return NULL;
    }
    *n_errors = sr_config_load(&gen->cfg, path, on_error, ctx);
    if (*n_errors > 0) {
        sr_config_fini(&gen->cfg);
        free(gen);
        return NULL;
    }
    gen->id = 1;
    gen->n_refs = 1;
    return gen;
}

struct sr_generation *
sr_generation_ref(struct sr_generation *gen)
{
    atomic_fetch_add_explicit(&gen->n_refs, 1, memory_order_relaxed);
    return gen;
}

void
sr_generation_unref(struct sr_generation *gen)
{
    /* acq_rel: whatever a worker did with the config happens before another frees it. */
    if (gen == NULL || atomic_fetch_sub_explicit(&gen->n_refs, 1, memory_order_acq_rel) > 1) {
        return;
    }
    sr_config_fini(&gen->cfg);
    free(gen->holds);
    free(gen->listener_ids);
    free(gen->listener_slots);
    sr_alog_file_unref(gen->alog);
    free(gen->upstream_ids);
    free(gen->pools);
    free(gen);
}

struct sr_generation *
sr_generation_hold(struct sr_generation *gen, size_t worker)
{
    if (worker >= gen->n_holds) {
        return sr_generation_ref(gen);
    }
    if (gen->holds[worker].n++ == 0) {
        (void)sr_generation_ref(gen);
    }
    return gen;
}

void
sr_generation_release(struct sr_generation *gen, size_t worker)
{
    if (gen == NULL) {
        return;
    }
    if (worker >= gen->n_holds || --gen->holds[worker].n == 0) {
        sr_generation_unref(gen); /* may free <gen>: nothing of it is used after */
    }
}

/* Give <acl>'s refusing labels (deny rules, and "not_allowed" when it has allow lines) their
 * ids in the denial metric. Allow rules refuse nothing: they get none. */
static void
prepare_access(struct sr_access_list *acl, struct sr_shared *shared)
{
    size_t i;

    for (i = 0; i < acl->n_deny; i++) {
        acl->rules[i].label_id = sr_metrics_names_intern(&shared->rule_names, acl->rules[i].label);
    }
    if (acl->not_allowed != NULL) {
        acl->not_allowed_id = sr_metrics_names_intern(&shared->rule_names, acl->not_allowed);
    }
}

int
sr_generation_prepare(struct sr_generation *gen, struct sr_shared *shared)
{
    const struct sr_config *cfg = &gen->cfg;
    char text[SR_ADDR_HOST_MAX + 16];
    size_t i;

    gen->listener_ids = calloc(cfg->n_listeners + 1, sizeof(uint32_t));
    gen->upstream_ids = calloc(cfg->n_upstreams + 1, sizeof(uint32_t));
    gen->listener_slots = calloc(cfg->n_listeners + 1, sizeof(uint32_t));
    if (gen->listener_ids == NULL || gen->upstream_ids == NULL || gen->listener_slots == NULL) {
        return UV_ENOMEM;
    }
    for (i = 0; i < cfg->n_listeners; i++) {
        gen->listener_ids[i] =
            sr_metrics_names_intern(&shared->listener_names, cfg->listeners[i].name);
        gen->listener_slots[i] = sr_shared_listener_slot(shared, cfg->listeners[i].name);
    }
    for (i = 0; i < cfg->n_upstreams; i++) {
        if (cfg->upstreams[i].pool != 0) {
            snprintf(text, sizeof(text), "%s", cfg->pools[cfg->upstreams[i].pool - 1].name);
        } else {
            sr_addr_format(&cfg->upstreams[i].addr, text, sizeof(text));
        }
        gen->upstream_ids[i] = sr_metrics_names_intern(&shared->upstream_names, text);
    }
    for (i = 0; i < cfg->n_listeners; i++) {
        prepare_access(&gen->cfg.listeners[i].access, shared);
    }
    for (i = 0; i < cfg->n_pools; i++) {
        prepare_access(&gen->cfg.pools[i].access, shared);
    }
    /* A hold per worker, each on its own line (sr_generation_hold). */
    gen->holds =
        aligned_alloc(_Alignof(struct sr_generation_hold), shared->n_workers * sizeof(*gen->holds));
    if (gen->holds == NULL) {
        return UV_ENOMEM;
    }
    memset(gen->holds, 0, shared->n_workers * sizeof(*gen->holds));
    gen->n_holds = shared->n_workers;
    gen->pools = calloc(cfg->n_pools * shared->n_workers + 1, sizeof(*gen->pools));
    if (gen->pools == NULL) {
        return UV_ENOMEM;
    }
    for (i = 0; i < cfg->n_pools * shared->n_workers; i++) {
        const struct sr_pool_config *pc = &cfg->pools[i % cfg->n_pools];
        char ids[SR_POOL_MAX_SERVERS][SR_ADDR_HOST_MAX + 16];
        const char *id_ptrs[SR_POOL_MAX_SERVERS];
        struct sr_pool_params params;
        size_t j;

        for (j = 0; j < pc->n_servers; j++) {
            sr_addr_format(&pc->servers[j], ids[j], sizeof(ids[j]));
            id_ptrs[j] = ids[j];
        }
        memset(&params, 0, sizeof(params));
        params.balance = pc->balance;
        params.fail_max = SR_POOL_FAIL_MAX_DEFAULT;
        params.fail_timeout_ms = SR_POOL_FAIL_TIMEOUT_MS_DEFAULT;
        params.seed = uv_hrtime() ^ (uint64_t)(uintptr_t)gen ^ ((uint64_t)i << 32);
        if (sr_pool_init(&gen->pools[i], &params, id_ptrs, pc->n_servers) != SR_POOL_OK) {
            return UV_EINVAL;
        }
    }
    return 0;
}
