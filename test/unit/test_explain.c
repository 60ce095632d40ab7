/* SPDX-License-Identifier: MIT */
/* The explain module against small configs loaded from memory: each rule of precedence
 * (exact, longest wildcard, default, none; ALPN before plain) with the config line it names,
 * normalization, pools, no-SNI and not-TLS answers, HTTP listeners, errors, truncation, and
 * the /explain query-string parser. One full text is pinned as a golden. */
#include "sniroute/config/explain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/assert.h"

/* Line numbers matter below: keep this text as it is. */
static const char conf[] = "[listener https]\n"                         /* 1 */
                           "listen = 127.0.0.1:0\n"                     /* 2 */
                           "routes = main\n"                            /* 3 */
                           "fallback = 127.0.0.1:22\n"                  /* 4 */
                           "[listener web]\n"                           /* 5 */
                           "listen = 127.0.0.1:0\n"                     /* 6 */
                           "routes = web\n"                             /* 7 */
                           "protocol = http\n"                          /* 8 */
                           "[listener strict]\n"                        /* 9 */
                           "listen = 127.0.0.1:0\n"                     /* 10 */
                           "routes = web\n"                             /* 11 */
                           "no_sni = reject\n"                          /* 12 */
                           "[routes main]\n"                            /* 13 */
                           "example.com = 127.0.0.1:9001\n"             /* 14 */
                           "*.example.com = 127.0.0.1:9002\n"           /* 15 */
                           "*.b.example.com = 127.0.0.1:9003\n"         /* 16 */
                           "example.com[acme-tls/1] = 127.0.0.1:9100\n" /* 17 */
                           "*.example.com[h2] = apps\n"                 /* 18 */
                           "api.example.com = apps\n"                   /* 19 */
                           "default = 127.0.0.1:9009\n"                 /* 20 */
                           "[routes web]\n"                             /* 21 */
                           "www.example.org = 127.0.0.1:8080\n"         /* 22 */
                           "[upstream apps]\n"                          /* 23 */
                           "server = 10.0.0.1:443\n"                    /* 24 */
                           "server = apps.internal:443\n"               /* 25 */
                           "balance = least_conn\n";                    /* 26 */

static void
on_error(void *ctx, const char *msg)
{
    (void)ctx;
    SR_FAIL("unexpected config error: %s", msg);
}

static void
load(struct sr_config *cfg, const char *text)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");

    ASSERT(f != NULL);
    ASSERT_EQ(sr_config_load_stream(cfg, f, "t.ini", on_error, NULL), 0);
    fclose(f);
}

static char out[16384];

static enum sr_explain_result
explain(const struct sr_config *cfg, const char *name, const char *alpn, const char *listener)
{
    struct sr_explain_query q = {name,     strlen(name),
                                 alpn,     alpn ? strlen(alpn) : 0,
                                 listener, listener ? strlen(listener) : 0,
                                 NULL,     0};
    enum sr_explain_result result;
    size_t len = sr_explain_format(cfg, "t.ini", &q, out, sizeof(out), &result);

    ASSERT_LT(len, sizeof(out));
    ASSERT_EQ(strlen(out), len);
    return result;
}

#define ASSERT_HAS(text, part)                                                                     \
    do {                                                                                           \
        if (strstr((text), (part)) == NULL) {                                                      \
            SR_FAIL("missing \"%s\" in:\n%s", (part), (text));                                     \
        }                                                                                          \
    } while (0)

#define ASSERT_LACKS(text, part)                                                                   \
    do {                                                                                           \
        if (strstr((text), (part)) != NULL) {                                                      \
            SR_FAIL("unexpected \"%s\" in:\n%s", (part), (text));                                  \
        }                                                                                          \
    } while (0)

static const char golden_exact[] =
    "name: example.com\n"
    "normalized: from 'Example.COM.' (lower-cased, trailing dot dropped)\n"
    "alpn offered: none\n"
    "\n"
    "listener: https (t.ini:1), protocol tls, routes 'main' (t.ini:13)\n"
    "  match: exact 'example.com' (t.ini:14)\n"
    "  why: an exact name beats every wildcard and the default\n"
    "  upstream: 127.0.0.1:9001\n"
    "  result: routed\n"
    "  without SNI: default (t.ini:20) -> 127.0.0.1:9009\n"
    "  not TLS: fallback -> 127.0.0.1:22\n";

