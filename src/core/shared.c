/* SPDX-License-Identifier: MIT */
/* The state the workers share, and the connection limits counted in it (shared.h). One
 * lock for all workers: the limits are per process, not per thread, and a connection
 * takes the lock only at accept, at its end and for its log line. */
#include "sniroute/core/shared.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "sniroute/observe/log.h"

/* How many QUIC flows may hold a descriptor: a quarter of RLIMIT_NOFILE, and at least 64,
 * stays for the listeners, the TCP connections, their pipes and the resolver's threads. */
static size_t
quic_fd_budget(void)
{
    struct rlimit rl;
    size_t limit;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
        return SIZE_MAX;
    }
    limit = (size_t)rl.rlim_cur;
    return limit > 128 ? limit - (limit / 4 > 64 ? limit / 4 : 64) : limit / 2;
}

int
sr_shared_init(struct sr_shared *shared, size_t n_workers, FILE *access_log)
{
    uv_timeval64_t tv;

    memset(shared, 0, sizeof(*shared));
    atomic_store(&shared->handover_fd, -1);
    shared->n_workers = n_workers;
    shared->access_log = access_log;
    atomic_store(&shared->is_logging, access_log != NULL);
    if (uv_gettimeofday(&tv) == 0) {
        shared->start_time_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    }
    if (uv_mutex_init(&shared->lock) != 0) {
        return UV_ENOMEM;
    }
    shared->per_ip = sr_ipcount_new();
    shared->quic_per_ip = sr_ipcount_new();
    shared->quic_fd_budget = quic_fd_budget();
    if (shared->per_ip == NULL || shared->quic_per_ip == NULL ||
        sr_metrics_names_init(&shared->listener_names, SR_METRICS_LISTENERS_MAX) != 0 ||
        sr_metrics_names_init(&shared->upstream_names, SR_METRICS_UPSTREAMS_MAX) != 0) {
        return UV_ENOMEM;
    }
    return 0;
}

void
sr_shared_fini(struct sr_shared *shared)
{
    sr_ipcount_free(shared->per_ip);
    sr_ipcount_free(shared->quic_per_ip);
    free(shared->lcounts);
    sr_metrics_names_fini(&shared->listener_names);
    sr_metrics_names_fini(&shared->upstream_names);
    uv_mutex_destroy(&shared->lock);
    memset(shared, 0, sizeof(*shared));
}

void
sr_shared_log(struct sr_shared *shared, const char *line, size_t len)
{
    uv_mutex_lock(&shared->lock);
    if (shared->access_log != NULL) {
        fwrite(line, 1, len, shared->access_log);
        fflush(shared->access_log);
    }
    uv_mutex_unlock(&shared->lock);
}

/* The count for listener <name>, added on first use. NULL when out of memory. Called
 * with the shared lock held. */
static struct sr_listener_count *
listener_count(struct sr_shared *shared, const char *name, size_t *index)
{
    struct sr_listener_count *grown;
    size_t i;

    for (i = 0; i < shared->n_lcounts; i++) {
        if (strcmp(shared->lcounts[i].name, name) == 0) {
            *index = i;
            return &shared->lcounts[i];
        }
    }
    grown = realloc(shared->lcounts, (shared->n_lcounts + 1) * sizeof(*grown));
    if (grown == NULL) {
        return NULL;
    }
    shared->lcounts = grown;
    *index = shared->n_lcounts++;
    snprintf(grown[*index].name, sizeof(grown[*index].name), "%s", name);
    grown[*index].n_conns = 0;
    return &grown[*index];
}

/* At most one line a second, however many connections are refused: a flood must not
 * flood the log, nor slow anything else down. Called with the shared lock held. */
