/* SPDX-License-Identifier: MIT */
/* Host names: validate what a client or a config file calls a host, and normalize it for
 * lookup (lower case, one trailing dot dropped). Pure functions over bytes; no allocation,
 * no locale, no IDNA (an A-label "xn--..." is just letters to us). */
#ifndef SR_NAME_H
#define SR_NAME_H

#include <stddef.h>
#include <stdint.h>

/* Longest normalized name: RFC 1035 caps a name at 255 octets on the wire, which is 253
 * characters in text form without the trailing dot. */
#define SR_NAME_MAX       253
/* Longest label, RFC 1035 section 2.3.4. */
#define SR_NAME_LABEL_MAX 63

enum sr_name_error {
    SR_NAME_OK = 0,
    SR_NAME_EMPTY,           /* zero bytes, or only "." */
    SR_NAME_TOO_LONG,        /* over SR_NAME_MAX once a trailing dot is dropped */
    SR_NAME_EMPTY_LABEL,     /* "a..b", ".a", or two trailing dots */
    SR_NAME_LABEL_TOO_LONG,  /* a label over SR_NAME_LABEL_MAX */
    SR_NAME_BAD_CHAR,        /* anything but letters, digits, '-' and '_' in a label */
};

/* Check that <name>/<len> is a DNS host name: labels of letters, digits, '-' and '_'
 * (underscore appears in real service names), separated by single dots, with at most one
 * trailing dot. NUL, '/', spaces, '*' and every other byte are refused. The bytes need not
 * be NUL-terminated. */
enum sr_name_error
sr_name_validate(const uint8_t *name, size_t len);

/* Validate like sr_name_validate(), then write the normalized form (ASCII lower case, a
 * trailing dot dropped) to <out>, which must hold SR_NAME_MAX + 1 bytes, NUL-terminate it
 * and store its length in <*out_len>. On error <out> is left unspecified. */
enum sr_name_error
sr_name_normalize(const uint8_t *name, size_t len, char *out, size_t *out_len);

/* A static English phrase for <err>, e.g. "empty label". */
const char *
sr_name_error_str(enum sr_name_error err);

#endif
