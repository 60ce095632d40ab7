/* SPDX-License-Identifier: MIT */
/* Address ranges in CIDR notation ("10.0.0.0/8", "fd00::/8", "192.168.1.7") and the test
 * "is this peer inside one of them", for lists such as trusted_proxies. Pure: no allocation,
 * no I/O, no name resolution; the caller owns every struct. An IPv4 address and its
 * v4-mapped IPv6 form (::ffff:a.b.c.d) are treated as the same address everywhere. */
#ifndef SR_CIDR_H
#define SR_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest text sr_cidr_parse() can accept: a full IPv6 address with an embedded IPv4 tail
 * (45 characters, INET6_ADDRSTRLEN - 1) plus "/128". */
#define SR_CIDR_TEXT_MAX 49

struct sr_cidr {
    sa_family_t family;  /* AF_INET or AF_INET6, as written */
    uint8_t addr[16];    /* the network address in network byte order, host bits zero;
                            AF_INET uses the first 4 bytes, the rest are zero */
    unsigned prefix_len; /* 0..32 for AF_INET, 0..128 for AF_INET6 */
};

enum sr_cidr_error {
    SR_CIDR_OK = 0,
    SR_CIDR_EMPTY,        /* no text at all */
    SR_CIDR_TOO_LONG,     /* longer than SR_CIDR_TEXT_MAX: cannot be an address */
    SR_CIDR_BAD_ADDRESS,  /* the part before '/' is not an IPv4 or IPv6 literal */
    SR_CIDR_BAD_PREFIX,   /* after '/': empty, not decimal, or a leading zero ("/08") */
    SR_CIDR_PREFIX_RANGE, /* prefix length over 32 (IPv4) or 128 (IPv6) */
    SR_CIDR_HOST_BITS,    /* bits set beyond the prefix, as in "10.1.2.3/8" */
};

/* Parse <text>/<len> (not necessarily NUL-terminated, no surrounding spaces) into <*out>.
 * Accepts "ADDRESS" (a host: /32 or /128) and "ADDRESS/PREFIX". ADDRESS is an IPv4 dotted
 * quad without leading zeros or an IPv6 literal, exactly as inet_pton() reads them; a zone
 * ("%eth0") and brackets are refused. PREFIX is 0..32 or 0..128 in decimal, "0" or without
 * a leading zero.
 *
 * An address with bits set beyond its prefix ("10.1.2.3/8") is refused as
 * SR_CIDR_HOST_BITS rather than silently masked: in an allow-list it is most likely a typo
 * for a narrower range (/24? /32?), and widening trust by guessing is the wrong default.
 * On that error only, <*out> holds the masked network (10.0.0.0/8) so that a config message
 * can suggest it. On any other error <*out> is zeroed. */
enum sr_cidr_error sr_cidr_parse(const char *text, size_t len, struct sr_cidr *out);

/* True if the address of <sa> (AF_INET or AF_INET6; any other family, or NULL, never
 * matches) lies inside <*c>. Ports, flow labels and scope ids are ignored. IPv4 and
 * v4-mapped IPv6 are one address space: an IPv4 range matches a client that arrives as
 * ::ffff:a.b.c.d on a dual-stack socket, and "::ffff:10.0.0.0/104" matches 10.x.x.x
 * arriving as plain IPv4. So "::/0" matches every client, "0.0.0.0/0" every IPv4 one. */
bool sr_cidr_match(const struct sr_cidr *c, const struct sockaddr *sa);

/* A caller-owned array of ranges, for example a listener's trusted_proxies. */
struct sr_cidr_list {
    struct sr_cidr *items;
    size_t n;
};

/* True if <sa> matches any range of <*list> (sr_cidr_match() rules). An empty list
 * matches nothing. A linear scan: lists of trusted proxies are short, and the test runs
 * once per accepted connection. */
bool sr_cidr_list_match(const struct sr_cidr_list *list, const struct sockaddr *sa);

/* Format <*c> as "ADDRESS/PREFIX" (inet_ntop's spelling, prefix always shown) into <out> of
 * <cap> bytes, NUL-terminated. Returns the length written, or 0 if it did not fit;
 * SR_CIDR_TEXT_MAX + 1 bytes always suffice. */
size_t sr_cidr_format(const struct sr_cidr *c, char *out, size_t cap);

/* A static English phrase for <err>, e.g. "bits set beyond the prefix length". */
const char *sr_cidr_error_str(enum sr_cidr_error err);

#endif
