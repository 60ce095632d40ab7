/* SPDX-License-Identifier: MIT */
/* Access-log line formatting: exact lines, dashes for what is missing, and a line that
 * does not fit is cut but still ends with a newline. */
#include "sniroute/observe/log.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "support/assert.h"

static void
test_full_line(void)
{
    struct sr_access_record rec;
    char line[512];
    size_t len;

    memset(&rec, 0, sizeof(rec));
    rec.time_ms = 1795345200123; /* 2026-11-22T11:00:00.123Z */
    rec.listener = "https";
    rec.client = "127.0.0.1:5555";
    rec.sni = "example.com";
    rec.route = "exact";
    rec.upstream = "127.0.0.1:9001";
    rec.bytes_in = 517;
    rec.bytes_out = 1234;
    rec.duration_ms = 5;
    rec.outcome = "ok";
    len = sr_log_format_access(line, sizeof(line), &rec);
    ASSERT_STR_EQ(line, "2026-11-22T11:00:00.123Z listener=https client=127.0.0.1:5555 "
                        "sni=example.com route=exact upstream=127.0.0.1:9001 bytes_in=517 "
                        "bytes_out=1234 duration_ms=5 outcome=ok\n");
    ASSERT_EQ(len, strlen(line));
}

static void
test_missing_and_detail(void)
{
    struct sr_access_record rec;
    char line[512];

    memset(&rec, 0, sizeof(rec));
    rec.time_ms = 0;
    rec.listener = "https";
    rec.client = "[::1]:40000";
    rec.sni = "";
    rec.route = "none";
    rec.outcome = "malformed";
    rec.detail = "record length over 16384";
    sr_log_format_access(line, sizeof(line), &rec);
    ASSERT_STR_EQ(line, "1970-01-01T00:00:00.000Z listener=https client=[::1]:40000 sni=- "
                        "route=none upstream=- bytes_in=0 bytes_out=0 duration_ms=0 "
                        "outcome=malformed detail=\"record length over 16384\"\n");
}

static void
test_truncated(void)
{
    struct sr_access_record rec;
    char line[40];
    size_t len;

    memset(&rec, 0, sizeof(rec));
    rec.sni = "a-rather-long-name.example.com";
    len = sr_log_format_access(line, sizeof(line), &rec);
    ASSERT_EQ(len, sizeof(line) - 1);
    ASSERT_EQ(line[len - 1], '\n');
    ASSERT_EQ(line[len], '\0');
}

static void
test_json_full(void)
{
    struct sr_access_record rec;
    char line[512];
    size_t len;

    memset(&rec, 0, sizeof(rec));
    rec.time_ms = 1795345200123;
    rec.listener = "https";
    rec.client = "127.0.0.1:5555";
    rec.sni = "example.com";
    rec.route = "exact";
    rec.upstream = "127.0.0.1:9001";
    rec.bytes_in = 517;
    rec.bytes_out = 1234;
    rec.duration_ms = 5;
    rec.outcome = "ok";
    len = sr_log_format_access_json(line, sizeof(line), &rec);
    ASSERT_STR_EQ(line, "{\"time\":\"2026-11-22T11:00:00.123Z\",\"listener\":\"https\","
                        "\"client\":\"127.0.0.1:5555\",\"sni\":\"example.com\",\"route\":\"exact\","
                        "\"upstream\":\"127.0.0.1:9001\",\"bytes_in\":517,\"bytes_out\":1234,"
                        "\"duration_ms\":5,\"outcome\":\"ok\",\"detail\":null}\n");
    ASSERT_EQ(len, strlen(line));
}

/* Missing strings are null (the text line's "-"); an 18446744073709551615 stays an integer. */
static void
test_json_missing(void)
{
    struct sr_access_record rec;
    char line[512];

    memset(&rec, 0, sizeof(rec));
    rec.listener = "https";
    rec.client = "[::1]:40000";
    rec.sni = "";
    rec.route = "none";
    rec.bytes_in = UINT64_MAX;
    rec.outcome = "malformed";
    rec.detail = "record length over 16384";
    sr_log_format_access_json(line, sizeof(line), &rec);
    ASSERT_STR_EQ(line, "{\"time\":\"1970-01-01T00:00:00.000Z\",\"listener\":\"https\","
                        "\"client\":\"[::1]:40000\",\"sni\":null,\"route\":\"none\","
                        "\"upstream\":null,\"bytes_in\":18446744073709551615,\"bytes_out\":0,"
                        "\"duration_ms\":0,\"outcome\":\"malformed\","
                        "\"detail\":\"record length over 16384\"}\n");
}

