/* SPDX-License-Identifier: MIT */
/* The lint rules of lint.h. Every rule is a question the route table already answers in
 * O(name length) (sr_route_lookup_below: "what would this name get without this entry?"),
 * asked once per route: O(n) lookups, plus a binary search for each finding's line and one
 * sort of the findings. Findings are collected and sorted by line, since the table hands
 * its entries over in hash order. */
#include "sniroute/config/lint.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sniroute/config/access.h"
#include "sniroute/config/addr.h"
#include "sniroute/config/route.h"

struct finding {
    unsigned line;
    size_t seq; /* order of discovery, for a stable sort */
    enum sr_lint_severity severity;
    char *msg;
};

struct lint {
    const struct sr_config *cfg;
    const char *path;
    struct finding *items;
    size_t n;
    size_t cap;
    size_t n_warnings;
    bool is_oom;

    /* While walking one table. */
    const struct sr_routes *routes;
    const struct sr_alpn_routes *alpn; /* NULL: the plain table */
};

static void add(struct lint *lt, enum sr_lint_severity severity, unsigned line, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));

/* Where position <pos> is, for a finding there: "PATH" and its line. */
static const char *
locate(const struct lint *lt, unsigned pos, unsigned *line, size_t *file)
{
    const char *name = sr_config_locate(lt->cfg, pos, line, file);

    return name != NULL && *file != 0 ? name : lt->path;
}

/* Another route's place, as a finding at position <at> names it: "line N" in the same
 * file, "FILE:N" in another (an included one, or the main file from an included one). */
static const char *
other_place(const struct lint *lt, unsigned at, unsigned pos, char *buf, size_t cap)
{
    size_t at_file;
    size_t file;
    unsigned line;
    const char *name;

    (void)locate(lt, at, &line, &at_file);
    name = locate(lt, pos, &line, &file);
    if (file == at_file || pos == 0) {
        snprintf(buf, cap, "line %u", line);
    } else {
        snprintf(buf, cap, "%s:%u", name, line);
    }
    return buf;
}

