/* SPDX-License-Identifier: MIT */
/* Access rules (issue 15) as tables: a config with allow and deny lines in listeners and
 * upstreams, then for each (section, client address) the verdict and the label of the rule
 * that decided, whether the client arrives as IPv4 or as v4-mapped IPv6; the routing
 * decision with a client address (listener rules first, then the routed upstream's); and
 * the loader's exact messages for bad values. */
#include "sniroute/config/access.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "sniroute/config/config.h"
#include "sniroute/config/decide.h"

#include "support/assert.h"

static const char conf[] = "[listener open]\n"
                           "listen = 127.0.0.1:0\n"
                           "routes = main\n"
                           "[listener https]\n"
                           "listen = 127.0.0.1:0\n"
                           "routes = main\n"
                           "deny = 203.0.113.0/24 198.51.100.7\n"
                           "allow = 203.0.113.128/25\n" /* inside the deny: never effective */
                           "deny = 2001:db8:bad::/48\n"
                           "[listener office]\n"
                           "listen = 127.0.0.1:0\n"
                           "routes = main\n"
                           "protocol = http\n"
                           "allow = 192.0.2.0/24, 2001:db8::/32\n"
                           "allow = ::ffff:10.1.0.0/112\n"
                           "deny = 192.0.2.66\n"
                           "[routes main]\n"
                           "staging.example.com = staging\n"
                           "admin.example.com = admin\n"
                           "open.example.com = 127.0.0.1:9000\n"
                           "[upstream staging]\n"
                           "server = 127.0.0.1:9001\n"
                           "allow = 127.0.0.2\n"
                           "allow = ::1\n"
                           "[upstream admin]\n"
                           "server = 127.0.0.1:9002\n"
                           "deny = 127.0.0.3\n"
                           "deny = 0.0.0.0/0\n";

static void
on_error(void *ctx, const char *msg)
{
    (void)ctx;
    SR_FAIL("unexpected config error: %s", msg);
}

/* <text> as a sockaddr: "a.b.c.d" as AF_INET, anything else as AF_INET6. */
static const struct sockaddr *
addr_of(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (strchr(text, ':') == NULL) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;

        in->sin_family = AF_INET;
        in->sin_port = htons(4242);
        ASSERT_EQ(inet_pton(AF_INET, text, &in->sin_addr), 1);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

        in6->sin6_family = AF_INET6;
        ASSERT_EQ(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    }
    return (const struct sockaddr *)ss;
}

struct acase {
    const char *section; /* "listener:NAME" or "upstream:NAME" */
    const char *client;
    bool is_allowed;
    const char *label; /* the deciding rule's label, or NULL */
};

static const struct acase cases[] = {
    /* No rules: everyone. */
    {"listener:open", "203.0.113.9", true, NULL},
    {"listener:open", "::1", true, NULL},
    /* Denies; a bare address is one host. The section has an allow line (inside a deny),
     * so every address it does not allow is refused too. */
    {"listener:https", "203.0.113.9", false, "listener:https:deny:203.0.113.0/24"},
    {"listener:https", "::ffff:203.0.113.9", false, "listener:https:deny:203.0.113.0/24"},
    {"listener:https", "198.51.100.7", false, "listener:https:deny:198.51.100.7/32"},
    {"listener:https", "198.51.100.8", false, "listener:https:not_allowed"},
    {"listener:https", "203.0.114.1", false, "listener:https:not_allowed"},
    {"listener:https", "2001:db8:bad:1::5", false, "listener:https:deny:2001:db8:bad::/48"},
    {"listener:https", "2001:db8:bae::5", false, "listener:https:not_allowed"},
    /* An allow inside a deny: the deny wins, whatever the order in the file. */
    {"listener:https", "203.0.113.200", false, "listener:https:deny:203.0.113.0/24"},
    /* Allow lines: only those; a deny inside an allow still refuses. */
    {"listener:office", "192.0.2.1", true, "listener:office:allow:192.0.2.0/24"},
    {"listener:office", "::ffff:192.0.2.1", true, "listener:office:allow:192.0.2.0/24"},
    {"listener:office", "192.0.2.66", false, "listener:office:deny:192.0.2.66/32"},
    {"listener:office", "192.0.3.1", false, "listener:office:not_allowed"},
    {"listener:office", "2001:db8:1::1", true, "listener:office:allow:2001:db8::/32"},
    {"listener:office", "2001:db9::1", false, "listener:office:not_allowed"},
    /* A v4-mapped range matches plain IPv4 clients too. */
    {"listener:office", "10.1.2.3", true, "listener:office:allow:::ffff:10.1.0.0/112"},
    {"listener:office", "10.2.0.1", false, "listener:office:not_allowed"},
    /* Upstreams. */
    {"upstream:staging", "127.0.0.2", true, "upstream:staging:allow:127.0.0.2/32"},
    {"upstream:staging", "127.0.0.3", false, "upstream:staging:not_allowed"},
    {"upstream:staging", "::1", true, "upstream:staging:allow:::1/128"},
    {"upstream:staging", "::2", false, "upstream:staging:not_allowed"},
    /* Both deny 127.0.0.3: the first in the file decides (for the label). */
    {"upstream:admin", "127.0.0.3", false, "upstream:admin:deny:127.0.0.3/32"},
    {"upstream:admin", "127.0.0.2", false, "upstream:admin:deny:0.0.0.0/0"},
    /* 0.0.0.0/0 is every IPv4 client, not every IPv6 one. */
    {"upstream:admin", "::1", true, NULL},
};

