/* SPDX-License-Identifier: MIT */
/* Socket addresses as a config file spells them: "host:port", "1.2.3.4:port" and
 * "[v6]:port". Parsing only; resolving a host name is the proxy's job (asynchronously). */
#ifndef SR_ADDR_H
#define SR_ADDR_H

#include <stddef.h>
#include <stdint.h>

#include "sniroute/wire/name.h"

struct sockaddr;

/* Room for the longest host: a normalized DNS name (253) or an IPv6 literal with a zone. */
#define SR_ADDR_HOST_MAX SR_NAME_MAX

/* "[" + INET6_ADDRSTRLEN (46, NUL included) + "]:65535": sr_addr_format_sockaddr's text */
#define SR_SOCKADDR_TEXT_MAX 56

enum sr_addr_kind {
    SR_ADDR_IPV4, /* host holds a dotted-quad literal */
    SR_ADDR_IPV6, /* host holds an IPv6 literal, without the brackets */
    SR_ADDR_NAME, /* host holds a normalized DNS name, to be resolved */
};

struct sr_addr {
    enum sr_addr_kind kind;
    uint16_t port;
    char host[SR_ADDR_HOST_MAX + 1]; /* NUL-terminated */
};

enum sr_addr_error {
    SR_ADDR_OK = 0,
    SR_ADDR_EMPTY,        /* nothing given */
    SR_ADDR_NO_PORT,      /* no ":port" (a port is always required) */
    SR_ADDR_BAD_PORT,     /* port not a decimal number in 1..65535 */
    SR_ADDR_BAD_BRACKETS, /* "[" without "]:port", or brackets around a non-IPv6 */
    SR_ADDR_BAD_IPV6,     /* inside brackets but not an IPv6 literal */
    SR_ADDR_BAD_HOST,     /* neither an IPv4 literal nor a valid host name */
    SR_ADDR_IPV6_NO_BRACKETS, /* an IPv6 literal without brackets, as in "::1:443" */
};

/* Parse <text>/<len> (not necessarily NUL-terminated; surrounding spaces are not allowed)
 * into <out>. The port is 1..65535 in decimal, always required. An IPv4 literal is what
 * inet_pton accepts (dotted quad, no leading zeros) and wins over a host name. An IPv6
 * literal must be bracketed, may carry a "%zone" (interface name or number, at most 15
 * characters) and is stored in inet_ntop's canonical spelling ("[::FFFF:0:1]" becomes
 * "::ffff:0:1"), so equal addresses format to equal text. Host names are validated with
 * sr_name_normalize() and stored normalized; a name that inet_aton would read as an
 * address ("127.1", "0x7f000001") or whose last label is all digits ("1.2.3.256") is
 * refused as SR_ADDR_BAD_HOST. On error <out> is zeroed. */
enum sr_addr_error
sr_addr_parse(const char *text, size_t len, struct sr_addr *out);

/* Like sr_addr_parse(), but port 0 is accepted too: a listening address where the
 * kernel picks a free port (tests and ad-hoc runs read the real one back). */
enum sr_addr_error
sr_addr_parse_listen(const char *text, size_t len, struct sr_addr *out);

/* A static English phrase for <err>, e.g. "port must be 1..65535". */
const char *
sr_addr_error_str(enum sr_addr_error err);

/* Format <addr> back to text ("h:p" or "[h]:p") into <out> of <cap> bytes, NUL-terminated.
 * Returns the length written, or the length needed if it did not fit (snprintf rules). */
int
sr_addr_format(const struct sr_addr *addr, char *out, size_t cap);

/* Format an IPv4 or IPv6 socket address <sa> as "ip:port" or "[ip]:port" (inet_ntop's
 * spelling, no zone), anything else as "-", into <out> of <cap> bytes, NUL-terminated
 * (cut short if it does not fit): SR_SOCKADDR_TEXT_MAX bytes are always enough. */
void
sr_addr_format_sockaddr(const struct sockaddr *sa, char *out, size_t cap);

#endif
