/* SPDX-License-Identifier: MIT */
/* Explain a routing decision in words. The decision is sr_decide()'s, the one the
 * connection path takes: ALPN tables in the client's order of preference, then the plain
 * table; exact, longest wildcard, default. Each step that decided is named with the config
 * line it came from (the config's side table of lines). Formatting only: nothing here can change a route. */
#include "sniroute/config/explain.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "sniroute/config/addr.h"
#include "sniroute/config/decide.h"
#include "sniroute/wire/hex.h"
#include "sniroute/wire/name.h"
#include "sniroute/config/pool.h"
#include "sniroute/config/route.h"

/* The text so far: like snprintf, it counts what did not fit. */
struct out {
    char *buf;
    size_t cap;
    size_t len;
    const char *path;
    const struct sr_config *cfg;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(o->len < o->cap ? o->buf + o->len : NULL, o->len < o->cap ? o->cap - o->len : 0,
                  fmt, ap);
    va_end(ap);
    if (n > 0) {
        o->len += (size_t)n;
    }
}

/* "PATH:LINE" or "line LINE" for position <pos> (an included file's is always "FILE:LINE");
 * "line ?" for a line the config does not know. */
static void
put_line(struct out *o, unsigned pos)
{
    size_t file;
    unsigned line;
    const char *name = sr_config_locate(o->cfg, pos, &line, &file);

    if (pos == 0) {
        put(o, "line ?");
    } else if (name != NULL && file != 0) {
        put(o, "%s:%u", name, line);
    } else if (o->path != NULL) {
        put(o, "%s:%u", o->path, line);
    } else {
        put(o, "line %u", line);
    }
}

/* A route target: HOST:PORT, or a pool with its servers. */
static void
put_upstream(struct out *o, const struct sr_config *cfg, size_t index)
{
    const struct sr_upstream *u = &cfg->upstreams[index];
    char text[SR_ADDR_HOST_MAX + 16];
    size_t i;

    if (u->pool == 0) {
        sr_addr_format(&u->addr, text, sizeof(text));
        put(o, "%s", text);
        return;
    }
    {
        const struct sr_pool_config *p = &cfg->pools[u->pool - 1];

        put(o, "pool '%s' (", p->name);
        put_line(o, p->line);
        put(o, "), balance %s, servers:", sr_pool_balance_name(p->balance));
        for (i = 0; i < p->n_servers; i++) {
            sr_addr_format(&p->servers[i], text, sizeof(text));
            put(o, "%s %s", i == 0 ? "" : ",", text);
        }
    }
}

/* The key as it stands in the config (normalized): "name", "*.suffix" or "default", with
 * "[proto]" for a conditioned table. */
static void
put_key(struct out *o, const struct sr_route_hit *hit, const char *name, size_t name_len,
        const struct sr_alpn_routes *a)
{
    switch (hit->kind) {
    case SR_ROUTE_EXACT:
        put(o, "'%.*s", (int)name_len, name);
        break;
    case SR_ROUTE_WILDCARD:
        put(o, "'*.%.*s", (int)hit->suffix_len, hit->suffix);
        break;
    default:
        put(o, "'default");
        break;
    }
    if (a != NULL) {
        put(o, "[%.*s]", (int)a->proto_len, a->proto);
    }
    put(o, "'");
}

struct protos {
    const char *ptr[SR_EXPLAIN_ALPN_MAX];
    size_t len[SR_EXPLAIN_ALPN_MAX];
    size_t n;
};

/* Split the comma-separated list; false for an empty, overlong or unprintable entry. */
static bool
split_alpn(const char *s, size_t len, struct protos *p)
{
    size_t start = 0;
    size_t i;

    p->n = 0;
    if (s == NULL || len == 0) {
        return true;
    }
    for (i = 0; i <= len; i++) {
        if (i < len && s[i] != ',') {
            unsigned char c = (unsigned char)s[i];

            if (c <= ' ' || c >= 0x7f) {
                return false;
            }
            continue;
        }
        /* RFC 7301 section 3.1: a protocol id is 1 to 255 bytes. */
        if (i == start || i - start > 255 || p->n == SR_EXPLAIN_ALPN_MAX) {
            return false;
        }
        p->ptr[p->n] = s + start;
        p->len[p->n] = i - start;
        p->n++;
        start = i + 1;
    }
    return true;
}

/* The offered protocols in the wire format the decision takes (RFC 7301 3.1): each a
 * length byte and its bytes. */
