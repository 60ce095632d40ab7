/* SPDX-License-Identifier: MIT */
/* Access-log line formatting: exact lines, dashes for what is missing, and a line that
 * does not fit is cut but still ends with a newline. */
#include "sniroute/log.h"

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

int
main(void)
{
    test_full_line();
    test_missing_and_detail();
    test_truncated();
    return 0;
}