static void
test_precedence(void)
{
    struct sr_config cfg;

    load(&cfg, conf);

    ASSERT_EQ(explain(&cfg, "Example.COM.", NULL, "https"), SR_EXPLAIN_ROUTED);
    ASSERT_STR_EQ(out, golden_exact);

    /* The longest wildcard wins; the shorter one that also matches is named. */
    ASSERT_EQ(explain(&cfg, "x.b.example.com", NULL, "https"), SR_EXPLAIN_ROUTED);
    ASSERT_HAS(out, "  match: wildcard '*.b.example.com' (t.ini:16)\n");
    ASSERT_HAS(out, "the longest matching wildcard wins");
    ASSERT_HAS(out, "  also matching, less specific: '*.example.com' (t.ini:15)\n");
    ASSERT_HAS(out, "  upstream: 127.0.0.1:9003\n");
    ASSERT_LACKS(out, "normalized:");

    ASSERT_EQ(explain(&cfg, "a.example.com", NULL, "https"), SR_EXPLAIN_ROUTED);
    ASSERT_HAS(out, "  match: wildcard '*.example.com' (t.ini:15)\n");
    ASSERT_LACKS(out, "also matching");

    ASSERT_EQ(explain(&cfg, "example.net", NULL, "https"), SR_EXPLAIN_ROUTED);
    ASSERT_HAS(out, "  match: default 'default' (t.ini:20)\n");
    ASSERT_HAS(out, "  why: no exact name and no wildcard matches\n");

    /* A pool: its section, balance and servers. */
    ASSERT_EQ(explain(&cfg, "api.example.com", NULL, "https"), SR_EXPLAIN_ROUTED);
    ASSERT_HAS(out, "  match: exact 'api.example.com' (t.ini:19)\n");
    ASSERT_HAS(out, "  upstream: pool 'apps' (t.ini:23), balance least_conn, servers: "
                    "10.0.0.1:443, apps.internal:443\n");
    sr_config_fini(&cfg);
}

static void
test_alpn(void)
{
    struct sr_config cfg;

    load(&cfg, conf);
    ASSERT_EQ(explain(&cfg, "example.com", "acme-tls/1", "https"), SR_EXPLAIN_ROUTED);
    ASSERT_HAS(out, "alpn offered: acme-tls/1\n");
    ASSERT_HAS(out, "  match: exact 'example.com[acme-tls/1]' (t.ini:17)\n");
    ASSERT_HAS(out, "the client offers acme-tls/1 and a route with that ALPN condition beats");
    ASSERT_HAS(out, "  upstream: 127.0.0.1:9100\n");

    /* In the client's order: http/1.1 has no table, h2's wildcard matches. */
    ASSERT_EQ(explain(&cfg, "api.example.com", "http/1.1,h2", "https"), SR_EXPLAIN_ROUTED);
    ASSERT_HAS(out, "alpn offered: http/1.1, h2\n");
    ASSERT_HAS(out, "  match: wildcard '*.example.com[h2]' (t.ini:18)\n");

    /* h2 offered, but its only route does not cover the apex: plain routes decide. */
    ASSERT_EQ(explain(&cfg, "example.com", "h2", "https"), SR_EXPLAIN_ROUTED);
    ASSERT_HAS(out, "  match: exact 'example.com' (t.ini:14)\n");
    ASSERT_HAS(out, "  alpn: no route with a condition on an offered protocol matches; the "
                    "plain routes decide\n");

    ASSERT_EQ(explain(&cfg, "example.com", "spdy/3", "https"), SR_EXPLAIN_ROUTED);
    ASSERT_HAS(out, "  alpn: no route has a condition on an offered protocol\n");

    /* Bad lists. */
    ASSERT_EQ(explain(&cfg, "example.com", "h2,", NULL), SR_EXPLAIN_BAD_ALPN);
    ASSERT_EQ(explain(&cfg, "example.com", "h 2", NULL), SR_EXPLAIN_BAD_ALPN);
    ASSERT_EQ(sr_explain_exit_status(SR_EXPLAIN_BAD_ALPN), 2);
    sr_config_fini(&cfg);
}