struct wire_alpn {
    uint8_t bytes[SR_EXPLAIN_ALPN_MAX * 256];
    size_t len;
};

static void
protos_to_wire(const struct protos *p, struct wire_alpn *w)
{
    size_t i;

    w->len = 0;
    for (i = 0; i < p->n; i++) {
        w->bytes[w->len++] = (uint8_t)p->len[i];
        memcpy(w->bytes + w->len, p->ptr[i], p->len[i]);
        w->len += p->len[i];
    }
}

/* The routing decision a client naming <name> (NULL: no name) and offering <w> gets. */
static void
decide(const struct sr_config *cfg, const struct sr_listener_config *l, const char *name,
       size_t len, const struct wire_alpn *w, struct sr_decision *d)
{
    struct sr_first_bytes said = {
        .said = name != NULL ? SR_SAID_NAME : SR_SAID_NO_NAME,
        .name = (const uint8_t *)name,
        .name_len = len,
        .alpn = w->bytes,
        .alpn_len = w->len,
    };

    sr_decide(cfg, l, &said, d);
}

/* Does routes <r> have a table for any of the offered protocols? */
static bool
has_alpn_table(const struct sr_routes *r, const struct protos *p)
{
    size_t i;
    size_t j;

    for (i = 0; i < p->n; i++) {
        for (j = 0; j < r->n_alpn; j++) {
            if (r->alpn[j].proto_len == p->len[i] &&
                memcmp(r->alpn[j].proto, p->ptr[i], p->len[i]) == 0) {
                return true;
            }
        }
    }
    return false;
}

/* The wildcards that also match but lose to the longer one: each wider suffix in turn. */
static void
put_shadowed_wildcards(struct out *o, const struct sr_route_table *t,
                       const struct sr_route_lines *lines, const struct sr_route_hit *hit)
{
    struct sr_route_hit next = *hit;
    char suffix[SR_NAME_MAX + 1];
    size_t n = 0;

    while (next.kind == SR_ROUTE_WILDCARD) {
        memcpy(suffix, next.suffix, next.suffix_len);
        sr_route_lookup_below(t, suffix, next.suffix_len, &next);
        if (next.kind != SR_ROUTE_WILDCARD) {
            break;
        }
        put(o, "%s'*.%.*s' (", n++ == 0 ? "  also matching, less specific: " : ", ",
            (int)next.suffix_len, next.suffix);
        put_line(o, sr_config_route_line(lines, &next));
        put(o, ")");
    }
    if (n > 0) {
        put(o, "\n");
    }
}

/* One listener's block. Returns true if the name is routed there. */
static const char *
protocol_name(const struct sr_listener_config *l)
{
    return l->is_http ? "http" : l->is_quic ? "quic" : "tls";
}

/* What a client whose first bytes are not the listener's protocol gets, without fallback. */
static const char *
not_protocol_answer(const struct sr_listener_config *l)
{
    if (l->is_http) {
        return "400 Bad Request, then a close";
    }
    return l->is_quic ? "dropped" : "a close";
}

/* What one list's check said of the client: the rest of a line. */
static void
put_access(struct out *o, const struct sr_access_list *acl, const struct sr_access_result *r)
{
    char range[SR_CIDR_TEXT_MAX + 1];

    if (acl->n == 0) {
        put(o, "no allow or deny lines: every client\n");
        return;
    }
    if (r->rule != NULL) {
        if (sr_cidr_format(&r->rule->cidr, range, sizeof(range)) == 0) {
            range[0] = '\0';
        }
        put(o, "%s by %s %s (", r->is_allowed ? "allowed" : "refused",
            sr_access_kind_name((enum sr_access_kind)r->rule->kind), range);
        put_line(o, r->rule->line);
        put(o, ")%s\n", r->is_allowed && acl->n_deny > 0 ? ", no deny line matches" : "");
        return;
    }
    if (r->is_allowed) {
        put(o, "allowed: no deny line matches, and there is no allow line\n");
        return;
    }
    put(o, "refused: no allow line matches (%zu allow line(s), first at ", acl->n - acl->n_deny);
    put_line(o, acl->rules[acl->n_deny].line);
    put(o, ")\n");
}

/* With a client address: what the listener's and the routed upstream's rules say of it.
 * Returns true if the client is refused. */
