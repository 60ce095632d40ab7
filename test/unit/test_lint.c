/* SPDX-License-Identifier: MIT */
/* Table-driven tests of the lint: each case is a config text (valid: it must load without
 * problems) and the exact findings it must produce, in order; none for a clean config.
 * Host names are "resolved" by a fake resolver: names under .bad do not resolve. Then a
 * 100k-route config, checked for the findings it plants (and not timed: bench/ does that). */
#include "sniroute/config/lint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/assert.h"

#define MAX_FINDINGS 8

struct lint_case {
    const char *name;
    const char *text;
    const char *findings[MAX_FINDINGS];
};

#define HEAD "[listener a]\nlisten = 127.0.0.1:0\nroutes = m\n[routes m]\n" /* lines 1-4 */

static const struct lint_case cases[] = {
    {"clean: nested wildcards to different upstreams are normal",
     HEAD "example.com = 127.0.0.1:1\n*.example.com = 127.0.0.1:2\n*.b.example.com = "
          "127.0.0.1:3\na.b.example.com = 127.0.0.1:4\nx.example.com[acme-tls/1] = "
          "127.0.0.1:5\n",
     {NULL}},
    {"exact name covered by a wildcard with the same upstream",
     HEAD "*.example.com = 127.0.0.1:2\nwww.example.com = 127.0.0.1:2\nexample.com = "
          "127.0.0.1:2\n",
     {"t.ini:6: warning: routes 'm': route 'www.example.com' is redundant: without it, "
      "'*.example.com' (line 5) sends it to the same upstream (hint: remove it, or point it "
      "elsewhere)"}},
    {"nested wildcard with the same upstream as the wider one",
     HEAD "*.example.com = 127.0.0.1:2\n*.b.example.com = 127.0.0.1:2\nexample.com = "
          "127.0.0.1:3\n",
     {"t.ini:6: warning: routes 'm': route '*.b.example.com' is redundant: without it, "
      "'*.example.com' (line 5) sends its names to the same upstream (hint: remove it, or "
      "point it elsewhere)"}},
    {"exact name and wildcard the default covers anyway",
     HEAD "default = 127.0.0.1:9\na.test = 127.0.0.1:9\n*.b.test = 127.0.0.1:9\nc.test = "
          "127.0.0.1:8\n",
     {"t.ini:6: warning: routes 'm': route 'a.test' is redundant: without it, 'default' "
      "(line 5) sends it to the same upstream (hint: remove it, or point it elsewhere)",
      "t.ini:7: warning: routes 'm': route '*.b.test' is redundant: without it, 'default' "
      "(line 5) sends its names to the same upstream (hint: remove it, or point it "
      "elsewhere)"}},
    {"an ALPN route identical to the plain route",
     HEAD "example.com = 127.0.0.1:1\nexample.com[h2] = 127.0.0.1:1\n",
     {"t.ini:6: warning: routes 'm': route 'example.com[h2]' is redundant: the plain route "
      "'example.com' (line 5) sends it to the same upstream whatever the client offers (hint: "
      "remove the [h2] route, or point it elsewhere)"}},
    {"an ALPN route identical to the plain one, but another ALPN table could take it",
     HEAD "example.com = 127.0.0.1:1\nexample.com[h2] = 127.0.0.1:1\n"
          "default[http/1.1] = 127.0.0.1:7\n",
     {NULL}},
    {"an ALPN route identical to the plain one, but its own wildcard would take over",
     HEAD "example.com = 127.0.0.1:1\nexample.com[h2] = 127.0.0.1:1\n"
          "*.com[h2] = 127.0.0.1:3\n",
     {NULL}},
    {"redundant inside an ALPN table",
     HEAD "*.example.com[h2] = 127.0.0.1:1\na.example.com[h2] = 127.0.0.1:1\n"
          "default = 127.0.0.1:2\n",
     {"t.ini:6: warning: routes 'm': route 'a.example.com[h2]' is redundant: without it, "
      "'*.example.com[h2]' (line 5) sends it to the same upstream (hint: remove it, or point "
      "it elsewhere)"}},
    {"a wildcard whose apex has no route",
     HEAD "*.example.com = 127.0.0.1:1\n*.example.org = 127.0.0.1:1\nexample.org = "
          "127.0.0.1:2\n",
     {"t.ini:5: warning: routes 'm': wildcard '*.example.com' does not match 'example.com' "
      "itself, and no other route does: clients asking for it get an unrecognized_name alert "
      "(hint: add 'example.com = ...' if it belongs with the wildcard)"}},
    {"the apex taken by an ALPN table is not reported",
     HEAD "*.example.com = 127.0.0.1:1\nexample.com[acme-tls/1] = 127.0.0.1:2\n",
     {NULL}},
    {"ALPN routes in a section only HTTP listeners use",
     "[listener web]\nlisten = 127.0.0.1:0\nroutes = m\nprotocol = http\n[routes m]\n"
     "a.test = 127.0.0.1:1\na.test[h2] = 127.0.0.1:2\ndefault[acme-tls/1] = 127.0.0.1:3\n",
     {"t.ini:7: warning: routes 'm': routes with the ALPN condition [h2] never match: every "
      "listener using this section has protocol = http, which routes by Host alone (hint: move "
      "them to a section a TLS listener uses)",
      "t.ini:8: warning: routes 'm': routes with the ALPN condition [acme-tls/1] never match: "
      "every listener using this section has protocol = http, which routes by Host alone "
      "(hint: move them to a section a TLS listener uses)"}},
    {"ALPN routes in a section a TLS listener uses too",
     "[listener web]\nlisten = 127.0.0.1:0\nroutes = m\nprotocol = http\n[listener tls]\n"
     "listen = 127.0.0.1:0\nroutes = m\n[routes m]\na.test = 127.0.0.1:1\n"
     "a.test[h2] = 127.0.0.1:2\n",
     {NULL}},
    {"unused routes and upstream sections",
     HEAD "default = used\n[routes spare]\nx.test = 127.0.0.1:1\n[upstream used]\nserver = "
          "127.0.0.1:1\n[upstream idle]\nserver = 127.0.0.1:2\n",
     {"t.ini:6: warning: routes 'spare' is used by no listener (hint: name it in a listener's "
      "'routes =', or remove it)",
      "t.ini:10: warning: upstream 'idle' is named by no route and no fallback (hint: use it "
      "as a route target, 'NAME = idle', or remove it)"}},
    {"an upstream named only as a fallback is used",
     "[listener a]\nlisten = 127.0.0.1:0\nroutes = m\nfallback = ssh\n[routes m]\n"
     "default = 127.0.0.1:1\n[upstream ssh]\nserver = 127.0.0.1:22\n",
     {NULL}},
    {"host names that do not resolve, each once, at its first line",
     HEAD "a.test = x.bad:443\nb.test = x.bad:8443\nc.test = good.example:443\n"
          "d.test = pool\n[upstream pool]\nserver = y.bad:1\nserver = 10.0.0.1:1\n",
     {"t.ini:5: warning: upstream host 'x.bad' does not resolve here: no such name (hint: it "
      "is resolved at each connect; until it resolves, connections routed there fail with "
      "resolve_failed)",
      "t.ini:9: warning: upstream 'pool': server host 'y.bad' does not resolve here: no such "
      "name (hint: it is resolved at each connect; until it resolves, the pool skips it)"}},
    /* Access rules (issue 15). Lines: listener a at 1-3, allow/deny from 4 on. */
    {"access: clean: a deny inside an allow, two disjoint allows, an unused upstream's allow",
     "[listener a]\nlisten = 127.0.0.1:0\nroutes = m\nallow = 10.0.0.0/8 192.0.2.0/24\n"
     "deny = 10.9.0.0/16\n[routes m]\ndefault = 127.0.0.1:1\n[upstream u]\n"
     "server = 127.0.0.1:2\nallow = ::1\n",
     {"t.ini:8: warning: upstream 'u' is named by no route and no fallback (hint: use it as a "
      "route target, 'NAME = u', or remove it)"}},
    {"access: an allow inside a deny, a duplicate, a range inside a broader one",
     "[listener a]\nlisten = 127.0.0.1:0\nroutes = m\ndeny = 203.0.113.0/24\n"
     "allow = 203.0.113.128/25\ndeny = 198.51.100.0/24, 198.51.100.7\n"
     "deny = 203.0.113.0/24\nallow = 0.0.0.0/0\n[routes m]\ndefault = 127.0.0.1:1\n",
     {"t.ini:5: warning: listener 'a': allow 203.0.113.128/25 never takes effect: deny "
      "203.0.113.0/24 (line 4) refuses every address in it, and deny beats allow whatever the "
      "order (hint: remove one of them)",
      "t.ini:6: warning: listener 'a': deny 198.51.100.7/32 changes nothing: it lies inside "
      "deny 198.51.100.0/24 (line 6) (hint: remove it)",
      "t.ini:7: warning: listener 'a': deny 203.0.113.0/24 is listed twice (first at line 4)"}},
    {"access: a deny outside every allow; v4-mapped and plain IPv4 are one space",
     "[listener a]\nlisten = 127.0.0.1:0\nroutes = m\n[routes m]\ndefault = u\n"
     "[upstream u]\nserver = 127.0.0.1:2\nallow = 192.0.2.0/24\ndeny = 10.0.0.1\n"
     "deny = 192.0.2.7\nallow = ::ffff:192.0.2.0/120\n",
     {"t.ini:9: warning: upstream 'u': deny 10.0.0.1/32 changes nothing: no allow line admits "
      "any address in it, and a section with allow lines refuses every address it does not "
      "allow (hint: remove it)",
      "t.ini:11: warning: upstream 'u': allow ::ffff:192.0.2.0/120 is listed twice (first at "
      "line 8)"}},
};

