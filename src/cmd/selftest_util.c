/* SPDX-License-Identifier: MIT */
/* What both halves of the self-test use (selftest_int.h): the clock, random bytes, the
 * --only list, TLS alert names and the hints under the result table. Below selftest.c and
 * selftest_quic.c, so neither calls up into the other for them. */
#include "selftest_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

uint64_t
sr__selftest_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
sr__selftest_ms_left(uint64_t deadline)
{
    uint64_t t = sr__selftest_now_ms();

    return t >= deadline ? 0 : (int)(deadline - t);
}

const char *
sr__selftest_alert_name(uint8_t d)
{
    switch (d) {
    case 0:
        return "close_notify";
    case 10:
        return "unexpected_message";
    case 20:
        return "bad_record_mac";
    case 22:
        return "record_overflow";
    case 40:
        return "handshake_failure";
    case 47:
        return "illegal_parameter";
    case 50:
        return "decode_error";
    case 51:
        return "decrypt_error";
    case 70:
        return "protocol_version";
    case 71:
        return "insufficient_security";
    case 80:
        return "internal_error";
    case 109:
        return "missing_extension";
    case 110:
        return "unsupported_extension";
    case 112:
        return "unrecognized_name";
    case 120:
        return "no_application_protocol";
    }
    return "unknown";
}

bool
sr__selftest_selected(const char *only, const char *name)
{
    size_t n = strlen(name);
    const char *p = only;

    if (only == NULL) {
        return true;
    }
    while ((p = strstr(p, name)) != NULL) {
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) {
            return true;
        }
        p += n;
    }
    return false;
}

void
sr__selftest_hints(FILE *out, const char *const *names, const char *const *hints, size_t n)
{
    size_t i, j;

    for (i = 0; i < n; i++) {
        const char *sep = "  ";
        bool is_first = true;

        if (hints[i] == NULL) {
            continue;
        }
        for (j = 0; j < i && is_first; j++) {
            is_first = hints[j] != hints[i];
        }
        if (!is_first) {
            continue; /* listed with an earlier case */
        }
        for (j = i; j < n; j++) {
            if (hints[j] == hints[i]) {
                fprintf(out, "%s%s", sep, names[j]);
                sep = ", ";
            }
        }
        fprintf(out, ": %s\n", hints[i]);
    }
}

bool
sr__selftest_random(void *buf, size_t n)
{
    uint8_t *p = buf;

    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);

        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        p += r;
        n -= (size_t)r;
    }
    return true;
}
