/* SPDX-License-Identifier: MIT */
/* Token buckets per client address per listener (ratelimit.h): a bounded table with hash
 * chains and a least-recently-seen list threaded through one array of entries, and the
 * process's shards of it. A bucket's level is kept in integer "credit": one token is
 * SR_RATE_UNIT of it, and a rate of N per period adds N * SR_RATE_UNIT per period, that is
 * N * (60000 / period_ms) per nanosecond; no division on the way, no rounding drift. */
#include "sniroute/core/ratelimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sniroute/core/ipcount.h"

/* One token in credit: the nanoseconds of a minute, so that N/m adds N per ns and N/s 60 N.
 * With N at most SR_RATE_N_MAX a full bucket (N tokens) stays far below 2^64. */
#define SR_RATE_UNIT  60000000000ull
#define SR_RATE_N_MAX 1000000u

/* The first allocation of a table, in entries; then it doubles up to its bound. */
#define SR_RATETAB_MIN_CAP 8u

struct sr_rate_entry {
    uint8_t bytes[16];
    uint32_t lslot;
    uint32_t hash;    /* the low bits of the caller's hash, to rechain on growth */
    uint32_t chain;   /* next in the hash chain, index + 1; 0: last */
    uint32_t newer;   /* towards lru_first, index + 1; 0: none */
    uint32_t older;   /* towards lru_last, index + 1; 0: none */
    uint64_t credit;  /* tokens * SR_RATE_UNIT */
    uint64_t last_ns; /* when credit was last brought up to date */
};

int
sr_ratekey_from_sockaddr(struct sr_ratekey *key, uint32_t lslot, const struct sockaddr *sa)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    memset(key, 0, sizeof(*key));
    key->lslot = lslot;
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;

        if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
            memcpy(key->bytes, a, 16);
        } else {
            memcpy(key->bytes, a, 8); /* the /64: one host's addresses */
        }
        return 0;
    }
    if (sa->sa_family == AF_INET) {
        memcpy(key->bytes, v4mapped, sizeof(v4mapped));
        memcpy(key->bytes + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 0;
    }
    return -1;
}

/* --- The table -------------------------------------------------------------------------- */

void
sr_ratetab_init(struct sr_ratetab *t)
{
    memset(t, 0, sizeof(*t));
}

void
sr_ratetab_fini(struct sr_ratetab *t)
{
    free(t->entries);
    free(t->heads);
    memset(t, 0, sizeof(*t));
}

static struct sr_rate_entry *
entry(const struct sr_ratetab *t, uint32_t ref)
{
    return &t->entries[ref - 1];
}

static void
lru_unlink(struct sr_ratetab *t, uint32_t ref)
{
    struct sr_rate_entry *e = entry(t, ref);

    if (e->newer != 0) {
        entry(t, e->newer)->older = e->older;
    } else {
        t->lru_first = e->older;
    }
    if (e->older != 0) {
        entry(t, e->older)->newer = e->newer;
    } else {
        t->lru_last = e->newer;
    }
    e->newer = e->older = 0;
}

static void
lru_push_first(struct sr_ratetab *t, uint32_t ref)
{
    struct sr_rate_entry *e = entry(t, ref);

    e->newer = 0;
    e->older = t->lru_first;
    if (t->lru_first != 0) {
        entry(t, t->lru_first)->newer = ref;
    } else {
        t->lru_last = ref;
    }
    t->lru_first = ref;
}

static void
chain_push(struct sr_ratetab *t, uint32_t ref)
{
    uint32_t *head = &t->heads[entry(t, ref)->hash & (t->n_heads - 1)];

    entry(t, ref)->chain = *head;
    *head = ref;
}

/* Drop the least recently seen entry onto the free list. */
static void
evict_last(struct sr_ratetab *t)
{
    uint32_t ref = t->lru_last;
    uint32_t *link = &t->heads[entry(t, ref)->hash & (t->n_heads - 1)];

    while (*link != ref) {
        link = &entry(t, *link)->chain;
    }
    *link = entry(t, ref)->chain;
    lru_unlink(t, ref);
    entry(t, ref)->chain = t->free_list;
    t->free_list = ref;
    t->n--;
    t->n_evicted++;
}

/* Room for more entries (at most <max>): the array grows by doubling (indices stay).
 * Returns 0 or -1. */
