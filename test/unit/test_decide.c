/* SPDX-License-Identifier: MIT */
/* The routing decision as a table: for each listener kind (TLS, TLS with no_sni = reject,
 * HTTP, a listener with a fallback) and each thing the first bytes can say (a name as sent,
 * no name, not our protocol; ALPN lists in the client's order), the verdict, the refusal,
 * the target (as the upstream's HOST:PORT) and the kind of route that matched. */
#include "sniroute/config/decide.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/assert.h"

static const char conf[] = "[listener tls]\n"
                           "listen = 127.0.0.1:0\n"
                           "routes = main\n"
                           "[listener strict]\n"
                           "listen = 127.0.0.1:0\n"
                           "routes = main\n"
                           "no_sni = reject\n"
                           "fallback = 127.0.0.1:22\n"
                           "[listener web]\n"
                           "listen = 127.0.0.1:0\n"
                           "routes = web\n"
                           "protocol = http\n"
                           "fallback = 127.0.0.1:23\n"
                           "[listener nodefault]\n"
                           "listen = 127.0.0.1:0\n"
                           "routes = web\n"
                           "[routes main]\n"
                           "example.com = 127.0.0.1:9001\n"
                           "*.example.com = 127.0.0.1:9002\n"
                           "*.b.example.com = 127.0.0.1:9003\n"
                           "example.com[acme-tls/1] = 127.0.0.1:9100\n"
                           "*.example.com[h2] = 127.0.0.1:9200\n"
                           "default[h2] = 127.0.0.1:9201\n"
                           "default = 127.0.0.1:9009\n"
                           "[routes web]\n"
                           "www.example.org = 127.0.0.1:8080\n";

static void
on_error(void *ctx, const char *msg)
{
    (void)ctx;
    SR_FAIL("unexpected config error: %s", msg);
}

struct dcase {
    const char *listener;
    enum sr_said said;
    const char *name;
    const char *alpn; /* comma-separated, turned into the wire format */
    enum sr_verdict verdict;
    enum sr_refusal refusal;
    const char *target; /* HOST:PORT, or NULL when refused */
    enum sr_route_kind kind;
    const char *alpn_route; /* the conditioned table that decided, or NULL */
};

