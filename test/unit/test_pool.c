/* SPDX-License-Identifier: MIT */
/* Upstream pools: each balance algorithm by a table or a count, passive health to the
 * millisecond, bounded retries, the all-down fallback, and a long random run checked
 * against a plain model of the same rules (plus rendezvous' subset property). */
#include "sniroute/config/pool.h"

#include <stdio.h>
#include <string.h>

#include "support/assert.h"

#define BIT(i) ((uint64_t)1 << (i))

static char names[SR_POOL_MAX_SERVERS + 1][32];
static const char *ids[SR_POOL_MAX_SERVERS + 1];

/* Servers "10.0.0.1:443", "10.0.0.2:443", ... */
static void
make_pool(struct sr_pool *pool, enum sr_pool_balance balance, size_t n, uint64_t seed)
{
    struct sr_pool_params params;
    size_t i;

    for (i = 0; i < n; i++) {
        snprintf(names[i], sizeof(names[i]), "10.0.0.%zu:443", i + 1);
        ids[i] = names[i];
    }
    params.balance = balance;
    params.fail_max = SR_POOL_FAIL_MAX_DEFAULT;
    params.fail_timeout_ms = SR_POOL_FAIL_TIMEOUT_MS_DEFAULT;
    params.seed = seed;
    ASSERT_EQ(sr_pool_init(pool, &params, ids, n), SR_POOL_OK);
}

/* A pick that must succeed with an up server. */
static size_t
pick_up(struct sr_pool *pool, uint64_t now_ms, const uint8_t *key, uint64_t exclude)
{
    size_t i = SIZE_MAX;

    ASSERT_EQ(sr_pool_pick(pool, now_ms, key, exclude, &i), SR_POOL_PICKED);
    ASSERT_LT(i, pool->n);
    return i;
}

static void
take_out(struct sr_pool *pool, size_t i, uint64_t now_ms)
{
    uint32_t k;

    for (k = 0; k < pool->params.fail_max; k++) {
        sr_pool_report_failure(pool, i, now_ms);
    }
    ASSERT(!sr_pool_is_up(pool, i, now_ms));
}

static void
test_parse_and_init(void)
{
    static const struct {
        const char *text;
        enum sr_pool_error err;
        enum sr_pool_balance balance;
    } cases[] = {
        {"round_robin", SR_POOL_OK, SR_POOL_ROUND_ROBIN},
        {"least_conn", SR_POOL_OK, SR_POOL_LEAST_CONN},
        {"random_two", SR_POOL_OK, SR_POOL_RANDOM_TWO},
        {"source_hash", SR_POOL_OK, SR_POOL_SOURCE_HASH},
        {"", SR_POOL_BAD_BALANCE, 0},
        {"round-robin", SR_POOL_BAD_BALANCE, 0},
        {"Round_Robin", SR_POOL_BAD_BALANCE, 0},
        {"round_robin ", SR_POOL_BAD_BALANCE, 0},
        {"round_robi", SR_POOL_BAD_BALANCE, 0},
        {"least_connx", SR_POOL_BAD_BALANCE, 0},
        {"random", SR_POOL_BAD_BALANCE, 0},
        {"ip_hash", SR_POOL_BAD_BALANCE, 0},
    };
    struct sr_pool_params params = {SR_POOL_ROUND_ROBIN, 3, 10000, 0};
    struct sr_pool pool;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum sr_pool_balance b = (enum sr_pool_balance)99;

        ASSERT_EQ(sr_pool_balance_parse(cases[i].text, strlen(cases[i].text), &b), cases[i].err);
        if (cases[i].err == SR_POOL_OK) {
            ASSERT_EQ(b, cases[i].balance);
            ASSERT_STR_EQ(sr_pool_balance_name(b), cases[i].text);
        } else {
            ASSERT_EQ(b, 99); /* untouched */
        }
    }
    /* Length, not NUL, ends the text. */
    {
        enum sr_pool_balance b = SR_POOL_ROUND_ROBIN;

        ASSERT_EQ(sr_pool_balance_parse("least_conn = x", 10, &b), SR_POOL_OK);
        ASSERT_EQ(b, SR_POOL_LEAST_CONN);
        ASSERT_EQ(sr_pool_balance_parse("least_conn", 9, &b), SR_POOL_BAD_BALANCE);
    }
    ASSERT_STR_EQ(sr_pool_balance_name((enum sr_pool_balance)4), "?");
    ASSERT_STR_EQ(sr_pool_error_str(SR_POOL_BAD_BALANCE),
                  "not one of round_robin, least_conn, random_two, source_hash");
    ASSERT_STR_EQ(sr_pool_error_str(SR_POOL_TOO_MANY_SERVERS), "more than 64 servers");

    make_pool(&pool, SR_POOL_ROUND_ROBIN, 1, 0); /* fills names/ids */
    for (i = 0; i <= SR_POOL_MAX_SERVERS; i++) {
        snprintf(names[i], sizeof(names[i]), "s%zu", i);
        ids[i] = names[i];
    }
    ASSERT_EQ(sr_pool_init(&pool, &params, ids, 0), SR_POOL_NO_SERVERS);
    ASSERT_EQ(sr_pool_init(&pool, &params, ids, SR_POOL_MAX_SERVERS + 1), SR_POOL_TOO_MANY_SERVERS);
    ASSERT_EQ(pool.n, 0);

    /* Exactly 64: the full mask, bit 63 included, works both ways. */
    ASSERT_EQ(sr_pool_init(&pool, &params, ids, SR_POOL_MAX_SERVERS), SR_POOL_OK);
    for (i = 0; i < SR_POOL_MAX_SERVERS; i++) {
        ASSERT_EQ(pick_up(&pool, 0, NULL, 0), i);
        ASSERT(sr_pool_is_up(&pool, i, 0));
    }
    ASSERT_EQ(pick_up(&pool, 0, NULL, ~BIT(63)), 63);
    {
        size_t got = 77;

        ASSERT_EQ(sr_pool_pick(&pool, 0, NULL, ~(uint64_t)0, &got), SR_POOL_NONE_LEFT);
        ASSERT_EQ(got, 77);
    }
}