struct collected {
    char *lines[MAX_FINDINGS + 8];
    size_t n;
    size_t n_notes;
};

static void
on_error(void *ctx, const char *msg)
{
    (void)ctx;
    SR_FAIL("unexpected config error: %s", msg);
}

static void
on_msg(void *ctx, enum sr_lint_severity severity, const char *msg)
{
    struct collected *got = ctx;

    if (severity == SR_LINT_NOTE) {
        got->n_notes++;
    }
    if (got->n < sizeof(got->lines) / sizeof(got->lines[0])) {
        got->lines[got->n] = strdup(msg);
        ASSERT(got->lines[got->n] != NULL);
    }
    got->n++;
}

static void
collected_free(struct collected *got)
{
    size_t i;

    for (i = 0; i < got->n && i < sizeof(got->lines) / sizeof(got->lines[0]); i++) {
        free(got->lines[i]);
    }
    memset(got, 0, sizeof(*got));
}

/* The fake resolver: a name under .bad does not resolve. Counts its calls and names. */
struct fake_dns {
    size_t n_calls;
    size_t n_names;
};

static void
fake_resolve(void *ctx, const char *const *hosts, size_t n, const char **why)
{
    struct fake_dns *dns = ctx;
    size_t i;

    dns->n_calls++;
    dns->n_names += n;
    for (i = 0; i < n; i++) {
        size_t len = strlen(hosts[i]);

        why[i] = len > 4 && strcmp(hosts[i] + len - 4, ".bad") == 0 ? "no such name" : NULL;
    }
}