static const struct dcase cases[] = {
    /* TLS: exact, longest wildcard, default; case and one trailing dot normalized. */
    {"tls", SR_SAID_NAME, "example.com", NULL, SR_VERDICT_ROUTE, SR_REFUSAL_NONE,
     "127.0.0.1:9001", SR_ROUTE_EXACT, NULL},
    {"tls", SR_SAID_NAME, "Example.COM.", NULL, SR_VERDICT_ROUTE, SR_REFUSAL_NONE,
     "127.0.0.1:9001", SR_ROUTE_EXACT, NULL},
    {"tls", SR_SAID_NAME, "a.example.com", NULL, SR_VERDICT_ROUTE, SR_REFUSAL_NONE,
     "127.0.0.1:9002", SR_ROUTE_WILDCARD, NULL},
    {"tls", SR_SAID_NAME, "x.y.b.example.com", NULL, SR_VERDICT_ROUTE, SR_REFUSAL_NONE,
     "127.0.0.1:9003", SR_ROUTE_WILDCARD, NULL},
    {"tls", SR_SAID_NAME, "other.test", NULL, SR_VERDICT_ROUTE, SR_REFUSAL_NONE,
     "127.0.0.1:9009", SR_ROUTE_DEFAULT, NULL},
    /* ALPN: a conditioned route beats every plain one, in the client's order. */
    {"tls", SR_SAID_NAME, "example.com", "acme-tls/1", SR_VERDICT_ROUTE, SR_REFUSAL_NONE,
     "127.0.0.1:9100", SR_ROUTE_EXACT, "acme-tls/1"},
    {"tls", SR_SAID_NAME, "a.example.com", "http/1.1,h2", SR_VERDICT_ROUTE, SR_REFUSAL_NONE,
     "127.0.0.1:9200", SR_ROUTE_WILDCARD, "h2"},
    {"tls", SR_SAID_NAME, "example.com", "h2,acme-tls/1", SR_VERDICT_ROUTE, SR_REFUSAL_NONE,
     "127.0.0.1:9201", SR_ROUTE_DEFAULT, "h2"},
    {"tls", SR_SAID_NAME, "example.com", "acme-tls/1,h2", SR_VERDICT_ROUTE, SR_REFUSAL_NONE,
     "127.0.0.1:9100", SR_ROUTE_EXACT, "acme-tls/1"},
    {"tls", SR_SAID_NAME, "example.com", "http/1.1", SR_VERDICT_ROUTE, SR_REFUSAL_NONE,
     "127.0.0.1:9001", SR_ROUTE_EXACT, NULL},
    /* No SNI: the default (ALPN first), or refused by no_sni = reject. */
    {"tls", SR_SAID_NO_NAME, NULL, NULL, SR_VERDICT_ROUTE, SR_REFUSAL_NONE, "127.0.0.1:9009",
     SR_ROUTE_DEFAULT, NULL},
    {"tls", SR_SAID_NO_NAME, NULL, "h2", SR_VERDICT_ROUTE, SR_REFUSAL_NONE, "127.0.0.1:9201",
     SR_ROUTE_DEFAULT, "h2"},
    {"strict", SR_SAID_NO_NAME, NULL, "h2", SR_VERDICT_REFUSE, SR_REFUSAL_NO_SNI, NULL,
     SR_ROUTE_MISS, NULL},
    /* A TLS name that does not normalize is never routed. */
    {"tls", SR_SAID_NAME, "bad..name", NULL, SR_VERDICT_REFUSE, SR_REFUSAL_BAD_NAME, NULL,
     SR_ROUTE_MISS, NULL},
    /* Not TLS: the fallback, or refused. */
    {"strict", SR_SAID_OTHER, NULL, NULL, SR_VERDICT_FALLBACK, SR_REFUSAL_NONE,
     "127.0.0.1:22", SR_ROUTE_MISS, NULL},
    {"tls", SR_SAID_OTHER, NULL, NULL, SR_VERDICT_REFUSE, SR_REFUSAL_NOT_PROTOCOL, NULL,
     SR_ROUTE_MISS, NULL},
    /* HTTP: Host looked up, ALPN ignored, an IP literal or a bad Host gets the default. */
    {"web", SR_SAID_NAME, "WWW.example.org", "h2", SR_VERDICT_ROUTE, SR_REFUSAL_NONE,
     "127.0.0.1:8080", SR_ROUTE_EXACT, NULL},
    {"web", SR_SAID_NAME, "nowhere.test", NULL, SR_VERDICT_REFUSE, SR_REFUSAL_NO_ROUTE, NULL,
     SR_ROUTE_MISS, NULL},
    {"web", SR_SAID_NO_NAME, NULL, NULL, SR_VERDICT_REFUSE, SR_REFUSAL_NO_ROUTE, NULL,
     SR_ROUTE_MISS, NULL},
    {"web", SR_SAID_NAME, "bad..host", NULL, SR_VERDICT_REFUSE, SR_REFUSAL_NO_ROUTE, NULL,
     SR_ROUTE_MISS, NULL},
    {"web", SR_SAID_OTHER, NULL, NULL, SR_VERDICT_FALLBACK, SR_REFUSAL_NONE, "127.0.0.1:23",
     SR_ROUTE_MISS, NULL},
    {"nodefault", SR_SAID_NO_NAME, NULL, NULL, SR_VERDICT_REFUSE, SR_REFUSAL_NO_ROUTE, NULL,
     SR_ROUTE_MISS, NULL},
    {"nodefault", SR_SAID_NAME, "a.example.com", NULL, SR_VERDICT_REFUSE, SR_REFUSAL_NO_ROUTE,
     NULL, SR_ROUTE_MISS, NULL},
};

static const struct sr_listener_config *
listener(const struct sr_config *cfg, const char *name)
{
    size_t i;

    for (i = 0; i < cfg->n_listeners; i++) {
        if (strcmp(cfg->listeners[i].name, name) == 0) {
            return &cfg->listeners[i];
        }
    }
    SR_FAIL("no listener %s", name);
    return NULL;
}