static const char *
shared_refuse(struct sr_shared *shared, enum sr_metrics_limit kind, enum sr_metrics_limit *over)
{
    static const char *const names[SR_METRICS_N_LIMITS] = {
        "max_connections", "listener_max_connections", "max_connections_per_ip"};
    uint64_t now = uv_hrtime() / 1000000;
    size_t i;

    shared->n_refused[kind]++;
    *over = kind;
    if (now - shared->refusal_notice_ms >= 1000 || shared->refusal_notice_ms == 0) {
        uint64_t n[SR_METRICS_N_LIMITS];

        for (i = 0; i < SR_METRICS_N_LIMITS; i++) {
            n[i] = shared->n_refused[i] - shared->n_refused_noticed[i];
            shared->n_refused_noticed[i] = shared->n_refused[i];
        }
        shared->refusal_notice_ms = now;
        sr_log_notice("refused over limits since the last notice: %llu max_connections, "
                      "%llu listener max_connections, %llu max_connections_per_ip",
                      (unsigned long long)n[0], (unsigned long long)n[1], (unsigned long long)n[2]);
    }
    return names[kind];
}

/* <cfg> NULL: count only (an adopted connection), never refuse. */
static const char *
shared_count(struct sr_shared *shared, struct sr_admission *adm, const struct sr_config *cfg,
             const struct sr_listener_config *lcfg, const struct sockaddr *peer,
             enum sr_metrics_limit *over)
{
    bool is_refusable = cfg != NULL;
    struct sr_listener_count *lc;
    const char *limit = NULL;
    uint32_t n_from_ip = 0;
    size_t index;

    /* Count first, then compare: the counts are released with the connection whatever
     * happens, and they stay right across reloads that change the limits. One lock for
     * all workers: the limits are per process, not per thread. */
    uv_mutex_lock(&shared->lock);
    adm->is_counted = true;
    shared->n_conns++;
    lc = listener_count(shared, lcfg->name, &index);
    if (lc != NULL) {
        lc->n_conns++;
        adm->lcount = (uint32_t)index + 1;
    }
    /* Behind proxy_protocol = accept the peer is the load balancer: the client is counted
     * once its PROXY header names it (sr_shared_admit_client). A connection adopted in an
     * upgrade comes with its client's address already. */
    if ((!lcfg->is_proxy_accepted || !is_refusable) &&
        sr_ipkey_from_sockaddr(&adm->ipkey, peer) == 0) {
        n_from_ip = sr_ipcount_add(shared->per_ip, &adm->ipkey);
        adm->has_ipkey = n_from_ip > 0;
    }
    if (!is_refusable) {
        /* counted only */
    } else if (cfg->max_connections != 0 && shared->n_conns > cfg->max_connections) {
        limit = shared_refuse(shared, SR_METRICS_LIMIT_GLOBAL, over);
    } else if (lcfg->max_connections != 0 && lc != NULL && lc->n_conns > lcfg->max_connections) {
        limit = shared_refuse(shared, SR_METRICS_LIMIT_LISTENER, over);
    } else if (cfg->max_connections_per_ip != 0 && n_from_ip > cfg->max_connections_per_ip) {
        limit = shared_refuse(shared, SR_METRICS_LIMIT_PER_IP, over);
    }
    uv_mutex_unlock(&shared->lock);
    return limit;
}

const char *
sr_shared_admit(struct sr_shared *shared, struct sr_admission *adm, const struct sr_config *cfg,
                const struct sr_listener_config *lcfg, const struct sockaddr *peer,
                enum sr_metrics_limit *over)
{
    return shared_count(shared, adm, cfg, lcfg, peer, over);
}

void
sr_shared_count(struct sr_shared *shared, struct sr_admission *adm,
                const struct sr_listener_config *lcfg, const struct sockaddr *peer)
{
    enum sr_metrics_limit over;

    (void)shared_count(shared, adm, NULL, lcfg, peer, &over);
}

const char *
sr_shared_admit_client(struct sr_shared *shared, struct sr_admission *adm,
                       const struct sr_config *cfg, const struct sockaddr *client,
                       enum sr_metrics_limit *over)
{
    const char *limit = NULL;
    uint32_t n_from_ip;