static void
add(struct lint *lt, enum sr_lint_severity severity, unsigned line, const char *fmt, ...)
{
    const char *kind = severity == SR_LINT_WARNING ? "warning" : "note";
    char text[1024 + 4096];
    va_list ap;
    int head;
    int n;

    if (line > 0) {
        size_t file;
        unsigned file_line;
        const char *name = locate(lt, line, &file_line, &file);

        head = snprintf(text, sizeof(text), "%s:%u: %s: ", name, file_line, kind);
    } else {
        head = snprintf(text, sizeof(text), "%s: %s: ", lt->path, kind);
    }
    if (head < 0 || (size_t)head >= sizeof(text)) {
        head = 0;
    }
    va_start(ap, fmt);
    n = vsnprintf(text + head, sizeof(text) - (size_t)head, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if (lt->n == lt->cap) {
        size_t cap = lt->cap ? lt->cap * 2 : 16;
        struct finding *items = realloc(lt->items, cap * sizeof(*items));

        if (items == NULL) {
            lt->is_oom = true;
            return;
        }
        lt->items = items;
        lt->cap = cap;
    }
    lt->items[lt->n].msg = strdup(text);
    if (lt->items[lt->n].msg == NULL) {
        lt->is_oom = true;
        return;
    }
    lt->items[lt->n].line = line;
    lt->items[lt->n].seq = lt->n;
    lt->items[lt->n].severity = severity;
    lt->n++;
    if (severity == SR_LINT_WARNING) {
        lt->n_warnings++;
    }
}

static int
cmp_finding(const void *a, const void *b)
{
    const struct finding *x = a;
    const struct finding *y = b;

    if (x->line != y->line) {
        return x->line < y->line ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : 0;
}

/* A key as written in the config: "name", "*.suffix" or "default", then "[proto]". */
static void
format_key(char *buf, size_t cap, const struct sr_route_hit *hit, const char *name, size_t len,
           const struct sr_alpn_routes *a)
{
    int n;

    switch (hit->kind) {
    case SR_ROUTE_EXACT:
        n = snprintf(buf, cap, "%.*s", (int)len, name);
        break;
    case SR_ROUTE_WILDCARD:
        n = snprintf(buf, cap, "*.%.*s", (int)hit->suffix_len, hit->suffix);
        break;
    default:
        n = snprintf(buf, cap, "default");
        break;
    }
    if (a != NULL && n > 0 && (size_t)n < cap) {
        snprintf(buf + n, cap - (size_t)n, "[%.*s]", (int)a->proto_len, a->proto);
    }
}

/* Would some conditioned table other than <self> route <name>? Then dropping a conditioned
 * route for it could hand a client to that table instead of the plain one. */
static bool
other_alpn_matches(const struct sr_routes *r, const struct sr_alpn_routes *self, const char *name,
                   size_t len)
{
    struct sr_route_hit hit;
    size_t i;

    for (i = 0; i < r->n_alpn; i++) {
        if (&r->alpn[i] != self &&
            sr_route_lookup(r->alpn[i].table, name, len, &hit) != SR_ROUTE_MISS) {
            return true;
        }
    }
    return false;
}

static void
on_entry(void *ctx, const struct sr_route_entry *e)
{
    struct lint *lt = ctx;
    const struct sr_routes *r = lt->routes;
    const struct sr_alpn_routes *a = lt->alpn;
    const struct sr_route_table *t = a != NULL ? a->table : r->table;
    const struct sr_route_lines *lines = a != NULL ? &a->lines : &r->lines;
    unsigned line = sr_config_entry_line(lines, e->entry);
    struct sr_route_hit self = {e->is_wildcard ? SR_ROUTE_WILDCARD : SR_ROUTE_EXACT, e->value,
                                e->key, e->key_len, e->entry};
    struct sr_route_hit below;
    struct sr_route_hit plain;
    char key[SR_NAME_MAX + 80];
    char other[SR_NAME_MAX + 80];
    char place[4200];

    format_key(key, sizeof(key), &self, e->key, e->key_len, a);

    /* Redundant within its own table: the route that would take over says the same. */
    sr_route_lookup_below(t, e->key, e->key_len, &below);
    if (below.kind != SR_ROUTE_MISS && below.value == e->value) {
        format_key(other, sizeof(other), &below, NULL, 0, a);
        add(lt, SR_LINT_WARNING, line,
            "routes '%s': route '%s' is redundant: without it, '%s' (%s) sends %s to the "
            "same upstream (hint: remove it, or point it elsewhere)",
            r->name, key, other,
            other_place(lt, line, sr_config_route_line(lines, &below), place, sizeof(place)),
            e->is_wildcard ? "its names" : "it");
        return;
    }

    /* An exact NAME[PROTO] that only repeats the plain route: when nothing else with a
     * condition can take NAME, dropping it leaves clients to the plain table. */
    if (a != NULL && !e->is_wildcard && below.kind == SR_ROUTE_MISS &&
        !other_alpn_matches(r, a, e->key, e->key_len) &&
        sr_route_lookup(r->table, e->key, e->key_len, &plain) != SR_ROUTE_MISS &&
        plain.value == e->value) {
        format_key(other, sizeof(other), &plain, e->key, e->key_len, NULL);
        add(lt, SR_LINT_WARNING, line,
            "routes '%s': route '%s' is redundant: the plain route '%s' (%s) sends it to "
            "the same upstream whatever the client offers (hint: remove the [%.*s] route, or "
            "point it elsewhere)",
            r->name, key, other,
            other_place(lt, line, sr_config_route_line(&r->lines, &plain), place, sizeof(place)),
            (int)a->proto_len, a->proto);
        return;
    }

    /* "*.example.com" never matches "example.com": say so when nothing else routes it. */
    if (a == NULL && e->is_wildcard &&
        sr_route_lookup(r->table, e->key, e->key_len, &plain) == SR_ROUTE_MISS &&
        !other_alpn_matches(r, NULL, e->key, e->key_len)) {
        add(lt, SR_LINT_WARNING, line,
            "routes '%s': wildcard '%s' does not match '%.*s' itself, and no other route does: "
            "clients asking for it get an unrecognized_name alert (hint: add '%.*s = ...' if "
            "it belongs with the wildcard)",
            r->name, key, (int)e->key_len, e->key, (int)e->key_len, e->key);
    }
}

/* The first line of a table's routes, default included; 0 for an empty table. */
static unsigned
first_line(const struct sr_route_lines *lines)
{
    unsigned line = lines->n > 0 ? lines->items[0].line : 0; /* sorted: insertion order */

    if (lines->default_line != 0 && (line == 0 || lines->default_line < line)) {
        line = lines->default_line;
    }
    return line;
}

/* A protocol = http listener routes by Host and never looks at ALPN: in a section only such
 * listeners use, every NAME[PROTO] route is dead. */
static void
lint_alpn_on_http(struct lint *lt, size_t routes)
{
    const struct sr_config *cfg = lt->cfg;
    const struct sr_routes *r = &cfg->routes[routes];
    size_t n_users = 0;
    size_t n_http = 0;
    size_t i;

    for (i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].routes == routes) {
            n_users++;
            n_http += cfg->listeners[i].is_http ? 1 : 0;
        }
    }
    if (n_users == 0 || n_http < n_users) {
        return;
    }
    for (i = 0; i < r->n_alpn; i++) {
        add(lt, SR_LINT_WARNING, first_line(&r->alpn[i].lines),
            "routes '%s': routes with the ALPN condition [%.*s] never match: every listener "
            "using this section has protocol = http, which routes by Host alone (hint: move "
            "them to a section a TLS listener uses)",
            r->name, (int)r->alpn[i].proto_len, r->alpn[i].proto);
    }
}