static void
test_round_robin(void)
{
    /* Fresh pool of 4, some servers unhealthy (health check) or out (3 failures): the next
     * eight picks. */
    static const struct {
        uint64_t unhealthy;
        uint64_t out;
        size_t picks[8];
    } cases[] = {
        {0, 0, {0, 1, 2, 3, 0, 1, 2, 3}},
        {BIT(1), 0, {0, 2, 3, 0, 2, 3, 0, 2}},
        {0, BIT(0), {1, 2, 3, 1, 2, 3, 1, 2}},
        {BIT(3), BIT(1), {0, 2, 0, 2, 0, 2, 0, 2}},
        {BIT(0) | BIT(1), BIT(2), {3, 3, 3, 3, 3, 3, 3, 3}},
    };
    size_t c;

    for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct sr_pool pool;
        size_t i;

        make_pool(&pool, SR_POOL_ROUND_ROBIN, 4, 0);
        for (i = 0; i < 4; i++) {
            if (cases[c].unhealthy & BIT(i)) {
                sr_pool_set_healthy(&pool, i, false);
            }
            if (cases[c].out & BIT(i)) {
                take_out(&pool, i, 100);
            }
        }
        for (i = 0; i < 8; i++) {
            ASSERT_EQ(pick_up(&pool, 200, NULL, 0), cases[c].picks[i]);
        }
    }

    /* A server that comes back rejoins the turn where it stands. */
    {
        struct sr_pool pool;

        make_pool(&pool, SR_POOL_ROUND_ROBIN, 3, 0);
        sr_pool_set_healthy(&pool, 1, false);
        ASSERT_EQ(pick_up(&pool, 0, NULL, 0), 0);
        ASSERT_EQ(pick_up(&pool, 0, NULL, 0), 2);
        sr_pool_set_healthy(&pool, 1, true);
        ASSERT_EQ(pick_up(&pool, 0, NULL, 0), 0);
        ASSERT_EQ(pick_up(&pool, 0, NULL, 0), 1);
        ASSERT_EQ(pick_up(&pool, 0, NULL, 0), 2);
        ASSERT_EQ(pool.servers[0].n_picks, 2);
        ASSERT_EQ(pool.servers[1].n_picks, 1);
        ASSERT_EQ(pool.servers[2].n_picks, 2);
    }
}

