/* SPDX-License-Identifier: MIT */
/* The route table: two open-addressing hash tables (exact names, wildcard suffixes) plus a
 * default. Keys live in an arena of fixed-size chunks that never move, so a hit's suffix
 * pointer stays valid while the table grows. Lookup hashes the name once, right to left,
 * which yields the hash of every suffix in the same pass: cost O(length), whatever the
 * number of entries. No regexes, no ordering by position in the file. */
#include "sniroute/config/route.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "sniroute/wire/name.h"

/* Arena chunks: 64 KiB each, addressed by a 32-bit offset (chunk index << 16 | position).
 * A key never straddles two chunks; the waste per chunk is under one key (254 bytes).
 * Offset 0 is reserved to mark an empty slot. */
#define ARENA_CHUNK_SHIFT 16
#define ARENA_CHUNK_SIZE  (1u << ARENA_CHUNK_SHIFT)
#define ARENA_MAX_CHUNKS  (1u << (32 - ARENA_CHUNK_SHIFT))

/* Smallest slot array; the table doubles when it would become more than half full, which
 * keeps linear probing short for the common case, a miss (every label of a name that has
 * no wildcard is a miss). */
#define HTAB_MIN_CAP 16

/* Slot arrays from this size up are aligned to it and advised into transparent huge pages:
 * a 1,000,000-name table has 24 MB of slots (and went through 24 MB more while doubling),
 * and with 4 KiB pages building it took a page fault per 4 KiB, each costly under a
 * hypervisor. Lookups measured the same either way. */
#define HUGE_PAGE_SIZE ((size_t)2 << 20)

/* The same for the arena once it is big: chunks from number ARENA_SLAB_CHUNKS on come in
 * slabs of that many, one huge page each. Chunk ARENA_SLAB_CHUNKS * k (k >= 1) is where a
 * slab starts; only those are freed. A small table keeps its 64 KiB chunks. */
#define ARENA_SLAB_CHUNKS (HUGE_PAGE_SIZE / ARENA_CHUNK_SIZE)

/* One slot: 12 bytes. The key is in the arena, as one length byte then the bytes. */
struct slot {
    uint32_t key_off; /* 0: empty */
    uint32_t hash;
    uint32_t value;
};

struct htab {
    struct slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t n;
};

struct sr_route_table {
    struct htab exact;
    struct htab wild; /* keyed by the suffix, without "*." */
    bool has_default;
    uint32_t default_value;

    char **chunks;
    size_t n_chunks;
    size_t chunks_cap;
    size_t chunk_used; /* bytes used in the last chunk */
};

/* FNV-1a over the bytes from last to first. Hashing backwards lets a lookup get the hash
 * of every suffix of a name in one pass: the running value after reaching position i is
 * the hash of name[i..len). */
#define FNV_OFFSET 2166136261u
#define FNV_PRIME  16777619u

static uint32_t
hash_step(uint32_t h, char c)
{
    return (h ^ (uint8_t)c) * FNV_PRIME;
}

static uint32_t
hash_key(const char *key, size_t len)
{
    uint32_t h = FNV_OFFSET;

    while (len > 0) {
        h = hash_step(h, key[--len]);
    }
    return h;
}

/* <size> bytes (a multiple of HUGE_PAGE_SIZE) aligned to a huge page and advised into
 * one, or NULL when out of memory. Not zeroed. Free with free(). */
static void *
huge_alloc(size_t size)
{
    void *p = aligned_alloc(HUGE_PAGE_SIZE, size);

#ifdef MADV_HUGEPAGE
    /* Advice only: where huge pages are off or unavailable, nothing changes. */
    if (p != NULL) {
        (void)madvise(p, size, MADV_HUGEPAGE);
    }
#endif
    return p;
}

/* <n> zeroed slots, or NULL when out of memory. Free with free(). */
static struct slot *
slots_new(size_t n)
{
    size_t size = n * sizeof(struct slot);
    struct slot *slots;

    if (n > (SIZE_MAX - HUGE_PAGE_SIZE) / sizeof(struct slot)) { /* rounding up must not wrap */
        return NULL;
    }
    if (size < HUGE_PAGE_SIZE) {
        return calloc(n, sizeof(struct slot));
    }
    size = (size + HUGE_PAGE_SIZE - 1) & ~(HUGE_PAGE_SIZE - 1);
    slots = huge_alloc(size);
    if (slots != NULL) {
        memset(slots, 0, size);
    }
    return slots;
}

