/* SPDX-License-Identifier: MIT */
/* max_new_connections_per_ip: a token bucket per client address per listener, for every
 * worker of the process at once. Two levels: a table of buckets with a bound on its entries
 * and least-recently-seen eviction (struct sr_ratetab: no lock, no clock, the caller passes
 * the time), and the process's set of SR_RATE_SHARDS such tables, each behind its own lock,
 * chosen by a keyed hash of the address (struct sr_ratelimit): two workers contend only when
 * their clients fall in the same shard, and a client's bucket is exact however many workers
 * accept its connections. Not here: which listener has which rate (the config), what a
 * refusal does (the caller closes and counts). */
#ifndef SR_RATELIMIT_H
#define SR_RATELIMIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct sockaddr;

/* A rate: <n> new connections per <period_ms> (1000: N/s, 60000: N/m), a burst of up to
 * <n> at once. n == 0: no limit. */
struct sr_rate {
    uint32_t n;
    uint32_t period_ms;
};

/* Whom a bucket is for: the listener's slot (sr_shared_listener_slot, stable across
 * reloads) and the client's address, IPv4 as ::ffff:a.b.c.d, IPv6 cut to its /64 (the
 * rest zero): the addresses of one /64 are one host's, which may pick any of them. */
struct sr_ratekey {
    uint8_t bytes[16];
    uint32_t lslot;
};

/* Fill <key> for listener slot <lslot> and AF_INET or AF_INET6 <sa> (a v4-mapped IPv6
 * address is the IPv4 one). Returns 0, or -1 for another family. */
int
sr_ratekey_from_sockaddr(struct sr_ratekey *key, uint32_t lslot, const struct sockaddr *sa);

/* One table of buckets, at most a given number of entries (the caller's; it may change
 * from call to call). Storage grows by doubling up to that bound, and the least recently
 * seen entry makes room for a new one. Caller-owned: init, then fini; not thread-safe. */
struct sr_ratetab {
    struct sr_rate_entry *entries; /* [cap] */
    uint32_t *heads;               /* [n_heads]: chain of each hash bucket, index + 1; 0 none */
    uint32_t cap;                  /* entries allocated */
    uint32_t n_heads;              /* a power of two, at least cap */
    uint32_t n;                    /* entries in use */
    uint32_t n_used;               /* entries ever handed out: [n_used, cap) never used */
    uint32_t free_list;            /* entries freed by a smaller bound, index + 1; 0 none */
    uint32_t lru_first;            /* most recently seen, index + 1; 0 none */
    uint32_t lru_last;             /* least recently seen, index + 1; 0 none */
    uint64_t n_evicted;            /* entries dropped for room, ever */
};

void
sr_ratetab_init(struct sr_ratetab *t);
void
sr_ratetab_fini(struct sr_ratetab *t);

/* A new connection for <key> (whose hash is <hash>: any 64 bits the caller computes from
 * the key, keyed so that outsiders cannot choose collisions) at <now_ns> (a monotonic
 * clock), under <rate>, with at most <max_entries> entries (at least 1). True: it may
 * proceed, and took a token; false: the bucket is empty, nothing taken. Either way the key
 * becomes the most recently seen.
 *
 * The bucket holds up to rate->n tokens and gains rate->n per period, continuously; a key
 * not in the table starts with a full bucket (so does one evicted earlier: eviction favours
 * the client). A bucket keeps its level when the rate changes (a reload): it refills at the
 * new rate from then on and is capped at the new burst. Out of memory to grow, the table
 * evicts within what it has; with no entry at all, the connection proceeds. */
bool
sr_ratetab_take(struct sr_ratetab *t, const struct sr_ratekey *key, uint64_t hash, uint64_t now_ns,
                struct sr_rate rate, uint32_t max_entries);

/* Entries in use. */
static inline uint32_t
sr_ratetab_size(const struct sr_ratetab *t)
{
    return t->n;
}

/* The table is split in this many shards, each behind its own lock. */
#define SR_RATE_SHARDS 64

/* One shard: its lock, its table, and counts a scrape reads without the lock (written by
 * the lock holder only). Padded so two shards never share a cache line. */
struct sr_rate_shard {
    uv_mutex_t lock;
    struct sr_ratetab tab;
    _Atomic uint64_t n_locks;
    _Atomic uint64_t n_evicted;
    _Atomic uint32_t n_entries;
} __attribute__((aligned(64)));

/* The process's buckets: owned by main, shared by every worker, kept across reloads. */
struct sr_ratelimit {
    struct sr_rate_shard shard[SR_RATE_SHARDS];
    uint64_t key[2]; /* random per process: which addresses share a shard is not chosen
                        from outside, nor which share a hash chain */
    bool is_ready;   /* init succeeded: fini has locks to destroy */
};

/* Set up <rl> (0, or UV_ENOMEM with nothing to free) and free it. */
int
sr_ratelimit_init(struct sr_ratelimit *rl);
void
sr_ratelimit_fini(struct sr_ratelimit *rl);

/* sr_ratetab_take for <key> in its shard, under the shard's lock, with at most
 * <max_entries> entries in all (each shard holds its share, rounded up). Any thread. */
bool
sr_ratelimit_take(struct sr_ratelimit *rl, const struct sr_ratekey *key, uint64_t now_ns,
                  struct sr_rate rate, size_t max_entries);

/* What a scrape shows, summed over the shards, read without their locks (any thread):
 * entries in use, entries evicted for room, lock acquisitions. */
size_t
sr_ratelimit_entries(const struct sr_ratelimit *rl);
uint64_t
sr_ratelimit_evictions(const struct sr_ratelimit *rl);
uint64_t
sr_ratelimit_locks(const struct sr_ratelimit *rl);

#endif
