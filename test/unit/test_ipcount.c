/* SPDX-License-Identifier: MIT */
/* Per-address counts: v4 and v4-mapped v6 are one client; counts go up and down; the table
 * stays exact through growth and many deletions (checked against a plain array). */
#include "sniroute/core/ipcount.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "support/assert.h"

static void
test_keys(void)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct sr_ipkey a;
    struct sr_ipkey b;
    struct sockaddr sa;

    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    sin.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
    sin6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:192.0.2.7", &sin6.sin6_addr);
    ASSERT_EQ(sr_ipkey_from_sockaddr(&a, (struct sockaddr *)&sin), 0);
    ASSERT_EQ(sr_ipkey_from_sockaddr(&b, (struct sockaddr *)&sin6), 0);
    ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
    inet_pton(AF_INET6, "2001:db8::7", &sin6.sin6_addr);
    ASSERT_EQ(sr_ipkey_from_sockaddr(&b, (struct sockaddr *)&sin6), 0);
    ASSERT_NE(memcmp(&a, &b, sizeof(a)), 0);
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNIX;
    ASSERT_EQ(sr_ipkey_from_sockaddr(&a, &sa), -1);
}

static struct sr_ipkey
key_of(uint32_t i)
{
    struct sr_ipkey k;

    memset(&k, 0, sizeof(k));
    k.bytes[10] = 0xff;
    k.bytes[11] = 0xff;
    memcpy(k.bytes + 12, &i, 4);
    return k;
}

#define N_KEYS 5000

static uint32_t model[N_KEYS];

static void
test_against_model(void)
{
    static const uint64_t secret[2] = {0x0123456789abcdefull, 0xfedcba9876543210ull};
    struct sr_ipcount *t = sr_ipcount_new(secret);
    uint32_t state = 12345;
    size_t live = 0;
    size_t step;
    uint32_t i;

    ASSERT(t != NULL);
    for (step = 0; step < 200000; step++) {
        struct sr_ipkey k;

        state = state * 1103515245u + 12345u; /* deterministic */
        i = (state >> 8) % N_KEYS;
        k = key_of(i);
        if ((state & 3) != 0 || model[i] == 0) {
            ASSERT_EQ(sr_ipcount_add(t, &k), model[i] + 1);
            live += model[i] == 0;
            model[i]++;
        } else {
            sr_ipcount_remove(t, &k);
            model[i]--;
            live -= model[i] == 0;
        }
        if (step % 9973 == 0) {
            uint32_t j;

            for (j = 0; j < N_KEYS; j++) {
                k = key_of(j);
                ASSERT_EQ(sr_ipcount_get(t, &k), model[j]);
            }
            ASSERT_EQ(sr_ipcount_size(t), live);
        }
    }
    /* Remove everything: the table must end empty and exact. */
    for (i = 0; i < N_KEYS; i++) {
        struct sr_ipkey k = key_of(i);

        while (model[i] > 0) {
            sr_ipcount_remove(t, &k);
            model[i]--;
        }
        ASSERT_EQ(sr_ipcount_get(t, &k), 0);
    }
    ASSERT_EQ(sr_ipcount_size(t), 0);
    sr_ipcount_free(t);
}

int
main(void)
{
    test_keys();
    test_against_model();
    return 0;
}