static void
load(struct sr_config *cfg, const char *text, size_t len)
{
    FILE *f = fmemopen((void *)text, len, "r");

    ASSERT(f != NULL);
    ASSERT_EQ(sr_config_load_stream(cfg, f, "t.ini", on_error, NULL), 0);
    fclose(f);
}

static void
test_cases(void)
{
    size_t i;
    size_t j;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct lint_case *c = &cases[i];
        struct fake_dns dns = {0, 0};
        struct sr_lint_options opt = {fake_resolve, &dns, 0};
        struct collected got;
        struct sr_config cfg;
        size_t n_want = 0;
        size_t n_warnings;

        memset(&got, 0, sizeof(got));
        load(&cfg, c->text, strlen(c->text));
        n_warnings = sr_lint_run(&cfg, "t.ini", &opt, on_msg, &got);
        while (n_want < MAX_FINDINGS && c->findings[n_want] != NULL) {
            n_want++;
        }
        for (j = 0; j < got.n && j < n_want; j++) {
            if (strcmp(got.lines[j], c->findings[j]) != 0) {
                SR_FAIL("case '%s', finding %zu:\n got: %s\nwant: %s", c->name, j, got.lines[j],
                        c->findings[j]);
            }
        }
        if (got.n != n_want) {
            SR_FAIL("case '%s': %zu findings, want %zu (first extra: %s)", c->name, got.n, n_want,
                    got.n > n_want ? got.lines[n_want] : "-");
        }
        ASSERT_EQ(n_warnings, n_want);
        ASSERT_LE(dns.n_calls, 1);
        sr_config_fini(&cfg);
        collected_free(&got);
    }
}