static void
test_listeners_and_misses(void)
{
    struct sr_config cfg;

    load(&cfg, conf);
    /* Every listener: routed by https (default), by neither web map. */
    ASSERT_EQ(explain(&cfg, "nowhere.test", NULL, NULL), SR_EXPLAIN_NO_ROUTE);
    ASSERT_EQ(sr_explain_exit_status(SR_EXPLAIN_NO_ROUTE), 1);
    ASSERT_HAS(out, "listener: https (t.ini:1)");
    ASSERT_HAS(out, "listener: web (t.ini:5), protocol http, routes 'web' (t.ini:21)\n");
    ASSERT_HAS(out, "listener: strict (t.ini:9), protocol tls, routes 'web' (t.ini:21)\n");
    ASSERT_HAS(out, "  match: none\n  why: no exact name, no wildcard above it, and no default\n");
    ASSERT_HAS(out, "  result: no route: the client gets 421 Misdirected Request, then a close\n");
    ASSERT_HAS(out, "  result: no route: the client gets a TLS unrecognized_name alert, then a "
                    "close\n");
    /* No SNI: http has no default; strict rejects; https uses its default. */
    ASSERT_HAS(out, "  without a host name (an IP literal as Host): no default: 421 Misdirected "
                    "Request\n");
    ASSERT_HAS(out, "  without SNI: rejected (no_sni = reject): a TLS handshake_failure alert\n");
    ASSERT_HAS(out, "  not HTTP/1.x: 400 Bad Request, then a close\n");
    ASSERT_HAS(out, "  not TLS: a close\n");

    ASSERT_EQ(explain(&cfg, "www.example.org", "h2", "web"), SR_EXPLAIN_ROUTED);
    ASSERT_EQ(sr_explain_exit_status(SR_EXPLAIN_ROUTED), 0);
    ASSERT_HAS(out, "  alpn: not used (protocol = http routes by Host)\n");
    ASSERT_LACKS(out, "listener: https");

    ASSERT_EQ(explain(&cfg, "www.example.org", NULL, "nope"), SR_EXPLAIN_NO_LISTENER);
    ASSERT_STR_EQ(out, "no such listener (there are: https web strict)\n");

    ASSERT_EQ(explain(&cfg, "bad..name", NULL, NULL), SR_EXPLAIN_BAD_NAME);
    ASSERT_STR_EQ(out, "not a valid host name: empty label\n");
    ASSERT_EQ(explain(&cfg, "", NULL, NULL), SR_EXPLAIN_BAD_NAME);
    ASSERT_EQ(explain(&cfg, "a b", NULL, NULL), SR_EXPLAIN_BAD_NAME);
    sr_config_fini(&cfg);
}

/* A client without SNI but offering ALPN takes default[PROTO] first, as conn.c does. */
static void
test_no_sni_alpn_default(void)
{
    static const char text[] = "[listener a]\nlisten = 127.0.0.1:0\nroutes = m\n[routes m]\n"
                               "x.test = 127.0.0.1:1\ndefault[h2] = 127.0.0.1:2\n";
    struct sr_config cfg;

    load(&cfg, text);
    ASSERT_EQ(explain(&cfg, "x.test", "h2", NULL), SR_EXPLAIN_ROUTED);
    ASSERT_HAS(out, "  match: default 'default[h2]' (t.ini:6)\n");
    ASSERT_HAS(out, "  without SNI: default[h2] (t.ini:6) -> 127.0.0.1:2\n");
    ASSERT_EQ(explain(&cfg, "x.test", NULL, NULL), SR_EXPLAIN_ROUTED);
    ASSERT_HAS(out, "  match: exact 'x.test' (t.ini:5)\n");
    ASSERT_HAS(out, "  without SNI: no default: a TLS unrecognized_name alert\n");
    sr_config_fini(&cfg);
}

/* A QUIC listener sharing a TCP listener's table: the same decision (ALPN h3 included), told
 * as datagrams. */
static void
test_quic(void)
{
    static const char text[] = "[listener https]\nlisten = 127.0.0.1:0\nroutes = m\n"
                               "[listener h3]\nlisten = 127.0.0.1:0\nroutes = m\n"
                               "protocol = quic\nno_sni = reject\n[routes m]\n"
                               "x.test = 127.0.0.1:1\nx.test[h3] = 127.0.0.1:3\n";
    struct sr_config cfg;

    load(&cfg, text);
    ASSERT_EQ(explain(&cfg, "x.test", "h3", NULL), SR_EXPLAIN_ROUTED);
    ASSERT_HAS(out, "listener: h3 (t.ini:4), protocol quic, routes 'm' (t.ini:9)\n"
                    "  match: exact 'x.test[h3]' (t.ini:11)\n");
    ASSERT_HAS(out, "  upstream: 127.0.0.1:3 (over UDP)\n");
    ASSERT_HAS(out, "  without SNI: rejected (no_sni = reject): its datagrams are dropped\n"
                    "  not QUIC: dropped\n");
    ASSERT_HAS(out, "listener: https (t.ini:1), protocol tls");
    ASSERT_EQ(explain(&cfg, "y.test", NULL, "h3"), SR_EXPLAIN_NO_ROUTE);
    ASSERT_HAS(out, "  result: no route: the client's datagrams are dropped (nothing is "
                    "forwarded, nothing sent back)\n");
    sr_config_fini(&cfg);
}

