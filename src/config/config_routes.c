/* SPDX-License-Identifier: MIT */
/* The config loader's [routes] keys and route targets: each route (NAME, *.SUFFIX, default,
 * NAME[ALPN]) into its table with its line, each target (HOST:PORT or a pool's name) interned
 * once into cfg->upstreams, which listeners' fallback shares; and the public lookups of a
 * route's line. Not here: what makes a name valid (route.c, name.c), the check that a named
 * pool exists (config_check.c, at the end of the file). */
#include "sniroute/config/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sniroute/config/addr.h"
#include "sniroute/wire/name.h"
#include "sniroute/config/route.h"

#include "config_loader.h"

static uint32_t
hash_text(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    while (*s != '\0') {
        h = (h ^ (uint8_t)*s++) * 16777619u;
    }
    return h;
}

/* Over what is_same_addr() compares, without formatting the address. */
static uint32_t
upstream_hash(const struct sr_addr *addr)
{
    uint32_t h = hash_text(addr->host);

    h = (h ^ addr->port) * 16777619u;
    return (h ^ (uint32_t)addr->kind) * 16777619u;
}

/* The index of <addr> in cfg->upstreams, adding it if new; UINT32_MAX when out of memory.
 * Upstreams are few in practice but one per route is possible, hence the hash set. */
static uint32_t
intern_upstream(struct loader *ld, const struct sr_addr *addr)
{
    struct sr_config *cfg = ld->cfg;
    size_t mask;
    size_t i;

    /* Indexes are uint32_t (route values), slots hold index + 1 and UINT32_MAX means "bad
     * address": a config needs billions of lines to get here, but must not wrap. */
    if (cfg->n_upstreams >= UINT32_MAX - 1) {
        report(ld, ld->line, "too many distinct upstreams");
        return UINT32_MAX;
    }
    if ((cfg->n_upstreams + 1) * 2 > ld->up_slots_cap) {
        size_t cap = ld->up_slots_cap ? ld->up_slots_cap * 2 : 64;
        uint32_t *slots = calloc(cap, sizeof(*slots));

        if (slots == NULL) {
            report_oom(ld);
            return UINT32_MAX;
        }
        for (i = 0; i < cfg->n_upstreams; i++) {
            size_t j = upstream_hash(&cfg->upstreams[i].addr) & (cap - 1);

            while (slots[j] != 0) {
                j = (j + 1) & (cap - 1);
            }
            slots[j] = (uint32_t)i + 1;
        }
        free(ld->up_slots);
        ld->up_slots = slots;
        ld->up_slots_cap = cap;
    }
    mask = ld->up_slots_cap - 1;
    for (i = upstream_hash(addr) & mask; ld->up_slots[i] != 0; i = (i + 1) & mask) {
        if (is_same_addr(&cfg->upstreams[ld->up_slots[i] - 1].addr, addr)) {
            return ld->up_slots[i] - 1;
        }
    }
    if (!grow(ld, (void **)&cfg->upstreams, &ld->upstreams_cap, cfg->n_upstreams + 1,
              sizeof(*cfg->upstreams))) {
        return UINT32_MAX;
    }
    cfg->upstreams[cfg->n_upstreams].addr = *addr;
    cfg->upstreams[cfg->n_upstreams].line = ld->line;
    ld->up_slots[i] = (uint32_t)cfg->n_upstreams + 1;
    return (uint32_t)cfg->n_upstreams++;
}

/* A route target that names a pool: one target per pool name, found by a scan (pools are
 * few). <key> and <is_route> say who named it first (see target_where). Returns its index
 * in cfg->upstreams, UINT32_MAX when out of memory. */
static const char *target_where(const struct loader *ld, const char *key, bool is_route, char *buf,
                                size_t cap);

static uint32_t
intern_pool_ref(struct loader *ld, const char *name, const char *key, bool is_route)
{
    struct sr_config *cfg = ld->cfg;
    size_t i;

    for (i = 0; i < ld->n_pool_refs; i++) {
        if (strcmp(ld->pool_refs[i].name, name) == 0) {
            return ld->pool_refs[i].upstream;
        }
    }
    if (cfg->n_upstreams >= UINT32_MAX - 1 ||
        !grow(ld, (void **)&ld->pool_refs, &ld->pool_refs_cap, ld->n_pool_refs + 1,
              sizeof(*ld->pool_refs)) ||
        !grow(ld, (void **)&cfg->upstreams, &ld->upstreams_cap, cfg->n_upstreams + 1,
              sizeof(*cfg->upstreams))) {
        return UINT32_MAX;
    }
    memset(&cfg->upstreams[cfg->n_upstreams], 0, sizeof(cfg->upstreams[0]));
    cfg->upstreams[cfg->n_upstreams].line = ld->line;
    ld->pool_refs[ld->n_pool_refs].upstream = (uint32_t)cfg->n_upstreams;
    snprintf(ld->pool_refs[ld->n_pool_refs].name, sizeof(ld->pool_refs[0].name), "%s", name);
    ld->pool_refs[ld->n_pool_refs].line = ld->line;
    target_where(ld, key, is_route, ld->pool_refs[ld->n_pool_refs].where,
                 sizeof(ld->pool_refs[0].where));
    ld->n_pool_refs++;
    return (uint32_t)cfg->n_upstreams++;
}