    if (adm->has_ipkey || sr_ipkey_from_sockaddr(&adm->ipkey, client) != 0) {
        return NULL;
    }
    uv_mutex_lock(&shared->lock);
    n_from_ip = sr_ipcount_add(shared->per_ip, &adm->ipkey);
    adm->has_ipkey = n_from_ip > 0;
    if (cfg->max_connections_per_ip != 0 && n_from_ip > cfg->max_connections_per_ip) {
        limit = shared_refuse(shared, SR_METRICS_LIMIT_PER_IP, over);
    }
    uv_mutex_unlock(&shared->lock);
    return limit;
}

void
sr_shared_release(struct sr_shared *shared, struct sr_admission *adm)
{
    if (!adm->is_counted) {
        return;
    }
    uv_mutex_lock(&shared->lock);
    shared->n_conns--;
    if (adm->lcount != 0) {
        shared->lcounts[adm->lcount - 1].n_conns--;
    }
    if (adm->has_ipkey) {
        sr_ipcount_remove(shared->per_ip, &adm->ipkey);
    }
    uv_mutex_unlock(&shared->lock);
    adm->is_counted = false;
}

/* --- QUIC flows ------------------------------------------------------------------------ */

/* QUIC flows refused over a limit: one notice a second at most, for all workers. */
#define SR_QUIC_NOTICE_MS 1000

bool
sr_shared_admit_flow(struct sr_shared *shared, const struct sr_config *cfg,
                     const struct sr_ipkey *ipkey, bool *has_ipkey,
                     enum sr_metrics_quic_drop *why)
{
    static const char *const names[3] = {"max_quic_flows", "max_quic_flows_per_ip",
                                         "descriptors"};
    size_t n = atomic_fetch_add(&shared->n_quic_flows, 1) + 1;
    int limit = -1;
    uint32_t n_ip = 0;
    uint64_t now = uv_hrtime() / 1000000;

    *has_ipkey = false;
    if (cfg->max_quic_flows != 0 && n > cfg->max_quic_flows) {
        limit = 0;
    } else if (n > shared->quic_fd_budget) {
        limit = 2;
    }
    uv_mutex_lock(&shared->lock);
    if (limit < 0) {
        n_ip = sr_ipcount_add(shared->quic_per_ip, ipkey);
        *has_ipkey = n_ip > 0;
        if (cfg->max_quic_flows_per_ip != 0 && n_ip > cfg->max_quic_flows_per_ip) {
            limit = 1;
            sr_ipcount_remove(shared->quic_per_ip, ipkey);
            *has_ipkey = false;
        }
    }
    if (limit >= 0) {
        shared->n_quic_refused[limit]++;
        if (shared->quic_notice_ms == 0 || now - shared->quic_notice_ms >= SR_QUIC_NOTICE_MS) {
            uint64_t d[3];
            int i;

            for (i = 0; i < 3; i++) {
                d[i] = shared->n_quic_refused[i] - shared->n_quic_refused_noticed[i];
                shared->n_quic_refused_noticed[i] = shared->n_quic_refused[i];
            }
            shared->quic_notice_ms = now;
            sr_log_notice("QUIC flows refused over limits since the last notice: %llu %s, "
                          "%llu %s, %llu over the descriptor budget (%zu)",
                          (unsigned long long)d[0], names[0], (unsigned long long)d[1], names[1],
                          (unsigned long long)d[2], shared->quic_fd_budget);
        }
    }
    uv_mutex_unlock(&shared->lock);
    if (limit >= 0) {
        atomic_fetch_sub(&shared->n_quic_flows, 1);
        *why = limit == 0   ? SR_METRICS_QDROP_MAX_FLOWS
               : limit == 1 ? SR_METRICS_QDROP_MAX_FLOWS_PER_IP
                            : SR_METRICS_QDROP_DESCRIPTORS;
        return false;
    }
    return true;
}

void
sr_shared_release_flow(struct sr_shared *shared, const struct sr_ipkey *ipkey, bool has_ipkey)
{
    atomic_fetch_sub(&shared->n_quic_flows, 1);
    if (has_ipkey) {
        uv_mutex_lock(&shared->lock);
        sr_ipcount_remove(shared->quic_per_ip, ipkey);
        uv_mutex_unlock(&shared->lock);
    }
}
