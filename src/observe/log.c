/* SPDX-License-Identifier: MIT */
/* Access-log and notice formatting, and where to cut a batch of lines into writes. One
 * line is built in a buffer and written whole, so lines never interleave mid-line. No
 * libuv here. */
#include "sniroute/observe/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    char dgrams[64];
    int n;

    if (cap < 2) {
        return 0;
    }
    sr_log_format_time(when, sizeof(when), rec->time_ms);
    dgrams[0] = '\0';
    if (rec->has_dgrams) {
        snprintf(dgrams, sizeof(dgrams), " dgrams_in=%llu dgrams_out=%llu",
                 (unsigned long long)rec->dgrams_in, (unsigned long long)rec->dgrams_out);
    }
    n = snprintf(out, cap,
                 "%s listener=%s client=%s sni=%s route=%s upstream=%s bytes_in=%llu "
                 "bytes_out=%llu%s duration_ms=%llu outcome=%s%s%s%s%s%s%s%s%s\n",
                 when, or_dash(rec->listener), or_dash(rec->client), or_dash(rec->sni),
                 or_dash(rec->route), or_dash(rec->upstream), (unsigned long long)rec->bytes_in,
                 (unsigned long long)rec->bytes_out, dgrams, (unsigned long long)rec->duration_ms,
                 or_dash(rec->outcome), rec->has_ech ? " ech=1" : "",
                 rec->alpn_route != NULL ? " alpn=" : "",
                 rec->alpn_route != NULL ? rec->alpn_route : "", rec->rule != NULL ? " rule=" : "",
                 rec->rule != NULL ? rec->rule : "", rec->detail != NULL ? " detail=\"" : "",
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

/* --- JSON ------------------------------------------------------------------------------ */

/* Output into a caller's buffer; <len> keeps counting past <cap> so a caller can tell what
 * did not fit. */
struct json_out {
    char *out;
    size_t cap;
    size_t len;
};

static void
json_put(struct json_out *j, const char *s, size_t n)
{
    if (j->len < j->cap) {
        memcpy(j->out + j->len, s, j->len + n <= j->cap ? n : j->cap - j->len);
    }
    j->len += n;
}

/* Length of the valid UTF-8 sequence at <s> (<n> bytes available), or 0 if it is not one
 * (RFC 3629 section 4: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len, i;

    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        lo = s[0] == 0xe0 ? 0xa0 : 0x80;
        hi = s[0] == 0xed ? 0x9f : 0xbf;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        lo = s[0] == 0xf0 ? 0x90 : 0x80;
        hi = s[0] == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) {
            return 0;
        }
    }
    return len;
}

/* <s> as a JSON string (null when NULL or empty), its escaped contents cut to at most <budget>
 * bytes, never inside an escape or a UTF-8 sequence. */
static void
json_string(struct json_out *j, const char *s, size_t budget)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n, used = 0, step;
    char esc[8];
    const char *unit;

    if (s == NULL || s[0] == '\0') {
        json_put(j, "null", 4);
        return;
    }
    n = strlen(s);
    json_put(j, "\"", 1);
    while (n > 0) {
        step = 1;
        unit = esc;
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            esc[2] = '\0';
        } else if (*p < 0x20) {
            /* RFC 8259 section 7: the short forms where there is one, else \u00XX. */
            const char *shorts = "\b\f\n\r\t";
            const char *hit = strchr(shorts, *p);

            if (hit != NULL) {
                esc[0] = '\\';
                esc[1] = "bfnrt"[hit - shorts];
                esc[2] = '\0';
            } else {
                snprintf(esc, sizeof(esc), "\\u%04x", *p);
            }
        } else if (*p < 0x80) {
            unit = (const char *)p;
        } else if ((step = utf8_len(p, n)) != 0) {
            unit = (const char *)p;
        } else {
            step = 1;
            unit = "\\ufffd";
        }
        if (unit == (const char *)p) {
            if (used + step > budget) {
                break;
            }
            json_put(j, unit, step);
            used += step;
        } else {
            if (used + strlen(unit) > budget) {
                break;
            }
            json_put(j, unit, strlen(unit));
            used += strlen(unit);
        }
        p += step;
        n -= step;
    }
    json_put(j, "\"", 1);
}

