/* SPDX-License-Identifier: MIT */
/* Explain a routing decision: for a server name (and the ALPN protocols a client offers),
 * which listener, [routes] section, route (with its config line) and upstream a connection
 * would reach, and why; what a client without SNI gets; what happens to bytes that are not
 * TLS. The text is formatted into a caller's buffer from a loaded config, with the decision
 * every connection takes (sr_decide, decide.h), so `sniroute explain`, the admin's /explain
 * and the connection path say the same. Pure: no I/O, no allocation, no libuv. */
#ifndef SR_EXPLAIN_H
#define SR_EXPLAIN_H

#include <stddef.h>

#include "sniroute/config/config.h"

/* At most this many ALPN protocols in one query (a real client offers two or three). */
#define SR_EXPLAIN_ALPN_MAX 16

enum sr_explain_result {
    SR_EXPLAIN_ROUTED = 0,  /* every listener explained routes the name somewhere */
    SR_EXPLAIN_NO_ROUTE,    /* at least one of them has no route for it */
    SR_EXPLAIN_BAD_NAME,    /* the name is not a valid host name; the text says why */
    SR_EXPLAIN_BAD_ALPN,    /* an ALPN protocol is empty, too long or not printable */
    SR_EXPLAIN_NO_LISTENER, /* the listener asked for does not exist */
    SR_EXPLAIN_BAD_FROM,    /* the client address (--from) is not an IPv4 or IPv6 literal */
    SR_EXPLAIN_DENIED,      /* routed, but an access rule refuses the client (--from) at one
                               listener at least */
};

/* What to explain. Views: pointer and length, not NUL-terminated. */
struct sr_explain_query {
    const char *name; /* as a client would send it: case and a trailing dot are allowed */
    size_t name_len;
    const char *alpn; /* comma-separated protocols in the client's order; NULL or "": none */
    size_t alpn_len;
    const char *listener; /* one listener's name; NULL: every listener */
    size_t listener_len;
    /* The client's address (an IPv4 or IPv6 literal, no port): say whether the listener's
     * and the upstream's allow and deny rules let it through. NULL: rules not checked. */
    const char *from;
    size_t from_len;
};

/* Explain <q> against <cfg> (a config that loaded without problems) into <buf> of <cap>
 * bytes, NUL-terminated when <cap> > 0 and cut short if it does not fit. Line references
 * read "PATH:LINE" with <path>, or "line LINE" when <path> is NULL. Sets <*result>.
 * Returns the length of the whole text (as snprintf does): call with <cap> 0 to size a
 * buffer. The text is a few lines per listener, "key: value" each; see the README. */
size_t sr_explain_format(const struct sr_config *cfg, const char *path,
                         const struct sr_explain_query *q, char *buf, size_t cap,
                         enum sr_explain_result *result);

/* Parse an /explain query string (<query>/<len>, what follows '?', may be empty):
 * name=NAME (required), alpn=LIST, listener=NAME and from=ADDRESS (optional), '&'-separated,
 * percent-decoded ('+' stays '+') into <storage> of <cap> bytes, which <q>'s views then
 * point into. Unknown keys are refused, so a typo does not silently explain something
 * else. Returns 0, or -1 with a static English reason in <*why>. */
int sr_explain_parse_query(const char *query, size_t len, char *storage, size_t cap,
                           struct sr_explain_query *q, const char **why);

/* Exit status of `sniroute explain` for <result>: 0 routed, 1 no route or denied, 2
 * anything else. */
int sr_explain_exit_status(enum sr_explain_result result);

#endif
