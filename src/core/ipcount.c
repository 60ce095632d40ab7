/* SPDX-License-Identifier: MIT */
/* Per-address connection counts: open addressing with linear probing and backward-shift
 * deletion (no tombstones, so a table that sees millions of short-lived clients never
 * fills with dead slots). It doubles at half full and never shrinks below its start. */
#include "sniroute/core/ipcount.h"

#include <assert.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SR_IPCOUNT_MIN_CAP 64 /* a power of two */

struct slot {
    struct sr_ipkey key;
    uint32_t count; /* 0: empty slot */
};

struct sr_ipcount {
    uint64_t secret[2];
    struct slot *slots;
    size_t cap; /* a power of two */
    size_t n;
};

int
sr_ipkey_from_sockaddr(struct sr_ipkey *key, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6) {
        memcpy(key->bytes, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return 0;
    }
    if (sa->sa_family == AF_INET) {
        /* ::ffff:a.b.c.d, so a client is one client whichever socket family it came by. */
        memset(key->bytes, 0, 10);
        key->bytes[10] = 0xff;
        key->bytes[11] = 0xff;
        memcpy(key->bytes + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return 0;
    }
    return -1;
}

static size_t
key_hash(const struct sr_ipcount *t, const struct sr_ipkey *key)
{
    return (size_t)sr_ipkey_hash(key->bytes, t->secret);
}

struct sr_ipcount *
sr_ipcount_new(const uint64_t secret[2])
{
    struct sr_ipcount *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        return NULL;
    }
    t->secret[0] = secret[0];
    t->secret[1] = secret[1];
    t->slots = calloc(SR_IPCOUNT_MIN_CAP, sizeof(*t->slots));
    if (t->slots == NULL) {
        free(t);
        return NULL;
    }
    t->cap = SR_IPCOUNT_MIN_CAP;
    return t;
}

void
sr_ipcount_free(struct sr_ipcount *t)
{
    if (t != NULL) {
        free(t->slots);
        free(t);
    }
}

/* The slot holding <key>, or the empty slot where it would go. */
static struct slot *
find(const struct sr_ipcount *t, const struct sr_ipkey *key)
{
    size_t mask = t->cap - 1;
    size_t i = key_hash(t, key) & mask;

    while (t->slots[i].count != 0 && memcmp(&t->slots[i].key, key, sizeof(*key)) != 0) {
        i = (i + 1) & mask;
    }
    return &t->slots[i];
}

static int
grow(struct sr_ipcount *t)
{
    struct slot *old = t->slots;
    size_t old_cap = t->cap;
    size_t i;

    t->slots = calloc(old_cap * 2, sizeof(*t->slots));
    if (t->slots == NULL) {
        t->slots = old;
        return -1;
    }
    t->cap = old_cap * 2;
    for (i = 0; i < old_cap; i++) {
        if (old[i].count != 0) {
            *find(t, &old[i].key) = old[i];
        }
    }
    free(old);
    return 0;
}

uint32_t
sr_ipcount_add(struct sr_ipcount *t, const struct sr_ipkey *key)
{
    struct slot *s = find(t, key);

    if (s->count != 0) {
        return ++s->count;
    }
    if ((t->n + 1) * 2 > t->cap) {
        if (grow(t) != 0) {
            return 0;
        }
        s = find(t, key);
    }
    s->key = *key;
    s->count = 1;
    t->n++;
    return 1;
}

void
sr_ipcount_remove(struct sr_ipcount *t, const struct sr_ipkey *key)
{
    size_t mask = t->cap - 1;
    struct slot *s = find(t, key);
    size_t hole;
    size_t i;

    assert(s->count != 0);
    if (--s->count != 0) {
        return;
    }
    t->n--;
    /* Backward-shift deletion: pull later members of the probe run into the hole when
     * their home slot does not lie cyclically between the hole and themselves. */
    hole = (size_t)(s - t->slots);
    for (i = (hole + 1) & mask; t->slots[i].count != 0; i = (i + 1) & mask) {
        size_t home = key_hash(t, &t->slots[i].key) & mask;

        if (((i - home) & mask) >= ((i - hole) & mask)) {
            t->slots[hole] = t->slots[i];
            t->slots[i].count = 0;
            hole = i;
        }
    }
}

uint32_t
sr_ipcount_get(const struct sr_ipcount *t, const struct sr_ipkey *key)
{
    return find(t, key)->count;
}

size_t
sr_ipcount_size(const struct sr_ipcount *t)
{
    return t->n;
}