/* Without a path, "line N"; a short buffer is cut, NUL-terminated, and the full length is
 * still returned. */
static void
test_buffer(void)
{
    struct sr_config cfg;
    struct sr_explain_query q = {"example.com", 11, NULL, 0, "https", 5, NULL, 0};
    enum sr_explain_result result;
    char small[20];
    size_t full;

    load(&cfg, conf);
    full = sr_explain_format(&cfg, NULL, &q, out, sizeof(out), &result);
    ASSERT_HAS(out, "  match: exact 'example.com' (line 14)\n");
    ASSERT_EQ(sr_explain_format(&cfg, NULL, &q, NULL, 0, &result), full);
    memset(small, 'x', sizeof(small));
    ASSERT_EQ(sr_explain_format(&cfg, NULL, &q, small, sizeof(small), &result), full);
    ASSERT_EQ(strlen(small), sizeof(small) - 1);
    ASSERT(strncmp(small, out, sizeof(small) - 1) == 0);
    sr_config_fini(&cfg);
}

struct query_case {
    const char *query;
    int rc;
    const char *name, *alpn, *listener; /* NULL: absent */
    const char *why;
};

static const struct query_case query_cases[] = {
    {"name=example.com", 0, "example.com", NULL, NULL, NULL},
    {"name=a.test&alpn=acme-tls%2F1&listener=https", 0, "a.test", "acme-tls/1", "https", NULL},
    {"alpn=h2,http/1.1&name=A.Test.", 0, "A.Test.", "h2,http/1.1", NULL, NULL},
    {"name=%61.test&&", 0, "a.test", NULL, NULL, NULL},
    {"name=", 0, "", NULL, NULL, NULL}, /* refused later, as a bad name */
    {"", -1, NULL, NULL, NULL, "missing name=NAME"},
    {"alpn=h2", -1, NULL, NULL, NULL, "missing name=NAME"},
    {"name=a&name=b", -1, NULL, NULL, NULL, "parameter given twice"},
    {"host=a", -1, NULL, NULL, NULL, "unknown parameter (want name, alpn, listener, from)"},
    {"name=a%2", -1, NULL, NULL, NULL, "bad percent-encoding"},
    {"name=a%zz", -1, NULL, NULL, NULL, "bad percent-encoding"},
};

static void
check_view(const char *ptr, size_t len, const char *want)
{
    if (want == NULL) {
        ASSERT(ptr == NULL);
        return;
    }
    ASSERT(ptr != NULL);
    ASSERT_VIEW_EQ(ptr, len, want);
}

static void
test_query(void)
{
    char storage[64];
    struct sr_explain_query q;
    const char *why;
    size_t i;

    for (i = 0; i < sizeof(query_cases) / sizeof(query_cases[0]); i++) {
        const struct query_case *c = &query_cases[i];
        int rc;

        why = NULL;
        rc = sr_explain_parse_query(c->query, strlen(c->query), storage, sizeof(storage), &q, &why);
        if (rc != c->rc) {
            SR_FAIL("query '%s': rc %d, want %d", c->query, rc, c->rc);
        }
        if (rc != 0) {
            ASSERT_STR_EQ(why, c->why);
            continue;
        }
        check_view(q.name, q.name_len, c->name);
        check_view(q.alpn, q.alpn_len, c->alpn);
        check_view(q.listener, q.listener_len, c->listener);
    }
    /* The decoded bytes must fit the caller's storage. */
    ASSERT_EQ(sr_explain_parse_query("name=aaaaaaaaaa", 15, storage, 4, &q, &why), -1);
    ASSERT_STR_EQ(why, "query too long");
}