/* Memory for chunk number <i> (see ARENA_SLAB_CHUNKS), or NULL when out of memory. */
static char *
arena_chunk_new(const struct sr_route_table *t, size_t i)
{
    if (i < ARENA_SLAB_CHUNKS) {
        return malloc(ARENA_CHUNK_SIZE);
    }
    if (i % ARENA_SLAB_CHUNKS == 0) {
        return huge_alloc(HUGE_PAGE_SIZE);
    }
    return t->chunks[i - 1] + ARENA_CHUNK_SIZE;
}

static const char *
arena_key(const struct sr_route_table *t, uint32_t off, size_t *len)
{
    const char *p = t->chunks[off >> ARENA_CHUNK_SHIFT] + (off & (ARENA_CHUNK_SIZE - 1));

    *len = (uint8_t)p[0];
    return p + 1;
}

/* Copy <key>/<len> (len <= 255) into the arena; returns its offset, or 0 when out of
 * memory. */
static uint32_t
arena_put(struct sr_route_table *t, const char *key, size_t len)
{
    size_t need = len + 1;
    char *p;

    if (t->n_chunks == 0 || t->chunk_used + need > ARENA_CHUNK_SIZE) {
        if (t->n_chunks == ARENA_MAX_CHUNKS) {
            return 0;
        }
        if (t->n_chunks == t->chunks_cap) {
            size_t cap = t->chunks_cap ? t->chunks_cap * 2 : 4;
            char **chunks = realloc(t->chunks, cap * sizeof(*chunks));

            if (chunks == NULL) {
                return 0;
            }
            t->chunks = chunks;
            t->chunks_cap = cap;
        }
        t->chunks[t->n_chunks] = arena_chunk_new(t, t->n_chunks);
        if (t->chunks[t->n_chunks] == NULL) {
            return 0;
        }
        /* Position 0 of chunk 0 would be offset 0, the empty-slot mark: skip it. */
        t->chunk_used = (t->n_chunks == 0) ? 1 : 0;
        t->n_chunks++;
    }
    p = t->chunks[t->n_chunks - 1] + t->chunk_used;
    p[0] = (char)(uint8_t)len;
    memcpy(p + 1, key, len);
    t->chunk_used += need;
    return (uint32_t)(((t->n_chunks - 1) << ARENA_CHUNK_SHIFT) | (t->chunk_used - need));
}

/* Find <key> in <h>: returns its slot, or the empty slot where it would go (NULL only for
 * a table with no slots). */
static struct slot *
htab_find(const struct sr_route_table *t, const struct htab *h, const char *key, size_t len,
          uint32_t hash)
{
    size_t mask = h->cap - 1;
    size_t i;

    if (h->cap == 0) {
        return NULL;
    }
    for (i = hash & mask;; i = (i + 1) & mask) {
        struct slot *s = &h->slots[i];
        const char *k;
        size_t klen;

        if (s->key_off == 0) {
            return s;
        }
        if (s->hash != hash) {
            continue;
        }
        k = arena_key(t, s->key_off, &klen);
        if (klen == len && memcmp(k, key, len) == 0) {
            return s;
        }
    }
}

/* Make room for one more entry: double when more than half full. Returns false (table
 * unchanged) when out of memory. */
static bool
htab_reserve(struct htab *h)
{
    struct slot *slots;
    size_t cap;
    size_t i;

    if ((h->n + 1) * 2 <= h->cap) {
        return true;
    }
    cap = h->cap ? h->cap * 2 : HTAB_MIN_CAP;
    if (cap > (size_t)UINT32_MAX + 1) {
        return false;
    }
    slots = slots_new(cap);
    if (slots == NULL) {
        return false;
    }
    for (i = 0; i < h->cap; i++) {
        const struct slot *s = &h->slots[i];
        size_t j;

        if (s->key_off == 0) {
            continue;
        }
        for (j = s->hash & (cap - 1); slots[j].key_off != 0; j = (j + 1) & (cap - 1)) {
        }
        slots[j] = *s;
    }
    free(h->slots);
    h->slots = slots;
    h->cap = cap;
    return true;
}

static enum sr_route_add_result
htab_add(struct sr_route_table *t, struct htab *h, const char *key, size_t len, uint32_t value,
         uint32_t *prev_value, uint32_t *entry)
{
    uint32_t hash = hash_key(key, len);
    struct slot *s = htab_find(t, h, key, len, hash);
    uint32_t off;

    if (s != NULL && s->key_off != 0) {
        if (prev_value != NULL) {
            *prev_value = s->value;
        }
        if (entry != NULL) {
            *entry = s->key_off;
        }
        return SR_ROUTE_DUPLICATE;
    }
    if (!htab_reserve(h)) {
        return SR_ROUTE_NOMEM;
    }
    off = arena_put(t, key, len);
    if (off == 0) {
        return SR_ROUTE_NOMEM;
    }
    s = htab_find(t, h, key, len, hash); /* the slots may have moved */
    s->key_off = off;
    s->hash = hash;
    s->value = value;
    h->n++;
    if (entry != NULL) {
        *entry = off; /* arena offsets only grow: ids follow the order of insertion */
    }
    return SR_ROUTE_ADDED;
}