static void
test_least_conn(void)
{
    struct sr_pool pool;
    uint32_t count[4] = {0};
    size_t i;
    size_t k;

    /* Loads 3 1 2 1, nobody reports the picks: the two least loaded take turns. */
    make_pool(&pool, SR_POOL_LEAST_CONN, 4, 0);
    for (i = 0; i < 4; i++) {
        static const uint32_t load[4] = {3, 1, 2, 1};

        for (k = 0; k < load[i]; k++) {
            sr_pool_conn_start(&pool, i);
        }
    }
    for (k = 0; k < 6; k++) {
        ASSERT_EQ(pick_up(&pool, 0, NULL, 0), k % 2 == 0 ? 1 : 3);
    }
    /* The least loaded goes down: the next least loaded gets everything. */
    sr_pool_set_healthy(&pool, 1, false);
    sr_pool_set_healthy(&pool, 3, false);
    for (k = 0; k < 4; k++) {
        ASSERT_EQ(pick_up(&pool, 0, NULL, 0), 2);
    }

    /* Picks reported as connections: from all idle, the load stays level at every step and
     * each server gets exactly a quarter. */
    make_pool(&pool, SR_POOL_LEAST_CONN, 4, 0);
    for (k = 0; k < 400; k++) {
        uint32_t lo = UINT32_MAX;
        uint32_t hi = 0;

        i = pick_up(&pool, 0, NULL, 0);
        sr_pool_conn_start(&pool, i);
        count[i]++;
        for (i = 0; i < 4; i++) {
            lo = pool.servers[i].n_active < lo ? pool.servers[i].n_active : lo;
            hi = pool.servers[i].n_active > hi ? pool.servers[i].n_active : hi;
        }
        ASSERT_LE(hi - lo, 1);
    }
    for (i = 0; i < 4; i++) {
        ASSERT_EQ(count[i], 100);
    }
    /* Server 2's connections end: it is the least loaded until it catches up. */
    for (k = 0; k < 5; k++) {
        sr_pool_conn_end(&pool, 2);
    }
    for (k = 0; k < 5; k++) {
        i = pick_up(&pool, 0, NULL, 0);
        ASSERT_EQ(i, 2);
        sr_pool_conn_start(&pool, i);
    }
    ASSERT_EQ(pool.servers[2].n_active, 100);
}

static void
test_random_two(void)
{
    struct sr_pool a;
    struct sr_pool b;
    uint32_t count[5] = {0};
    size_t same = 0;
    size_t i;
    size_t k;

    /* Two candidates (others excluded) with different loads: always the lighter. */
    make_pool(&a, SR_POOL_RANDOM_TWO, 5, 1);
    sr_pool_conn_start(&a, 1);
    sr_pool_conn_start(&a, 4);
    sr_pool_conn_start(&a, 4);
    for (k = 0; k < 1000; k++) {
        ASSERT_EQ(pick_up(&a, 0, NULL, BIT(0) | BIT(2) | BIT(3)), 1);
        ASSERT_EQ(pick_up(&a, 0, NULL, BIT(0) | BIT(1) | BIT(2)), 3);
    }

    /* Loads 0 1 2 3 4: a server wins exactly when drawn with a heavier one, so server r
     * (r-th lightest) is chosen with probability (4 - r) / C(5, 2): 40% 30% 20% 10% 0%. The
     * heaviest is never chosen. Bounds are over 7 standard deviations wide. */
    make_pool(&a, SR_POOL_RANDOM_TWO, 5, 42);
    for (i = 0; i < 5; i++) {
        for (k = 0; k < i; k++) {
            sr_pool_conn_start(&a, i);
        }
    }
    for (k = 0; k < 100000; k++) {
        count[pick_up(&a, 0, NULL, 0)]++;
    }
    ASSERT_EQ(count[4], 0);
    for (i = 0; i < 4; i++) {
        ASSERT_GT(count[i], (4 - i) * 10000 - 1200);
        ASSERT_LT(count[i], (4 - i) * 10000 + 1200);
    }

    /* Equal loads: roughly uniform (expect 20000 each, sd about 126). */
    memset(count, 0, sizeof(count));
    make_pool(&a, SR_POOL_RANDOM_TWO, 5, 7);
    for (k = 0; k < 100000; k++) {
        count[pick_up(&a, 0, NULL, 0)]++;
    }
    for (i = 0; i < 5; i++) {
        ASSERT_GT(count[i], 19000);
        ASSERT_LT(count[i], 21000);
    }

    /* Deterministic for a seed; another seed gives another sequence. */
    make_pool(&a, SR_POOL_RANDOM_TWO, 5, 12345);
    make_pool(&b, SR_POOL_RANDOM_TWO, 5, 12345);
    for (k = 0; k < 1000; k++) {
        ASSERT_EQ(pick_up(&a, 0, NULL, 0), pick_up(&b, 0, NULL, 0));
    }
    make_pool(&a, SR_POOL_RANDOM_TWO, 5, 12345);
    make_pool(&b, SR_POOL_RANDOM_TWO, 5, 12346);
    for (k = 0; k < 1000; k++) {
        same += pick_up(&a, 0, NULL, 0) == pick_up(&b, 0, NULL, 0);
    }
    ASSERT_LT(same, 400); /* about 200 by chance */

    /* One candidate: no draw can fail. */
    make_pool(&a, SR_POOL_RANDOM_TWO, 1, 0);
    ASSERT_EQ(pick_up(&a, 0, NULL, 0), 0);
}

