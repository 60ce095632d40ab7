/* SPDX-License-Identifier: MIT */
/* Metrics: the exact exposition of a small registry (test/fixtures/metrics/small.prom), label
 * escaping, hello misses by reason, cumulative histogram buckets, two workers summed, ids folded
 * into "_other", and the name and outcome tables. */
#include "sniroute/observe/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/assert.h"

static char *
read_fixture(const char *name, size_t *len)
{
    char path[512];
    char *buf;
    FILE *fp;
    long n;

    snprintf(path, sizeof(path), "%s/%s", SR_FIXTURE_DIR, name);
    fp = fopen(path, "rb");
    ASSERT(fp != NULL);
    ASSERT_EQ(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    ASSERT_GE(n, 0);
    rewind(fp);
    buf = malloc((size_t)n + 1);
    ASSERT(buf != NULL);
    ASSERT_EQ(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* One listener and one upstream, each named, in one registry of one worker. */
struct fixture {
    struct sr_metrics m;
    struct sr_metrics_names listeners;
    struct sr_metrics_names upstreams;
    struct sr_metrics_names rules;
    struct sr_metrics_info info;
};

static void
fixture_init(struct fixture *f, const char *listener, const char *upstream)
{
    memset(f, 0, sizeof(*f));
    ASSERT_EQ(sr_metrics_init(&f->m, 1, 1), 0);
    ASSERT_EQ(sr_metrics_names_init(&f->listeners, 1), 0);
    ASSERT_EQ(sr_metrics_names_init(&f->upstreams, 1), 0);
    ASSERT_EQ(sr_metrics_names_intern(&f->listeners, listener), 0);
    ASSERT_EQ(sr_metrics_names_intern(&f->upstreams, upstream), 0);
    ASSERT_EQ(sr_metrics_names_init(&f->rules, 2), 0);
    ASSERT_EQ(sr_metrics_names_intern(&f->rules, "listener:https:deny:203.0.113.0/24"), 0);
    ASSERT_EQ(sr_metrics_names_intern(&f->rules, "upstream:staging:not_allowed"), 1);
    f->info.version = "0.1.0";
    f->info.start_time_ms = 1795345200123; /* 2026-11-22T11:00:00.123Z */
    f->info.config_generation = 1;
    f->info.process_locks = 3; /* two reloads and a drain, say */
    f->info.shard_locks = 8;
    f->info.rate_entries = 3;
    f->info.rate_evictions = 2;
    f->info.listeners = &f->listeners;
    f->info.upstreams = &f->upstreams;
    f->info.rules = &f->rules;
}

static void
fixture_fini(struct fixture *f)
{
    sr_metrics_fini(&f->m);
    sr_metrics_names_fini(&f->listeners);
    sr_metrics_names_fini(&f->upstreams);
    sr_metrics_names_fini(&f->rules);
}

static char *
format_one(struct fixture *f, size_t *len)
{
    const struct sr_metrics *workers[1] = {&f->m};
    char *out;

    ASSERT_EQ(sr_metrics_format(&out, len, workers, 1, &f->info), 0);
    ASSERT(out != NULL);
    ASSERT_EQ(strlen(out), *len);
    return out;
}

/* The whole text of one routed connection and one still open, byte for byte. */
static void
test_exact_exposition(void)
{
    struct fixture f;
    char *out, *expected;
    size_t len, expected_len;

    fixture_init(&f, "https", "127.0.0.1:9001");
    sr_metrics_conn_accepted(&f.m, 0);
    sr_metrics_conn_accepted(&f.m, 0);
    sr_metrics_hello(&f.m, SR_METRICS_HELLO_FOUND, SR_HELLO_REASON_NONE);
    sr_metrics_hello_ech(&f.m);
    sr_metrics_route(&f.m, 0, SR_ROUTE_EXACT);
    sr_metrics_upstream_selected(&f.m, 0);
    sr_metrics_connect_ok(&f.m, 0, 1234);
    sr_metrics_bytes(&f.m, 0, 0, 517, 1234);
    sr_metrics_conn_closed(&f.m, 0, SR_METRICS_OUTCOME_OK);
    /* One taken over from an old process, one handed to a new one: active stays 1. */
    sr_metrics_conn_adopted(&f.m, 0);
    sr_metrics_conn_closed(&f.m, 0, SR_METRICS_OUTCOME_HANDED_OVER);
    /* QUIC: two flows, one ended idle after 5 datagrams in, 7 out; one still open; a short
     * header from nobody's flow, a datagram over the per-IP limit; the Initial reader saw a
     * two-datagram hello, a garbage datagram and a bad tag. */
    sr_metrics_quic_started(&f.m, 0);
    sr_metrics_quic_started(&f.m, 0);
    sr_metrics_quic_datagrams(&f.m, 0, 5, 7);
    sr_metrics_quic_closed(&f.m, 0, SR_METRICS_OUTCOME_OK);
    sr_metrics_quic_dropped(&f.m, 0, SR_METRICS_QDROP_NOT_QUIC);
    sr_metrics_quic_dropped(&f.m, 0, SR_METRICS_QDROP_MAX_FLOWS_PER_IP);
    sr_metrics_quic_initial(&f.m, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE);
    sr_metrics_quic_initial(&f.m, SR_QUIC_FOUND, SR_QUIC_REASON_NONE);
    sr_metrics_quic_initial(&f.m, SR_QUIC_NOT_QUIC, SR_QUIC_REASON_SHORT_HEADER);
    sr_metrics_quic_initial(&f.m, SR_QUIC_MALFORMED, SR_QUIC_REASON_DECRYPT);
    /* Access rules: two refusals by the first rule, none by the second (still shown), one by
     * an id no name claims ("_other"). */
    sr_metrics_denied(&f.m, 0);
    sr_metrics_denied(&f.m, 0);
    sr_metrics_denied(&f.m, 7);

    out = format_one(&f, &len);
    expected = read_fixture("small.prom", &expected_len);
    if (len != expected_len || memcmp(out, expected, len) != 0) {
        fprintf(stderr, "--- got:\n%s--- expected:\n%s", out, expected);
        SR_FAIL("exposition differs from small.prom");
    }
    free(expected);
    free(out);
    fixture_fini(&f);
}

/* sniroute_hello_misses_total: each reason from the counter that counts exactly its misses,
 * summed over listeners (an unnamed id in "_other" included) and over the parser's reasons.
 * A hello without SNI that was routed by default, and a non-TLS one sent to fallback, are
 * hello results but not misses. */
static void
test_hello_misses(void)
{
    static const char *const want[] = {
        "{reason=\"no_sni\"} 1\n",    "{reason=\"incomplete\"} 2\n",
        "{reason=\"too_large\"} 3\n", "{reason=\"hello_timeout\"} 1\n",
        "{reason=\"not_tls\"} 1\n",   "{reason=\"malformed\"} 2\n",
        "{reason=\"no_route\"} 2\n",
    };
    struct fixture f;
    char line[128];
    char *out;
    size_t len, i;

    fixture_init(&f, "https", "127.0.0.1:9001");
    sr_metrics_hello(&f.m, SR_METRICS_HELLO_NO_SNI, SR_HELLO_REASON_NONE);
    sr_metrics_conn_closed(&f.m, 0, SR_METRICS_OUTCOME_NO_SNI); /* no_sni = reject */
    sr_metrics_hello(&f.m, SR_METRICS_HELLO_NO_SNI, SR_HELLO_REASON_NONE);
    sr_metrics_conn_closed(&f.m, 0, SR_METRICS_OUTCOME_OK); /* routed by default */
    sr_metrics_hello(&f.m, SR_METRICS_HELLO_INCOMPLETE, SR_HELLO_REASON_NONE);
    sr_metrics_hello(&f.m, SR_METRICS_HELLO_INCOMPLETE, SR_HELLO_REASON_NONE);
    for (i = 0; i < 3; i++) {
        sr_metrics_hello(&f.m, SR_METRICS_HELLO_TOO_LARGE, SR_HELLO_REASON_NONE);
    }
    sr_metrics_hello(&f.m, SR_METRICS_HELLO_TIMEOUT, SR_HELLO_REASON_NONE);
    sr_metrics_hello(&f.m, SR_METRICS_HELLO_NOT_TLS, SR_HELLO_REASON_NOT_HANDSHAKE);
    sr_metrics_conn_closed(&f.m, 0, SR_METRICS_OUTCOME_NOT_TLS);
    sr_metrics_hello(&f.m, SR_METRICS_HELLO_NOT_TLS, SR_HELLO_REASON_NOT_TLS_VERSION);
    sr_metrics_conn_closed(&f.m, 0, SR_METRICS_OUTCOME_OK); /* fallback */
    sr_metrics_hello(&f.m, SR_METRICS_HELLO_MALFORMED, SR_HELLO_REASON_OVERRUN);
    sr_metrics_hello(&f.m, SR_METRICS_HELLO_MALFORMED, SR_HELLO_REASON_SNI_NAME);
    sr_metrics_conn_closed(&f.m, 0, SR_METRICS_OUTCOME_NO_ROUTE);
    sr_metrics_conn_closed(&f.m, 7, SR_METRICS_OUTCOME_NO_ROUTE); /* the "_other" row */
    sr_metrics_hello(&f.m, SR_METRICS_HELLO_CLIENT_RESET, SR_HELLO_REASON_NONE); /* not a miss */

    out = format_one(&f, &len);
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(line, sizeof(line), "\nsniroute_hello_misses_total%s", want[i]);
        if (strstr(out, line) == NULL) {
            SR_FAIL("no line %s in:\n%s", line + 1, out);
        }
    }
    free(out);
    fixture_fini(&f);
}

/* Label values escape backslash, double quote and newline; HELP text is not affected. */
static void
test_label_escaping(void)
{
    struct fixture f;
    char *out;
    size_t len;

    fixture_init(&f, "a\"b\\c\nd", "[::1]:443");
    out = format_one(&f, &len);
    ASSERT(strstr(out, "sniroute_connections_accepted_total{listener=\"a\\\"b\\\\c\\nd\"} 0\n") !=
           NULL);
    /* An upstream with nothing counted is not shown at all. */
    ASSERT(strstr(out, "[::1]:443") == NULL);
    free(out);
    fixture_fini(&f);
}

/* Observations land in the first bucket whose bound is >= the latency; the text is cumulative
 * and +Inf equals _count. */
static void
test_histogram_cumulative(void)
{
    static const char *const want[] = {
        "_bucket{upstream=\"u\",le=\"0.0005\"} 2\n", /* 100 us and 500 us (on the bound) */
        "_bucket{upstream=\"u\",le=\"0.001\"} 3\n",  /* 501 us */
        "_bucket{upstream=\"u\",le=\"0.0025\"} 3\n",
        "_bucket{upstream=\"u\",le=\"1\"} 4\n", /* 1 s exactly */
        "_bucket{upstream=\"u\",le=\"5\"} 4\n",
        "_bucket{upstream=\"u\",le=\"+Inf\"} 5\n", /* 7 s */
        "_sum{upstream=\"u\"} 8.001101\n",
        "_count{upstream=\"u\"} 5\n",
    };
    char line[160];
    struct fixture f;
    char *out;
    size_t len, i;

    fixture_init(&f, "l", "u");
    sr_metrics_connect_ok(&f.m, 0, 100);
    sr_metrics_connect_ok(&f.m, 0, 500);
    sr_metrics_connect_ok(&f.m, 0, 501);
    sr_metrics_connect_ok(&f.m, 0, 1000000);
    sr_metrics_connect_ok(&f.m, 0, 7000000);
    out = format_one(&f, &len);
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        snprintf(line, sizeof(line), "\nsniroute_upstream_connect_duration_seconds%s", want[i]);
        if (strstr(out, line) == NULL) {
            SR_FAIL("missing line: %s", line + 1);
        }
    }
    free(out);
    fixture_fini(&f);
}

/* Two workers: counters add, the active gauge is the sum of each worker's accepted - closed. */
static void
test_two_workers(void)
{
    struct sr_metrics_names ln, un;
    struct sr_metrics_info info;
    struct sr_metrics a, b;
    const struct sr_metrics *workers[2] = {&a, &b};
    char *out;
    size_t len;

    ASSERT_EQ(sr_metrics_init(&a, 2, 1), 0);
    ASSERT_EQ(sr_metrics_init(&b, 2, 1), 0);
    ASSERT_EQ(sr_metrics_names_init(&ln, 2), 0);
    ASSERT_EQ(sr_metrics_names_init(&un, 1), 0);
    ASSERT_EQ(sr_metrics_names_intern(&ln, "https"), 0);
    ASSERT_EQ(sr_metrics_names_intern(&ln, "alt"), 1);
    ASSERT_EQ(sr_metrics_names_intern(&ln, "https"), 0);
    ASSERT_EQ(sr_metrics_names_intern(&un, "b:443"), 0);
    memset(&info, 0, sizeof(info));
    info.listeners = &ln;
    info.upstreams = &un;

    sr_metrics_conn_accepted(&a, 0);
    sr_metrics_conn_accepted(&a, 0);
    sr_metrics_conn_accepted(&a, 1);
    sr_metrics_conn_closed(&a, 0, SR_METRICS_OUTCOME_OK);
    sr_metrics_conn_accepted(&b, 0);
    sr_metrics_conn_accepted(&b, 0);
    sr_metrics_conn_accepted(&b, 0);
    sr_metrics_conn_closed(&b, 0, SR_METRICS_OUTCOME_CLIENT_RESET);
    sr_metrics_conn_closed(&b, 0, SR_METRICS_OUTCOME_CLIENT_RESET);
    sr_metrics_hello(&a, SR_METRICS_HELLO_MALFORMED, SR_HELLO_REASON_OVERRUN);
    sr_metrics_hello(&b, SR_METRICS_HELLO_MALFORMED, SR_HELLO_REASON_OVERRUN);
    sr_metrics_connect_failed(&a, 0, SR_METRICS_CONNECT_REFUSED);
    sr_metrics_connect_failed(&b, 0, SR_METRICS_CONNECT_REFUSED);
    sr_metrics_bytes(&a, 1, UINT32_MAX, 7, 7); /* refused: no upstream */
    sr_metrics_limit_rejected(&b, 1, SR_METRICS_LIMIT_PER_IP);

    ASSERT_EQ(sr_metrics_format(&out, &len, workers, 2, &info), 0);
    ASSERT(strstr(out, "\nsniroute_connections_accepted_total{listener=\"https\"} 5\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_connections_accepted_total{listener=\"alt\"} 1\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_connections_active{listener=\"https\"} 2\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_connections_active{listener=\"alt\"} 1\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_connections_closed_total{listener=\"https\",outcome="
                       "\"client_reset\"} 2\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_hello_results_total{result=\"malformed\",reason=\"overrun\"} "
                       "2\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_upstream_connect_failures_total{upstream=\"b:443\",error="
                       "\"refused\"} 2\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_bytes_out_total{listener=\"alt\"} 7\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_upstream_bytes_out_total{upstream=\"b:443\"} 0\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_connections_rejected_total{listener=\"alt\",limit="
                       "\"max_connections_per_ip\"} 1\n") != NULL);
    ASSERT(strstr(out, "_other") == NULL);
    free(out);

    /* Workers must have the same rows. */
    sr_metrics_fini(&b);
    ASSERT_EQ(sr_metrics_init(&b, 3, 1), 0);
    ASSERT_EQ(sr_metrics_format(&out, &len, workers, 2, &info), -EINVAL);
    ASSERT(out == NULL);

    sr_metrics_fini(&a);
    sr_metrics_fini(&b);
    sr_metrics_names_fini(&ln);
    sr_metrics_names_fini(&un);
}

/* Ids beyond the rows, ids no name claims and names beyond the table's cap all land in
 * "_other", once; nothing is written out of bounds (ASan would say). */
static void
test_other_row(void)
{
    struct sr_metrics_names ln, un;
    struct sr_metrics_info info;
    struct sr_metrics m;
    const struct sr_metrics *workers[1] = {&m};
    char *out;
    size_t len;

    ASSERT_EQ(sr_metrics_init(&m, 2, 2), 0);
    ASSERT_EQ(sr_metrics_names_init(&ln, 2), 0);
    ASSERT_EQ(sr_metrics_names_init(&un, 2), 0);
    ASSERT_EQ(sr_metrics_names_intern(&ln, "one"), 0);
    ASSERT_EQ(sr_metrics_names_intern(&un, "u1"), 0);
    ASSERT_EQ(sr_metrics_names_intern(&un, "u2"), 1);
    ASSERT_EQ(sr_metrics_names_intern(&un, "u3"), 2); /* full: "_other" */
    memset(&info, 0, sizeof(info));
    info.listeners = &ln;
    info.upstreams = &un;

    sr_metrics_conn_accepted(&m, 1);          /* a row, but unnamed */
    sr_metrics_conn_accepted(&m, 7);          /* beyond the rows */
    sr_metrics_conn_accepted(&m, UINT32_MAX); /* likewise */
    sr_metrics_upstream_selected(&m, 2);
    sr_metrics_conn_closed(&m, 0, (enum sr_metrics_outcome)99);            /* counted as error */
    sr_metrics_hello(&m, (enum sr_metrics_hello)42, SR_HELLO_REASON_NONE); /* as error */
    sr_metrics_hello(&m, SR_METRICS_HELLO_MALFORMED, (enum sr_hello_reason)999);
    sr_metrics_hello(&m, SR_METRICS_HELLO_FOUND, SR_HELLO_REASON_OVERRUN); /* reason dropped */

    ASSERT_EQ(sr_metrics_format(&out, &len, workers, 1, &info), 0);
    ASSERT(strstr(out, "\nsniroute_connections_accepted_total{listener=\"_other\"} 3\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_connections_accepted_total{listener=\"one\"} 0\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_upstream_connections_total{upstream=\"_other\"} 1\n") != NULL);
    ASSERT(strstr(out, "upstream=\"u1\"") == NULL);
    ASSERT(strstr(out, "\nsniroute_connections_closed_total{listener=\"one\",outcome=\"error\"} "
                       "1\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_hello_results_total{result=\"error\",reason=\"none\"} 1\n") !=
           NULL);
    ASSERT(strstr(out, "\nsniroute_hello_results_total{result=\"malformed\",reason=\"other\"} "
                       "1\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_hello_results_total{result=\"found\",reason=\"none\"} 1\n") !=
           NULL);
    free(out);

    sr_metrics_fini(&m);
    sr_metrics_names_fini(&ln);
    sr_metrics_names_fini(&un);
}

static void
test_tables(void)
{
    int i;

    for (i = 0; i < SR_METRICS_N_OUTCOMES; i++) {
        const char *name = sr_metrics_outcome_name((enum sr_metrics_outcome)i);

        ASSERT(name != NULL);
        ASSERT_EQ(sr_metrics_outcome_parse(name), i);
    }
    ASSERT_EQ(sr_metrics_outcome_parse("hello_timeout"), SR_METRICS_OUTCOME_HELLO_TIMEOUT);
    ASSERT_EQ(sr_metrics_outcome_parse("nonsense"), SR_METRICS_OUTCOME_ERROR);
    ASSERT_EQ(sr_metrics_outcome_parse(NULL), SR_METRICS_OUTCOME_ERROR);
    for (i = 0; i < SR_METRICS_N_HELLO; i++) {
        ASSERT(sr_metrics_hello_name((enum sr_metrics_hello)i) != NULL);
    }
    /* Every reason the parser has gets a name, and the count follows hello.h's last one. */
    for (i = 0; i < SR_METRICS_N_HELLO_REASONS; i++) {
        ASSERT(sr_metrics_hello_reason_name((enum sr_hello_reason)i) != NULL);
    }
    ASSERT_STR_EQ(sr_metrics_hello_reason_name(SR_HELLO_REASON_SUPPORTED_VERSIONS),
                  "supported_versions");
    ASSERT_STR_EQ(sr_metrics_hello_reason_name((enum sr_hello_reason)SR_METRICS_N_HELLO_REASONS),
                  "other");
    /* The same for the QUIC Initial reader's reasons (quic.h) and the drop reasons. */
    for (i = 0; i < SR_METRICS_N_QUIC_REASONS; i++) {
        ASSERT(sr_metrics_quic_reason_name((enum sr_quic_reason)i) != NULL);
    }
    ASSERT_STR_EQ(sr_metrics_quic_reason_name(SR_QUIC_REASON_LIBCRYPTO), "libcrypto");
    ASSERT_STR_EQ(sr_metrics_quic_reason_name((enum sr_quic_reason)SR_METRICS_N_QUIC_REASONS),
                  "other");
    for (i = 0; i < SR_METRICS_N_QUIC_DROPS; i++) {
        ASSERT(sr_metrics_quic_drop_name((enum sr_metrics_quic_drop)i) != NULL);
    }

    ASSERT_EQ(sr_metrics_connect_error_from_errno(-ECONNREFUSED), SR_METRICS_CONNECT_REFUSED);
    ASSERT_EQ(sr_metrics_connect_error_from_errno(-ETIMEDOUT), SR_METRICS_CONNECT_TIMEOUT);
    ASSERT_EQ(sr_metrics_connect_error_from_errno(-EHOSTUNREACH), SR_METRICS_CONNECT_UNREACHABLE);
    ASSERT_EQ(sr_metrics_connect_error_from_errno(-ECONNRESET), SR_METRICS_CONNECT_RESET);
    ASSERT_EQ(sr_metrics_connect_error_from_errno(-ECANCELED), SR_METRICS_CONNECT_OTHER);
    ASSERT_EQ(sr_metrics_connect_error_from_errno(0), SR_METRICS_CONNECT_OTHER);
}

/* No workers at all (before any has started): still a valid text with the process families. */
static void
test_no_workers(void)
{
    struct sr_metrics_info info;
    char *out;
    size_t len;

    memset(&info, 0, sizeof(info));
    ASSERT_EQ(sr_metrics_format(&out, &len, NULL, 0, &info), 0);
    ASSERT(strstr(out, "\nsniroute_config_generation 0\n") != NULL);
    ASSERT(strstr(out, "\nsniroute_process_start_time_seconds 0\n") != NULL);
    ASSERT(strstr(out, "{listener=") == NULL);
    free(out);
}

int
main(void)
{
    test_exact_exposition();
    test_hello_misses();
    test_label_escaping();
    test_histogram_cumulative();
    test_two_workers();
    test_other_row();
    test_tables();
    test_no_workers();
    return 0;
}