/* RFC 8259 section 7: quote, backslash and every control byte escaped (short forms where they
 * exist); valid UTF-8 passes through; each byte of an invalid sequence becomes U+FFFD. */
static void
test_json_escaping(void)
{
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        {"a\"b\\c/d", "\"a\\\"b\\\\c/d\""},
        {"\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\""},
        {"\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\""},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
         "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""},
        {"\xff", "\"\\ufffd\""},
        {"a\xc3", "\"a\\ufffd\""},                                /* cut short */
        {"\xc0\xaf", "\"\\ufffd\\ufffd\""},                       /* overlong '/' */
        {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""},            /* a UTF-16 surrogate */
        {"\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* above U+10FFFF */
        {"\xe2\x82", "\"\\ufffd\\ufffd\""},
    };
    struct sr_access_record rec;
    char line[512], want[512];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(&rec, 0, sizeof(rec));
        rec.detail = cases[i].in;
        sr_log_format_access_json(line, sizeof(line), &rec);
        snprintf(want, sizeof(want),
                 "{\"time\":\"1970-01-01T00:00:00.000Z\",\"listener\":null,\"client\":null,"
                 "\"sni\":null,\"route\":null,\"upstream\":null,\"bytes_in\":0,\"bytes_out\":0,"
                 "\"duration_ms\":0,\"outcome\":null,\"detail\":%s}\n",
                 cases[i].want);
        ASSERT_STR_EQ(line, want);
    }
}

/* Too long: the strings are cut, never inside an escape, and the object stays whole; too
 * small for even the keys: nothing at all. */
static void
test_json_truncated(void)
{
    static const char empty[] =
        "{\"time\":\"1970-01-01T00:00:00.000Z\",\"listener\":null,\"client\":null,\"sni\":null,"
        "\"route\":null,\"upstream\":null,\"bytes_in\":0,\"bytes_out\":0,\"duration_ms\":0,"
        "\"outcome\":null,\"detail\":\"\"}\n";
    struct sr_access_record rec;
    char line[sizeof(empty) + 7 + 1]; /* room for 7 more bytes: a budget of 1 per string */
    size_t len;

    memset(&rec, 0, sizeof(rec));
    rec.detail = "\"\"\"\"\""; /* 10 bytes escaped: over by 2 */
    len = sr_log_format_access_json(line, sizeof(line), &rec);
    /* A budget of one byte cannot hold the two-byte \" escape: the value is cut to "". */
    ASSERT_STR_EQ(line, empty);
    ASSERT_EQ(len, sizeof(empty) - 1);

    rec.detail = "abcdefghi\""; /* 11 bytes escaped */
    len = sr_log_format_access_json(line, sizeof(line), &rec);
    ASSERT_EQ(len, sizeof(empty));
    ASSERT(memcmp(line + len - 6, ":\"a\"}\n", 6) == 0);

    ASSERT_EQ(sr_log_format_access_json(line, sizeof(empty) - 1, &rec), 0);
    ASSERT_EQ(line[0], '\0');
    ASSERT_EQ(sr_log_format_access_json(line, 0, &rec), 0);
}

/* The largest validated values fit in conn.c's 1024-byte line buffer, uncut. */
static void
test_json_largest(void)
{
    struct sr_access_record rec;
    char sni[254], upstream[260], listener[64], line[1024];
    size_t len;

    memset(sni, 'a', sizeof(sni) - 1);
    sni[sizeof(sni) - 1] = '\0';
    memset(listener, 'l', sizeof(listener) - 1);
    listener[sizeof(listener) - 1] = '\0';
    snprintf(upstream, sizeof(upstream), "%s:65535", sni);
    memset(&rec, 0, sizeof(rec));
    rec.time_ms = 253402300799999; /* 9999-12-31T23:59:59.999Z */
    rec.listener = listener;
    rec.client = "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535";
    rec.sni = sni;
    rec.route = "wildcard";
    rec.upstream = upstream;
    rec.bytes_in = rec.bytes_out = rec.duration_ms = UINT64_MAX;
    rec.outcome = "connect_timeout";
    rec.detail = "server name is not a valid host name: label longer than 63";
    len = sr_log_format_access_json(line, sizeof(line), &rec);
    ASSERT_GT(len, 0);
    ASSERT(strstr(line, rec.detail) != NULL);
    ASSERT(strstr(line, upstream) != NULL);
}