static void
lint_routes(struct lint *lt)
{
    const struct sr_config *cfg = lt->cfg;
    size_t i;
    size_t j;

    for (i = 0; i < cfg->n_routes; i++) {
        const struct sr_routes *r = &cfg->routes[i];

        for (j = 0; j < cfg->n_listeners; j++) {
            if (cfg->listeners[j].routes == i) {
                break;
            }
        }
        if (j == cfg->n_listeners) {
            add(lt, SR_LINT_WARNING, r->line,
                "routes '%s' is used by no listener (hint: name it in a listener's "
                "'routes =', or remove it)",
                r->name);
        }
        lint_alpn_on_http(lt, i);
        lt->routes = r;
        lt->alpn = NULL;
        sr_route_foreach(r->table, on_entry, lt);
        for (j = 0; j < r->n_alpn; j++) {
            lt->alpn = &r->alpn[j];
            sr_route_foreach(r->alpn[j].table, on_entry, lt);
        }
    }
}

/* A glob that matched no file is allowed (a tenant directory may be empty for a while),
 * but a typo in it looks the same. */
static void
lint_includes(struct lint *lt)
{
    const struct sr_config *cfg = lt->cfg;
    size_t i;

    for (i = 0; i < cfg->n_includes; i++) {
        const struct sr_config_include *inc = &cfg->includes[i];

        if (inc->n_files == 0) {
            add(lt, SR_LINT_WARNING, inc->line,
                "routes '%s': include '%s' matches no file, so it adds no route (hint: check "
                "the path; it is fine while that directory is empty)",
                cfg->routes[inc->routes].name, inc->pattern);
        }
    }
}

static void
lint_pools(struct lint *lt)
{
    const struct sr_config *cfg = lt->cfg;
    bool *is_used = calloc(cfg->n_pools + 1, sizeof(*is_used));
    size_t i;

    if (is_used == NULL) {
        lt->is_oom = true;
        return;
    }
    for (i = 0; i < cfg->n_upstreams; i++) {
        if (cfg->upstreams[i].pool != 0) {
            is_used[cfg->upstreams[i].pool - 1] = true;
        }
    }
    for (i = 0; i < cfg->n_pools; i++) {
        if (!is_used[i]) {
            add(lt, SR_LINT_WARNING, cfg->pools[i].line,
                "upstream '%s' is named by no route and no fallback (hint: use it as a route "
                "target, 'NAME = %s', or remove it)",
                cfg->pools[i].name, cfg->pools[i].name);
        }
    }
    free(is_used);
}

/* Allow and deny lines (access.h) that can never take effect or repeat another: O(n^2) in
 * a section's ranges, at most SR_ACCESS_RULES_MAX of them. <what> names the section. */
