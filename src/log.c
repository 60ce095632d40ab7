/* SPDX-License-Identifier: MIT */
/* Access-log and notice formatting. One line is built in a buffer and written with one
 * fwrite, so lines from one process never interleave mid-line. No libuv here. */
#include "sniroute/log.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

static const char *
or_dash(const char *s)
{
    return (s != NULL && s[0] != '\0') ? s : "-";
}

size_t
sr_log_format_time(char *out, size_t cap, int64_t time_ms)
{
    time_t secs = (time_t)(time_ms / 1000);
    struct tm tm;
    size_t n;
    int m;

    if (gmtime_r(&secs, &tm) == NULL) {
        return 0;
    }
    n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n == 0) {
        return 0;
    }
    m = snprintf(out + n, cap - n, ".%03dZ", (int)(time_ms % 1000));
    if (m < 0 || (size_t)m >= cap - n) {
        return n;
    }
    return n + (size_t)m;
}

size_t
sr_log_format_access(char *out, size_t cap, const struct sr_access_record *rec)
{
    char when[32];
    int n;

    if (cap < 2) {
        return 0;
    }
    sr_log_format_time(when, sizeof(when), rec->time_ms);
    n = snprintf(out, cap,
                 "%s listener=%s client=%s sni=%s route=%s upstream=%s bytes_in=%llu "
                 "bytes_out=%llu duration_ms=%llu outcome=%s%s%s%s\n",
                 when, or_dash(rec->listener), or_dash(rec->client), or_dash(rec->sni),
                 or_dash(rec->route), or_dash(rec->upstream), (unsigned long long)rec->bytes_in,
                 (unsigned long long)rec->bytes_out, (unsigned long long)rec->duration_ms,
                 or_dash(rec->outcome), rec->detail != NULL ? " detail=\"" : "",
                 rec->detail != NULL ? rec->detail : "", rec->detail != NULL ? "\"" : "");
    if (n < 0) {
        return 0;
    }
    if ((size_t)n >= cap) {
        out[cap - 2] = '\n';
        out[cap - 1] = '\0';
        return cap - 1;
    }
    return (size_t)n;
}

void
sr_log_notice(const char *fmt, ...)
{
    char line[1024];
    size_t prefix = sizeof("sniroute: ") - 1;
    va_list ap;
    int n;

    memcpy(line, "sniroute: ", prefix);
    va_start(ap, fmt);
    n = vsnprintf(line + prefix, sizeof(line) - prefix - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n > sizeof(line) - prefix - 2) {
        n = (int)(sizeof(line) - prefix - 2);
    }
    line[prefix + (size_t)n] = '\n';
    fwrite(line, 1, prefix + (size_t)n + 1, stderr);
}
