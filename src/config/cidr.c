/* SPDX-License-Identifier: MIT */
/* CIDR ranges: parse the config's spelling, test a peer address against one range or a
 * list. Every comparison happens in one 128-bit space where an IPv4 address is its
 * v4-mapped IPv6 form, so how a client arrives (AF_INET, or ::ffff:a.b.c.d on a dual-stack
 * socket) never changes the answer. No allocation, no resolution, no globals. */
#include "sniroute/config/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* The ::ffff:0:0/96 prefix (RFC 4291 2.5.5.2) under which IPv4 lives in the 128-bit space. */
static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Clear every bit of <addr> (<nbytes> long) beyond the first <prefix_len>. Returns true if
 * any bit was set there. */
static bool
mask_host_bits(uint8_t *addr, size_t nbytes, unsigned prefix_len)
{
    bool had = false;
    size_t i;

    for (i = 0; i < nbytes; i++) {
        unsigned bit = (unsigned)i * 8;
        uint8_t keep;

        if (prefix_len >= bit + 8) {
            continue;
        }
        keep = prefix_len <= bit ? 0 : (uint8_t)(0xff << (8 - (prefix_len - bit)));
        if ((addr[i] & (uint8_t)~keep) != 0) {
            had = true;
        }
        addr[i] &= keep;
    }
    return had;
}

/* "0".."999" without a leading zero; anything else is false. */
static bool
parse_prefix(const char *s, size_t len, unsigned *out)
{
    unsigned v = 0;
    size_t i;

    if (len == 0 || len > 3 || (len > 1 && s[0] == '0')) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

enum sr_cidr_error
sr_cidr_parse(const char *text, size_t len, struct sr_cidr *out)
{
    char addr[SR_CIDR_TEXT_MAX + 1];
    const char *slash;
    size_t addr_len;
    unsigned max;
    enum sr_cidr_error err = SR_CIDR_OK;

    memset(out, 0, sizeof(*out));
    if (len == 0) {
        return SR_CIDR_EMPTY;
    }
    if (len > SR_CIDR_TEXT_MAX) {
        return SR_CIDR_TOO_LONG;
    }
    slash = memchr(text, '/', len);
    addr_len = slash != NULL ? (size_t)(slash - text) : len;
    /* inet_pton() wants a C string; it also stops at a NUL, which must not cut the text. */
    memcpy(addr, text, addr_len);
    addr[addr_len] = '\0';
    if (memchr(text, '\0', addr_len) != NULL) {
        return SR_CIDR_BAD_ADDRESS;
    }
    if (inet_pton(AF_INET, addr, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        memset(out, 0, sizeof(*out));
        return SR_CIDR_BAD_ADDRESS;
    }
    out->prefix_len = max;
    if (slash != NULL) {
        if (!parse_prefix(slash + 1, len - addr_len - 1, &out->prefix_len)) {
            err = SR_CIDR_BAD_PREFIX;
        } else if (out->prefix_len > max) {
            err = SR_CIDR_PREFIX_RANGE;
        }
    }
    if (err != SR_CIDR_OK) {
        memset(out, 0, sizeof(*out));
        return err;
    }
    if (mask_host_bits(out->addr, max / 8, out->prefix_len)) {
        return SR_CIDR_HOST_BITS; /* <*out> keeps the masked network, for a hint */
    }
    return SR_CIDR_OK;
}

/* <sa>'s address in the 128-bit space. False for a family that has no place there. */
static bool
to_v6(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa == NULL) {
        return false;
    }
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        memcpy(out, v4mapped_prefix, sizeof(v4mapped_prefix));
        memcpy(out + 12, &sin->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        memcpy(out, &sin6->sin6_addr, 16);
        return true;
    }
    return false;
}

bool
sr_cidr_match(const struct sr_cidr *c, const struct sockaddr *sa)
{
    uint8_t peer[16];
    uint8_t net[16];
    unsigned prefix_len = c->prefix_len;

    if (!to_v6(sa, peer)) {
        return false;
    }
    if (c->family == AF_INET) {
        memcpy(net, v4mapped_prefix, sizeof(v4mapped_prefix));
        memcpy(net + 12, c->addr, 4);
        prefix_len += 96;
    } else {
        memcpy(net, c->addr, 16);
    }
    /* The network has no host bits (sr_cidr_parse() saw to it), so masking the peer and
     * comparing all 16 bytes is the whole test. */
    mask_host_bits(peer, sizeof(peer), prefix_len);
    return memcmp(peer, net, sizeof(net)) == 0;
}

bool
sr_cidr_list_match(const struct sr_cidr_list *list, const struct sockaddr *sa)
{
    size_t i;

    for (i = 0; i < list->n; i++) {
        if (sr_cidr_match(&list->items[i], sa)) {
            return true;
        }
    }
    return false;
}

size_t
sr_cidr_format(const struct sr_cidr *c, char *out, size_t cap)
{
    char text[SR_CIDR_TEXT_MAX + 1];
    size_t n;
    unsigned p = c->prefix_len;
    char digits[4];
    size_t nd = 0;

    if (inet_ntop(c->family, c->addr, text, sizeof(text)) == NULL) {
        return 0;
    }
    n = strlen(text);
    do {
        digits[nd++] = (char)('0' + p % 10);
        p /= 10;
    } while (p > 0 && nd < sizeof(digits));
    if (n + 1 + nd + 1 > cap) {
        return 0;
    }
    text[n++] = '/';
    while (nd > 0) {
        text[n++] = digits[--nd];
    }
    memcpy(out, text, n);
    out[n] = '\0';
    return n;
}

const char *
sr_cidr_error_str(enum sr_cidr_error err)
{
    switch (err) {
    case SR_CIDR_OK:
        return "ok";
    case SR_CIDR_EMPTY:
        return "empty address range";
    case SR_CIDR_TOO_LONG:
        return "too long for an address range";
    case SR_CIDR_BAD_ADDRESS:
        return "not an IPv4 or IPv6 address";
    case SR_CIDR_BAD_PREFIX:
        return "prefix length must be a decimal number without leading zeros";
    case SR_CIDR_PREFIX_RANGE:
        return "prefix length must be 0..32 for IPv4, 0..128 for IPv6";
    case SR_CIDR_HOST_BITS:
        return "address has bits set beyond the prefix length";
    }
    return "unknown error";
}
