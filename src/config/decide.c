/* SPDX-License-Identifier: MIT */
/* The routing decision (decide.h): the route table lookups in their fixed precedence.
 * No I/O, no allocation; what the caller does with the answer (an alert, a 421, a
 * connect) is not decided here. */
#include "sniroute/config/decide.h"

#include <string.h>

/* The next protocol of a wire-format ALPN list (RFC 7301 3.1) at <*cursor> of <*left>
 * bytes; false at the end or on an entry that runs past the list. */
static bool
alpn_next(const uint8_t **cursor, size_t *left, const uint8_t **proto, size_t *proto_len)
{
    size_t n;

    if (*left == 0) {
        return false;
    }
    n = (*cursor)[0];
    if (n == 0 || n + 1 > *left) {
        return false;
    }
    *proto = *cursor + 1;
    *proto_len = n;
    *cursor += n + 1;
    *left -= n + 1;
    return true;
}

/* Look <name> up in <table> (exact, longest wildcard, default), or with no name the
 * default alone. */
static enum sr_route_kind
lookup(const struct sr_route_table *table, const struct sr_decision *d, bool has_name,
       struct sr_route_hit *hit)
{
    if (has_name) {
        return sr_route_lookup(table, d->name, d->name_len, hit);
    }
    return sr_route_lookup_default(table, hit);
}

/* ALPN-conditioned routes: the first protocol the client offers, in its order of
 * preference, whose table has a route. Returns that table's entry, or NULL. */
static const struct sr_alpn_routes *
lookup_alpn(const struct sr_routes *r, const struct sr_first_bytes *in, struct sr_decision *d,
            bool has_name)
{
    const uint8_t *cursor = in->alpn;
    size_t left = in->alpn_len;
    const uint8_t *proto;
    size_t proto_len;
    size_t i;

    if (r->n_alpn == 0) {
        return NULL;
    }
    while (alpn_next(&cursor, &left, &proto, &proto_len)) {
        for (i = 0; i < r->n_alpn; i++) {
            const struct sr_alpn_routes *a = &r->alpn[i];

            if (a->proto_len == proto_len && memcmp(a->proto, proto, proto_len) == 0 &&
                lookup(a->table, d, has_name, &d->hit) != SR_ROUTE_MISS) {
                return a;
            }
        }
    }
    return NULL;
}

static void
refuse(struct sr_decision *out, enum sr_refusal why)
{
    out->verdict = SR_VERDICT_REFUSE;
    out->refusal = why;
}

/* The target's [upstream] rules, when it is one and the client is known. */
static void
check_upstream(const struct sr_config *cfg, const struct sr_first_bytes *in,
               struct sr_decision *out)
{
    const struct sr_upstream *u = &cfg->upstreams[out->target];

    if (in->from == NULL || u->pool == 0) {
        return;
    }
    out->upstream_checked = true;
    if (!sr_access_check(&cfg->pools[u->pool - 1].access, in->from, &out->upstream_access)) {
        refuse(out, SR_REFUSAL_DENIED);
        out->denied_by = out->upstream_access.label;
        out->denied_id = out->upstream_access.label_id;
    }
}

void
sr_decide(const struct sr_config *cfg, const struct sr_listener_config *l,
          const struct sr_first_bytes *in, struct sr_decision *out)
{
    const struct sr_routes *r = &cfg->routes[l->routes];
    bool has_name = false;

    memset(&out->hit, 0, sizeof(out->hit));
    out->verdict = SR_VERDICT_ROUTE;
    out->refusal = SR_REFUSAL_NONE;
    out->target = 0;
    out->alpn = NULL;
    out->name[0] = '\0';
    out->name_len = 0;
    memset(&out->listener_access, 0, sizeof(out->listener_access));
    memset(&out->upstream_access, 0, sizeof(out->upstream_access));
    out->listener_access.is_allowed = true;
    out->upstream_access.is_allowed = true;
    out->upstream_checked = false;
    out->denied_by = NULL;
    out->denied_id = 0;

    if (in->from != NULL && !sr_access_check(&l->access, in->from, &out->listener_access)) {
        refuse(out, SR_REFUSAL_DENIED);
        out->denied_by = out->listener_access.label;
        out->denied_id = out->listener_access.label_id;
        return;
    }
    if (in->said == SR_SAID_OTHER) {
        if (l->fallback == 0) {
            refuse(out, SR_REFUSAL_NOT_PROTOCOL);
            return;
        }
        out->verdict = SR_VERDICT_FALLBACK;
        out->target = (uint32_t)(l->fallback - 1);
        check_upstream(cfg, in, out);
        return;
    }
    if (in->said == SR_SAID_NAME) {
        has_name = sr_name_normalize(in->name, in->name_len, out->name, &out->name_len) ==
                   SR_NAME_OK;
        if (!has_name) {
            out->name[0] = '\0';
            out->name_len = 0;
            if (!l->is_http) {
                /* The hello parser validated the name, so this cannot happen on the TLS
                 * path; still, never route on a name we could not normalize. */
                refuse(out, SR_REFUSAL_BAD_NAME);
                return;
            }
        }
    }
    if (!l->is_http) {
        if (!has_name && l->no_sni == SR_NO_SNI_REJECT) {
            refuse(out, SR_REFUSAL_NO_SNI);
            return;
        }
        out->alpn = lookup_alpn(r, in, out, has_name);
    }
    if (out->alpn == NULL) {
        lookup(r->table, out, has_name, &out->hit);
    }
    if (out->hit.kind == SR_ROUTE_MISS) {
        refuse(out, SR_REFUSAL_NO_ROUTE);
        return;
    }
    out->target = out->hit.value;
    check_upstream(cfg, in, out);
}

const char *
sr_refusal_outcome(enum sr_refusal r, bool is_http)
{
    switch (r) {
    case SR_REFUSAL_NONE:
        return "routed";
    case SR_REFUSAL_NO_ROUTE:
        return "no_route";
    case SR_REFUSAL_NO_SNI:
        return "no_sni";
    case SR_REFUSAL_BAD_NAME:
        return "malformed";
    case SR_REFUSAL_NOT_PROTOCOL:
        return is_http ? "not_http" : "not_tls";
    case SR_REFUSAL_DENIED:
        return "denied";
    }
    return "?";
}
