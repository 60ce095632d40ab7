/* SPDX-License-Identifier: MIT */
/* Upstream pool: server choice and passive health. Sets of servers are uint64_t bit masks
 * (bit i: server i); a pick narrows "all" to "up and not yet tried", hands that set to the
 * balance algorithm, and falls back to the servers out for failures only when nothing is
 * up. No allocation, no clock, no I/O; the caller serializes calls (one pool per worker). */
#include "sniroute/config/pool.h"

#include <assert.h>
#include <string.h>

#define BIT(i) ((uint64_t)1 << (i))

/* splitmix64's output function (Steele, Lea, Flood 2014): a bijection on 64 bits with full
 * avalanche, used both as random_two's PRNG and to finish every hash here. */
static uint64_t
mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t
next_random(struct sr_pool *pool)
{
    pool->rng += 0x9e3779b97f4a7c15ull; /* the golden-ratio increment */
    return mix64(pool->rng);
}

static uint64_t
name_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a, 64-bit, then mixed */

    for (; *s != '\0'; s++) {
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    }
    return mix64(h);
}

/* The key is read byte by byte in network order, so a client maps to the same server on
 * every architecture (several sniroutes may front one pool). */
static uint64_t
key_hash(const uint8_t *key)
{
    uint64_t hi = 0;
    uint64_t lo = 0;
    size_t i;

    for (i = 0; i < 8; i++) {
        hi = (hi << 8) | key[i];
        lo = (lo << 8) | key[8 + i];
    }
    return mix64(mix64(hi) ^ lo);
}

static bool
is_out(const struct sr_pool_server *s, uint64_t now_ms)
{
    return now_ms < s->down_until_ms;
}

/* The first server of <mask> at or after rr_next, cyclically; rr_next moves past it. */
static size_t
choose_in_turn(struct sr_pool *pool, uint64_t mask)
{
    size_t k;

    for (k = 0; k < pool->n; k++) {
        size_t i = (pool->rr_next + k) % pool->n;

        if (mask & BIT(i)) {
            pool->rr_next = (i + 1) % pool->n;
            return i;
        }
    }
    assert(0 && "choose_in_turn: empty mask");
    return 0;
}

static size_t
choose_least_conn(struct sr_pool *pool, uint64_t mask)
{
    uint32_t least = UINT32_MAX;
    uint64_t tied = 0;
    size_t i;

    for (i = 0; i < pool->n; i++) {
        if (mask & BIT(i)) {
            uint32_t a = pool->servers[i].n_active;

            if (a < least) {
                least = a;
                tied = 0;
            }
            if (a == least) {
                tied |= BIT(i);
            }
        }
    }
    return choose_in_turn(pool, tied);
}

/* The <k>-th (from 0) member of <mask>, in index order. */
static size_t
nth_member(uint64_t mask, size_t k)
{
    size_t i;

    for (i = 0; i < 64; i++) {
        if (mask & BIT(i)) {
            if (k == 0) {
                return i;
            }
            k--;
        }
    }
    assert(0 && "nth_member: k out of range");
    return 0;
}

static size_t
count_members(uint64_t mask)
{
    size_t n = 0;

    for (; mask != 0; mask &= mask - 1) {
        n++;
    }
    return n;
}

/* Power of two choices (Mitzenmacher): two different members drawn uniformly, the less
 * loaded wins. "% k" is biased by at most k / 2^64 with k <= 64: nothing to correct. */
static size_t
choose_random_two(struct sr_pool *pool, uint64_t mask)
{
    size_t k = count_members(mask);
    size_t a;
    size_t b;

    a = nth_member(mask, (size_t)(next_random(pool) % k));
    if (k == 1) {
        return a;
    }
    b = nth_member(mask & ~BIT(a), (size_t)(next_random(pool) % (k - 1)));
    return pool->servers[b].n_active < pool->servers[a].n_active ? b : a;
}

/* Rendezvous hashing (Thaler, Ravishankar 1996): the member with the highest
 * score(key, server name) wins; equal scores (only for equal names) go to the lower index. */
static size_t
choose_by_source(const struct sr_pool *pool, uint64_t mask, const uint8_t *key)
{
    uint64_t kh = key_hash(key);
    uint64_t best_score = 0;
    size_t best = SIZE_MAX;
    size_t i;

    for (i = 0; i < pool->n; i++) {
        if (mask & BIT(i)) {
            uint64_t score = mix64(kh ^ pool->servers[i].id_hash);

            if (best == SIZE_MAX || score > best_score) {
                best = i;
                best_score = score;
            }
        }
    }
    assert(best != SIZE_MAX);
    return best;
}

static size_t
choose(struct sr_pool *pool, uint64_t mask, const uint8_t *client_key)
{
    switch (pool->params.balance) {
    case SR_POOL_LEAST_CONN:
        return choose_least_conn(pool, mask);
    case SR_POOL_RANDOM_TWO:
        return choose_random_two(pool, mask);
    case SR_POOL_SOURCE_HASH:
        if (client_key != NULL) {
            return choose_by_source(pool, mask, client_key);
        }
        return choose_in_turn(pool, mask);
    case SR_POOL_ROUND_ROBIN:
    default:
        return choose_in_turn(pool, mask);
    }
}