struct sr_route_table *
sr_route_table_new(void)
{
    return calloc(1, sizeof(struct sr_route_table));
}

void
sr_route_table_free(struct sr_route_table *table)
{
    size_t i;

    if (table == NULL) {
        return;
    }
    for (i = 0; i < table->n_chunks; i++) {
        if (i < ARENA_SLAB_CHUNKS || i % ARENA_SLAB_CHUNKS == 0) {
            free(table->chunks[i]); /* a chunk of its own, or the start of a slab */
        }
    }
    free(table->chunks);
    free(table->exact.slots);
    free(table->wild.slots);
    free(table);
}

static bool
is_default_key(const char *key, size_t len)
{
    static const char word[] = "default";
    size_t i;

    if (len != sizeof(word) - 1) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = key[i];

        if (c >= 'A' && c <= 'Z') {
            c = (char)(c + ('a' - 'A'));
        }
        if (c != word[i]) {
            return false;
        }
    }
    return true;
}

enum sr_route_add_result
sr_route_add(struct sr_route_table *table, const char *key, size_t len, uint32_t value,
             uint32_t *prev_value)
{
    return sr_route_insert(table, key, len, value, prev_value, NULL);
}

enum sr_route_add_result
sr_route_insert(struct sr_route_table *table, const char *key, size_t len, uint32_t value,
                uint32_t *prev_value, uint32_t *entry)
{
    char norm[SR_NAME_MAX + 1];
    size_t norm_len;
    bool is_wildcard = false;

    /* Exactly "default": "default." is the host name "default", for whoever needs it. */
    if (is_default_key(key, len)) {
        if (table->has_default) {
            if (prev_value != NULL) {
                *prev_value = table->default_value;
            }
            if (entry != NULL) {
                *entry = 0;
            }
            return SR_ROUTE_DUPLICATE;
        }
        table->has_default = true;
        table->default_value = value;
        if (entry != NULL) {
            *entry = 0;
        }
        return SR_ROUTE_ADDED;
    }
    if (memchr(key, '*', len) != NULL) {
        /* Only a whole leading label: "*.example.com". Not "*", "*.", "**.x", "*x.com",
         * "a.*.b": partial-label wildcards are what RFC 6125 section 6.4.3 advises
         * against, and a '*' further right would need a different lookup. */
        if (len < 3 || key[0] != '*' || key[1] != '.' || memchr(key + 2, '*', len - 2)) {
            return SR_ROUTE_BAD_WILDCARD;
        }
        key += 2;
        len -= 2;
        is_wildcard = true;
    }
    if (sr_name_normalize((const uint8_t *)key, len, norm, &norm_len) != SR_NAME_OK) {
        return SR_ROUTE_BAD_NAME;
    }
    return htab_add(table, is_wildcard ? &table->wild : &table->exact, norm, norm_len, value,
                    prev_value, entry);
}

/* The lookup, with or without the exact table. */
static enum sr_route_kind
lookup(const struct sr_route_table *table, const char *name, size_t len, bool has_exact,
       struct sr_route_hit *hit)
{
    /* Hashes of the proper suffixes that start a label, the longest last. A normalized
     * name of 253 bytes has at most 126 dots; the bound below also holds for a caller who
     * breaks the contract and passes "a.....". */
    uint32_t hashes[SR_NAME_MAX];
    size_t starts[SR_NAME_MAX];
    size_t n = 0;
    uint32_t h = FNV_OFFSET;
    const struct slot *s;
    size_t i;