#define N_KEYS 10000

static uint8_t keys[N_KEYS][SR_POOL_KEY_LEN];
static size_t owner[N_KEYS];

static void
make_keys(void)
{
    uint32_t x = 2463534242u;
    size_t k;
    size_t j;

    for (k = 0; k < N_KEYS; k++) {
        /* Half IPv4 as ::ffff:a.b.c.d, half IPv6 in one /64: both kinds must spread. */
        memset(keys[k], 0, SR_POOL_KEY_LEN);
        if (k % 2 == 0) {
            keys[k][10] = 0xff;
            keys[k][11] = 0xff;
            j = 12;
        } else {
            keys[k][0] = 0x20;
            keys[k][1] = 0x01;
            keys[k][2] = 0x0d;
            keys[k][3] = 0xb8;
            j = 8;
        }
        for (; j < SR_POOL_KEY_LEN; j++) {
            x ^= x << 13; /* xorshift32 */
            x ^= x >> 17;
            x ^= x << 5;
            keys[k][j] = (uint8_t)x;
        }
    }
}

static void
test_source_hash(void)
{
    struct sr_pool pool;
    struct sr_pool reversed;
    uint32_t count[5] = {0};
    size_t on_two = 0;
    size_t moved = 0;
    size_t i;
    size_t k;

    make_keys();
    make_pool(&pool, SR_POOL_SOURCE_HASH, 5, 0);
    for (k = 0; k < N_KEYS; k++) {
        owner[k] = pick_up(&pool, 0, keys[k], 0);
        count[owner[k]]++;
    }
    /* Spread: 2000 each expected, sd 40. */
    for (i = 0; i < 5; i++) {
        ASSERT_GT(count[i], 1750);
        ASSERT_LT(count[i], 2250);
    }
    /* Stable: the same answers again, in another order, after other traffic. */
    for (k = N_KEYS; k-- > 0;) {
        ASSERT_EQ(pick_up(&pool, 0, keys[k], 0), owner[k]);
    }
    /* Identity is the server's name, not its index: the same servers listed backwards. */
    {
        struct sr_pool_params params = pool.params;
        const char *back[5];

        for (i = 0; i < 5; i++) {
            back[i] = names[4 - i];
        }
        ASSERT_EQ(sr_pool_init(&reversed, &params, back, 5), SR_POOL_OK);
        for (k = 0; k < N_KEYS; k++) {
            ASSERT_EQ(pick_up(&reversed, 0, keys[k], 0), 4 - owner[k]);
        }
    }

    /* Server 2 fails its health check: exactly its keys move, each to where a retry that
     * excludes server 2 would have gone; nobody moves onto 2. */
    sr_pool_set_healthy(&pool, 2, false);
    for (k = 0; k < N_KEYS; k++) {
        size_t now_at = pick_up(&pool, 0, keys[k], 0);

        on_two += owner[k] == 2;
        if (now_at != owner[k]) {
            moved++;
            ASSERT_EQ(owner[k], 2);
        }
        ASSERT_NE(now_at, 2);
        ASSERT_EQ(now_at, pick_up(&pool, 0, keys[k], BIT(2)));
    }
    ASSERT_EQ(moved, on_two);
    ASSERT_EQ(moved, count[2]);
    /* It passes again: everybody is back where they were. */
    sr_pool_set_healthy(&pool, 2, true);
    for (k = 0; k < N_KEYS; k++) {
        ASSERT_EQ(pick_up(&pool, 0, keys[k], 0), owner[k]);
    }
    /* The same through passive health, and back when its time out ends. */
    take_out(&pool, 2, 1000);
    moved = 0;
    for (k = 0; k < N_KEYS; k++) {
        moved += pick_up(&pool, 1000, keys[k], 0) != owner[k];
    }
    ASSERT_EQ(moved, count[2]);
    for (k = 0; k < N_KEYS; k++) {
        ASSERT_EQ(pick_up(&pool, 1000 + SR_POOL_FAIL_TIMEOUT_MS_DEFAULT, keys[k], 0), owner[k]);
    }

    /* No key: round robin. */
    make_pool(&pool, SR_POOL_SOURCE_HASH, 3, 0);
    for (k = 0; k < 6; k++) {
        ASSERT_EQ(pick_up(&pool, 0, NULL, 0), k % 3);
    }
}