static const struct sr_access_list *
section(const struct sr_config *cfg, const char *which)
{
    size_t i;

    if (strncmp(which, "listener:", 9) == 0) {
        for (i = 0; i < cfg->n_listeners; i++) {
            if (strcmp(cfg->listeners[i].name, which + 9) == 0) {
                return &cfg->listeners[i].access;
            }
        }
    } else {
        for (i = 0; i < cfg->n_pools; i++) {
            if (strcmp(cfg->pools[i].name, which + 9) == 0) {
                return &cfg->pools[i].access;
            }
        }
    }
    SR_FAIL("no section %s", which);
    return NULL;
}

static void
test_cases(const struct sr_config *cfg)
{
    struct sockaddr_storage ss;
    struct sr_access_result r;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct acase *c = &cases[i];

        fprintf(stderr, "  %s %s\n", c->section, c->client);
        ASSERT_EQ(sr_access_check(section(cfg, c->section), addr_of(c->client, &ss), &r),
                  c->is_allowed);
        ASSERT_EQ(r.is_allowed, c->is_allowed);
        if (c->label == NULL) {
            ASSERT(r.label == NULL);
            ASSERT(r.rule == NULL);
        } else {
            ASSERT(r.label != NULL);
            ASSERT_STR_EQ(r.label, c->label);
        }
    }
}

/* Denies are kept before allows, each kind in file order; lines are kept. */
static void
test_order(const struct sr_config *cfg)
{
    const struct sr_access_list *l = section(cfg, "listener:https");

    ASSERT_EQ(l->n, 4);
    ASSERT_EQ(l->n_deny, 3);
    ASSERT_STR_EQ(l->rules[0].label, "listener:https:deny:203.0.113.0/24");
    ASSERT_STR_EQ(l->rules[1].label, "listener:https:deny:198.51.100.7/32");
    ASSERT_STR_EQ(l->rules[2].label, "listener:https:deny:2001:db8:bad::/48");
    ASSERT_STR_EQ(l->rules[3].label, "listener:https:allow:203.0.113.128/25");
    ASSERT_EQ(l->rules[0].line, 7);
    ASSERT_EQ(l->rules[1].line, 7);
    ASSERT_EQ(l->rules[3].line, 8);
    ASSERT(l->not_allowed != NULL);
    ASSERT(section(cfg, "listener:open")->not_allowed == NULL);
    ASSERT(sr_access_rule_within(&l->rules[3], &l->rules[0]));
    ASSERT(!sr_access_rule_within(&l->rules[0], &l->rules[3]));
    ASSERT(sr_access_rules_overlap(&l->rules[0], &l->rules[3]));
    ASSERT(!sr_access_rules_overlap(&l->rules[0], &l->rules[1]));
    ASSERT(!sr_access_rules_overlap(&l->rules[0], &l->rules[2]));
}

