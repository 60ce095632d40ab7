/* SPDX-License-Identifier: MIT */
/* Host name validation and normalization. Deliberately strict: what reaches a route
 * lookup, a log line or a metric label is plain LDH (plus '_'), so nothing downstream has
 * to escape a name. */
#include "sniroute/wire/name.h"

static int
is_label_byte(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

enum sr_name_error
sr_name_validate(const uint8_t *name, size_t len)
{
    size_t label_len = 0;
    size_t i;

    if (len > 0 && name[len - 1] == '.') {
        len--; /* one trailing dot names the root; it is not part of the host */
    }
    if (len == 0) {
        return SR_NAME_EMPTY;
    }
    if (len > SR_NAME_MAX) {
        return SR_NAME_TOO_LONG;
    }
    for (i = 0; i < len; i++) {
        if (name[i] == '.') {
            if (label_len == 0) {
                return SR_NAME_EMPTY_LABEL;
            }
            label_len = 0;
            continue;
        }
        if (!is_label_byte(name[i])) {
            return SR_NAME_BAD_CHAR;
        }
        if (++label_len > SR_NAME_LABEL_MAX) {
            return SR_NAME_LABEL_TOO_LONG;
        }
    }
    /* "a.." keeps one dot after the trailing one is dropped: an empty last label. */
    if (label_len == 0) {
        return SR_NAME_EMPTY_LABEL;
    }
    return SR_NAME_OK;
}

enum sr_name_error
sr_name_normalize(const uint8_t *name, size_t len, char *out, size_t *out_len)
{
    enum sr_name_error err = sr_name_validate(name, len);
    size_t i;

    if (err != SR_NAME_OK) {
        return err;
    }
    if (name[len - 1] == '.') {
        len--;
    }
    for (i = 0; i < len; i++) {
        uint8_t c = name[i];
        out[i] = (char)((c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c);
    }
    out[len] = '\0';
    *out_len = len;
    return SR_NAME_OK;
}

const char *
sr_name_error_str(enum sr_name_error err)
{
    switch (err) {
    case SR_NAME_OK:
        return "ok";
    case SR_NAME_EMPTY:
        return "empty name";
    case SR_NAME_TOO_LONG:
        return "name longer than 253 characters";
    case SR_NAME_EMPTY_LABEL:
        return "empty label";
    case SR_NAME_LABEL_TOO_LONG:
        return "label longer than 63 characters";
    case SR_NAME_BAD_CHAR:
        return "character not allowed in a host name";
    }
    return "unknown name error";
}