static void
test_passive_health(void)
{
    const uint64_t t0 = 5000;
    const uint64_t timeout = SR_POOL_FAIL_TIMEOUT_MS_DEFAULT;
    struct sr_pool pool;
    size_t k;

    make_pool(&pool, SR_POOL_ROUND_ROBIN, 3, 0);
    ASSERT(!sr_pool_report_failure(&pool, 0, t0));
    ASSERT(!sr_pool_report_failure(&pool, 0, t0 + 1));
    ASSERT(sr_pool_is_up(&pool, 0, t0 + 1));
    ASSERT(sr_pool_report_failure(&pool, 0, t0 + 2)); /* the third: out */
    ASSERT_EQ(pool.servers[0].n_fails, 3);
    ASSERT_EQ(pool.servers[0].n_failures, 3);
    /* Out for exactly fail_timeout_ms from the third failure. */
    ASSERT(!sr_pool_is_up(&pool, 0, t0 + 2));
    ASSERT(!sr_pool_is_up(&pool, 0, t0 + 2 + timeout - 1));
    ASSERT(sr_pool_is_up(&pool, 0, t0 + 2 + timeout));
    for (k = 0; k < 6; k++) {
        ASSERT_NE(pick_up(&pool, t0 + 2 + timeout - 1, NULL, 0), 0);
    }
    /* Half-open: picked again; one failure sends it straight back out. */
    ASSERT_EQ(pick_up(&pool, t0 + 2 + timeout, NULL, 0), 0);
    ASSERT(sr_pool_report_failure(&pool, 0, t0 + 3 + timeout));
    ASSERT(!sr_pool_is_up(&pool, 0, t0 + 3 + 2 * timeout - 1));
    ASSERT(sr_pool_is_up(&pool, 0, t0 + 3 + 2 * timeout));
    /* One success closes it: three failures in a row are needed again. */
    sr_pool_report_success(&pool, 0);
    ASSERT_EQ(pool.servers[0].n_fails, 0);
    ASSERT(!sr_pool_report_failure(&pool, 0, 100000));
    ASSERT(!sr_pool_report_failure(&pool, 0, 100000));
    sr_pool_report_success(&pool, 0); /* in a row: a success in between resets */
    ASSERT(!sr_pool_report_failure(&pool, 0, 100000));
    ASSERT(!sr_pool_report_failure(&pool, 0, 100000));
    ASSERT(sr_pool_is_up(&pool, 0, 100000));
    ASSERT(sr_pool_report_failure(&pool, 0, 100000));
    ASSERT(!sr_pool_is_up(&pool, 0, 100000));
    /* A failure while out extends the time out but is no new transition. */
    ASSERT(!sr_pool_report_failure(&pool, 0, 105000));
    ASSERT(!sr_pool_is_up(&pool, 0, 105000 + timeout - 1));
    ASSERT(sr_pool_is_up(&pool, 0, 105000 + timeout));
    /* A success while out (a last resort that worked) brings it back at once. */
    sr_pool_report_success(&pool, 0);
    ASSERT(sr_pool_is_up(&pool, 0, 105000));
    ASSERT_EQ(pool.servers[0].n_failures, 10); /* 3, 1 half-open, 5 around a success, 1 while out */

    /* Health check and passive health are independent: both must agree. */
    take_out(&pool, 1, 200000);
    sr_pool_set_healthy(&pool, 1, true);
    ASSERT(!sr_pool_is_up(&pool, 1, 200000));
    sr_pool_set_healthy(&pool, 1, false);
    ASSERT(!sr_pool_is_up(&pool, 1, 200000 + timeout));
    sr_pool_set_healthy(&pool, 1, true);
    ASSERT(sr_pool_is_up(&pool, 1, 200000 + timeout));

    /* fail_max 0: passive health off. */
    pool.params.fail_max = 0;
    for (k = 0; k < 100; k++) {
        ASSERT(!sr_pool_report_failure(&pool, 2, 300000));
    }
    ASSERT(sr_pool_is_up(&pool, 2, 300000));
    ASSERT_EQ(pool.servers[2].n_failures, 100);

    /* A time out at the end of the clock saturates instead of wrapping to "not out". */
    make_pool(&pool, SR_POOL_ROUND_ROBIN, 2, 0);
    take_out(&pool, 0, UINT64_MAX - 5);
    ASSERT(!sr_pool_is_up(&pool, 0, UINT64_MAX - 1));
}