/* A client that is not IPv4 or IPv6 (or none) meets no rule. */
static void
test_other_family(const struct sr_config *cfg)
{
    struct sockaddr sa;
    struct sr_access_result r;

    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNIX;
    ASSERT(sr_access_check(section(cfg, "upstream:admin"), &sa, &r));
    ASSERT(!sr_access_check(section(cfg, "listener:office"), &sa, &r));
    ASSERT_STR_EQ(r.label, "listener:office:not_allowed");
    ASSERT(!sr_access_check(section(cfg, "upstream:staging"), NULL, &r));
}

struct dcase {
    const char *listener;
    const char *name;
    const char *client; /* NULL: no address (explain without --from) */
    enum sr_verdict verdict;
    enum sr_refusal refusal;
    const char *denied_by;
};

static const struct dcase dcases[] = {
    {"open", "staging.example.com", "127.0.0.2", SR_VERDICT_ROUTE, SR_REFUSAL_NONE, NULL},
    {"open", "staging.example.com", "127.0.0.3", SR_VERDICT_REFUSE, SR_REFUSAL_DENIED,
     "upstream:staging:not_allowed"},
    {"open", "staging.example.com", NULL, SR_VERDICT_ROUTE, SR_REFUSAL_NONE, NULL},
    {"open", "open.example.com", "127.0.0.3", SR_VERDICT_ROUTE, SR_REFUSAL_NONE, NULL},
    {"open", "admin.example.com", "127.0.0.2", SR_VERDICT_REFUSE, SR_REFUSAL_DENIED,
     "upstream:admin:deny:0.0.0.0/0"},
    /* The listener's rules come first, before the route is even looked up. */
    {"https", "staging.example.com", "203.0.113.1", SR_VERDICT_REFUSE, SR_REFUSAL_DENIED,
     "listener:https:deny:203.0.113.0/24"},
    {"https", "nowhere.example.com", "203.0.113.1", SR_VERDICT_REFUSE, SR_REFUSAL_DENIED,
     "listener:https:deny:203.0.113.0/24"},
    {"https", "nowhere.example.com", "127.0.0.1", SR_VERDICT_REFUSE, SR_REFUSAL_DENIED,
     "listener:https:not_allowed"},
    {"open", "nowhere.example.com", "127.0.0.1", SR_VERDICT_REFUSE, SR_REFUSAL_NO_ROUTE, NULL},
    {"office", "staging.example.com", "192.0.2.1", SR_VERDICT_REFUSE, SR_REFUSAL_DENIED,
     "upstream:staging:not_allowed"},
    {"office", "staging.example.com", "127.0.0.2", SR_VERDICT_REFUSE, SR_REFUSAL_DENIED,
     "listener:office:not_allowed"},
};

static void
test_decide(const struct sr_config *cfg)
{
    struct sockaddr_storage ss;
    struct sr_decision d;
    size_t i;
    size_t j;

    for (i = 0; i < sizeof(dcases) / sizeof(dcases[0]); i++) {
        const struct dcase *c = &dcases[i];
        struct sr_first_bytes in = {
            .said = SR_SAID_NAME,
            .name = (const uint8_t *)c->name,
            .name_len = strlen(c->name),
            .from = c->client != NULL ? addr_of(c->client, &ss) : NULL,
        };

        for (j = 0; j < cfg->n_listeners && strcmp(cfg->listeners[j].name, c->listener) != 0; j++) {
        }
        ASSERT_LT(j, cfg->n_listeners);
        fprintf(stderr, "  decide %s %s from %s\n", c->listener, c->name,
                c->client ? c->client : "-");
        sr_decide(cfg, &cfg->listeners[j], &in, &d);
        ASSERT_EQ(d.verdict, c->verdict);
        ASSERT_EQ(d.refusal, c->refusal);
        if (c->denied_by == NULL) {
            ASSERT(d.denied_by == NULL);
        } else {
            ASSERT(d.denied_by != NULL);
            ASSERT_STR_EQ(d.denied_by, c->denied_by);
        }
    }
    ASSERT_STR_EQ(sr_refusal_outcome(SR_REFUSAL_DENIED, false), "denied");
}

/* The loader's messages for bad values, each exact. */
struct ecase {
    const char *text;
    const char *msg;
};

