/* SPDX-License-Identifier: MIT */
/* The routing decision, the one place that decides where a connection goes: from a
 * listener's config and what the client's first bytes said (a host name, the ALPN list,
 * the ECH flag, or that there was no name or no protocol we speak), the route target (an
 * upstream or a pool), the listener's fallback, or a refusal and its reason. The TLS path,
 * the HTTP path (every request head of a connection), `sniroute explain`, /explain and
 * the QUIC path all ask it; nothing else decides. Pure: no I/O, no allocation, no libuv. */
#ifndef SR_DECIDE_H
#define SR_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sniroute/config/access.h"
#include "sniroute/config/config.h"
#include "sniroute/wire/name.h"
#include "sniroute/config/route.h"

/* What the first bytes said. */
enum sr_said {
    SR_SAID_NAME,    /* a host name: the TLS server_name, or an HTTP request's Host */
    SR_SAID_NO_NAME, /* a complete hello without server_name; an HTTP Host that is an IP
                        literal (or names no valid host) */
    SR_SAID_OTHER,   /* not the listener's protocol (not TLS, not HTTP/1.x), or silent past
                        fallback_timeout */
};

struct sr_first_bytes {
    enum sr_said said;
    const uint8_t *name; /* SR_SAID_NAME: the name as sent (not normalized), <name_len> */
    size_t name_len;
    /* The ALPN protocol_name_list as on the wire (RFC 7301 3.1: each protocol a length
     * byte and its bytes; without the list's own 2-byte length), in the client's order of
     * preference; <alpn_len> 0 for none. Read only during the call. */
    const uint8_t *alpn;
    size_t alpn_len;
    /* Encrypted Client Hello: <name> is the outer, public name, and that is what a
     * passthrough front routes by (the backend holds the ECH keys). Carried for the log
     * and for policies; it does not change the decision. */
    bool has_ech;
    /* The client's address (the TCP peer, or who a PROXY header named), for the access
     * rules (access.h) of the listener and of the upstream the route names; NULL: not
     * checked (explain without --from). Read only during the call. */
    const struct sockaddr *from;
};

enum sr_verdict {
    SR_VERDICT_ROUTE,    /* connect to cfg->upstreams[target] (a HOST:PORT or a pool) */
    SR_VERDICT_FALLBACK, /* not our protocol: hand the bytes, unmodified, to the fallback
                            cfg->upstreams[target] */
    SR_VERDICT_REFUSE,   /* refuse; <refusal> says why */
};

enum sr_refusal {
    SR_REFUSAL_NONE = 0,
    SR_REFUSAL_NO_ROUTE,     /* no exact, wildcard or default route (TLS: unrecognized_name
                                alert; HTTP: 421) */
    SR_REFUSAL_NO_SNI,       /* no server_name and the listener says no_sni = reject */
    SR_REFUSAL_BAD_NAME,     /* a TLS server_name that does not normalize (never a name the
                                hello parser accepted) */
    SR_REFUSAL_NOT_PROTOCOL, /* not TLS / not HTTP and no fallback */
    SR_REFUSAL_DENIED,       /* an access rule refuses the client (TLS: access_denied alert;
                                HTTP: 403; QUIC: dropped); <denied_by> says which */
};

struct sr_decision {
    enum sr_verdict verdict;
    enum sr_refusal refusal; /* NONE unless REFUSE */
    uint32_t target;         /* ROUTE, FALLBACK: index into cfg->upstreams */
    /* ROUTE and NO_ROUTE: the lookup's answer (kind exact / wildcard / default / miss, and
     * the entry for the config's line table), and the ALPN-conditioned table that decided
     * (in <cfg>), or NULL for the plain table. */
    struct sr_route_hit hit;
    const struct sr_alpn_routes *alpn;
    /* The normalized name looked up ("" when none), for the log. */
    char name[SR_NAME_MAX + 1];
    size_t name_len;
    /* With <in->from>: what the listener's rules and (once a target is known, and it is an
     * [upstream] section) that upstream's rules said; <upstream_checked> false when no
     * upstream's rules were asked. DENIED: <denied_by> is the refusing rule's label (in
     * <cfg>, e.g. "upstream:staging:not_allowed"), NULL otherwise. */
    struct sr_access_result listener_access;
    struct sr_access_result upstream_access;
    bool upstream_checked;
    const char *denied_by;
    uint32_t denied_id; /* DENIED: <denied_by>'s label_id (access.h), for the metric */
};

/* Decide for a connection on listener <l> of <cfg> (a config that loaded without
 * problems) whose first bytes said <in>, into <*out>. The rules, in order:
 * - OTHER: the fallback if the listener has one, else refused (NOT_PROTOCOL).
 * - TLS listeners: a name that does not normalize is refused (BAD_NAME); no name and
 *   no_sni = reject is refused (NO_SNI). Then ALPN-conditioned routes ("NAME[PROTO]") beat
 *   every route without a condition: for each offered protocol in the client's order, that
 *   protocol's table is searched (exact, longest wildcard, default; the default alone
 *   without a name); the first hit decides. Otherwise the plain table decides the same way.
 * - HTTP listeners (protocol = http): the Host is looked up in the plain table; an IP
 *   literal or a Host that does not normalize gets the default; ALPN is not used.
 * - Nothing found: refused (NO_ROUTE).
 * - With a client address (<in->from>): before all of the above, the listener's allow and
 *   deny rules (access.h); a refusal there is DENIED. Then, once a target is known (a route
 *   or the fallback) and it is an [upstream] section, that section's rules: DENIED too, the
 *   target still set (for the log). The two checks are the access rules' whole effect.
 * Views in <*out> point into <cfg>, which must outlive them. */
void sr_decide(const struct sr_config *cfg, const struct sr_listener_config *l,
               const struct sr_first_bytes *in, struct sr_decision *out);

/* The access log's outcome word for <r>: "no_route", "no_sni", "malformed", "denied", and
 * for NOT_PROTOCOL "not_tls" or "not_http" by the listener's protocol (<is_http>). */
const char *sr_refusal_outcome(enum sr_refusal r, bool is_http);

#endif
