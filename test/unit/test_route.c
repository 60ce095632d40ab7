/* SPDX-License-Identifier: MIT */
/* Table-driven tests of the route table: key validation, duplicates after normalization,
 * precedence (exact, longest wildcard, default), and a 100k-entry table checked entry by
 * entry. Speed is measured in bench/bench_route.c, not here. */
#include "sniroute/config/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/assert.h"

struct add_case {
    const char *key;
    enum sr_route_add_result res;
    uint32_t prev; /* for SR_ROUTE_DUPLICATE: the value of the first entry */
};

/* Added in order to one table; entry i gets value i. */
static const struct add_case add_cases[] = {
    {"example.com", SR_ROUTE_ADDED, 0},
    {"*.example.com", SR_ROUTE_ADDED, 0},
    {"*.b.example.com", SR_ROUTE_ADDED, 0},
    {"default", SR_ROUTE_ADDED, 0},
    {"Exact.Example.COM.", SR_ROUTE_ADDED, 0},
    {"*.com", SR_ROUTE_ADDED, 0},
    {"default.", SR_ROUTE_ADDED, 0}, /* the host name "default" */
    {"_sip._tcp.example.org", SR_ROUTE_ADDED, 0},
    /* Duplicates after normalization. */
    {"example.com", SR_ROUTE_DUPLICATE, 0},
    {"Example.COM.", SR_ROUTE_DUPLICATE, 0},
    {"EXAMPLE.com", SR_ROUTE_DUPLICATE, 0},
    {"*.Example.Com.", SR_ROUTE_DUPLICATE, 1},
    {"DEFAULT", SR_ROUTE_DUPLICATE, 3},
    {"Default", SR_ROUTE_DUPLICATE, 3},
    {"exact.example.com", SR_ROUTE_DUPLICATE, 4},
    {"default", SR_ROUTE_DUPLICATE, 3},
    /* Bad wildcards: '*' anywhere but a whole leading label. */
    {"*", SR_ROUTE_BAD_WILDCARD, 0},
    {"*.", SR_ROUTE_BAD_WILDCARD, 0},
    {"**.x", SR_ROUTE_BAD_WILDCARD, 0},
    {"*x.com", SR_ROUTE_BAD_WILDCARD, 0},
    {"a.*.b", SR_ROUTE_BAD_WILDCARD, 0},
    {"a.b.*", SR_ROUTE_BAD_WILDCARD, 0},
    {"*.*.example.com", SR_ROUTE_BAD_WILDCARD, 0},
    {"x*.example.com", SR_ROUTE_BAD_WILDCARD, 0},
    {".*.example.com", SR_ROUTE_BAD_WILDCARD, 0},
    /* Bad names, including a wildcard over a bad suffix. */
    {"", SR_ROUTE_BAD_NAME, 0},
    {".", SR_ROUTE_BAD_NAME, 0},
    {"a..b", SR_ROUTE_BAD_NAME, 0},
    {"example.com..", SR_ROUTE_BAD_NAME, 0},
    {"exa mple.com", SR_ROUTE_BAD_NAME, 0},
    {"example.com:443", SR_ROUTE_BAD_NAME, 0},
    {"*..example.com", SR_ROUTE_BAD_NAME, 0},
    {"*.-bad name", SR_ROUTE_BAD_NAME, 0},
    {"defaults?", SR_ROUTE_BAD_NAME, 0},
};

struct lookup_case {
    const char *name; /* already normalized, as the contract requires */
    enum sr_route_kind kind;
    uint32_t value;
    const char *suffix; /* for SR_ROUTE_WILDCARD */
};

/* Against the table built from add_cases. */
static const struct lookup_case lookup_cases[] = {
    {"example.com", SR_ROUTE_EXACT, 0, NULL},
    {"exact.example.com", SR_ROUTE_EXACT, 4, NULL}, /* exact beats *.example.com */
    {"www.example.com", SR_ROUTE_WILDCARD, 1, "example.com"},
    {"a.b.c.d.example.com", SR_ROUTE_WILDCARD, 1, "example.com"}, /* any depth */
    {"b.example.com", SR_ROUTE_WILDCARD, 1, "example.com"},     /* *.b.example.com: not its apex */
    {"x.b.example.com", SR_ROUTE_WILDCARD, 2, "b.example.com"}, /* longest suffix wins */
    {"y.x.b.example.com", SR_ROUTE_WILDCARD, 2, "b.example.com"},
    {"b.example.com.example.net", SR_ROUTE_DEFAULT, 3, NULL},
    {"other.com", SR_ROUTE_WILDCARD, 5, "com"},
    {"com", SR_ROUTE_DEFAULT, 3, NULL},            /* *.com does not match com */
    {"xexample.com", SR_ROUTE_WILDCARD, 5, "com"}, /* labels, not bytes */
    {"example.org", SR_ROUTE_DEFAULT, 3, NULL},
    {"default", SR_ROUTE_EXACT, 6, NULL},
    {"_sip._tcp.example.org", SR_ROUTE_EXACT, 7, NULL},
    {"org", SR_ROUTE_DEFAULT, 3, NULL},
    {"", SR_ROUTE_DEFAULT, 3, NULL},
};