static bool
explain_access(struct out *o, const struct sr_config *cfg, const struct sr_listener_config *l,
               const struct sr_first_bytes *said)
{
    struct sr_decision d;
    const struct sr_upstream *u;

    sr_decide(cfg, l, said, &d);
    put(o, "  client rules of the listener: ");
    put_access(o, &l->access, &d.listener_access);
    if (d.upstream_checked) {
        u = &cfg->upstreams[d.target];
        put(o, "  client rules of upstream '%s' (", cfg->pools[u->pool - 1].name);
        put_line(o, cfg->pools[u->pool - 1].line);
        put(o, "): ");
        put_access(o, &cfg->pools[u->pool - 1].access, &d.upstream_access);
    }
    if (d.refusal != SR_REFUSAL_DENIED) {
        put(o, "  access: allowed\n");
        return false;
    }
    put(o, "  access: denied, rule=%s: %s\n", d.denied_by,
        l->is_http   ? "403 Forbidden, then a close"
        : l->is_quic ? "its datagrams are dropped (nothing sent back)"
                     : "a TLS access_denied alert, then a close");
    return true;
}

static bool
explain_listener(struct out *o, const struct sr_config *cfg, const struct sr_listener_config *l,
                 const char *name, size_t len, const struct protos *p, const struct sockaddr *from,
                 bool *is_denied)
{
    const struct sr_routes *r = &cfg->routes[l->routes];
    const struct sr_alpn_routes *a;
    const struct sr_route_table *t = r->table;
    const struct sr_route_lines *lines = &r->lines;
    struct sr_route_hit hit;
    struct sr_decision d;
    struct wire_alpn w;
    bool uses_alpn = !l->is_http && p->n > 0;

    put(o, "\nlistener: %s (", l->name);
    put_line(o, l->line);
    put(o, "), protocol %s, routes '%s' (", protocol_name(l), r->name);
    put_line(o, r->line);
    put(o, ")\n");

    protos_to_wire(p, &w);
    decide(cfg, l, name, len, &w, &d);
    hit = d.hit;
    a = d.alpn;
    if (a != NULL) {
        t = a->table;
        lines = &a->lines;
    }
    if (hit.kind == SR_ROUTE_MISS) {
        put(o, "  match: none\n  why: no exact name, no wildcard above it, and no default\n");
        if (l->is_http) {
            put(o, "  result: no route: the client gets 421 Misdirected Request, then a close\n");
        } else if (l->is_quic) {
            put(o, "  result: no route: the client's datagrams are dropped (nothing is "
                   "forwarded, nothing sent back)\n");
        } else {
            put(o, "  result: no route: the client gets a TLS unrecognized_name alert, then a "
                   "close\n");
        }
    } else {
        put(o, "  match: %s ",
            hit.kind == SR_ROUTE_EXACT      ? "exact"
            : hit.kind == SR_ROUTE_WILDCARD ? "wildcard"
                                            : "default");
        put_key(o, &hit, name, len, a);
        put(o, " (");
        put_line(o, sr_config_route_line(lines, &hit));
        put(o, ")\n  why: ");
        if (a != NULL) {
            put(o,
                "the client offers %.*s and a route with that ALPN condition beats every "
                "route without one; ",
                (int)a->proto_len, a->proto);
        }
        switch (hit.kind) {
        case SR_ROUTE_EXACT:
            put(o, "an exact name beats every wildcard and the default\n");
            break;
        case SR_ROUTE_WILDCARD:
            put(o, "no exact entry; the longest matching wildcard wins\n");
            break;
        default:
            put(o, "no exact name and no wildcard matches\n");
            break;
        }
        if (hit.kind == SR_ROUTE_WILDCARD) {
            put_shadowed_wildcards(o, t, lines, &hit);
        }
        put(o, "  upstream: ");
        put_upstream(o, cfg, hit.value);
        put(o, "%s\n  result: routed\n", l->is_quic ? " (over UDP)" : "");
    }
    if (from != NULL) {
        struct sr_first_bytes said = {
            .said = SR_SAID_NAME,
            .name = (const uint8_t *)name,
            .name_len = len,
            .alpn = w.bytes,
            .alpn_len = w.len,
            .from = from,
        };

        *is_denied = explain_access(o, cfg, l, &said);
    }
    if (p->n > 0 && l->is_http) {
        put(o, "  alpn: not used (protocol = http routes by Host)\n");
    } else if (uses_alpn && a == NULL) {
        put(o, "  alpn: %s\n",
            has_alpn_table(r, p) ? "no route with a condition on an offered protocol matches; "
                                   "the plain routes decide"
                                 : "no route has a condition on an offered protocol");
    }

    /* What a client that names no host gets. */
    if (l->is_http) {
        put(o, "  without a host name (an IP literal as Host): ");
    } else {
        put(o, "  without SNI: ");
    }
    decide(cfg, l, NULL, 0, &w, &d);
    if (d.refusal == SR_REFUSAL_NO_SNI) {
        put(o, "rejected (no_sni = reject): %s\n",
            l->is_quic ? "its datagrams are dropped" : "a TLS handshake_failure alert");
    } else {
        const struct sr_alpn_routes *da = d.alpn;

        if (d.verdict != SR_VERDICT_ROUTE) {
            put(o, "no default: %s\n",
                l->is_http   ? "421 Misdirected Request"
                : l->is_quic ? "its datagrams are dropped"
                             : "a TLS unrecognized_name alert");
        } else {
            put(o, "default");
            if (da != NULL) {
                put(o, "[%.*s]", (int)da->proto_len, da->proto);
            }
            put(o, " (");
            put_line(o, da != NULL ? da->lines.default_line : r->lines.default_line);
            put(o, ") -> ");
            put_upstream(o, cfg, d.target);
            put(o, "\n");
        }
    }
    put(o, "  %s: ", l->is_http ? "not HTTP/1.x" : l->is_quic ? "not QUIC" : "not TLS");
    {
        struct sr_first_bytes other = {.said = SR_SAID_OTHER};

        sr_decide(cfg, l, &other, &d);
    }
    if (d.verdict == SR_VERDICT_FALLBACK) {
        put(o, "fallback -> ");
        put_upstream(o, cfg, d.target);
        put(o, "\n");
    } else {
        put(o, "%s\n", not_protocol_answer(l));
    }
    return hit.kind != SR_ROUTE_MISS;
}

