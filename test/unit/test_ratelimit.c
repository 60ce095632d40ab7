/* SPDX-License-Identifier: MIT */
/* Token buckets per address (ratelimit.h): keys (IPv6 by /64, IPv4 and v4-mapped alike,
 * per listener), the bucket (burst, refill, no drift over many periods, N/m, a rate changed
 * in place), the bound (least recently seen evicted, an evicted key back with a full
 * bucket, a smaller bound honoured, chains right through growth, colliding hashes), and the
 * shards under four threads (exactly the burst admitted, the bound held). */
#include "sniroute/core/ratelimit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <uv.h>

#include "support/assert.h"

#define MS 1000000ull
#define S  (1000 * MS)

static struct sr_ratekey
key_of(uint32_t i)
{
    struct sr_ratekey k;

    memset(&k, 0, sizeof(k));
    k.bytes[0] = 0x20;
    k.bytes[1] = 0x01;
    memcpy(k.bytes + 4, &i, sizeof(i));
    k.lslot = 1;
    return k;
}

static uint64_t
hash_of(uint32_t i)
{
    return (uint64_t)i * 0x9e3779b97f4a7c15ull;
}

static void
test_keys(void)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct sr_ratekey a;
    struct sr_ratekey b;
    struct sockaddr sa;

    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    sin.sin_family = AF_INET;
    sin6.sin6_family = AF_INET6;
    inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
    inet_pton(AF_INET6, "::ffff:192.0.2.7", &sin6.sin6_addr);
    ASSERT_EQ(sr_ratekey_from_sockaddr(&a, 3, (struct sockaddr *)&sin), 0);
    ASSERT_EQ(sr_ratekey_from_sockaddr(&b, 3, (struct sockaddr *)&sin6), 0);
    ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
    /* Another IPv4 address is another key: no prefix for IPv4. */
    inet_pton(AF_INET, "192.0.2.8", &sin.sin_addr);
    ASSERT_EQ(sr_ratekey_from_sockaddr(&b, 3, (struct sockaddr *)&sin), 0);
    ASSERT_NE(memcmp(&a, &b, sizeof(a)), 0);
    /* One /64 is one key; the next /64 is another. */
    inet_pton(AF_INET6, "2001:db8:1:2::1", &sin6.sin6_addr);
    ASSERT_EQ(sr_ratekey_from_sockaddr(&a, 3, (struct sockaddr *)&sin6), 0);
    inet_pton(AF_INET6, "2001:db8:1:2:ffff:1:2:3", &sin6.sin6_addr);
    ASSERT_EQ(sr_ratekey_from_sockaddr(&b, 3, (struct sockaddr *)&sin6), 0);
    ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
    inet_pton(AF_INET6, "2001:db8:1:3::1", &sin6.sin6_addr);
    ASSERT_EQ(sr_ratekey_from_sockaddr(&b, 3, (struct sockaddr *)&sin6), 0);
    ASSERT_NE(memcmp(&a, &b, sizeof(a)), 0);
    /* Per listener. */
    inet_pton(AF_INET6, "2001:db8:1:2::1", &sin6.sin6_addr);
    ASSERT_EQ(sr_ratekey_from_sockaddr(&b, 4, (struct sockaddr *)&sin6), 0);
    ASSERT_NE(memcmp(&a, &b, sizeof(a)), 0);
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNIX;
    ASSERT_EQ(sr_ratekey_from_sockaddr(&a, 3, &sa), -1);
}

/* How many of <n> tries at <now> pass. */
static unsigned
takes(struct sr_ratetab *t, uint32_t i, unsigned n, uint64_t now, struct sr_rate rate)
{
    struct sr_ratekey k = key_of(i);
    unsigned ok = 0;

    while (n-- > 0) {
        ok += sr_ratetab_take(t, &k, hash_of(i), now, rate, 1000);
    }
    return ok;
}