static struct sr_route_table *
build(void)
{
    struct sr_route_table *t = sr_route_table_new();
    uint32_t value = 0;
    size_t i;

    ASSERT(t != NULL);
    for (i = 0; i < sizeof(add_cases) / sizeof(add_cases[0]); i++) {
        const struct add_case *c = &add_cases[i];
        uint32_t prev = UINT32_MAX;
        size_t before = sr_route_count(t);
        enum sr_route_add_result res = sr_route_add(t, c->key, strlen(c->key), value, &prev);

        if (res != c->res) {
            SR_FAIL("add \"%s\": %s, want %s", c->key, sr_route_add_result_str(res),
                    sr_route_add_result_str(c->res));
        }
        if (res == SR_ROUTE_ADDED) {
            ASSERT_EQ(sr_route_count(t), before + 1);
            value++;
        } else {
            ASSERT_EQ(sr_route_count(t), before);
        }
        if (res == SR_ROUTE_DUPLICATE) {
            ASSERT_EQ(prev, c->prev);
        }
        /* A NULL prev_value is allowed. */
        ASSERT_EQ(sr_route_add(t, c->key, strlen(c->key), 99, NULL),
                  res == SR_ROUTE_ADDED ? SR_ROUTE_DUPLICATE : res);
    }
    return t;
}

static void
check_lookups(const struct sr_route_table *t)
{
    size_t i;

    for (i = 0; i < sizeof(lookup_cases) / sizeof(lookup_cases[0]); i++) {
        const struct lookup_case *c = &lookup_cases[i];
        struct sr_route_hit hit;
        enum sr_route_kind kind = sr_route_lookup(t, c->name, strlen(c->name), &hit);

        if (kind != c->kind || hit.kind != c->kind || hit.value != c->value) {
            SR_FAIL("lookup \"%s\": kind %d value %u, want kind %d value %u", c->name, kind,
                    hit.value, c->kind, c->value);
        }
        if (c->suffix != NULL) {
            ASSERT_VIEW_EQ(hit.suffix, hit.suffix_len, c->suffix);
        } else {
            ASSERT(hit.suffix == NULL);
            ASSERT_EQ(hit.suffix_len, 0);
        }
    }
}

static void
test_table(void)
{
    struct sr_route_table *t = build();
    struct sr_route_hit hit;

    ASSERT_EQ(sr_route_count(t), 8);
    check_lookups(t);
    /* The name need not be NUL-terminated: "example.com" inside a longer buffer. */
    ASSERT_EQ(sr_route_lookup(t, "example.comX", 11, &hit), SR_ROUTE_EXACT);
    /* No server name: the default alone. */
    ASSERT_EQ(sr_route_lookup_default(t, &hit), SR_ROUTE_DEFAULT);
    ASSERT_EQ(hit.value, 3);
    ASSERT(hit.suffix == NULL);
    sr_route_table_free(t);
    sr_route_table_free(NULL);
}

static void
test_empty_and_no_default(void)
{
    struct sr_route_table *t = sr_route_table_new();
    struct sr_route_hit hit;

    ASSERT_EQ(sr_route_count(t), 0);
    ASSERT_EQ(sr_route_lookup(t, "example.com", 11, &hit), SR_ROUTE_MISS);
    ASSERT_EQ(sr_route_lookup(t, "", 0, &hit), SR_ROUTE_MISS);
    ASSERT_EQ(sr_route_lookup_default(t, &hit), SR_ROUTE_MISS);
    ASSERT_EQ(sr_route_add(t, "*.example.com", 13, 7, NULL), SR_ROUTE_ADDED);
    ASSERT_EQ(sr_route_lookup(t, "example.com", 11, &hit), SR_ROUTE_MISS);
    ASSERT_EQ(sr_route_lookup(t, "a.example.com", 13, &hit), SR_ROUTE_WILDCARD);
    ASSERT_EQ(hit.value, 7);
    /* Outside the contract (not normalized), but must not read out of bounds. */
    ASSERT_EQ(sr_route_lookup(t, "..............", 14, &hit), SR_ROUTE_MISS);
    sr_route_table_free(t);
}

static void
test_remap(void)
{
    struct sr_route_table *t = build();
    uint32_t map[8];
    struct sr_route_hit hit;
    size_t i;

    for (i = 0; i < 8; i++) {
        map[i] = (uint32_t)(100 + i);
    }
    ASSERT_EQ(sr_route_remap(t, map, 7), -1); /* value 7 is stored: refused, unchanged */
    check_lookups(t);
    ASSERT_EQ(sr_route_remap(t, map, 8), 0);
    ASSERT_EQ(sr_route_lookup(t, "x.b.example.com", 15, &hit), SR_ROUTE_WILDCARD);
    ASSERT_EQ(hit.value, 102);
    ASSERT_EQ(sr_route_lookup(t, "nothing.org", 11, &hit), SR_ROUTE_DEFAULT);
    ASSERT_EQ(hit.value, 103);
    sr_route_table_free(t);
}