enum sr_pool_error
sr_pool_init(struct sr_pool *pool, const struct sr_pool_params *params, const char *const *ids,
             size_t n)
{
    size_t i;

    memset(pool, 0, sizeof(*pool));
    if (n == 0) {
        return SR_POOL_NO_SERVERS;
    }
    if (n > SR_POOL_MAX_SERVERS) {
        return SR_POOL_TOO_MANY_SERVERS;
    }
    pool->params = *params;
    pool->rng = params->seed;
    pool->n = n;
    for (i = 0; i < n; i++) {
        pool->servers[i].id_hash = name_hash(ids[i]);
        atomic_store_explicit(&pool->servers[i].is_healthy, true, memory_order_relaxed);
    }
    return SR_POOL_OK;
}

enum sr_pool_pick
sr_pool_pick(struct sr_pool *pool, uint64_t now_ms, const uint8_t *client_key,
             uint64_t exclude_mask, size_t *index)
{
    uint64_t up = 0;      /* healthy, not yet tried, not out for failures */
    uint64_t soonest = 0; /* out for failures, with the earliest end */
    uint64_t soonest_ms = UINT64_MAX;
    size_t i;

    for (i = 0; i < pool->n; i++) {
        const struct sr_pool_server *s = &pool->servers[i];

        if ((exclude_mask & BIT(i)) ||
            !atomic_load_explicit(&s->is_healthy, memory_order_relaxed)) {
            continue;
        }
        if (!is_out(s, now_ms)) {
            up |= BIT(i);
        } else if (s->down_until_ms < soonest_ms) {
            soonest_ms = s->down_until_ms;
            soonest = BIT(i);
        } else if (s->down_until_ms == soonest_ms) {
            soonest |= BIT(i);
        }
    }
    if (up != 0) {
        i = choose(pool, up, client_key);
    } else if (soonest != 0) {
        i = choose(pool, soonest, client_key);
    } else {
        return SR_POOL_NONE_LEFT;
    }
    pool->servers[i].n_picks++;
    *index = i;
    return up != 0 ? SR_POOL_PICKED : SR_POOL_LAST_RESORT;
}

bool
sr_pool_report_failure(struct sr_pool *pool, size_t i, uint64_t now_ms)
{
    struct sr_pool_server *s;
    uint32_t fail_max = pool->params.fail_max;
    bool was_out;

    assert(i < pool->n);
    s = &pool->servers[i];
    was_out = is_out(s, now_ms);
    s->n_failures++;
    if (fail_max == 0) {
        return false;
    }
    if (s->n_fails < fail_max) {
        s->n_fails++;
    }
    if (s->n_fails >= fail_max) {
        uint64_t t = pool->params.fail_timeout_ms;

        s->down_until_ms = now_ms > UINT64_MAX - t ? UINT64_MAX : now_ms + t;
    }
    return !was_out && is_out(s, now_ms);
}

void
sr_pool_report_success(struct sr_pool *pool, size_t i)
{
    assert(i < pool->n);
    pool->servers[i].n_fails = 0;
    pool->servers[i].down_until_ms = 0;
}

void
sr_pool_conn_start(struct sr_pool *pool, size_t i)
{
    assert(i < pool->n);
    assert(pool->servers[i].n_active < UINT32_MAX);
    pool->servers[i].n_active++;
}

void
sr_pool_conn_end(struct sr_pool *pool, size_t i)
{
    assert(i < pool->n);
    assert(pool->servers[i].n_active > 0);
    pool->servers[i].n_active--;
}

void
sr_pool_set_healthy(struct sr_pool *pool, size_t i, bool is_healthy)
{
    assert(i < pool->n);
    atomic_store_explicit(&pool->servers[i].is_healthy, is_healthy, memory_order_relaxed);
}

bool
sr_pool_is_up(const struct sr_pool *pool, size_t i, uint64_t now_ms)
{
    assert(i < pool->n);
    return atomic_load_explicit(&pool->servers[i].is_healthy, memory_order_relaxed) &&
           !is_out(&pool->servers[i], now_ms);
}

static const char *const balance_names[] = {
    [SR_POOL_ROUND_ROBIN] = "round_robin",
    [SR_POOL_LEAST_CONN] = "least_conn",
    [SR_POOL_RANDOM_TWO] = "random_two",
    [SR_POOL_SOURCE_HASH] = "source_hash",
};

enum sr_pool_error
sr_pool_balance_parse(const char *text, size_t len, enum sr_pool_balance *out)
{
    size_t i;

    for (i = 0; i < sizeof(balance_names) / sizeof(balance_names[0]); i++) {
        if (strlen(balance_names[i]) == len && memcmp(balance_names[i], text, len) == 0) {
            *out = (enum sr_pool_balance)i;
            return SR_POOL_OK;
        }
    }
    return SR_POOL_BAD_BALANCE;
}

const char *
sr_pool_balance_name(enum sr_pool_balance balance)
{
    if ((size_t)balance >= sizeof(balance_names) / sizeof(balance_names[0])) {
        return "?";
    }
    return balance_names[balance];
}

const char *
sr_pool_error_str(enum sr_pool_error err)
{
    switch (err) {
    case SR_POOL_OK:
        return "ok";
    case SR_POOL_BAD_BALANCE:
        return "not one of round_robin, least_conn, random_two, source_hash";
    case SR_POOL_NO_SERVERS:
        return "no server";
    case SR_POOL_TOO_MANY_SERVERS:
        return "more than 64 servers";
    }
    return "unknown error";
}