/* More distinct host names than the bound: a note, no resolving, no warning. */
static void
test_resolve_bound(void)
{
    static const char text[] = HEAD "a.test = a.bad:1\nb.test = b.bad:1\nc.test = c.bad:1\n";
    struct fake_dns dns = {0, 0};
    struct sr_lint_options opt = {fake_resolve, &dns, 2};
    struct collected got;
    struct sr_config cfg;

    memset(&got, 0, sizeof(got));
    load(&cfg, text, strlen(text));
    ASSERT_EQ(sr_lint_run(&cfg, "t.ini", &opt, on_msg, &got), 0);
    ASSERT_EQ(dns.n_calls, 0);
    ASSERT_EQ(got.n, 1);
    ASSERT_EQ(got.n_notes, 1);
    ASSERT_STR_EQ(got.lines[0], "t.ini: note: 3 distinct upstream host names, more than 2: not "
                                "checking that they resolve");
    collected_free(&got);

    /* No resolver: host names are not looked at. */
    ASSERT_EQ(sr_lint_run(&cfg, "t.ini", NULL, on_msg, &got), 0);
    ASSERT_EQ(got.n, 0);
    sr_config_fini(&cfg);
}

/* 100,000 routes: every tenth exact name repeats its wildcard's upstream and is reported,
 * in line order; nothing else is. */
static void
test_many_routes(void)
{
    size_t cap = 8u << 20;
    char *text = malloc(cap);
    struct collected got;
    struct sr_config cfg;
    size_t len;
    size_t n_warnings;
    unsigned i;

    ASSERT(text != NULL);
    memset(&got, 0, sizeof(got));
    len = (size_t)snprintf(text, cap, "%s", HEAD "default = 127.0.0.1:1\n");
    for (i = 0; i < 50000; i++) {
        len += (size_t)snprintf(text + len, cap - len, "*.t%u.example = 127.0.0.1:%u\n", i,
                                2 + i % 1000);
        len += (size_t)snprintf(text + len, cap - len, "www.t%u.example = 127.0.0.1:%u\n", i,
                                (i % 10 == 0 ? 2 : 3) + i % 1000);
        ASSERT_LT(len, cap);
    }
    load(&cfg, text, len);
    n_warnings = sr_lint_run(&cfg, "t.ini", NULL, on_msg, &got);
    ASSERT_EQ(n_warnings, 5000); /* the apexes go to the default: not reported */
    /* In line order, though the table hands entries over in hash order. */
    ASSERT(strncmp(got.lines[0], "t.ini:7: warning: routes 'm': route 'www.t0.example' ", 52) == 0);
    ASSERT(strncmp(got.lines[1], "t.ini:27: warning: routes 'm': route 'www.t10.example' ", 54) ==
           0);
    sr_config_fini(&cfg);
    collected_free(&got);
    free(text);
}

/* Findings through includes: in the included file, with the other route's place given as
 * "FILE:LINE" when it is in another file; a glob that matches nothing. */
static void
test_include(void)
{
    static const char *const want[] = {
        ("DIR/maps/a.routes:2: warning: routes 'm': route 'www.example.com' is redundant: "
         "without it, '*.example.com' (DIR/main.ini:6) sends it to the same upstream (hint: "
         "remove it, or point it elsewhere)"),
        ("DIR/maps/a.routes:4: warning: routes 'm': route 'a.x.test' is redundant: without it, "
         "'*.x.test' (line 3) sends it to the same upstream (hint: remove it, or point it "
         "elsewhere)"),
        ("DIR/main.ini:8: warning: routes 'm': include 'DIR/none/*.routes' matches no file, so "
         "it adds no route (hint: check the path; it is fine while that directory is empty)"),
    };
    struct collected got;
    struct sr_config cfg;
    char dir[1024];
    char path[1100];
    char line[4096];
    size_t i;

    memset(&got, 0, sizeof(got));
    snprintf(dir, sizeof(dir), "%s/include-lint", SR_CONFIG_DIR);
    snprintf(path, sizeof(path), "%s/main.ini", dir);
    ASSERT_EQ(sr_config_load(&cfg, path, on_error, NULL), 0);
    ASSERT_EQ(sr_lint_run(&cfg, path, NULL, on_msg, &got), 3);
    ASSERT_EQ(got.n, 3);
    for (i = 0; i < 3; i++) {
        const char *p = want[i];
        size_t n = 0;

        while (*p != '\0') {
            if (strncmp(p, "DIR", 3) == 0) {
                n += (size_t)snprintf(line + n, sizeof(line) - n, "%s", dir);
                p += 3;
            } else {
                line[n++] = *p++;
            }
        }
        line[n] = '\0';
        ASSERT_STR_EQ(got.lines[i], line);
    }
    sr_config_fini(&cfg);
    collected_free(&got);
}

int
main(void)
{
    test_cases();
    test_include();
    test_resolve_bound();
    test_many_routes();
    return 0;
}
