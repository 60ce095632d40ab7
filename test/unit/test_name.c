/* SPDX-License-Identifier: MIT */
/* Table-driven tests of host name validation and normalization. */
#include "sniroute/wire/name.h"

#include <string.h>

#include "support/assert.h"

struct name_case {
    const char *in;
    size_t len; /* 0: use strlen(in) */
    enum sr_name_error err;
    const char *normalized;
};

static const struct name_case cases[] = {
    {"example.com", 0, SR_NAME_OK, "example.com"},
    {"Example.COM", 0, SR_NAME_OK, "example.com"},
    {"example.com.", 0, SR_NAME_OK, "example.com"},
    {"localhost", 0, SR_NAME_OK, "localhost"},
    {"_acme-challenge.x-1.example", 0, SR_NAME_OK, "_acme-challenge.x-1.example"},
    {"xn--bcher-kva.example", 0, SR_NAME_OK, "xn--bcher-kva.example"},
    {"", 0, SR_NAME_EMPTY, NULL},
    {".", 0, SR_NAME_EMPTY, NULL},
    {"example.com..", 0, SR_NAME_EMPTY_LABEL, NULL},
    {"a..b", 0, SR_NAME_EMPTY_LABEL, NULL},
    {".a", 0, SR_NAME_EMPTY_LABEL, NULL},
    {"a b", 0, SR_NAME_BAD_CHAR, NULL},
    {"a/b", 0, SR_NAME_BAD_CHAR, NULL},
    {"*.example.com", 0, SR_NAME_BAD_CHAR, NULL},
    {"a\0b", 3, SR_NAME_BAD_CHAR, NULL},
    {"a:443", 0, SR_NAME_BAD_CHAR, NULL},
    {"caf\xc3\xa9", 0, SR_NAME_BAD_CHAR, NULL},
};

static void
test_table(void)
{
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct name_case *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->in);
        char out[SR_NAME_MAX + 1];
        size_t out_len = 0;

        ASSERT_EQ(sr_name_validate((const uint8_t *)c->in, len), c->err);
        ASSERT_EQ(sr_name_normalize((const uint8_t *)c->in, len, out, &out_len), c->err);
        if (c->err == SR_NAME_OK) {
            ASSERT_STR_EQ(out, c->normalized);
            ASSERT_EQ(out_len, strlen(c->normalized));
        }
    }
}

static void
test_lengths(void)
{
    char buf[300];
    char out[SR_NAME_MAX + 1];
    size_t out_len;
    size_t i;

    /* A 63-byte label is fine, 64 is not. */
    memset(buf, 'a', 64);
    ASSERT_EQ(sr_name_validate((const uint8_t *)buf, 63), SR_NAME_OK);
    ASSERT_EQ(sr_name_validate((const uint8_t *)buf, 64), SR_NAME_LABEL_TOO_LONG);

    /* 253 characters in labels of 9 plus dots is the most; 254 is too long, but 253 plus a
     * trailing dot is fine. */
    for (i = 0; i < sizeof(buf); i++) {
        buf[i] = (i % 10 == 9) ? '.' : 'b';
    }
    buf[252] = 'c'; /* the 253rd byte must not be a dot */
    ASSERT_EQ(sr_name_normalize((const uint8_t *)buf, 253, out, &out_len), SR_NAME_OK);
    ASSERT_EQ(out_len, 253);
    buf[253] = '.';
    ASSERT_EQ(sr_name_validate((const uint8_t *)buf, 254), SR_NAME_OK);
    buf[253] = 'd';
    ASSERT_EQ(sr_name_validate((const uint8_t *)buf, 254), SR_NAME_TOO_LONG);
    ASSERT_EQ(sr_name_validate((const uint8_t *)buf, 256), SR_NAME_TOO_LONG);
}

int
main(void)
{
    test_table();
    test_lengths();
    return 0;
}