/* 100,000 entries: half exact names, half wildcards, over many growths of both tables. */
#define BIG_N 100000

static void
test_big(void)
{
    struct sr_route_table *t = sr_route_table_new();
    char key[64];
    char name[80];
    struct sr_route_hit hit;
    uint32_t i;

    for (i = 0; i < BIG_N; i++) {
        int len = (i % 2) ? snprintf(key, sizeof(key), "*.w%u.example.net", i)
                          : snprintf(key, sizeof(key), "host-%u.example.net", i);

        ASSERT_EQ(sr_route_add(t, key, (size_t)len, i, NULL), SR_ROUTE_ADDED);
    }
    ASSERT_EQ(sr_route_count(t), BIG_N);
    for (i = 0; i < BIG_N; i++) {
        int len;

        if (i % 2) {
            len = snprintf(name, sizeof(name), "a.b.w%u.example.net", i);
            ASSERT_EQ(sr_route_lookup(t, name, (size_t)len, &hit), SR_ROUTE_WILDCARD);
            ASSERT_EQ(hit.value, i);
            ASSERT_VIEW_EQ(hit.suffix, hit.suffix_len, name + 4);
            /* The apex of a wildcard is not covered. */
            ASSERT_EQ(sr_route_lookup(t, name + 4, (size_t)len - 4, &hit), SR_ROUTE_MISS);
        } else {
            len = snprintf(name, sizeof(name), "host-%u.example.net", i);
            ASSERT_EQ(sr_route_lookup(t, name, (size_t)len, &hit), SR_ROUTE_EXACT);
            ASSERT_EQ(hit.value, i);
            len = snprintf(name, sizeof(name), "host-%u.example.net", i + 1);
            ASSERT_EQ(sr_route_lookup(t, name, (size_t)len, &hit), SR_ROUTE_MISS);
        }
    }
    /* Duplicates are still found after all that growth. */
    ASSERT_EQ(sr_route_add(t, "HOST-0.example.net.", 19, 1, NULL), SR_ROUTE_DUPLICATE);
    sr_route_table_free(t);
}

/* Entry ids grow with insertion, hits report them, sr_route_lookup_below() ignores the
 * exact entry, and sr_route_foreach() visits every entry once. */
static void
count_entry(void *ctx, const struct sr_route_entry *e)
{
    size_t *n = ctx;

    ASSERT_NE(e->entry, 0);
    n[e->is_wildcard ? 1 : 0]++;
}

static void
test_entries(void)
{
    struct sr_route_table *t = sr_route_table_new();
    struct sr_route_hit hit;
    uint32_t ids[3];
    uint32_t dflt = 99;
    size_t n[2] = {0, 0};

    ASSERT(t != NULL);
    ASSERT_EQ(sr_route_insert(t, "a.example.com", 13, 1, NULL, &ids[0]), SR_ROUTE_ADDED);
    ASSERT_EQ(sr_route_insert(t, "*.example.com", 13, 2, NULL, &ids[1]), SR_ROUTE_ADDED);
    ASSERT_EQ(sr_route_insert(t, "*.com", 5, 3, NULL, &ids[2]), SR_ROUTE_ADDED);
    ASSERT_EQ(sr_route_insert(t, "default", 7, 4, NULL, &dflt), SR_ROUTE_ADDED);
    ASSERT_EQ(dflt, 0);
    ASSERT_LT(0, ids[0]);
    ASSERT_LT(ids[0], ids[1]);
    ASSERT_LT(ids[1], ids[2]);

    ASSERT_EQ(sr_route_lookup(t, "a.example.com", 13, &hit), SR_ROUTE_EXACT);
    ASSERT_EQ(hit.entry, ids[0]);
    ASSERT_EQ(sr_route_lookup_below(t, "a.example.com", 13, &hit), SR_ROUTE_WILDCARD);
    ASSERT_EQ(hit.entry, ids[1]);
    ASSERT_EQ(hit.value, 2);
    /* "*.example.com" looked up as its suffix: the wider wildcard, then the default. */
    ASSERT_EQ(sr_route_lookup_below(t, "example.com", 11, &hit), SR_ROUTE_WILDCARD);
    ASSERT_EQ(hit.entry, ids[2]);
    ASSERT_EQ(sr_route_lookup_below(t, "com", 3, &hit), SR_ROUTE_DEFAULT);
    ASSERT_EQ(hit.entry, 0);
    ASSERT_EQ(hit.value, 4);

    sr_route_foreach(t, count_entry, n);
    ASSERT_EQ(n[0], 1);
    ASSERT_EQ(n[1], 2);
    sr_route_table_free(t);
}

int
main(void)
{
    test_entries();
    test_table();
    test_empty_and_no_default();
    test_remap();
    test_big();
    return 0;
}
