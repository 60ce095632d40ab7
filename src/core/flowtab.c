/* SPDX-License-Identifier: MIT */
/* The UDP flow table (flowtab.h): separate chaining over a power-of-two bucket array that
 * doubles at one node per bucket and never shrinks (it is bounded by the flow limits). */
#include "sniroute/core/flowtab.h"

#include <assert.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SR_FLOWTAB_MIN_BUCKETS 64 /* a power of two */

/* --- SipHash-1-3 (Aumasson and Bernstein; the variant Rust's HashMap uses): a keyed hash
 * fast enough for a 24-byte key per datagram and strong enough that an attacker who sees
 * only our behaviour cannot find colliding keys. */

static inline uint64_t
rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t
load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    int i;

    for (i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

/* SipHash-1-3 of a struct sr_flowkey: 24 bytes, three whole words and no tail. */
static uint64_t
key_hash(const struct sr_flowtab *t, const struct sr_flowkey *key)
{
    const uint8_t *p = (const uint8_t *)key;
    uint64_t v0 = t->k0 ^ 0x736f6d6570736575ull;
    uint64_t v1 = t->k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = t->k0 ^ 0x6c7967656e657261ull;
    uint64_t v3 = t->k1 ^ 0x7465646279746573ull;
    uint64_t m;
    size_t i;

    _Static_assert(sizeof(struct sr_flowkey) == 24, "the key is three 64-bit words");
    for (i = 0; i < sizeof(*key); i += 8) {
        m = load_le64(p + i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    m = (uint64_t)sizeof(*key) << 56;
    v3 ^= m;
    SIPROUND;
    v0 ^= m;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

int
sr_flowtab_init(struct sr_flowtab *t, uint64_t k0, uint64_t k1)
{
    memset(t, 0, sizeof(*t));
    t->k0 = k0;
    t->k1 = k1;
    t->buckets = calloc(SR_FLOWTAB_MIN_BUCKETS, sizeof(*t->buckets));
    if (t->buckets == NULL) {
        return -1;
    }
    t->n_buckets = SR_FLOWTAB_MIN_BUCKETS;
    return 0;
}

void
sr_flowtab_fini(struct sr_flowtab *t)
{
    free(t->buckets);
    t->buckets = NULL;
    t->n_buckets = 0;
    t->n = 0;
}

int
sr_flowkey_set(struct sr_flowkey *key, uint32_t sock, const struct sockaddr *sa)
{
    memset(key, 0, sizeof(*key));
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;

        memcpy(key->addr, &sin6->sin6_addr, 16);
        key->port = sin6->sin6_port;
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;

        key->addr[10] = 0xff;
        key->addr[11] = 0xff;
        memcpy(key->addr + 12, &sin->sin_addr, 4);
        key->port = sin->sin_port;
    } else {
        return -1;
    }
    key->sock = sock;
    return 0;
}

void
sr_flowkey_set_cid(struct sr_flowkey *key, uint32_t sock, const uint8_t *cid, size_t len)
{
    uint8_t bytes[sizeof(key->addr) + sizeof(key->port) + sizeof(key->pad)];

    _Static_assert(sizeof(bytes) == 20, "a connection ID is at most 20 bytes");
    memset(key, 0, sizeof(*key));
    memset(bytes, 0, sizeof(bytes));
    memcpy(bytes, cid, len <= sizeof(bytes) ? len : sizeof(bytes));
    memcpy(key->addr, bytes, sizeof(key->addr));
    memcpy(&key->port, bytes + sizeof(key->addr), sizeof(key->port));
    memcpy(&key->pad, bytes + sizeof(key->addr) + sizeof(key->port), sizeof(key->pad));
    key->sock = (sock & 0xffffffu) | (uint32_t)len << 24;
}

struct sr_flownode *
sr_flowtab_find(const struct sr_flowtab *t, const struct sr_flowkey *key)
{
    uint64_t h = key_hash(t, key);
    struct sr_flownode *node;

    for (node = t->buckets[h & (t->n_buckets - 1)]; node != NULL; node = node->next) {
        if (node->hash == h && memcmp(&node->key, key, sizeof(*key)) == 0) {
            return node;
        }
    }
    return NULL;
}

/* Double the bucket array, rehashing nothing: every node keeps its hash. */
static void
grow(struct sr_flowtab *t)
{
    size_t n = t->n_buckets * 2;
    struct sr_flownode **b = calloc(n, sizeof(*b));
    struct sr_flownode *node;
    struct sr_flownode *next;
    size_t i;

    if (b == NULL) {
        return; /* longer chains, still correct */
    }
    for (i = 0; i < t->n_buckets; i++) {
        for (node = t->buckets[i]; node != NULL; node = next) {
            next = node->next;
            node->next = b[node->hash & (n - 1)];
            b[node->hash & (n - 1)] = node;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = n;
}

void
sr_flowtab_insert(struct sr_flowtab *t, struct sr_flownode *node)
{
    size_t i;

    if (t->n >= t->n_buckets) {
        grow(t);
    }
    node->hash = key_hash(t, &node->key);
    i = node->hash & (t->n_buckets - 1);
    node->next = t->buckets[i];
    t->buckets[i] = node;
    t->n++;
}

void
sr_flowtab_remove(struct sr_flowtab *t, struct sr_flownode *node)
{
    struct sr_flownode **link = &t->buckets[node->hash & (t->n_buckets - 1)];

    while (*link != NULL && *link != node) {
        link = &(*link)->next;
    }
    assert(*link == node);
    if (*link == node) {
        *link = node->next;
        node->next = NULL;
        t->n--;
    }
}

size_t
sr_flowtab_longest_chain(const struct sr_flowtab *t)
{
    const struct sr_flownode *node;
    size_t longest = 0;
    size_t i;

    for (i = 0; i < t->n_buckets; i++) {
        size_t n = 0;

        for (node = t->buckets[i]; node != NULL; node = node->next) {
            n++;
        }
        longest = n > longest ? n : longest;
    }
    return longest;
}