/* Who names a target, for messages: "routes 'm': route 'KEY'" when <is_route>, otherwise
 * "listener 'l': KEY". Formatted only when needed, never once per route. */
static const char *
target_where(const struct loader *ld, const char *key, bool is_route, char *buf, size_t cap)
{
    char label[LABEL_MAX];

    section_label(ld, label, sizeof(label));
    if (is_route) {
        snprintf(buf, cap, "%s: route '%s'", label, key);
    } else {
        snprintf(buf, cap, "%s: %s", label, key);
    }
    return buf;
}

/* A route target as a value names it: HOST:PORT, or a bare name for an [upstream NAME]
 * pool (which may come later in the file). <key> and <is_route> say who named it, for
 * messages (see target_where). Returns its index in cfg->upstreams, or UINT32_MAX after
 * reporting a bad address. */
uint32_t
sr__config_intern_target(struct loader *ld, const char *value, const char *key, bool is_route)
{
    char where[sizeof(((struct pool_ref *)0)->where)];
    size_t len = strlen(value);
    enum sr_addr_error err;
    struct sr_addr addr;
    uint32_t index;

    /* Big route maps name a few targets over and over, usually on consecutive lines: the
     * same text as last time is the same target, without parsing or hashing it again. */
    if (ld->last_target_len == len && len > 0 && memcmp(ld->last_target, value, len) == 0) {
        return ld->last_target_index;
    }
    if (strpbrk(value, ":[") == NULL && is_valid_section_name(value, len)) {
        index = intern_pool_ref(ld, value, key, is_route);
    } else {
        err = sr_addr_parse(value, len, &addr);
        if (err != SR_ADDR_OK) {
            report(ld, ld->line, "%s: bad upstream '%s': %s",
                   target_where(ld, key, is_route, where, sizeof(where)), value,
                   sr_addr_error_str(err));
            return UINT32_MAX;
        }
        index = intern_upstream(ld, &addr);
    }
    if (index != UINT32_MAX && len < sizeof(ld->last_target)) {
        memcpy(ld->last_target, value, len);
        ld->last_target_len = len;
        ld->last_target_index = index;
    }
    return index;
}

/* "NAME[PROTO]": split off an ALPN condition. Returns the length of NAME, with <*proto>
 * and <*proto_len> set (proto_len 0: no condition), or 0 after reporting a bad one. */
static size_t
split_alpn(struct loader *ld, const char *key, const char **proto, size_t *proto_len)
{
    const char *open = strchr(key, '[');
    size_t len = strlen(key);
    char label[LABEL_MAX];
    size_t i;

    *proto = NULL;
    *proto_len = 0;
    if (open == NULL) {
        return len;
    }
    *proto = open + 1;
    *proto_len = len - (size_t)(open - key) - 2;
    if (key[len - 1] != ']' || open == key || *proto_len == 0 || *proto_len > SR_CONFIG_ALPN_MAX) {
        report(ld, ld->line,
               "%s: bad route '%s': an ALPN condition is NAME[PROTOCOL], 1 to %d characters, "
               "as in example.com[acme-tls/1]",
               section_label(ld, label, sizeof(label)), key, SR_CONFIG_ALPN_MAX);
        return 0;
    }
    for (i = 0; i < *proto_len; i++) {
        unsigned char c = (unsigned char)(*proto)[i];

        /* ALPN ids are bytes; in a config they are printable ASCII (RFC 7301 registry). */
        if (c <= ' ' || c >= 0x7f || c == '[' || c == ']') {
            report(ld, ld->line, "%s: bad route '%s': character not allowed in an ALPN id",
                   section_label(ld, label, sizeof(label)), key);
            return 0;
        }
    }
    return (size_t)(open - key);
}