static void
test_bucket(void)
{
    struct sr_rate r10 = {10, 1000};
    struct sr_ratetab t;
    uint64_t now = 5 * S;
    unsigned ok = 0;
    unsigned i;

    sr_ratetab_init(&t);
    /* A burst of N, then nothing until a token has come back (100 ms at 10/s). */
    ASSERT_EQ(takes(&t, 1, 20, now, r10), 10);
    ASSERT_EQ(takes(&t, 1, 1, now + 99 * MS, r10), 0);
    ASSERT_EQ(takes(&t, 1, 5, now + 100 * MS, r10), 1);
    /* Another key is untouched. */
    ASSERT_EQ(takes(&t, 2, 10, now, r10), 10);
    /* A flood every ms for 10 s gets exactly the refill: 10 per second, no drift. */
    now += 100 * MS;
    for (i = 1; i <= 10000; i++) {
        ok += takes(&t, 1, 3, now + i * MS, r10);
    }
    ASSERT_EQ(ok, 100);
    /* An idle key is full again after one period, and no fuller. */
    now += 10 * S + 5 * S;
    ASSERT_EQ(takes(&t, 1, 30, now, r10), 10);
    /* N/m: 6/m gives 6, then one every 10 s. */
    ASSERT_EQ(takes(&t, 3, 10, now, (struct sr_rate){6, 60000}), 6);
    ASSERT_EQ(takes(&t, 3, 1, now + 9999 * MS, (struct sr_rate){6, 60000}), 0);
    ASSERT_EQ(takes(&t, 3, 3, now + 10 * S, (struct sr_rate){6, 60000}), 1);
    /* A reload that changes the rate keeps the level: an empty bucket stays empty (no fresh
     * burst), refills at the new rate, and a full one is capped at the new burst. */
    ASSERT_EQ(takes(&t, 4, 10, now, r10), 10);
    ASSERT_EQ(takes(&t, 4, 10, now, (struct sr_rate){100, 1000}), 0);
    ASSERT_EQ(takes(&t, 4, 10, now + 50 * MS, (struct sr_rate){100, 1000}), 5);
    ASSERT_EQ(takes(&t, 5, 1, now, (struct sr_rate){100, 1000}), 1);
    ASSERT_EQ(takes(&t, 5, 100, now + 1 * MS, (struct sr_rate){3, 1000}), 3);
    /* A clock read before another thread's took the lock: no time, no harm. */
    ASSERT_EQ(takes(&t, 6, 10, now, r10), 10);
    ASSERT_EQ(takes(&t, 6, 1, now - 1 * S, r10), 0);
    ASSERT_EQ(takes(&t, 6, 1, now + 100 * MS, r10), 1);
    /* No limit: nothing stored. */
    ASSERT_EQ(sr_ratetab_size(&t), 6);
    ASSERT_EQ(takes(&t, 7, 1000, now, (struct sr_rate){0, 1000}), 1000);
    ASSERT_EQ(sr_ratetab_size(&t), 6);
    sr_ratetab_fini(&t);
}

