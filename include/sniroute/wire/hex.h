/* SPDX-License-Identifier: MIT */
/* One hexadecimal digit's value: chunk sizes in HTTP bodies, %XX escapes in query
 * strings. */
#ifndef SR_HEX_H
#define SR_HEX_H

/* 0..15 for [0-9a-fA-F], -1 for anything else. */
static inline int
sr_hex_value(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

#endif