/* The connect loop as the proxy runs it, every connect failing: each server is tried at
 * most once, then "none left". */
static void
test_retries(void)
{
    enum sr_pool_balance b;

    make_keys();
    for (b = SR_POOL_ROUND_ROBIN; b <= SR_POOL_SOURCE_HASH; b++) {
        size_t round;

        for (round = 0; round < 20; round++) {
            struct sr_pool pool;
            uint64_t tried = 0;
            size_t n_tries = 0;
            size_t i;

            make_pool(&pool, b, 6, round);
            if (round % 2 == 1) {
                sr_pool_set_healthy(&pool, round % 6, false);
            }
            for (;;) {
                enum sr_pool_pick r = sr_pool_pick(&pool, 1000, keys[round], tried, &i);

                if (r == SR_POOL_NONE_LEFT) {
                    break;
                }
                ASSERT(r == SR_POOL_PICKED || r == SR_POOL_LAST_RESORT);
                ASSERT_EQ(tried & BIT(i), 0);
                ASSERT(pool.servers[i].is_healthy);
                tried |= BIT(i);
                n_tries++;
                sr_pool_conn_start(&pool, i);
                sr_pool_report_failure(&pool, i, 1000);
                sr_pool_conn_end(&pool, i);
                ASSERT_LE(n_tries, 6);
            }
            ASSERT_EQ(n_tries, round % 2 == 1 ? 5 : 6);
            for (i = 0; i < 6; i++) {
                ASSERT_EQ(pool.servers[i].n_active, 0);
            }
        }
    }
}

static void
test_all_down(void)
{
    struct sr_pool pool;
    size_t i = SIZE_MAX;

    /* All out for failures, at different times: last resort, soonest back first. */
    make_pool(&pool, SR_POOL_ROUND_ROBIN, 3, 0);
    take_out(&pool, 0, 1000); /* until 11000 */
    take_out(&pool, 1, 2000); /* until 12000 */
    take_out(&pool, 2, 500);  /* until 10500 */
    ASSERT_EQ(sr_pool_pick(&pool, 3000, NULL, 0, &i), SR_POOL_LAST_RESORT);
    ASSERT_EQ(i, 2);
    ASSERT_EQ(pool.servers[2].n_picks, 1);
    ASSERT_EQ(sr_pool_pick(&pool, 3000, NULL, BIT(2), &i), SR_POOL_LAST_RESORT);
    ASSERT_EQ(i, 0);
    ASSERT_EQ(sr_pool_pick(&pool, 3000, NULL, BIT(2) | BIT(0), &i), SR_POOL_LAST_RESORT);
    ASSERT_EQ(i, 1);
    i = SIZE_MAX;
    ASSERT_EQ(sr_pool_pick(&pool, 3000, NULL, 7, &i), SR_POOL_NONE_LEFT);
    ASSERT_EQ(i, SIZE_MAX);

    /* A failing health check is never a last resort. */
    sr_pool_set_healthy(&pool, 1, false);
    ASSERT_EQ(sr_pool_pick(&pool, 3000, NULL, BIT(2) | BIT(0), &i), SR_POOL_NONE_LEFT);
    sr_pool_set_healthy(&pool, 0, false);
    sr_pool_set_healthy(&pool, 2, false);
    ASSERT_EQ(sr_pool_pick(&pool, 3000, NULL, 0, &i), SR_POOL_NONE_LEFT);
    sr_pool_set_healthy(&pool, 0, true);
    sr_pool_set_healthy(&pool, 2, true);

    /* One server up: it gets everything, no last resort while it is not excluded. */
    ASSERT_EQ(pick_up(&pool, 10500, NULL, 0), 2);
    ASSERT_EQ(pick_up(&pool, 10500, NULL, 0), 2);
    ASSERT_EQ(sr_pool_pick(&pool, 10500, NULL, BIT(2), &i), SR_POOL_LAST_RESORT);
    ASSERT_EQ(i, 0);

    /* The last resort worked: it is back at once. */
    sr_pool_report_success(&pool, 0);
    ASSERT_EQ(pick_up(&pool, 10500, NULL, BIT(2)), 0);

    /* Equal time outs: the balance algorithm among them (round robin here), so one blip
     * does not send all last-resort traffic to the lowest index. */
    make_pool(&pool, SR_POOL_ROUND_ROBIN, 3, 0);
    take_out(&pool, 0, 1000);
    take_out(&pool, 1, 1000);
    take_out(&pool, 2, 1000);
    ASSERT_EQ(sr_pool_pick(&pool, 1001, NULL, 0, &i), SR_POOL_LAST_RESORT);
    ASSERT_EQ(i, 0);
    ASSERT_EQ(sr_pool_pick(&pool, 1001, NULL, 0, &i), SR_POOL_LAST_RESORT);
    ASSERT_EQ(i, 1);
    ASSERT_EQ(sr_pool_pick(&pool, 1001, NULL, 0, &i), SR_POOL_LAST_RESORT);
    ASSERT_EQ(i, 2);
}