size_t
sr_explain_format(const struct sr_config *cfg, const char *path, const struct sr_explain_query *q,
                  char *buf, size_t cap, enum sr_explain_result *result)
{
    struct out o = {buf, cap, 0, path, cfg};
    char norm[SR_NAME_MAX + 1];
    size_t norm_len = 0;
    struct protos p;
    enum sr_name_error err;
    size_t n_shown = 0;
    size_t n_routed = 0;
    size_t n_denied = 0;
    struct sockaddr_storage from;
    char from_text[INET6_ADDRSTRLEN + 1];
    size_t i;

    if (cap > 0) {
        buf[0] = '\0';
    }
    err = sr_name_normalize((const uint8_t *)q->name, q->name_len, norm, &norm_len);
    if (err != SR_NAME_OK || memchr(q->name, '\0', q->name_len) != NULL) {
        *result = SR_EXPLAIN_BAD_NAME;
        /* Only the validator's verdict: the name itself may hold bytes not fit to echo. */
        put(&o, "not a valid host name: %s\n",
            err != SR_NAME_OK ? sr_name_error_str(err) : "NUL byte");
        return o.len;
    }
    if (!split_alpn(q->alpn, q->alpn_len, &p)) {
        *result = SR_EXPLAIN_BAD_ALPN;
        put(&o,
            "bad ALPN list: want protocols separated by commas, each 1 to 255 printable "
            "characters, at most %d\n",
            SR_EXPLAIN_ALPN_MAX);
        return o.len;
    }
    memset(&from, 0, sizeof(from));
    if (q->from != NULL) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&from;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&from;

        if (q->from_len >= sizeof(from_text) || memchr(q->from, '\0', q->from_len) != NULL) {
            from_text[0] = '\0';
        } else {
            memcpy(from_text, q->from, q->from_len);
            from_text[q->from_len] = '\0';
        }
        if (from_text[0] != '\0' && inet_pton(AF_INET, from_text, &in4->sin_addr) == 1) {
            in4->sin_family = AF_INET;
        } else if (from_text[0] != '\0' && inet_pton(AF_INET6, from_text, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
        } else {
            *result = SR_EXPLAIN_BAD_FROM;
            put(&o, "bad client address: want an IPv4 or IPv6 literal without a port\n");
            return o.len;
        }
    }
    for (i = 0; i < cfg->n_listeners && q->listener != NULL; i++) {
        if (strlen(cfg->listeners[i].name) == q->listener_len &&
            memcmp(cfg->listeners[i].name, q->listener, q->listener_len) == 0) {
            break;
        }
    }
    if (q->listener != NULL && i == cfg->n_listeners) {
        *result = SR_EXPLAIN_NO_LISTENER;
        put(&o, "no such listener (there are:");
        for (i = 0; i < cfg->n_listeners; i++) {
            put(&o, " %s", cfg->listeners[i].name);
        }
        put(&o, ")\n");
        return o.len;
    }

    put(&o, "name: %s\n", norm);
    if (norm_len != q->name_len || memcmp(norm, q->name, norm_len) != 0) {
        bool has_dot = q->name_len > 0 && q->name[q->name_len - 1] == '.';
        bool has_upper = false;

        for (i = 0; i < q->name_len; i++) {
            has_upper = has_upper || (q->name[i] >= 'A' && q->name[i] <= 'Z');
        }
        put(&o, "normalized: from '%.*s' (%s%s%s)\n", (int)q->name_len, q->name,
            has_upper ? "lower-cased" : "", has_upper && has_dot ? ", " : "",
            has_dot ? "trailing dot dropped" : "");
    }
    if (q->from != NULL) {
        put(&o, "client: %s\n", from_text);
    }
    put(&o, "alpn offered: ");
    if (p.n == 0) {
        put(&o, "none\n");
    }
    for (i = 0; i < p.n; i++) {
        put(&o, "%.*s%s", (int)p.len[i], p.ptr[i], i + 1 < p.n ? ", " : "\n");
    }
    for (i = 0; i < cfg->n_listeners; i++) {
        const struct sr_listener_config *l = &cfg->listeners[i];

        if (q->listener != NULL && (strlen(l->name) != q->listener_len ||
                                    memcmp(l->name, q->listener, q->listener_len) != 0)) {
            continue;
        }
        bool is_denied = false;

        n_shown++;
        n_routed +=
            explain_listener(&o, cfg, l, norm, norm_len, &p,
                             q->from != NULL ? (const struct sockaddr *)&from : NULL, &is_denied)
                ? 1
                : 0;
        n_denied += is_denied ? 1 : 0;
    }
    *result = n_routed != n_shown ? SR_EXPLAIN_NO_ROUTE
              : n_denied > 0      ? SR_EXPLAIN_DENIED
                                  : SR_EXPLAIN_ROUTED;
    return o.len;
}