static void
lint_access_list(struct lint *lt, const struct sr_access_list *acl, const char *what)
{
    char range[SR_CIDR_TEXT_MAX + 1];
    char other[SR_CIDR_TEXT_MAX + 1];
    char place[4200];
    size_t i;
    size_t j;

    for (i = 0; i < acl->n; i++) {
        const struct sr_access_rule *r = &acl->rules[i];
        const char *kind = sr_access_kind_name((enum sr_access_kind)r->kind);
        size_t lo = r->kind == SR_ACCESS_DENY ? 0 : acl->n_deny;
        size_t hi = r->kind == SR_ACCESS_DENY ? acl->n_deny : acl->n;
        bool is_reported = false;

        sr_cidr_format(&r->cidr, range, sizeof(range));
        /* An allow inside a deny: the deny always wins. */
        for (j = 0; j < acl->n_deny && r->kind == SR_ACCESS_ALLOW; j++) {
            if (sr_access_rule_within(r, &acl->rules[j])) {
                sr_cidr_format(&acl->rules[j].cidr, other, sizeof(other));
                add(lt, SR_LINT_WARNING, r->line,
                    "%s: allow %s never takes effect: deny %s (%s) refuses every address in "
                    "it, and deny beats allow whatever the order (hint: remove one of them)",
                    what, range, other,
                    other_place(lt, r->line, acl->rules[j].line, place, sizeof(place)));
                is_reported = true;
                break;
            }
        }
        /* The same range twice, or inside a broader one of the same kind. */
        for (j = lo; j < hi && !is_reported; j++) {
            const struct sr_access_rule *o = &acl->rules[j];
            bool is_same;

            if (j == i || !sr_access_rule_within(r, o)) {
                continue;
            }
            is_same = sr_access_rule_within(o, r);
            if (is_same && j > i) {
                continue; /* the later of two equal ranges is the one reported */
            }
            sr_cidr_format(&o->cidr, other, sizeof(other));
            if (is_same) {
                add(lt, SR_LINT_WARNING, r->line, "%s: %s %s is listed twice (first at %s)", what,
                    kind, range, other_place(lt, r->line, o->line, place, sizeof(place)));
            } else {
                add(lt, SR_LINT_WARNING, r->line,
                    "%s: %s %s changes nothing: it lies inside %s %s (%s) (hint: remove it)", what,
                    kind, range, kind, other,
                    other_place(lt, r->line, o->line, place, sizeof(place)));
            }
            is_reported = true;
        }
        /* A deny beside allow lines that admit none of its addresses: those are refused
         * anyway. */
        if (!is_reported && r->kind == SR_ACCESS_DENY && acl->n > acl->n_deny) {
            for (j = acl->n_deny; j < acl->n; j++) {
                if (sr_access_rules_overlap(r, &acl->rules[j])) {
                    break;
                }
            }
            if (j == acl->n) {
                add(lt, SR_LINT_WARNING, r->line,
                    "%s: deny %s changes nothing: no allow line admits any address in it, and "
                    "a section with allow lines refuses every address it does not allow (hint: "
                    "remove it)",
                    what, range);
            }
        }
    }
}

static void
lint_access(struct lint *lt)
{
    const struct sr_config *cfg = lt->cfg;
    char what[SR_CONFIG_NAME_MAX + 16];
    size_t i;

    for (i = 0; i < cfg->n_listeners; i++) {
        snprintf(what, sizeof(what), "listener '%s'", cfg->listeners[i].name);
        lint_access_list(lt, &cfg->listeners[i].access, what);
    }
    for (i = 0; i < cfg->n_pools; i++) {
        snprintf(what, sizeof(what), "upstream '%s'", cfg->pools[i].name);
        lint_access_list(lt, &cfg->pools[i].access, what);
    }
}

/* A host name to resolve, and the first line that needs it. */
struct host {
    const char *name;
    unsigned line;
    const char *where; /* "upstream" or the pool's name */
};

static int
cmp_host(const void *a, const void *b)
{
    const struct host *x = a;
    const struct host *y = b;
    int c = strcmp(x->name, y->name);

    if (c != 0) {
        return c;
    }
    return x->line < y->line ? -1 : x->line > y->line ? 1 : 0;
}