    hit->suffix = NULL;
    hit->suffix_len = 0;
    hit->entry = 0;
    if (len > 0 && len <= SR_NAME_MAX) {
        for (i = len; i > 0; i--) {
            h = hash_step(h, name[i - 1]);
            if (i - 1 > 0 && name[i - 2] == '.' && table->wild.n > 0 && n < SR_NAME_MAX) {
                hashes[n] = h;
                starts[n] = i - 1;
                n++;
            }
        }
        s = has_exact ? htab_find(table, &table->exact, name, len, h) : NULL;
        if (s != NULL && s->key_off != 0) {
            hit->kind = SR_ROUTE_EXACT;
            hit->value = s->value;
            hit->entry = s->key_off;
            return hit->kind;
        }
        while (n > 0) {
            n--;
            s = htab_find(table, &table->wild, name + starts[n], len - starts[n], hashes[n]);
            if (s != NULL && s->key_off != 0) {
                hit->kind = SR_ROUTE_WILDCARD;
                hit->value = s->value;
                hit->suffix = arena_key(table, s->key_off, &hit->suffix_len);
                hit->entry = s->key_off;
                return hit->kind;
            }
        }
    }
    if (table->has_default) {
        hit->kind = SR_ROUTE_DEFAULT;
        hit->value = table->default_value;
        return hit->kind;
    }
    hit->kind = SR_ROUTE_MISS;
    hit->value = 0;
    return hit->kind;
}

enum sr_route_kind
sr_route_lookup(const struct sr_route_table *table, const char *name, size_t len,
                struct sr_route_hit *hit)
{
    return lookup(table, name, len, true, hit);
}

enum sr_route_kind
sr_route_lookup_below(const struct sr_route_table *table, const char *name, size_t len,
                      struct sr_route_hit *hit)
{
    return lookup(table, name, len, false, hit);
}

static void
htab_foreach(const struct sr_route_table *t, const struct htab *h, int is_wildcard,
             void (*fn)(void *ctx, const struct sr_route_entry *e), void *ctx)
{
    struct sr_route_entry e;
    size_t i;

    for (i = 0; i < h->cap; i++) {
        const struct slot *s = &h->slots[i];

        if (s->key_off == 0) {
            continue;
        }
        e.key = arena_key(t, s->key_off, &e.key_len);
        e.is_wildcard = is_wildcard;
        e.value = s->value;
        e.entry = s->key_off;
        fn(ctx, &e);
    }
}

void
sr_route_foreach(const struct sr_route_table *table,
                 void (*fn)(void *ctx, const struct sr_route_entry *e), void *ctx)
{
    htab_foreach(table, &table->exact, 0, fn, ctx);
    htab_foreach(table, &table->wild, 1, fn, ctx);
}

enum sr_route_kind
sr_route_lookup_default(const struct sr_route_table *table, struct sr_route_hit *hit)
{
    hit->suffix = NULL;
    hit->suffix_len = 0;
    hit->entry = 0;
    hit->kind = table->has_default ? SR_ROUTE_DEFAULT : SR_ROUTE_MISS;
    hit->value = table->has_default ? table->default_value : 0;
    return hit->kind;
}

static bool
htab_remap(struct htab *h, const uint32_t *map, size_t n, bool is_dry_run)
{
    size_t i;

    for (i = 0; i < h->cap; i++) {
        struct slot *s = &h->slots[i];

        if (s->key_off == 0) {
            continue;
        }
        if (s->value >= n) {
            return false;
        }
        if (!is_dry_run) {
            s->value = map[s->value];
        }
    }
    return true;
}

int
sr_route_remap(struct sr_route_table *table, const uint32_t *map, size_t n)
{
    bool is_dry_run;

    if (table->has_default && table->default_value >= n) {
        return -1;
    }
    /* Check everything first, so a bad value leaves the table as it was. */
    for (is_dry_run = true;; is_dry_run = false) {
        if (!htab_remap(&table->exact, map, n, is_dry_run) ||
            !htab_remap(&table->wild, map, n, is_dry_run)) {
            return -1;
        }
        if (!is_dry_run) {
            break;
        }
    }
    if (table->has_default) {
        table->default_value = map[table->default_value];
    }
    return 0;
}

size_t
sr_route_count(const struct sr_route_table *table)
{
    return table->exact.n + table->wild.n + (table->has_default ? 1 : 0);
}

const char *
sr_route_add_result_str(enum sr_route_add_result res)
{
    switch (res) {
    case SR_ROUTE_ADDED:
        return "added";
    case SR_ROUTE_DUPLICATE:
        return "duplicate route";
    case SR_ROUTE_BAD_NAME:
        return "not a valid host name";
    case SR_ROUTE_BAD_WILDCARD:
        return "a wildcard must be a whole leading label, as in *.example.com";
    case SR_ROUTE_NOMEM:
        return "out of memory";
    }
    return "unknown route error";
}

const char *
sr_route_kind_name(enum sr_route_kind kind)
{
    switch (kind) {
    case SR_ROUTE_EXACT:
        return "exact";
    case SR_ROUTE_WILDCARD:
        return "wildcard";
    case SR_ROUTE_DEFAULT:
        return "default";
    case SR_ROUTE_MISS:
        break;
    }
    return "none";
}