static void
test_eviction(void)
{
    struct sr_rate r = {2, 1000};
    struct sr_ratetab t;
    struct sr_ratekey k;
    uint64_t now = S;
    uint32_t i;

    sr_ratetab_init(&t);
    /* Keys 0..99 empty their buckets, in a table of 100. */
    for (i = 0; i < 100; i++) {
        k = key_of(i);
        ASSERT(sr_ratetab_take(&t, &k, hash_of(i), now, r, 100));
        ASSERT(sr_ratetab_take(&t, &k, hash_of(i), now, r, 100));
        ASSERT(!sr_ratetab_take(&t, &k, hash_of(i), now, r, 100));
    }
    ASSERT_EQ(sr_ratetab_size(&t), 100);
    ASSERT_EQ(t.n_evicted, 0);
    /* Key 0 is seen again (still empty): now 1 is the least recently seen. */
    k = key_of(0);
    ASSERT(!sr_ratetab_take(&t, &k, hash_of(0), now, r, 100));
    /* A newcomer evicts 1, and only 1. */
    k = key_of(1000);
    ASSERT(sr_ratetab_take(&t, &k, hash_of(1000), now, r, 100));
    ASSERT_EQ(sr_ratetab_size(&t), 100);
    ASSERT_EQ(t.n_evicted, 1);
    for (i = 2; i < 100; i++) {
        k = key_of(i);
        ASSERT(!sr_ratetab_take(&t, &k, hash_of(i), now, r, 100));
    }
    k = key_of(0);
    ASSERT(!sr_ratetab_take(&t, &k, hash_of(0), now, r, 100));
    /* 1 comes back with a full bucket: eviction favours the client. */
    k = key_of(1);
    ASSERT(sr_ratetab_take(&t, &k, hash_of(1), now, r, 100));
    ASSERT(sr_ratetab_take(&t, &k, hash_of(1), now, r, 100));
    ASSERT(!sr_ratetab_take(&t, &k, hash_of(1), now, r, 100));
    ASSERT_EQ(t.n_evicted, 2); /* 1000 was the least recently seen */
    /* A smaller bound (a reload): the next newcomer brings the table down to it. */
    k = key_of(2000);
    ASSERT(sr_ratetab_take(&t, &k, hash_of(2000), now, r, 10));
    ASSERT_EQ(sr_ratetab_size(&t), 10);
    ASSERT_EQ(t.n_evicted, 2 + 91);
    /* The nine kept beside 2000 are the most recently seen: 1, 0, 99..93. */
    for (i = 93; i < 100; i++) {
        k = key_of(i);
        ASSERT(!sr_ratetab_take(&t, &k, hash_of(i), now, r, 10));
    }
    ASSERT_EQ(t.n_evicted, 93);
    /* 100,000 keys through a table of 1,000: never more than the bound, every newcomer
     * admitted, every chain still right (each recent key found again, empty). */
    for (i = 0; i < 100000; i++) {
        k = key_of(100000 + i);
        ASSERT(sr_ratetab_take(&t, &k, hash_of(100000 + i), now, r, 1000));
        ASSERT(sr_ratetab_take(&t, &k, hash_of(100000 + i), now, r, 1000));
        ASSERT_LE(sr_ratetab_size(&t), 1000);
    }
    ASSERT_LE(t.cap, 1000);
    for (i = 100000 - 1000; i < 100000; i++) {
        k = key_of(100000 + i);
        ASSERT(!sr_ratetab_take(&t, &k, hash_of(100000 + i), now, r, 1000));
    }
    ASSERT_EQ(sr_ratetab_size(&t), 1000);
    sr_ratetab_fini(&t);

    /* Every hash the same: one long chain, still exact, eviction still unlinks right. */
    sr_ratetab_init(&t);
    for (i = 0; i < 3000; i++) {
        k = key_of(i);
        ASSERT(sr_ratetab_take(&t, &k, 42, now, r, 64));
        ASSERT(sr_ratetab_take(&t, &k, 42, now, r, 64));
        ASSERT(!sr_ratetab_take(&t, &k, 42, now, r, 64));
    }
    ASSERT_EQ(sr_ratetab_size(&t), 64);
    sr_ratetab_fini(&t);
}

/* Four threads, one address: the burst is admitted exactly once in all. */
struct racer {
    uv_thread_t thread;
    struct sr_ratelimit *rl;
    uint64_t now;
    unsigned ok;
};

static void
race(void *arg)
{
    struct racer *r = arg;
    struct sr_ratekey k = key_of(7);
    unsigned i;

    for (i = 0; i < 20000; i++) {
        r->ok += sr_ratelimit_take(r->rl, &k, r->now, (struct sr_rate){1000, 1000}, 65536);
    }
}

static void
test_shards(void)
{
    static struct sr_ratelimit rl;
    struct racer racers[4];
    struct sr_ratekey k;
    unsigned ok = 0;
    uint32_t i;

    ASSERT_EQ(sr_ratelimit_init(&rl), 0);
    for (i = 0; i < 4; i++) {
        racers[i].rl = &rl;
        racers[i].now = 10 * S;
        racers[i].ok = 0;
        ASSERT_EQ(uv_thread_create(&racers[i].thread, race, &racers[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        ASSERT_EQ(uv_thread_join(&racers[i].thread), 0);
        ok += racers[i].ok;
    }
    ASSERT_EQ(ok, 1000);
    ASSERT_EQ(sr_ratelimit_locks(&rl), 80000);
    ASSERT_EQ(sr_ratelimit_entries(&rl), 1);
    /* 100,000 addresses in a table of 6,400 (100 a shard): bounded, evictions counted. */
    for (i = 0; i < 100000; i++) {
        k = key_of(1000 + i);
        ASSERT(sr_ratelimit_take(&rl, &k, 10 * S, (struct sr_rate){5, 1000}, 6400));
    }
    ASSERT_LE(sr_ratelimit_entries(&rl), 6400);
    ASSERT_GE(sr_ratelimit_entries(&rl), 6000);
    ASSERT_EQ(sr_ratelimit_evictions(&rl), 100001 - sr_ratelimit_entries(&rl));
    sr_ratelimit_fini(&rl);
}

int
main(void)
{
    test_keys();
    test_bucket();
    test_eviction();
    test_shards();
    return 0;
}
