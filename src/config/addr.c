/* SPDX-License-Identifier: MIT */
/* Parse and format "host:port", "1.2.3.4:port" and "[v6]:port". Literals are checked with
 * inet_pton and IPv6 ones stored in canonical form, so equal addresses compare equal as
 * text. Nothing here resolves a name or touches a socket. */
#include "sniroute/config/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* An interface name: IFNAMSIZ (16) less the NUL. */
#define ZONE_MAX 15

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Port: 1 to 5 decimal digits, value 1..65535 (0 too if <is_zero_ok>). No sign, no
 * spaces, no hex. */
static enum sr_addr_error
parse_port(const char *p, size_t len, bool is_zero_ok, uint16_t *port)
{
    unsigned long v = 0;
    size_t i;

    if (len == 0) {
        return SR_ADDR_NO_PORT;
    }
    if (len > 5) {
        return SR_ADDR_BAD_PORT;
    }
    for (i = 0; i < len; i++) {
        if (!is_digit(p[i])) {
            return SR_ADDR_BAD_PORT;
        }
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if ((v == 0 && !is_zero_ok) || v > 65535) {
        return SR_ADDR_BAD_PORT;
    }
    *port = (uint16_t)v;
    return SR_ADDR_OK;
}

static bool
is_zone_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' ||
           c == '_' || c == '.';
}

/* The inside of "[...]": an IPv6 literal, optionally with "%zone" (an interface name or
 * number, for link-local addresses). Stored canonical: inet_ntop's spelling. */
static enum sr_addr_error
parse_ipv6(const char *p, size_t len, struct sr_addr *out)
{
    char buf[INET6_ADDRSTRLEN + 1];
    struct in6_addr a6;
    const char *zone = memchr(p, '%', len);
    size_t addr_len = zone ? (size_t)(zone - p) : len;
    size_t zone_len = zone ? len - addr_len - 1 : 0;
    size_t i;

    if (addr_len == 0 || addr_len >= sizeof(buf)) {
        return SR_ADDR_BAD_IPV6;
    }
    memcpy(buf, p, addr_len);
    buf[addr_len] = '\0';
    if (inet_pton(AF_INET6, buf, &a6) != 1) {
        return SR_ADDR_BAD_IPV6;
    }
    if (zone != NULL) {
        if (zone_len == 0 || zone_len > ZONE_MAX) {
            return SR_ADDR_BAD_IPV6;
        }
        for (i = 0; i < zone_len; i++) {
            if (!is_zone_char(zone[1 + i])) {
                return SR_ADDR_BAD_IPV6;
            }
        }
    }
    if (inet_ntop(AF_INET6, &a6, out->host, sizeof(out->host)) == NULL) {
        return SR_ADDR_BAD_IPV6;
    }
    if (zone != NULL) {
        /* 45 + 1 + 15 bytes: well inside SR_ADDR_HOST_MAX. */
        size_t n = strlen(out->host);

        out->host[n] = '%';
        memcpy(out->host + n + 1, zone + 1, zone_len);
        out->host[n + 1 + zone_len] = '\0';
    }
    out->kind = SR_ADDR_IPV6;
    return SR_ADDR_OK;
}

/* True if the last label is all digits, as in "1.2.3.256" or "10.1": RFC 3696 section 2
 * says a top-level domain is never all-numeric, and such a "name" is a typo for an address
 * that a resolver might read in some legacy numeric form. */
static bool
has_numeric_tld(const char *p, size_t len)
{
    size_t i = len;

    if (i > 0 && p[i - 1] == '.') {
        i--;
    }
    if (i == 0) {
        return false;
    }
    while (i > 0 && p[i - 1] != '.') {
        if (!is_digit(p[i - 1])) {
            return false;
        }
        i--;
    }
    return true;
}

static bool
is_ipv6(const char *p, size_t len)
{
    char buf[INET6_ADDRSTRLEN + 1];
    struct in6_addr a6;

    if (len >= sizeof(buf)) {
        return false;
    }
    memcpy(buf, p, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, &a6) == 1;
}

