/* SPDX-License-Identifier: MIT */
/* Read a fixture file whole: the unit tests that feed captured bytes (hellos, PROXY
 * headers, QUIC datagrams) take them from SR_FIXTURE_DIR, which CMake sets per test. */
#ifndef SR_TEST_FIXTURE_H
#define SR_TEST_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "support/assert.h"

/* The bytes of SR_FIXTURE_DIR/<name> in a new heap buffer (the caller frees it), their
 * count in <*len>; a missing or empty file fails the test. */
static inline uint8_t *
load_fixture(const char *name, size_t *len)
{
    char path[512];
    FILE *f;
    uint8_t *buf;
    long n;

    snprintf(path, sizeof(path), "%s/%s", SR_FIXTURE_DIR, name);
    f = fopen(path, "rb");
    if (f == NULL) {
        SR_FAIL("cannot open fixture %s", path);
    }
    ASSERT_EQ(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    ASSERT_GT(n, 0);
    ASSERT_EQ(fseek(f, 0, SEEK_SET), 0);
    buf = malloc((size_t)n);
    ASSERT(buf != NULL);
    ASSERT_EQ(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

#endif
