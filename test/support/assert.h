/* SPDX-License-Identifier: MIT */
/* Test assertions in libuv's manner: both operands are printed and the test aborts,
 * whatever NDEBUG says. Header-only; each unit test is its own process. */
#ifndef SR_TEST_ASSERT_H
#define SR_TEST_ASSERT_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SR_FAIL(...)                                                                               \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)

#define ASSERT(expr)                                                                               \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            SR_FAIL("assertion failed: %s", #expr);                                                \
        }                                                                                          \
    } while (0)

#define SR_ASSERT_INT(a, op, b)                                                                    \
    do {                                                                                           \
        intmax_t sr_a_ = (intmax_t)(a);                                                            \
        intmax_t sr_b_ = (intmax_t)(b);                                                            \
        if (!(sr_a_ op sr_b_)) {                                                                   \
            SR_FAIL("%s %s %s: %jd vs %jd", #a, #op, #b, sr_a_, sr_b_);                            \
        }                                                                                          \
    } while (0)

#define ASSERT_EQ(a, b) SR_ASSERT_INT(a, ==, b)
#define ASSERT_NE(a, b) SR_ASSERT_INT(a, !=, b)
#define ASSERT_LT(a, b) SR_ASSERT_INT(a, <, b)
#define ASSERT_LE(a, b) SR_ASSERT_INT(a, <=, b)
#define ASSERT_GT(a, b) SR_ASSERT_INT(a, >, b)
#define ASSERT_GE(a, b) SR_ASSERT_INT(a, >=, b)

#define ASSERT_STR_EQ(a, b)                                                                        \
    do {                                                                                           \
        const char *sr_a_ = (a);                                                                   \
        const char *sr_b_ = (b);                                                                   \
        if (strcmp(sr_a_, sr_b_) != 0) {                                                           \
            SR_FAIL("%s == %s: \"%s\" vs \"%s\"", #a, #b, sr_a_, sr_b_);                           \
        }                                                                                          \
    } while (0)

/* Compare a pointer-plus-length view with a C string. */
#define ASSERT_VIEW_EQ(ptr, len, str)                                                              \
    do {                                                                                           \
        const char *sr_s_ = (str);                                                                 \
        size_t sr_n_ = (size_t)(len);                                                              \
        if (sr_n_ != strlen(sr_s_) || (sr_n_ > 0 && memcmp((ptr), sr_s_, sr_n_) != 0)) {          \
            SR_FAIL("%s == %s: \"%.*s\" vs \"%s\"", #ptr, #str, (int)sr_n_,                        \
                    (const char *)(ptr), sr_s_);                                                   \
        }                                                                                          \
    } while (0)

#endif