static void
lint_hosts(struct lint *lt, const struct sr_lint_options *opt)
{
    const struct sr_config *cfg = lt->cfg;
    size_t max = opt->max_resolve != 0 ? opt->max_resolve : SR_LINT_RESOLVE_MAX;
    struct host *hosts;
    const char **names = NULL;
    const char **why = NULL;
    size_t n_cap = cfg->n_upstreams;
    size_t n = 0;
    size_t n_distinct = 0;
    size_t i;
    size_t j;

    for (i = 0; i < cfg->n_pools; i++) {
        n_cap += cfg->pools[i].n_servers;
    }
    if (n_cap == 0) {
        return;
    }
    hosts = malloc(n_cap * sizeof(*hosts));
    if (hosts == NULL) {
        lt->is_oom = true;
        return;
    }
    for (i = 0; i < cfg->n_upstreams; i++) {
        const struct sr_upstream *u = &cfg->upstreams[i];

        if (u->pool == 0 && u->addr.kind == SR_ADDR_NAME) {
            hosts[n++] = (struct host){u->addr.host, u->line, NULL};
        }
    }
    for (i = 0; i < cfg->n_pools; i++) {
        for (j = 0; j < cfg->pools[i].n_servers; j++) {
            if (cfg->pools[i].servers[j].kind == SR_ADDR_NAME) {
                hosts[n++] = (struct host){cfg->pools[i].servers[j].host, cfg->pools[i].line,
                                           cfg->pools[i].name};
            }
        }
    }
    qsort(hosts, n, sizeof(*hosts), cmp_host);
    for (i = 0; i < n; i++) {
        if (n_distinct == 0 || strcmp(hosts[n_distinct - 1].name, hosts[i].name) != 0) {
            hosts[n_distinct++] = hosts[i]; /* the lowest line of each name comes first */
        }
    }
    if (n_distinct > max) {
        add(lt, SR_LINT_NOTE, 0,
            "%zu distinct upstream host names, more than %zu: not checking that they resolve",
            n_distinct, max);
        free(hosts);
        return;
    }
    if (n_distinct > 0) {
        names = malloc(n_distinct * sizeof(*names));
        why = calloc(n_distinct, sizeof(*why));
    }
    if (n_distinct > 0 && (names == NULL || why == NULL)) {
        lt->is_oom = true;
    } else if (n_distinct > 0) {
        for (i = 0; i < n_distinct; i++) {
            names[i] = hosts[i].name;
        }
        opt->resolve(opt->resolve_ctx, names, n_distinct, why);
        for (i = 0; i < n_distinct; i++) {
            if (why[i] == NULL) {
                continue;
            }
            if (hosts[i].where != NULL) {
                add(lt, SR_LINT_WARNING, hosts[i].line,
                    "upstream '%s': server host '%s' does not resolve here: %s (hint: it is "
                    "resolved at each connect; until it resolves, the pool skips it)",
                    hosts[i].where, hosts[i].name, why[i]);
            } else {
                add(lt, SR_LINT_WARNING, hosts[i].line,
                    "upstream host '%s' does not resolve here: %s (hint: it is resolved at each "
                    "connect; until it resolves, connections routed there fail with "
                    "resolve_failed)",
                    hosts[i].name, why[i]);
            }
        }
    }
    free(names);
    free(why);
    free(hosts);
}

size_t
sr_lint_run(const struct sr_config *cfg, const char *path, const struct sr_lint_options *opt,
            sr_lint_fn on_msg, void *ctx)
{
    struct lint lt;
    size_t i;

    memset(&lt, 0, sizeof(lt));
    lt.cfg = cfg;
    lt.path = path;
    lint_routes(&lt);
    lint_includes(&lt);
    lint_pools(&lt);
    lint_access(&lt);
    if (opt != NULL && opt->resolve != NULL) {
        lint_hosts(&lt, opt);
    }
    if (lt.is_oom) {
        add(&lt, SR_LINT_NOTE, 0, "out of memory: some checks were skipped");
    }
    if (lt.n > 0) {
        qsort(lt.items, lt.n, sizeof(*lt.items), cmp_finding);
    }
    for (i = 0; i < lt.n; i++) {
        on_msg(ctx, lt.items[i].severity, lt.items[i].msg);
        free(lt.items[i].msg);
    }
    free(lt.items);
    return lt.n_warnings;
}