/* "a,bc" -> "\1a\2bc" */
static size_t
wire_alpn(const char *list, uint8_t *out)
{
    size_t len = 0;
    const char *p = list;

    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);

        out[len++] = (uint8_t)n;
        memcpy(out + len, p, n);
        len += n;
        p = comma != NULL ? comma + 1 : NULL;
    }
    return len;
}

static void
check_case(const struct sr_config *cfg, const struct dcase *c)
{
    uint8_t alpn[256];
    struct sr_first_bytes in = {
        .said = c->said,
        .name = (const uint8_t *)c->name,
        .name_len = c->name != NULL ? strlen(c->name) : 0,
        .alpn = alpn,
        .alpn_len = wire_alpn(c->alpn, alpn),
    };
    struct sr_decision d;
    char text[SR_ADDR_HOST_MAX + 16];

    sr_decide(cfg, listener(cfg, c->listener), &in, &d);
    fprintf(stderr, "  %s %s [%s]\n", c->listener, c->name ? c->name : "-",
            c->alpn ? c->alpn : "");
    ASSERT_EQ(d.verdict, c->verdict);
    ASSERT_EQ(d.refusal, c->refusal);
    if (c->target == NULL) {
        return;
    }
    ASSERT_LT(d.target, cfg->n_upstreams);
    sr_addr_format(&cfg->upstreams[d.target].addr, text, sizeof(text));
    ASSERT_STR_EQ(text, c->target);
    if (c->verdict == SR_VERDICT_ROUTE) {
        ASSERT_EQ(d.hit.kind, c->kind);
        if (c->alpn_route == NULL) {
            ASSERT(d.alpn == NULL);
        } else {
            ASSERT(d.alpn != NULL);
            ASSERT_STR_EQ(d.alpn->proto, c->alpn_route);
        }
    }
}

/* A broken ALPN list (an entry running past the end, a zero length) ends the search
 * there: the plain table decides. */
static void
test_broken_alpn(const struct sr_config *cfg)
{
    static const uint8_t past[] = {5, 'h', '2'};
    static const uint8_t zero[] = {0, 2, 'h', '2'};
    struct sr_first_bytes in = {SR_SAID_NAME, (const uint8_t *)"a.example.com", 13, past,
                                sizeof(past), false, NULL};
    struct sr_decision d;

    sr_decide(cfg, listener(cfg, "tls"), &in, &d);
    ASSERT_EQ(d.verdict, SR_VERDICT_ROUTE);
    ASSERT(d.alpn == NULL);
    in.alpn = zero;
    in.alpn_len = sizeof(zero);
    sr_decide(cfg, listener(cfg, "tls"), &in, &d);
    ASSERT(d.alpn == NULL);
    ASSERT_STR_EQ(d.name, "a.example.com");
}

static void
test_outcomes(void)
{
    ASSERT_STR_EQ(sr_refusal_outcome(SR_REFUSAL_NO_ROUTE, false), "no_route");
    ASSERT_STR_EQ(sr_refusal_outcome(SR_REFUSAL_NO_SNI, false), "no_sni");
    ASSERT_STR_EQ(sr_refusal_outcome(SR_REFUSAL_BAD_NAME, false), "malformed");
    ASSERT_STR_EQ(sr_refusal_outcome(SR_REFUSAL_NOT_PROTOCOL, false), "not_tls");
    ASSERT_STR_EQ(sr_refusal_outcome(SR_REFUSAL_NOT_PROTOCOL, true), "not_http");
}

int
main(void)
{
    struct sr_config cfg;
    FILE *f = fmemopen((void *)conf, strlen(conf), "r");
    size_t i;

    ASSERT(f != NULL);
    ASSERT_EQ(sr_config_load_stream(&cfg, f, "t.ini", on_error, NULL), 0);
    fclose(f);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_case(&cfg, &cases[i]);
    }
    test_broken_alpn(&cfg);
    test_outcomes();
    sr_config_fini(&cfg);
    printf("test_decide: %zu cases ok\n", sizeof(cases) / sizeof(cases[0]));
    return 0;
}