/* A long random run against a model of the rules in pool.h. The model keeps its own
 * health, failure and load state and its own round-robin cursor; for random_two and
 * source_hash it checks what can be checked without re-implementing the draw or the hash:
 * the heaviest (if unique) is never chosen, and rendezvous' defining property, "the
 * winner of a set still wins in every subset that contains it", over every pair of
 * (key, candidate set) answers seen. */
#define M_N    6
#define M_KEYS 8

struct model {
    bool healthy[M_N];
    uint32_t fails[M_N];
    uint64_t down_until[M_N];
    uint32_t active[M_N];
    uint64_t picks[M_N];
    size_t rr_next;
};

static int8_t seen[M_KEYS][1 << M_N]; /* source_hash winner for (key, set), -1: not seen */

static size_t
model_in_turn(struct model *m, uint64_t set)
{
    size_t k;

    for (k = 0; k < M_N; k++) {
        size_t i = (m->rr_next + k) % M_N;

        if (set & BIT(i)) {
            m->rr_next = (i + 1) % M_N;
            return i;
        }
    }
    SR_FAIL("model_in_turn: empty set");
}

static void
model_check_pick(struct sr_pool *pool, struct model *m, uint64_t now, size_t key, uint64_t exclude)
{
    enum sr_pool_balance b = pool->params.balance;
    uint64_t up = 0;
    uint64_t soonest = 0;
    uint64_t soonest_ms = UINT64_MAX;
    uint64_t set;
    enum sr_pool_pick want;
    enum sr_pool_pick got;
    size_t i = SIZE_MAX;
    size_t j;

    for (j = 0; j < M_N; j++) {
        if ((exclude & BIT(j)) || !m->healthy[j]) {
            continue;
        }
        if (now >= m->down_until[j]) {
            up |= BIT(j);
        } else if (m->down_until[j] < soonest_ms) {
            soonest_ms = m->down_until[j];
            soonest = BIT(j);
        } else if (m->down_until[j] == soonest_ms) {
            soonest |= BIT(j);
        }
    }
    set = up != 0 ? up : soonest;
    want = up != 0 ? SR_POOL_PICKED : soonest != 0 ? SR_POOL_LAST_RESORT : SR_POOL_NONE_LEFT;
    got = sr_pool_pick(pool, now, keys[key], exclude, &i);
    ASSERT_EQ(got, want);
    if (got == SR_POOL_NONE_LEFT) {
        ASSERT_EQ(i, SIZE_MAX);
        return;
    }
    ASSERT(set & BIT(i));
    m->picks[i]++;
    if (b == SR_POOL_ROUND_ROBIN) {
        ASSERT_EQ(i, model_in_turn(m, set));
    } else if (b == SR_POOL_LEAST_CONN) {
        uint32_t least = UINT32_MAX;
        uint64_t tied = 0;

        for (j = 0; j < M_N; j++) {
            if ((set & BIT(j)) && m->active[j] < least) {
                least = m->active[j];
                tied = 0;
            }
            if ((set & BIT(j)) && m->active[j] == least) {
                tied |= BIT(j);
            }
        }
        ASSERT_EQ(i, model_in_turn(m, tied));
    } else if (b == SR_POOL_RANDOM_TWO) {
        size_t heaviest = SIZE_MAX;
        size_t n_max = 0;
        uint32_t most = 0;

        for (j = 0; j < M_N; j++) {
            if (!(set & BIT(j))) {
                continue;
            }
            if (heaviest == SIZE_MAX || m->active[j] > most) {
                heaviest = j;
                most = m->active[j];
                n_max = 1;
            } else if (m->active[j] == most) {
                n_max++;
            }
        }
        if (n_max == 1 && (set & (set - 1)) != 0) {
            ASSERT_NE(i, heaviest);
        }
    } else {
        if (seen[key][set] == -1) {
            seen[key][set] = (int8_t)i;
        }
        ASSERT_EQ(seen[key][set], i);
    }
}