static int
grow_entries(struct sr_ratetab *t, uint32_t max)
{
    uint32_t cap = t->cap == 0 ? SR_RATETAB_MIN_CAP : t->cap * 2;
    struct sr_rate_entry *entries;

    if (t->cap >= max) {
        return -1;
    }
    if (cap > max || cap < t->cap) {
        cap = max;
    }
    entries = realloc(t->entries, (size_t)cap * sizeof(*entries));
    if (entries == NULL) {
        return -1;
    }
    t->entries = entries;
    t->cap = cap;
    return 0;
}

/* At least as many chains as entries: rebuilt when the array outgrew them. Returns -1 only
 * when there are no chains at all (longer chains still work). */
static int
grow_heads(struct sr_ratetab *t)
{
    uint32_t n_heads = t->n_heads == 0 ? SR_RATETAB_MIN_CAP : t->n_heads;
    uint32_t *heads;
    uint32_t ref;

    while (n_heads < t->cap) {
        n_heads *= 2;
    }
    if (n_heads == t->n_heads) {
        return 0;
    }
    heads = calloc(n_heads, sizeof(*heads));
    if (heads == NULL) {
        return t->heads == NULL ? -1 : 0;
    }
    free(t->heads);
    t->heads = heads;
    t->n_heads = n_heads;
    for (ref = t->lru_first; ref != 0; ref = entry(t, ref)->older) {
        chain_push(t, ref);
    }
    return 0;
}

/* A free entry for a new key, evicting when the table is at <max> or cannot grow; 0 when
 * there is none at all (out of memory before the first entry). */
static uint32_t
entry_new(struct sr_ratetab *t, uint32_t max)
{
    uint32_t ref;

    while (t->n >= max && t->n > 0) {
        evict_last(t);
    }
    if (t->free_list == 0 && t->n_used == t->cap && grow_entries(t, max) != 0) {
        if (t->n == 0) {
            return 0;
        }
        evict_last(t);
    }
    if (grow_heads(t) != 0) {
        return 0;
    }
    if (t->free_list != 0) {
        ref = t->free_list;
        t->free_list = entry(t, ref)->chain;
    } else {
        ref = ++t->n_used;
    }
    t->n++;
    return ref;
}

bool
sr_ratetab_take(struct sr_ratetab *t, const struct sr_ratekey *key, uint64_t hash, uint64_t now_ns,
                struct sr_rate rate, uint32_t max_entries)
{
    uint64_t per_ns = (uint64_t)(rate.n < SR_RATE_N_MAX ? rate.n : SR_RATE_N_MAX) *
                      (60000u / (rate.period_ms != 0 ? rate.period_ms : 1000u));
    uint64_t full = (uint64_t)(rate.n < SR_RATE_N_MAX ? rate.n : SR_RATE_N_MAX) * SR_RATE_UNIT;
    uint64_t period_ns = (uint64_t)rate.period_ms * 1000000u;
    struct sr_rate_entry *e = NULL;
    uint32_t ref = 0;
    bool is_taken;

    if (rate.n == 0) {
        return true;
    }
    if (t->heads != NULL) {
        for (ref = t->heads[(uint32_t)hash & (t->n_heads - 1)]; ref != 0; ref = e->chain) {
            e = entry(t, ref);
            if (e->lslot == key->lslot && memcmp(e->bytes, key->bytes, 16) == 0) {
                break;
            }
        }
    }
    if (ref != 0) {
        /* Bring the level up to date: a period or more since is a full bucket (and keeps
         * the product below 2^64); a clock read before another thread's is no time. */
        if (now_ns > e->last_ns) {
            uint64_t dt = now_ns - e->last_ns;

            e->credit =
                dt >= period_ns || full - e->credit <= dt * per_ns ? full : e->credit + dt * per_ns;
            e->last_ns = now_ns;
        }
        if (e->credit > full) {
            e->credit = full; /* the rate came down in a reload */
        }
        lru_unlink(t, ref);
    } else {
        ref = entry_new(t, max_entries != 0 ? max_entries : 1);
        if (ref == 0) {
            return true; /* no memory for a single bucket: let it through */
        }
        e = entry(t, ref);
        memcpy(e->bytes, key->bytes, 16);
        e->lslot = key->lslot;
        e->hash = (uint32_t)hash;
        e->credit = full;
        e->last_ns = now_ns;
        chain_push(t, ref);
    }
    lru_push_first(t, ref);
    is_taken = e->credit >= SR_RATE_UNIT;
    if (is_taken) {
        e->credit -= SR_RATE_UNIT;
    }
    return is_taken;
}

