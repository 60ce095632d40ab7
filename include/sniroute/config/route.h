/* SPDX-License-Identifier: MIT */
/* The route table: maps a normalized host name to a 32-bit value chosen by the caller (the
 * config stores an upstream index there). Exact names, "*.suffix" wildcards and one
 * default. Lookup cost depends on the number of labels in the name, never on the number of
 * entries. No libuv, no I/O. */
#ifndef SR_ROUTE_H
#define SR_ROUTE_H

#include <stddef.h>
#include <stdint.h>

struct sr_route_table;

enum sr_route_kind {
    SR_ROUTE_MISS = 0, /* nothing matched and there is no default */
    SR_ROUTE_EXACT,    /* the name itself is in the table */
    SR_ROUTE_WILDCARD, /* "*.suffix" matched: the longest such suffix wins */
    SR_ROUTE_DEFAULT,  /* the "default" entry */
};

enum sr_route_add_result {
    SR_ROUTE_ADDED = 0,
    SR_ROUTE_DUPLICATE,    /* the same key (after normalization) is already there */
    SR_ROUTE_BAD_NAME,     /* not a valid host name (see sr_name_validate) */
    SR_ROUTE_BAD_WILDCARD, /* '*' anywhere but a leading "*." label, or "*." alone */
    SR_ROUTE_NOMEM,
};

struct sr_route_hit {
    enum sr_route_kind kind;
    uint32_t value;
    /* For SR_ROUTE_WILDCARD: the matched suffix (without "*."), pointing into the table's
     * storage; valid until the table is freed. NULL otherwise. */
    const char *suffix;
    size_t suffix_len;
    /* The entry that matched: nonzero for EXACT and WILDCARD, 0 for DEFAULT and MISS.
     * Unique within the table and increasing in the order entries were added, so a caller
     * can keep a side table (the config's line numbers) sorted by it. */
    uint32_t entry;
};

/* Create an empty table. Returns NULL when out of memory. */
struct sr_route_table *
sr_route_table_new(void);

/* Free <table> and everything it owns. NULL is accepted. */
void
sr_route_table_free(struct sr_route_table *table);

/* Add <key>/<len>: "default", "*.example.com" or "example.com" (case and one trailing dot
 * are normalized away, so "Example.COM." duplicates "example.com"). "default" is matched
 * case-insensitively and without a trailing dot ("default." is the host name "default").
 * On SR_ROUTE_DUPLICATE, <*prev_value> (if not NULL) receives the value already stored.
 * The key bytes are copied. On any result but SR_ROUTE_ADDED the table is unchanged. */
enum sr_route_add_result
sr_route_add(struct sr_route_table *table, const char *key, size_t len, uint32_t value,
             uint32_t *prev_value);

/* Like sr_route_add(); on SR_ROUTE_ADDED, <*entry> (if not NULL) receives the new entry's
 * id as sr_route_hit.entry reports it (0 for "default"); on SR_ROUTE_DUPLICATE, the id of
 * the entry already there. */
enum sr_route_add_result
sr_route_insert(struct sr_route_table *table, const char *key, size_t len, uint32_t value,
                uint32_t *prev_value, uint32_t *entry);

/* Look up <name>/<len>, which must already be normalized (sr_name_normalize). Precedence is
 * fixed by kind: exact, then the longest matching wildcard suffix, then default. A wildcard
 * "*.example.com" matches names below example.com at any depth, never example.com itself.
 * Returns hit->kind. */
enum sr_route_kind
sr_route_lookup(const struct sr_route_table *table, const char *name, size_t len,
                struct sr_route_hit *hit);

/* Like sr_route_lookup(), but as if <name> had no exact entry: what the wildcards and the
 * default give it. For a wildcard "*.S" looked up as "S", that is the route the names
 * below S would get without it (a wider wildcard, or the default): lint asks this to find
 * entries that change nothing. Returns hit->kind (never SR_ROUTE_EXACT). */
enum sr_route_kind
sr_route_lookup_below(const struct sr_route_table *table, const char *name, size_t len,
                      struct sr_route_hit *hit);

/* One entry, as sr_route_foreach() hands it over: <key> is the normalized name (for a
 * wildcard the suffix, without "*."), valid while the table lives. */
struct sr_route_entry {
    const char *key;
    size_t key_len;
    int is_wildcard;
    uint32_t value;
    uint32_t entry; /* as in sr_route_hit */
};

/* Call <fn>(<ctx>, e) for every exact and wildcard entry (not the default), in no
 * particular order. The table must not change meanwhile. */
void
sr_route_foreach(const struct sr_route_table *table,
                 void (*fn)(void *ctx, const struct sr_route_entry *e), void *ctx);

/* The "default" entry alone, for a client that named no host. Returns hit->kind:
 * SR_ROUTE_DEFAULT, or SR_ROUTE_MISS when the table has no default. */
enum sr_route_kind
sr_route_lookup_default(const struct sr_route_table *table, struct sr_route_hit *hit);

/* Replace every stored value v (default included) with <map>[v]. For a caller that stores
 * its own ordinals while building (to remember, say, the line each entry came from) and
 * settles the final values once the table is complete. Returns 0, or -1 with the table
 * unchanged if a stored value is not below <n>. */
int
sr_route_remap(struct sr_route_table *table, const uint32_t *map, size_t n);

/* Number of entries, default included. */
size_t
sr_route_count(const struct sr_route_table *table);

/* A static English phrase for <res>. */
const char *
sr_route_add_result_str(enum sr_route_add_result res);

/* "exact", "wildcard", "default" or "none" (a miss): the word the access log and the
 * metrics use for <kind>. */
const char *
sr_route_kind_name(enum sr_route_kind kind);

#endif
