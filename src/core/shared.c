/* SPDX-License-Identifier: MIT */
/* The state the workers share, and the connection limits counted in it (shared.h). The
 * limits are per process, not per thread, yet nothing here takes a lock every worker
 * takes: totals and listener counts are atomics raised by compare-and-swap only while
 * under their limit, client addresses are counted in one of SR_IP_SHARDS tables each
 * behind its own lock, and the refusal notices are rate-limited with atomics. */
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

/* --- Sharded per-address tables --------------------------------------------------------- */

static int
shards_init(struct sr_ip_shards *s)
{
    size_t i;

    /* A random key: which addresses share a shard (and so a lock) cannot be chosen from
     * outside. The clock is a fallback, no worse than an unkeyed hash. */
    if (uv_random(NULL, NULL, s->key, sizeof(s->key), 0, NULL) != 0) {
        s->key[0] = uv_hrtime();
        s->key[1] = (uint64_t)(uintptr_t)s;
    }
    for (i = 0; i < SR_IP_SHARDS; i++) {
        /* Another function of the address inside a shard than the one that picked it. */
        uint64_t inner[2] = {s->key[1] ^ 0x9e3779b97f4a7c15ull, s->key[0] + i};

        s->shard[i].counts = sr_ipcount_new(inner);
        if (s->shard[i].counts == NULL || uv_mutex_init(&s->shard[i].lock) != 0) {
            sr_ipcount_free(s->shard[i].counts);
            s->shard[i].counts = NULL;
            return UV_ENOMEM;
        }
        atomic_init(&s->shard[i].n_locks, 0);
    }
    return 0;
}

static void
shards_fini(struct sr_ip_shards *s)
{
    size_t i;

    for (i = 0; i < SR_IP_SHARDS && s->shard[i].counts != NULL; i++) {
        sr_ipcount_free(s->shard[i].counts);
        uv_mutex_destroy(&s->shard[i].lock);
    }
}

/* The shard of <key>, locked. Its top bits pick it, from a hash unrelated to the one the
 * table inside uses (ipcount.c), so a shard's addresses still spread over its slots. */