int
sr_explain_parse_query(const char *query, size_t len, char *storage, size_t cap,
                       struct sr_explain_query *q, const char **why)
{
    size_t used = 0;
    size_t i = 0;

    memset(q, 0, sizeof(*q));
    while (i < len) {
        size_t end = i;
        size_t eq;
        const char **field;
        size_t *field_len;
        size_t start = used;

        while (end < len && query[end] != '&') {
            end++;
        }
        for (eq = i; eq < end && query[eq] != '='; eq++) {
        }
        if (eq == i && end == i) {
            i = end + 1; /* "a=1&&b=2": an empty pair is nothing */
            continue;
        }
        if (eq - i == 4 && memcmp(query + i, "name", 4) == 0) {
            field = &q->name;
            field_len = &q->name_len;
        } else if (eq - i == 4 && memcmp(query + i, "alpn", 4) == 0) {
            field = &q->alpn;
            field_len = &q->alpn_len;
        } else if (eq - i == 8 && memcmp(query + i, "listener", 8) == 0) {
            field = &q->listener;
            field_len = &q->listener_len;
        } else if (eq - i == 4 && memcmp(query + i, "from", 4) == 0) {
            field = &q->from;
            field_len = &q->from_len;
        } else {
            *why = "unknown parameter (want name, alpn, listener, from)";
            return -1;
        }
        if (*field != NULL) {
            *why = "parameter given twice";
            return -1;
        }
        for (i = eq + 1; i < end; i++) {
            char c = query[i];

            if (c == '%') {
                int hi = i + 2 < end ? sr_hex_value(query[i + 1]) : -1;
                int lo = i + 2 < end ? sr_hex_value(query[i + 2]) : -1;

                if (hi < 0 || lo < 0) {
                    *why = "bad percent-encoding";
                    return -1;
                }
                c = (char)(hi * 16 + lo);
                i += 2;
            }
            if (used == cap) {
                *why = "query too long";
                return -1;
            }
            storage[used++] = c;
        }
        *field = storage + start; /* "name=" alone: an empty view, refused below */
        *field_len = used - start;
        i = end + 1;
    }
    if (q->name == NULL) {
        *why = "missing name=NAME";
        return -1;
    }
    return 0;
}

int
sr_explain_exit_status(enum sr_explain_result result)
{
    switch (result) {
    case SR_EXPLAIN_ROUTED:
        return 0;
    case SR_EXPLAIN_NO_ROUTE:
    case SR_EXPLAIN_DENIED:
        return 1;
    default:
        return 2;
    }
}
