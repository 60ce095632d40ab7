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

/* Look up <name>/<len>, which must already be normalized (sr_name_normalize). Precedence is
 * fixed by kind: exact, then the longest matching wildcard suffix, then default. A wildcard
 * "*.example.com" matches names below example.com at any depth, never example.com itself.
 * Returns hit->kind. */
enum sr_route_kind
sr_route_lookup(const struct sr_route_table *table, const char *name, size_t len,
                struct sr_route_hit *hit);

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

#endif