static void
json_number(struct json_out *j, uint64_t v)
{
    char text[24];
    int n = snprintf(text, sizeof(text), "%llu", (unsigned long long)v);

    json_put(j, text, n > 0 ? (size_t)n : 0);
}

/* The strings that may be cut (alpn counted whether there or not; rule only when there);
 * time never is. */
#define SR_JSON_N_STRINGS 8

/* The whole object with each string cut to <budget>; returns its full length. */
static size_t
json_access(struct json_out *j, const struct sr_access_record *rec, size_t budget)
{
    char when[32];

    when[0] = '\0'; /* a time gmtime_r cannot express comes out as null */
    sr_log_format_time(when, sizeof(when), rec->time_ms);
    j->len = 0;
    json_put(j, "{\"time\":", 8);
    json_string(j, when, SIZE_MAX);
    json_put(j, ",\"listener\":", 12);
    json_string(j, rec->listener, budget);
    json_put(j, ",\"client\":", 10);
    json_string(j, rec->client, budget);
    json_put(j, ",\"sni\":", 7);
    json_string(j, rec->sni, budget);
    json_put(j, ",\"route\":", 9);
    json_string(j, rec->route, budget);
    json_put(j, ",\"upstream\":", 12);
    json_string(j, rec->upstream, budget);
    json_put(j, ",\"bytes_in\":", 12);
    json_number(j, rec->bytes_in);
    json_put(j, ",\"bytes_out\":", 13);
    json_number(j, rec->bytes_out);
    if (rec->has_dgrams) {
        json_put(j, ",\"dgrams_in\":", 13);
        json_number(j, rec->dgrams_in);
        json_put(j, ",\"dgrams_out\":", 14);
        json_number(j, rec->dgrams_out);
    }
    json_put(j, ",\"duration_ms\":", 15);
    json_number(j, rec->duration_ms);
    json_put(j, ",\"outcome\":", 11);
    json_string(j, rec->outcome, budget);
    json_put(j, ",\"detail\":", 10);
    json_string(j, rec->detail, budget);
    if (rec->has_ech) {
        json_put(j, ",\"ech\":true", 11);
    }
    if (rec->alpn_route != NULL) {
        json_put(j, ",\"alpn\":", 8);
        json_string(j, rec->alpn_route, budget);
    }
    if (rec->rule != NULL) {
        json_put(j, ",\"rule\":", 8);
        json_string(j, rec->rule, budget);
    }
    json_put(j, "}\n", 2);
    return j->len;
}

size_t
sr_log_format_access_json(char *out, size_t cap, const struct sr_access_record *rec)
{
    struct json_out j = {out, cap, 0};
    size_t fixed;

    if (cap == 0) {
        return 0;
    }
    /* Room for the NUL: everything is measured against cap - 1. */
    j.cap = cap - 1;
    if (json_access(&j, rec, SIZE_MAX) <= j.cap) {
        out[j.len] = '\0';
        return j.len;
    }
    /* Too long: share what the fixed parts leave among the strings. */
    fixed = json_access(&j, rec, 0);
    if (fixed > j.cap) {
        out[0] = '\0';
        return 0;
    }
    json_access(&j, rec, (j.cap - fixed) / (SR_JSON_N_STRINGS + (rec->rule != NULL ? 1 : 0)));
    out[j.len] = '\0';
    return j.len;
}

size_t
sr_log_cut(const char *buf, size_t len, size_t max)
{
    const char *nl;
    size_t n;

    if (len <= max) {
        /* Whole lines only are handed in: all of it, if it ends a line. */
        if (len == 0 || buf[len - 1] == '\n') {
            return len;
        }
        n = len;
    } else {
        n = max;
    }
    /* The last newline within the first <n> bytes. */
    while (n > 0 && buf[n - 1] != '\n') {
        n--;
    }
    if (n > 0) {
        return n;
    }
    /* The first line is longer than <max>: that line by itself. */
    nl = memchr(buf, '\n', len);
    return nl != NULL ? (size_t)(nl - buf) + 1 : len;
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
    /* write(2), not stdio: no FILE lock shared by every thread, one atomic write. */
    while (write(STDERR_FILENO, line, prefix + (size_t)n + 1) < 0 && errno == EINTR) {
    }
}