static struct sr_ip_shard *
shard_lock(struct sr_ip_shards *s, const struct sr_ipkey *key)
{
    struct sr_ip_shard *shard;

    shard = &s->shard[sr_ipkey_hash(key->bytes, s->key) >> 58];
    _Static_assert(SR_IP_SHARDS == 64, "the shift above takes 6 bits");
    uv_mutex_lock(&shard->lock);
    /* One writer at a time (the lock holder): a plain add, readable by a scrape. */
    atomic_store_explicit(&shard->n_locks,
                          atomic_load_explicit(&shard->n_locks, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return shard;
}

static uint64_t
shards_n_locks(const struct sr_ip_shards *s)
{
    uint64_t n = 0;
    size_t i;

    for (i = 0; i < SR_IP_SHARDS; i++) {
        n += atomic_load_explicit(&s->shard[i].n_locks, memory_order_relaxed);
    }
    return n;
}

/* Count one more from <key>; if that makes more than <limit> (0: none), count it not and
 * return 0. Else the new count (0 too when out of memory: nothing counted). */
static uint32_t
shards_add(struct sr_ip_shards *s, const struct sr_ipkey *key, uint32_t limit, bool *is_over)
{
    struct sr_ip_shard *shard = shard_lock(s, key);
    uint32_t n = sr_ipcount_add(shard->counts, key);

    *is_over = limit != 0 && n > limit;
    if (*is_over) {
        sr_ipcount_remove(shard->counts, key);
        n = 0;
    }
    uv_mutex_unlock(&shard->lock);
    return n;
}

static void
shards_remove(struct sr_ip_shards *s, const struct sr_ipkey *key)
{
    struct sr_ip_shard *shard = shard_lock(s, key);

    sr_ipcount_remove(shard->counts, key);
    uv_mutex_unlock(&shard->lock);
}

/* --- Setup ------------------------------------------------------------------------------ */

int
sr_shared_init(struct sr_shared *shared, size_t n_workers)
{
    uv_timeval64_t tv;

    memset(shared, 0, sizeof(*shared));
    atomic_store(&shared->handover_fd, -1);
    shared->n_workers = n_workers;
    if (uv_gettimeofday(&tv) == 0) {
        shared->start_time_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    }
    shared->quic_fd_budget = quic_fd_budget();
    shared->alogs = calloc(n_workers, sizeof(*shared->alogs));
    if (shared->alogs == NULL || shards_init(&shared->per_ip) != 0 ||
        shards_init(&shared->quic_per_ip) != 0 || sr_ratelimit_init(&shared->rate) != 0 ||
        sr_metrics_names_init(&shared->listener_names, SR_METRICS_LISTENERS_MAX) != 0 ||
        sr_metrics_names_init(&shared->upstream_names, SR_METRICS_UPSTREAMS_MAX) != 0 ||
        sr_metrics_names_init(&shared->rule_names, SR_METRICS_RULES_MAX) != 0) {
        return UV_ENOMEM;
    }
    return 0;
}

void
sr_shared_fini(struct sr_shared *shared)
{
    size_t i;

    shards_fini(&shared->per_ip);
    shards_fini(&shared->quic_per_ip);
    sr_ratelimit_fini(&shared->rate);
    for (i = 0; i < SR_LISTENER_CHUNKS; i++) {
        free(shared->lchunks[i]);
    }
    if (shared->alogs != NULL) {
        for (i = 0; i < shared->n_workers; i++) {
            sr_alog_buf_fini(&shared->alogs[i]);
        }
        free(shared->alogs);
    }
    sr_metrics_names_fini(&shared->listener_names);
    sr_metrics_names_fini(&shared->upstream_names);
    sr_metrics_names_fini(&shared->rule_names);
    memset(shared, 0, sizeof(*shared));
}

uint32_t
sr_shared_listener_slot(struct sr_shared *shared, const char *name)
{
    struct sr_listener_count *lc;
    size_t i;

    for (i = 0; i < shared->n_lcounts; i++) {
        if (strcmp(shared->lchunks[i / SR_LISTENER_CHUNK][i % SR_LISTENER_CHUNK].name, name) == 0) {
            return (uint32_t)i + 1;
        }
    }
    if (i == (size_t)SR_LISTENER_CHUNK * SR_LISTENER_CHUNKS) {
        return 0;
    }
    if (shared->lchunks[i / SR_LISTENER_CHUNK] == NULL) {
        /* Published to the workers with the generation that names it (the mailbox). */
        shared->lchunks[i / SR_LISTENER_CHUNK] =
            aligned_alloc(_Alignof(struct sr_listener_count),
                          SR_LISTENER_CHUNK * sizeof(struct sr_listener_count));
        if (shared->lchunks[i / SR_LISTENER_CHUNK] == NULL) {
            return 0;
        }
        memset(shared->lchunks[i / SR_LISTENER_CHUNK], 0,
               SR_LISTENER_CHUNK * sizeof(struct sr_listener_count));
    }
    lc = &shared->lchunks[i / SR_LISTENER_CHUNK][i % SR_LISTENER_CHUNK];
    snprintf(lc->name, sizeof(lc->name), "%s", name);
    atomic_init(&lc->n_conns, 0);
    shared->n_lcounts++;
    return (uint32_t)i + 1;
}

static _Atomic size_t *
listener_count(struct sr_shared *shared, uint32_t lslot)
{
    uint32_t i = lslot - 1;

    return &shared->lchunks[i / SR_LISTENER_CHUNK][i % SR_LISTENER_CHUNK].n_conns;
}

/* --- Locks and notices ------------------------------------------------------------------ */

void
sr_shared_process_lock(struct sr_shared *shared, uv_mutex_t *lock)
{
    atomic_fetch_add_explicit(&shared->n_process_locks, 1, memory_order_relaxed);
    uv_mutex_lock(lock);
}

void
sr_shared_process_unlock(uv_mutex_t *lock)
{
    uv_mutex_unlock(lock);
}

void
sr_shared_lock_counts(const struct sr_shared *shared, uint64_t *process, uint64_t *shard)
{
    *process = atomic_load_explicit(&shared->n_process_locks, memory_order_relaxed);
    *shard = shards_n_locks(&shared->per_ip) + shards_n_locks(&shared->quic_per_ip) +
             sr_ratelimit_locks(&shared->rate);
}

void
sr_notice_rate_count(struct sr_notice_rate *r, size_t kind, uint64_t n)
{
    if (n > 0) {
        atomic_fetch_add_explicit(&r->n[kind], n, memory_order_relaxed);
    }
}

bool
sr_notice_rate_due(struct sr_notice_rate *r, uint64_t now_ms, uint64_t period_ms, uint64_t delta[3])
{
    uint64_t last = atomic_load_explicit(&r->last_ms, memory_order_relaxed);
    size_t i;

    if (now_ms == 0) {
        now_ms = 1; /* 0 means "never noticed" */
    }
    /* "now_ms < last + period": another thread's clock may be a little ahead of ours. */
    if ((last != 0 && now_ms < last + period_ms) ||
        !atomic_compare_exchange_strong_explicit(&r->last_ms, &last, now_ms, memory_order_acq_rel,
                                                 memory_order_relaxed)) {
        return false;
    }
    /* The one winner this period: what every worker counted since the last notice. */
    for (i = 0; i < 3; i++) {
        uint64_t now_n = atomic_load_explicit(&r->n[i], memory_order_relaxed);

        delta[i] = now_n - atomic_exchange_explicit(&r->n_noticed[i], now_n, memory_order_relaxed);
    }
    return true;
}

/* At most one line a second, however many connections are refused: a flood must not
 * flood the log, nor slow anything else down. */
static const char *
shared_refuse(struct sr_shared *shared, enum sr_metrics_limit kind, enum sr_metrics_limit *over)
{
    static const char *const names[SR_METRICS_N_LIMITS] = {
        "max_connections", "listener_max_connections", "max_connections_per_ip"};
    uint64_t d[3];

    *over = kind;
    sr_notice_rate_count(&shared->refusals, kind, 1);
    if (sr_notice_rate_due(&shared->refusals, uv_hrtime() / 1000000, 1000, d)) {
        sr_log_notice("refused over limits since the last notice: %llu max_connections, "
                      "%llu listener max_connections, %llu max_connections_per_ip",
                      (unsigned long long)d[0], (unsigned long long)d[1], (unsigned long long)d[2]);
    }
    return names[kind];
}

/* --- Admission -------------------------------------------------------------------------- */

/* One more in <n> if that stays within <limit> (0: no limit). Compare-and-swap, so that
 * however many workers race, the count never passes the limit because of them. */
static bool
count_up(_Atomic size_t *n, size_t limit)
{
    size_t cur;

    if (limit == 0) {
        atomic_fetch_add_explicit(n, 1, memory_order_relaxed);
        return true;
    }
    cur = atomic_load_explicit(n, memory_order_relaxed);
    do {
        if (cur >= limit) {
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(n, &cur, cur + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

/* <cfg> NULL: count only (an adopted connection), never refuse. */
static const char *
shared_count(struct sr_shared *shared, struct sr_admission *adm, const struct sr_config *cfg,
             bool is_proxied, uint32_t lslot, size_t lmax, const struct sockaddr *peer,
             enum sr_metrics_limit *over)
{
    bool is_refusable = cfg != NULL;
    bool is_over = false;
    uint32_t n_from_ip;

    if (!count_up(&shared->n_conns, is_refusable ? cfg->max_connections : 0)) {
        return shared_refuse(shared, SR_METRICS_LIMIT_GLOBAL, over);
    }
    adm->is_counted = true;
    if (lslot != 0) {
        if (!count_up(listener_count(shared, lslot), is_refusable ? lmax : 0)) {
            sr_shared_release(shared, adm);
            return shared_refuse(shared, SR_METRICS_LIMIT_LISTENER, over);
        }
        adm->lslot = lslot;
    }
    /* Behind proxy_protocol = accept the peer is the load balancer: the client is counted
     * once its PROXY header names it (sr_shared_admit_client). A connection adopted in an
     * upgrade comes with its client's address already. */
    if ((!is_proxied || !is_refusable) && sr_ipkey_from_sockaddr(&adm->ipkey, peer) == 0) {
        n_from_ip = shards_add(&shared->per_ip, &adm->ipkey,
                               is_refusable ? cfg->max_connections_per_ip : 0, &is_over);
        if (is_over) {
            sr_shared_release(shared, adm);
            return shared_refuse(shared, SR_METRICS_LIMIT_PER_IP, over);
        }
        adm->has_ipkey = n_from_ip > 0;
    }
    return NULL;
}

const char *
sr_shared_admit(struct sr_shared *shared, struct sr_admission *adm, const struct sr_config *cfg,
                const struct sr_listener_config *lcfg, uint32_t lslot, const struct sockaddr *peer,
                enum sr_metrics_limit *over)
{
    return shared_count(shared, adm, cfg, lcfg->is_proxy_accepted, lslot, lcfg->max_connections,
                        peer, over);
}

void
sr_shared_count(struct sr_shared *shared, struct sr_admission *adm, uint32_t lslot,
                const struct sockaddr *peer)
{
    enum sr_metrics_limit over;

    (void)shared_count(shared, adm, NULL, false, lslot, 0, peer, &over);
}

const char *
sr_shared_admit_client(struct sr_shared *shared, struct sr_admission *adm,
                       const struct sr_config *cfg, const struct sockaddr *client,
                       enum sr_metrics_limit *over)
{
    bool is_over = false;
    uint32_t n_from_ip;

    if (adm->has_ipkey || sr_ipkey_from_sockaddr(&adm->ipkey, client) != 0) {
        return NULL;
    }
    n_from_ip = shards_add(&shared->per_ip, &adm->ipkey, cfg->max_connections_per_ip, &is_over);
    if (is_over) {
        return shared_refuse(shared, SR_METRICS_LIMIT_PER_IP, over);
    }
    adm->has_ipkey = n_from_ip > 0;
    return NULL;
}

void
sr_shared_release(struct sr_shared *shared, struct sr_admission *adm)
{
    if (!adm->is_counted) {
        return;
    }
    atomic_fetch_sub_explicit(&shared->n_conns, 1, memory_order_relaxed);
    if (adm->lslot != 0) {
        atomic_fetch_sub_explicit(listener_count(shared, adm->lslot), 1, memory_order_relaxed);
        adm->lslot = 0;
    }
    if (adm->has_ipkey) {
        shards_remove(&shared->per_ip, &adm->ipkey);
        adm->has_ipkey = false;
    }
    adm->is_counted = false;
}

/* --- New connections per address ------------------------------------------------------ */

bool
sr_shared_admit_rate(struct sr_shared *shared, const struct sr_config *cfg,
                     const struct sr_listener_config *lcfg, uint32_t lslot,
                     const struct sockaddr *client, bool is_quic)
{
    struct sr_rate rate = {lcfg->max_new_conns, lcfg->max_new_conns_period_ms};
    struct sr_ratekey key;
    uint64_t now = uv_hrtime();
    uint64_t d[3];

    if (rate.n == 0 || sr_ratekey_from_sockaddr(&key, lslot, client) != 0 ||
        sr_ratelimit_take(&shared->rate, &key, now, rate, cfg->rate_limit_entries)) {
        return true;
    }
    /* Like the other refusals: at most one line a second, however many. */
    sr_notice_rate_count(&shared->rate_refusals, is_quic ? 1 : 0, 1);
    if (sr_notice_rate_due(&shared->rate_refusals, now / 1000000, 1000, d)) {
        sr_log_notice("refused over max_new_connections_per_ip since the last notice: %llu "
                      "connection(s), %llu QUIC flow(s)",
                      (unsigned long long)d[0], (unsigned long long)d[1]);
    }
    return false;
}

/* --- QUIC flows ------------------------------------------------------------------------ */

/* QUIC flows refused over a limit: one notice a second at most, for all workers. */
#define SR_QUIC_NOTICE_MS 1000

bool
sr_shared_admit_flow(struct sr_shared *shared, const struct sr_config *cfg,
                     const struct sr_ipkey *ipkey, bool *has_ipkey, enum sr_metrics_quic_drop *why)
{
    static const char *const names[3] = {"max_quic_flows", "max_quic_flows_per_ip", "descriptors"};
    size_t n = atomic_fetch_add(&shared->n_quic_flows, 1) + 1;
    bool is_over = false;
    int limit = -1;
    uint32_t n_ip;
    uint64_t d[3];

    *has_ipkey = false;
    if (cfg->max_quic_flows != 0 && n > cfg->max_quic_flows) {
        limit = 0;
    } else if (n > shared->quic_fd_budget) {
        limit = 2;
    } else {
        n_ip = shards_add(&shared->quic_per_ip, ipkey, cfg->max_quic_flows_per_ip, &is_over);
        *has_ipkey = n_ip > 0;
        if (is_over) {
            limit = 1;
        }
    }
    if (limit < 0) {
        return true;
    }
    atomic_fetch_sub(&shared->n_quic_flows, 1);
    sr_notice_rate_count(&shared->quic_refusals, (size_t)limit, 1);
    if (sr_notice_rate_due(&shared->quic_refusals, uv_hrtime() / 1000000, SR_QUIC_NOTICE_MS, d)) {
        sr_log_notice("QUIC flows refused over limits since the last notice: %llu %s, "
                      "%llu %s, %llu over the descriptor budget (%zu)",
                      (unsigned long long)d[0], names[0], (unsigned long long)d[1], names[1],
                      (unsigned long long)d[2], shared->quic_fd_budget);
    }
    *why = limit == 0   ? SR_METRICS_QDROP_MAX_FLOWS
           : limit == 1 ? SR_METRICS_QDROP_MAX_FLOWS_PER_IP
                        : SR_METRICS_QDROP_DESCRIPTORS;
    return false;
}

void
sr_shared_release_flow(struct sr_shared *shared, const struct sr_ipkey *ipkey, bool has_ipkey)
{
    atomic_fetch_sub(&shared->n_quic_flows, 1);
    if (has_ipkey) {
        shards_remove(&shared->quic_per_ip, ipkey);
    }
}

/* --- The access log --------------------------------------------------------------------- */

int
sr_shared_log_start(struct sr_shared *shared, size_t worker, uv_loop_t *loop,
                    struct sr_alog_file *file)
{
    return sr_alog_buf_start(&shared->alogs[worker], loop, file);
}

void
sr_shared_log(struct sr_shared *shared, size_t worker, const char *line, size_t len)
{
    sr_alog_buf_add(&shared->alogs[worker], line, len);
}

void
sr_shared_log_switch(struct sr_shared *shared, size_t worker, struct sr_alog_file *file)
{
    sr_alog_buf_switch(&shared->alogs[worker], file);
}

void
sr_shared_log_flush(struct sr_shared *shared, size_t worker)
{
    sr_alog_buf_flush(&shared->alogs[worker]);
}

void
sr_shared_log_stop(struct sr_shared *shared, size_t worker)
{
    sr_alog_buf_stop(&shared->alogs[worker]);
}