/* --- The shards ------------------------------------------------------------------------- */

int
sr_ratelimit_init(struct sr_ratelimit *rl)
{
    size_t i;

    memset(rl, 0, sizeof(*rl));
    /* As for the per-address counts (shared.c): a random key, the clock as a fallback. */
    if (uv_random(NULL, NULL, rl->key, sizeof(rl->key), 0, NULL) != 0) {
        rl->key[0] = uv_hrtime();
        rl->key[1] = (uint64_t)(uintptr_t)rl;
    }
    for (i = 0; i < SR_RATE_SHARDS; i++) {
        sr_ratetab_init(&rl->shard[i].tab);
        if (uv_mutex_init(&rl->shard[i].lock) != 0) {
            while (i-- > 0) {
                uv_mutex_destroy(&rl->shard[i].lock);
            }
            return UV_ENOMEM;
        }
    }
    rl->is_ready = true;
    return 0;
}

void
sr_ratelimit_fini(struct sr_ratelimit *rl)
{
    size_t i;

    for (i = 0; i < SR_RATE_SHARDS && rl->is_ready; i++) {
        sr_ratetab_fini(&rl->shard[i].tab);
        uv_mutex_destroy(&rl->shard[i].lock);
    }
    rl->is_ready = false;
}

/* Single writer (the lock holder): a plain add, whole for a scrape. */
static void
bump(_Atomic uint64_t *n, uint64_t by)
{
    atomic_store_explicit(n, atomic_load_explicit(n, memory_order_relaxed) + by,
                          memory_order_relaxed);
}

bool
sr_ratelimit_take(struct sr_ratelimit *rl, const struct sr_ratekey *key, uint64_t now_ns,
                  struct sr_rate rate, size_t max_entries)
{
    struct sr_rate_shard *shard;
    uint64_t h;
    uint64_t evicted;
    size_t per_shard = (max_entries + SR_RATE_SHARDS - 1) / SR_RATE_SHARDS;
    bool is_taken;

    if (rate.n == 0) {
        return true;
    }
    /* The top 6 bits pick the shard, the low bits the chain inside it. */
    h = sr_mix64(sr_ipkey_hash(key->bytes, rl->key) ^ key->lslot);
    _Static_assert(SR_RATE_SHARDS == 64, "the shift below takes 6 bits");
    shard = &rl->shard[h >> 58];
    if (per_shard > UINT32_MAX) {
        per_shard = UINT32_MAX;
    }
    uv_mutex_lock(&shard->lock);
    bump(&shard->n_locks, 1);
    evicted = shard->tab.n_evicted;
    is_taken =
        sr_ratetab_take(&shard->tab, key, h, now_ns, rate, per_shard > 0 ? (uint32_t)per_shard : 1);
    bump(&shard->n_evicted, shard->tab.n_evicted - evicted);
    atomic_store_explicit(&shard->n_entries, sr_ratetab_size(&shard->tab), memory_order_relaxed);
    uv_mutex_unlock(&shard->lock);
    return is_taken;
}

size_t
sr_ratelimit_entries(const struct sr_ratelimit *rl)
{
    size_t n = 0;
    size_t i;

    for (i = 0; i < SR_RATE_SHARDS; i++) {
        n += atomic_load_explicit(&rl->shard[i].n_entries, memory_order_relaxed);
    }
    return n;
}

uint64_t
sr_ratelimit_evictions(const struct sr_ratelimit *rl)
{
    uint64_t n = 0;
    size_t i;

    for (i = 0; i < SR_RATE_SHARDS; i++) {
        n += atomic_load_explicit(&rl->shard[i].n_evicted, memory_order_relaxed);
    }
    return n;
}

uint64_t
sr_ratelimit_locks(const struct sr_ratelimit *rl)
{
    uint64_t n = 0;
    size_t i;

    for (i = 0; i < SR_RATE_SHARDS; i++) {
        n += atomic_load_explicit(&rl->shard[i].n_locks, memory_order_relaxed);
    }
    return n;
}