static enum sr_addr_error
parse_host(const char *p, size_t len, struct sr_addr *out)
{
    char buf[SR_ADDR_HOST_MAX + 2];
    struct in_addr a4;
    size_t norm_len;

    if (len == 0 || len >= sizeof(buf)) {
        return SR_ADDR_BAD_HOST;
    }
    memcpy(buf, p, len);
    buf[len] = '\0';
    /* An IPv4 literal first: "1.2.3.4" is also a valid host name, and must not be one. */
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        out->kind = SR_ADDR_IPV4;
        memcpy(out->host, buf, len + 1);
        return SR_ADDR_OK;
    }
    /* inet_aton still reads "127.1" or "0x7f000001" as addresses, and so may a resolver:
     * refuse anything it would accept that inet_pton did not. */
    if (inet_aton(buf, &a4) != 0 || has_numeric_tld(buf, len)) {
        return SR_ADDR_BAD_HOST;
    }
    if (sr_name_normalize((const uint8_t *)buf, len, out->host, &norm_len) != SR_NAME_OK) {
        return SR_ADDR_BAD_HOST;
    }
    out->kind = SR_ADDR_NAME;
    return SR_ADDR_OK;
}

static enum sr_addr_error
addr_parse(const char *text, size_t len, bool is_zero_port_ok, struct sr_addr *out)
{
    enum sr_addr_error err;
    const char *colon;
    uint16_t port = 0;

    memset(out, 0, sizeof(*out));
    if (len == 0) {
        return SR_ADDR_EMPTY;
    }
    if (text[0] == '[') {
        const char *close = memchr(text, ']', len);
        size_t inner_len;

        if (close == NULL) {
            return SR_ADDR_BAD_BRACKETS;
        }
        inner_len = (size_t)(close - text) - 1;
        if ((size_t)(close - text) + 1 == len) {
            return SR_ADDR_NO_PORT;
        }
        if (close[1] != ':') {
            return SR_ADDR_BAD_BRACKETS;
        }
        /* Brackets are for IPv6 only: "[1.2.3.4]:80" and "[host]:80" are refused. */
        if (memchr(text + 1, ':', inner_len) == NULL) {
            return SR_ADDR_BAD_BRACKETS;
        }
        err = parse_port(close + 2, len - (size_t)(close - text) - 2, is_zero_port_ok, &port);
        if (err == SR_ADDR_OK) {
            err = parse_ipv6(text + 1, inner_len, out);
        }
    } else {
        colon = text + len;
        while (colon > text && colon[-1] != ':') {
            colon--;
        }
        if (colon == text) {
            return SR_ADDR_NO_PORT;
        }
        colon--;
        if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
            /* Two colons or more: "::1:443" or "::1" is an IPv6 literal without brackets,
             * anything else is just not a host. */
            return (is_ipv6(text, len) || is_ipv6(text, (size_t)(colon - text)))
                       ? SR_ADDR_IPV6_NO_BRACKETS
                       : SR_ADDR_BAD_HOST;
        }
        err = parse_port(colon + 1, len - (size_t)(colon - text) - 1, is_zero_port_ok, &port);
        if (err == SR_ADDR_OK) {
            err = parse_host(text, (size_t)(colon - text), out);
        }
    }
    if (err != SR_ADDR_OK) {
        memset(out, 0, sizeof(*out));
        return err;
    }
    out->port = port;
    return SR_ADDR_OK;
}

enum sr_addr_error
sr_addr_parse(const char *text, size_t len, struct sr_addr *out)
{
    return addr_parse(text, len, false, out);
}

enum sr_addr_error
sr_addr_parse_listen(const char *text, size_t len, struct sr_addr *out)
{
    return addr_parse(text, len, true, out);
}

const char *
sr_addr_error_str(enum sr_addr_error err)
{
    switch (err) {
    case SR_ADDR_OK:
        return "ok";
    case SR_ADDR_EMPTY:
        return "empty address";
    case SR_ADDR_NO_PORT:
        return "missing ':port'";
    case SR_ADDR_BAD_PORT:
        return "port must be 1..65535";
    case SR_ADDR_BAD_BRACKETS:
        return "brackets must hold an IPv6 literal and be followed by ':port'";
    case SR_ADDR_BAD_IPV6:
        return "not an IPv6 literal";
    case SR_ADDR_BAD_HOST:
        return "not an IPv4 literal or a valid host name";
    case SR_ADDR_IPV6_NO_BRACKETS:
        return "an IPv6 literal needs brackets, as in [::1]:443";
    }
    return "unknown address error";
}

int
sr_addr_format(const struct sr_addr *addr, char *out, size_t cap)
{
    if (addr->kind == SR_ADDR_IPV6) {
        return snprintf(out, cap, "[%s]:%u", addr->host, (unsigned)addr->port);
    }
    return snprintf(out, cap, "%s:%u", addr->host, (unsigned)addr->port);
}

void
sr_addr_format_sockaddr(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, ntohs(sin6->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, ntohs(sin->sin_port));
    } else {
        snprintf(out, cap, "-");
    }
}