static void
test_ech(void)
{
    struct sr_access_record rec;
    char line[512];

    memset(&rec, 0, sizeof(rec));
    rec.sni = "public.ech.example";
    rec.outcome = "ok";
    rec.has_ech = true;
    sr_log_format_access(line, sizeof(line), &rec);
    ASSERT(strstr(line, " outcome=ok ech=1\n") != NULL);
    sr_log_format_access_json(line, sizeof(line), &rec);
    ASSERT(strstr(line, ",\"detail\":null,\"ech\":true}\n") != NULL);
    rec.has_ech = false;
    sr_log_format_access(line, sizeof(line), &rec);
    ASSERT(strstr(line, " ech=") == NULL);
    ASSERT(strstr(line, " alpn=") == NULL);
    rec.alpn_route = "acme-tls/1";
    sr_log_format_access(line, sizeof(line), &rec);
    ASSERT(strstr(line, " outcome=ok alpn=acme-tls/1\n") != NULL);
    sr_log_format_access_json(line, sizeof(line), &rec);
    ASSERT(strstr(line, ",\"alpn\":\"acme-tls/1\"}\n") != NULL);
}

/* A QUIC flow's line: datagrams each way beside the bytes; TCP lines never show them. */
static void
test_dgrams(void)
{
    struct sr_access_record rec;
    char line[512];

    memset(&rec, 0, sizeof(rec));
    rec.time_ms = 1795345200123;
    rec.listener = "h3";
    rec.client = "127.0.0.1:5555";
    rec.sni = "example.com";
    rec.route = "exact";
    rec.upstream = "127.0.0.1:9001";
    rec.bytes_in = 3600;
    rec.bytes_out = 9000;
    rec.has_dgrams = true;
    rec.dgrams_in = 3;
    rec.dgrams_out = 7;
    rec.duration_ms = 180005;
    rec.outcome = "ok";
    sr_log_format_access(line, sizeof(line), &rec);
    ASSERT_STR_EQ(line, "2026-11-22T11:00:00.123Z listener=h3 client=127.0.0.1:5555 "
                        "sni=example.com route=exact upstream=127.0.0.1:9001 bytes_in=3600 "
                        "bytes_out=9000 dgrams_in=3 dgrams_out=7 duration_ms=180005 outcome=ok\n");
    sr_log_format_access_json(line, sizeof(line), &rec);
    ASSERT_STR_EQ(line, "{\"time\":\"2026-11-22T11:00:00.123Z\",\"listener\":\"h3\","
                        "\"client\":\"127.0.0.1:5555\",\"sni\":\"example.com\",\"route\":\"exact\","
                        "\"upstream\":\"127.0.0.1:9001\",\"bytes_in\":3600,\"bytes_out\":9000,"
                        "\"dgrams_in\":3,\"dgrams_out\":7,\"duration_ms\":180005,\"outcome\":\"ok\","
                        "\"detail\":null}\n");
}

/* Where a batch is cut into writes: never inside a line, a line longer than the bound by
 * itself, everything consumed. */
static void
test_cut(void)
{
    const char *b = "aaaa\nbb\ncccccc\n";
    size_t len = strlen(b);

    ASSERT_EQ(sr_log_cut(b, 0, 8), 0);
    ASSERT_EQ(sr_log_cut(b, len, 100), len); /* all of it fits */
    ASSERT_EQ(sr_log_cut(b, len, 8), 8);     /* "aaaa\nbb\n" ends exactly at 8 */
    ASSERT_EQ(sr_log_cut(b, len, 7), 5);     /* "aaaa\n": "bb\n" does not fit */
    ASSERT_EQ(sr_log_cut(b, len, 5), 5);
    ASSERT_EQ(sr_log_cut(b, len, 3), 5);         /* the first line alone, over the bound */
    ASSERT_EQ(sr_log_cut(b + 8, len - 8, 3), 7); /* "cccccc\n" alone */
    ASSERT_EQ(sr_log_cut("abc", 3, 2), 3);       /* no newline at all: everything */
    ASSERT_EQ(sr_log_cut("ab\ncd", 5, 100), 3); /* an unended tail waits for the next call */
}

int
main(void)
{
    test_cut();
    test_dgrams();
    test_full_line();
    test_missing_and_detail();
    test_truncated();
    test_ech();
    test_json_full();
    test_json_missing();
    test_json_escaping();
    test_json_truncated();
    test_json_largest();
    return 0;
}