static const struct ecase ecases[] = {
    {"[listener a]\nlisten = 127.0.0.1:0\nroutes = r\nallow = 10.1.2.3/8\n"
     "[routes r]\ndefault = 127.0.0.1:1\n",
     "t.ini:4: listener 'a': allow: '10.1.2.3/8': address has bits set beyond the prefix "
     "length (did you mean 10.0.0.0/8?)"},
    {"[listener a]\nlisten = 127.0.0.1:0\nroutes = r\ndeny = 10.0.0.0/33\n"
     "[routes r]\ndefault = 127.0.0.1:1\n",
     "t.ini:4: listener 'a': deny: '10.0.0.0/33': prefix length must be 0..32 for IPv4, 0..128 "
     "for IPv6"},
    {"[listener a]\nlisten = 127.0.0.1:0\nroutes = r\ndeny =\n"
     "[routes r]\ndefault = 127.0.0.1:1\n",
     "t.ini:4: listener 'a': deny: empty value"},
    {"[listener a]\nlisten = 127.0.0.1:0\nroutes = r\n[routes r]\ndefault = u\n"
     "[upstream u]\nserver = 127.0.0.1:1\nallow = office.example.com\n",
     "t.ini:8: upstream 'u': allow: 'office.example.com': not an IPv4 or IPv6 address"},
    {"[sniroute]\nallow = 10.0.0.0/8\n[listener a]\nlisten = 127.0.0.1:0\nroutes = r\n"
     "[routes r]\ndefault = 127.0.0.1:1\n",
     "t.ini:2: sniroute: unknown key 'allow'"},
};

static char last_msg[512];
static size_t n_msgs;

static void
on_msg(void *ctx, const char *msg)
{
    (void)ctx;
    if (n_msgs++ == 0) {
        snprintf(last_msg, sizeof(last_msg), "%s", msg);
    }
}

static void
test_errors(void)
{
    size_t i;

    for (i = 0; i < sizeof(ecases) / sizeof(ecases[0]); i++) {
        struct sr_config cfg;
        FILE *f = fmemopen((void *)ecases[i].text, strlen(ecases[i].text), "r");

        ASSERT(f != NULL);
        n_msgs = 0;
        last_msg[0] = '\0';
        ASSERT_GE(sr_config_load_stream(&cfg, f, "t.ini", on_msg, NULL), 1);
        fclose(f);
        ASSERT_STR_EQ(last_msg, ecases[i].msg);
        sr_config_fini(&cfg);
    }
}

/* At most SR_ACCESS_RULES_MAX ranges a section: the next is a problem on its line. */
static void
test_bound(void)
{
    static char text[SR_ACCESS_RULES_MAX * 24 + 256];
    struct sr_config cfg;
    size_t len;
    size_t i;
    FILE *f;

    len = (size_t)snprintf(text, sizeof(text), "[listener a]\nlisten = 127.0.0.1:0\nroutes = r\n");
    for (i = 0; i <= SR_ACCESS_RULES_MAX; i++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len, "deny = 10.%zu.%zu.0/24\n", i / 256,
                                i % 256);
    }
    len += (size_t)snprintf(text + len, sizeof(text) - len, "[routes r]\ndefault = 127.0.0.1:1\n");
    f = fmemopen(text, len, "r");
    ASSERT(f != NULL);
    n_msgs = 0;
    ASSERT_EQ(sr_config_load_stream(&cfg, f, "t.ini", on_msg, NULL), 1);
    fclose(f);
    ASSERT_STR_EQ(last_msg, "t.ini:260: listener 'a': deny: more than 256 allow and deny ranges "
                            "in one section");
    sr_config_fini(&cfg);
}

int
main(void)
{
    struct sr_config cfg;
    FILE *f = fmemopen((void *)conf, strlen(conf), "r");

    ASSERT(f != NULL);
    ASSERT_EQ(sr_config_load_stream(&cfg, f, "t.ini", on_error, NULL), 0);
    fclose(f);
    test_cases(&cfg);
    test_order(&cfg);
    test_other_family(&cfg);
    test_decide(&cfg);
    sr_config_fini(&cfg);
    test_errors();
    test_bound();
    printf("test_access: %zu cases, %zu decisions ok\n", sizeof(cases) / sizeof(cases[0]),
           sizeof(dcases) / sizeof(dcases[0]));
    return 0;
}