/* explain --from: what the listener's and the routed upstream's rules say of one client. */
static void
test_from(void)
{
    static const char conf_from[] = "[listener https]\n"              /* 1 */
                                    "listen = 127.0.0.1:0\n"          /* 2 */
                                    "routes = main\n"                 /* 3 */
                                    "deny = 203.0.113.0/24\n"         /* 4 */
                                    "[listener web]\n"                /* 5 */
                                    "listen = 127.0.0.1:0\n"          /* 6 */
                                    "routes = main\n"                 /* 7 */
                                    "protocol = http\n"               /* 8 */
                                    "[routes main]\n"                 /* 9 */
                                    "staging.example.com = staging\n" /* 10 */
                                    "default = 127.0.0.1:9009\n"      /* 11 */
                                    "[upstream staging]\n"            /* 12 */
                                    "server = 127.0.0.1:9001\n"       /* 13 */
                                    "allow = 192.0.2.0/24\n"          /* 14 */
                                    "deny = 192.0.2.66\n";            /* 15 */
    struct sr_config cfg;
    struct sr_explain_query q;
    enum sr_explain_result result;

    load(&cfg, conf_from);
    memset(&q, 0, sizeof(q));
    q.name = "staging.example.com";
    q.name_len = strlen(q.name);
    q.from = "192.0.2.1";
    q.from_len = strlen(q.from);
    sr_explain_format(&cfg, "t.ini", &q, out, sizeof(out), &result);
    ASSERT_EQ(result, SR_EXPLAIN_ROUTED);
    ASSERT(strstr(out, "client: 192.0.2.1\n") != NULL);
    ASSERT(strstr(out, "  client rules of the listener: allowed: no deny line matches, and there "
                       "is no allow line\n") != NULL);
    ASSERT(strstr(out, "  client rules of upstream 'staging' (t.ini:12): allowed by allow "
                       "192.0.2.0/24 (t.ini:14), no deny line matches\n") != NULL);
    ASSERT(strstr(out, "  access: allowed\n") != NULL);

    q.from = "192.0.2.66";
    q.from_len = strlen(q.from);
    sr_explain_format(&cfg, "t.ini", &q, out, sizeof(out), &result);
    ASSERT_EQ(result, SR_EXPLAIN_DENIED);
    ASSERT_EQ(sr_explain_exit_status(result), 1);
    ASSERT(strstr(out, "refused by deny 192.0.2.66/32 (t.ini:15)\n") != NULL);
    ASSERT(strstr(out, "  access: denied, rule=upstream:staging:deny:192.0.2.66/32: a TLS "
                       "access_denied alert, then a close\n") != NULL);
    ASSERT(strstr(out, "  access: denied, rule=upstream:staging:deny:192.0.2.66/32: 403 "
                       "Forbidden, then a close\n") != NULL);

    q.from = "::ffff:198.51.100.1";
    q.from_len = strlen(q.from);
    sr_explain_format(&cfg, "t.ini", &q, out, sizeof(out), &result);
    ASSERT_EQ(result, SR_EXPLAIN_DENIED);
    ASSERT(strstr(out, "refused: no allow line matches (1 allow line(s), first at t.ini:14)\n") !=
           NULL);
    ASSERT(strstr(out, "rule=upstream:staging:not_allowed") != NULL);

    q.from = "203.0.113.9";
    q.from_len = strlen(q.from);
    q.listener = "https";
    q.listener_len = 5;
    sr_explain_format(&cfg, "t.ini", &q, out, sizeof(out), &result);
    ASSERT_EQ(result, SR_EXPLAIN_DENIED);
    ASSERT(
        strstr(out, "  client rules of the listener: refused by deny 203.0.113.0/24 (t.ini:4)\n") !=
        NULL);
    ASSERT(strstr(out, "rule=listener:https:deny:203.0.113.0/24") != NULL);

    /* Without --from nothing is said of access; a bad address is refused. */
    q.from = NULL;
    q.from_len = 0;
    sr_explain_format(&cfg, "t.ini", &q, out, sizeof(out), &result);
    ASSERT_EQ(result, SR_EXPLAIN_ROUTED);
    ASSERT(strstr(out, "access:") == NULL);
    q.from = "192.0.2.1:443";
    q.from_len = strlen(q.from);
    sr_explain_format(&cfg, "t.ini", &q, out, sizeof(out), &result);
    ASSERT_EQ(result, SR_EXPLAIN_BAD_FROM);
    ASSERT_EQ(sr_explain_exit_status(result), 2);
    sr_config_fini(&cfg);
    {
        char storage[64];
        const char *why = NULL;

        ASSERT_EQ(
            sr_explain_parse_query("name=a&from=%3A%3A1", 19, storage, sizeof(storage), &q, &why),
            0);
        check_view(q.from, q.from_len, "::1");
    }
}

int
main(void)
{
    test_precedence();
    test_alpn();
    test_listeners_and_misses();
    test_no_sni_alpn_default();
    test_quic();
    test_buffer();
    test_query();
    test_from();
    return 0;
}