static void
test_model(void)
{
    enum sr_pool_balance b;

    make_keys();
    for (b = SR_POOL_ROUND_ROBIN; b <= SR_POOL_SOURCE_HASH; b++) {
        struct sr_pool pool;
        struct model m;
        uint64_t now = 1;
        uint64_t state = 0x5eed + (uint64_t)b;
        size_t step;
        size_t j;

        make_pool(&pool, b, M_N, 99);
        memset(&m, 0, sizeof(m));
        memset(seen, -1, sizeof(seen));
        for (j = 0; j < M_N; j++) {
            m.healthy[j] = true;
        }
        for (step = 0; step < 300000; step++) {
            uint64_t r;
            size_t i;

            state = state * 6364136223846793005ull + 1442695040888963407ull; /* LCG */
            r = state >> 24;
            i = (size_t)((r >> 8) % M_N);
            switch (r % 16) {
            case 0: /* time passes, sometimes past a time out */
                now += (r >> 16) % 4000;
                break;
            case 1:
            case 2: /* connect failure */
            {
                bool was_out = now < m.down_until[i];
                bool took_out;

                if (m.fails[i] < SR_POOL_FAIL_MAX_DEFAULT) {
                    m.fails[i]++;
                }
                if (m.fails[i] >= SR_POOL_FAIL_MAX_DEFAULT) {
                    m.down_until[i] = now + SR_POOL_FAIL_TIMEOUT_MS_DEFAULT;
                }
                took_out = !was_out && now < m.down_until[i];
                ASSERT_EQ(sr_pool_report_failure(&pool, i, now), took_out);
                break;
            }
            case 3: /* connect success */
                m.fails[i] = 0;
                m.down_until[i] = 0;
                sr_pool_report_success(&pool, i);
                break;
            case 4: /* health check verdict, mostly healthy */
                m.healthy[i] = (r >> 20) % 4 != 0;
                sr_pool_set_healthy(&pool, i, m.healthy[i]);
                break;
            case 5:
            case 6:
                m.active[i]++;
                sr_pool_conn_start(&pool, i);
                break;
            case 7:
            case 8:
                if (m.active[i] > 0) {
                    m.active[i]--;
                    sr_pool_conn_end(&pool, i);
                }
                break;
            default: /* a pick, half of them retries with some servers tried */
                model_check_pick(&pool, &m, now, (size_t)((r >> 12) % M_KEYS),
                                 (r >> 20) % 2 == 0 ? 0 : (r >> 24) & (BIT(M_N) - 1));
                break;
            }
            for (j = 0; j < M_N; j++) {
                ASSERT_EQ(pool.servers[j].n_fails, m.fails[j]);
                ASSERT_EQ(pool.servers[j].down_until_ms, m.down_until[j]);
                ASSERT_EQ(pool.servers[j].n_active, m.active[j]);
                ASSERT_EQ(pool.servers[j].n_picks, m.picks[j]);
                ASSERT_EQ(sr_pool_is_up(&pool, j, now), m.healthy[j] && now >= m.down_until[j]);
            }
        }
        if (b == SR_POOL_SOURCE_HASH) {
            /* Rendezvous: if w wins set S, w wins every seen subset T of S holding w. */
            size_t key;
            size_t s;
            size_t t;
            size_t n_pairs = 0;

            for (key = 0; key < M_KEYS; key++) {
                for (s = 1; s < BIT(M_N); s++) {
                    for (t = 1; t < BIT(M_N); t++) {
                        int8_t w = seen[key][s];

                        if (w < 0 || seen[key][t] < 0 || (t & ~s) != 0 || !(t & BIT(w))) {
                            continue;
                        }
                        ASSERT_EQ(seen[key][t], w);
                        n_pairs++;
                    }
                }
            }
            ASSERT_GT(n_pairs, 1000); /* the run did explore */
        }
    }
}

int
main(void)
{
    test_parse_and_init();
    test_round_robin();
    test_least_conn();
    test_random_two();
    test_source_hash();
    test_passive_health();
    test_retries();
    test_all_down();
    test_model();
    return 0;
}