/* The routes for ALPN protocol <proto> in routes <r>, added on first use. */
static struct sr_alpn_routes *
alpn_routes(struct loader *ld, struct sr_routes *r, const char *proto, size_t proto_len)
{
    struct sr_alpn_routes *grown;
    size_t i;

    for (i = 0; i < r->n_alpn; i++) {
        if (r->alpn[i].proto_len == proto_len && memcmp(r->alpn[i].proto, proto, proto_len) == 0) {
            return &r->alpn[i];
        }
    }
    grown = realloc(r->alpn, (r->n_alpn + 1) * sizeof(*grown));
    if (grown == NULL) {
        report_oom(ld);
        return NULL;
    }
    r->alpn = grown;
    memset(&grown[r->n_alpn], 0, sizeof(grown[0]));
    memcpy(grown[r->n_alpn].proto, proto, proto_len);
    grown[r->n_alpn].proto_len = proto_len;
    grown[r->n_alpn].table = sr_route_table_new();
    if (grown[r->n_alpn].table == NULL) {
        report_oom(ld);
        return NULL;
    }
    return &grown[r->n_alpn++];
}

/* Remember that <entry> of the table <lines> describes was written on the current line.
 * Entries arrive in increasing order, so the array stays sorted. */
static void
note_line(struct loader *ld, struct sr_route_lines *lines, uint32_t entry)
{
    if (entry == 0) {
        lines->default_line = ld->line;
        return;
    }
    if (!grow(ld, (void **)&lines->items, &lines->cap, lines->n + 1, sizeof(*lines->items))) {
        return;
    }
    lines->items[lines->n].entry = entry;
    lines->items[lines->n].line = ld->line;
    lines->n++;
}

unsigned
sr_config_entry_line(const struct sr_route_lines *lines, uint32_t entry)
{
    size_t lo = 0;
    size_t hi = lines->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (lines->items[mid].entry == entry) {
            return lines->items[mid].line;
        }
        if (lines->items[mid].entry < entry) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return 0;
}

unsigned
sr_config_route_line(const struct sr_route_lines *lines, const struct sr_route_hit *hit)
{
    switch (hit->kind) {
    case SR_ROUTE_DEFAULT:
        return lines->default_line;
    case SR_ROUTE_EXACT:
    case SR_ROUTE_WILDCARD:
        return sr_config_entry_line(lines, hit->entry);
    case SR_ROUTE_MISS:
        break;
    }
    return 0;
}

void
sr__config_set_route(struct loader *ld, const struct keyword *kw, const char *key,
                     const char *value)
{
    struct sr_routes *r = &ld->cfg->routes[ld->sec_index];
    struct sr_route_table *table;
    struct sr_route_lines *lines;
    uint32_t entry = 0;
    const char *proto;
    size_t proto_len;
    struct routes_tmp *rt = &ld->rtmp[ld->sec_index];
    uint32_t upstream;
    char label[LABEL_MAX];
    char at[WHERE_MAX];
    enum sr_route_add_result res;
    size_t len;
    size_t skip;

    (void)kw;
    rt->n_keys++;
    /* The address first, but the key is added whatever it says, so that a later duplicate
     * of this key is still reported. */
    upstream = sr__config_intern_target(ld, value, key, true);
    len = split_alpn(ld, key, &proto, &proto_len);
    if (len == 0) {
        return;
    }
    if (proto_len == 0) {
        table = r->table;
        lines = &r->lines;
    } else {
        struct sr_alpn_routes *a = alpn_routes(ld, r, proto, proto_len);

        if (a == NULL) {
            return;
        }
        table = a->table;
        lines = &a->lines;
    }
    if (table == NULL) {
        return;
    }
    /* The value is the upstream index itself (UINT32_MAX after a bad address, which fails
     * the load): nothing per route besides the table and its line is kept while loading,
     * so a reload of a big map needs little beyond the old and the new table. */
    res = sr_route_insert(table, key, len, upstream, NULL, &entry);
    switch (res) {
    case SR_ROUTE_ADDED:
        note_line(ld, lines, entry);
        break;
    case SR_ROUTE_DUPLICATE:
        report(ld, ld->line, "%s: duplicate route '%s' (first at %s)",
               section_label(ld, label, sizeof(label)), key,
               where(ld, entry == 0 ? lines->default_line : sr_config_entry_line(lines, entry), at,
                     sizeof(at)));
        break;
    case SR_ROUTE_BAD_NAME:
        /* Say what is wrong with the name (of the suffix, for "*.suffix"): the route module
         * only says that it is bad. */
        skip = (len >= 2 && key[0] == '*' && key[1] == '.') ? 2 : 0;
        report(ld, ld->line, "%s: bad route '%s': %s", section_label(ld, label, sizeof(label)), key,
               sr_name_error_str(sr_name_validate((const uint8_t *)key + skip, len - skip)));
        break;
    case SR_ROUTE_BAD_WILDCARD:
        report(ld, ld->line, "%s: bad route '%s': %s", section_label(ld, label, sizeof(label)), key,
               sr_route_add_result_str(res));
        break;
    case SR_ROUTE_NOMEM:
        report_oom(ld);
        break;
    }
}
