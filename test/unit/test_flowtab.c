/* SPDX-License-Identifier: MIT */
/* The UDP flow table: keys from IPv4 and IPv6 clients (v4 and v4-mapped v6 are one client),
 * the listening socket part of the identity, insert / find / remove checked against a plain
 * array through growth and many deletions, and chains that stay short for the keys a flood
 * would use (one address, every port; many addresses, one port), whatever the secret. */
#include "sniroute/core/flowtab.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "support/assert.h"

struct flow {
    struct sr_flownode node;
    uint32_t id;
    bool is_in;
};

static void
v4(struct sockaddr_in *sin, const char *ip, uint16_t port)
{
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    ASSERT_EQ(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    sin->sin_port = htons(port);
}

static void
v6(struct sockaddr_in6 *sin6, const char *ip, uint16_t port)
{
    memset(sin6, 0, sizeof(*sin6));
    sin6->sin6_family = AF_INET6;
    ASSERT_EQ(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    sin6->sin6_port = htons(port);
}

static void
test_keys(void)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    struct sr_flowkey a;
    struct sr_flowkey b;
    struct sockaddr sa;

    v4(&sin, "192.0.2.7", 4433);
    v6(&sin6, "::ffff:192.0.2.7", 4433);
    ASSERT_EQ(sr_flowkey_set(&a, 3, (struct sockaddr *)&sin), 0);
    ASSERT_EQ(sr_flowkey_set(&b, 3, (struct sockaddr *)&sin6), 0);
    ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
    ASSERT_EQ(a.port, htons(4433));
    ASSERT_EQ(a.pad, 0);
    /* Another port, another socket, another address: another flow. */
    v6(&sin6, "::ffff:192.0.2.7", 4434);
    ASSERT_EQ(sr_flowkey_set(&b, 3, (struct sockaddr *)&sin6), 0);
    ASSERT_NE(memcmp(&a, &b, sizeof(a)), 0);
    ASSERT_EQ(sr_flowkey_set(&b, 4, (struct sockaddr *)&sin), 0);
    ASSERT_NE(memcmp(&a, &b, sizeof(a)), 0);
    v6(&sin6, "2001:db8::7", 4433);
    ASSERT_EQ(sr_flowkey_set(&b, 3, (struct sockaddr *)&sin6), 0);
    ASSERT_NE(memcmp(&a, &b, sizeof(a)), 0);
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNIX;
    ASSERT_EQ(sr_flowkey_set(&a, 3, &sa), -1);
}

static void
key_of(struct sr_flowkey *key, uint32_t i)
{
    struct sockaddr_in sin;

    /* 64 addresses, every port: what many clients behind few NATs look like. */
    v4(&sin, "10.0.0.1", 0);
    sin.sin_addr.s_addr = htonl(0x0a000000u + (i % 64));
    sin.sin_port = htons((uint16_t)(1024 + i / 64));
    ASSERT_EQ(sr_flowkey_set(key, i % 3, (struct sockaddr *)&sin), 0);
}

/* Insert, find and remove at random against a plain array of flags. */
static void
test_against_array(void)
{
    enum { N = 20000 };
    struct flow *flows = calloc(N, sizeof(*flows));
    struct sr_flowtab t;
    size_t n_in = 0;
    uint64_t rng = 88172645463325252ull;
    size_t step;
    uint32_t i;

    ASSERT(flows != NULL);
    ASSERT_EQ(sr_flowtab_init(&t, 0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull), 0);
    for (i = 0; i < N; i++) {
        flows[i].id = i;
        key_of(&flows[i].node.key, i);
    }
    for (step = 0; step < 200000; step++) {
        struct sr_flownode *found;

        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        i = (uint32_t)(rng % N);
        found = sr_flowtab_find(&t, &flows[i].node.key);
        if (flows[i].is_in) {
            ASSERT(found == &flows[i].node);
            if ((rng >> 32) % 3 == 0) {
                sr_flowtab_remove(&t, found);
                flows[i].is_in = false;
                n_in--;
            }
        } else {
            ASSERT(found == NULL);
            sr_flowtab_insert(&t, &flows[i].node);
            flows[i].is_in = true;
            n_in++;
        }
        ASSERT_EQ(t.n, n_in);
    }
    for (i = 0; i < N; i++) {
        struct sr_flownode *found = sr_flowtab_find(&t, &flows[i].node.key);

        ASSERT(flows[i].is_in ? found == &flows[i].node : found == NULL);
        if (flows[i].is_in) {
            sr_flowtab_remove(&t, &flows[i].node);
        }
    }
    ASSERT_EQ(t.n, 0);
    sr_flowtab_fini(&t);
    free(flows);
}

/* One client address and every port (a flood from one host), then many addresses on one
 * port: with any secret, no chain is long. A hash without a secret lets an attacker pick
 * keys that collide; SipHash with a random one makes the load look uniform: with n keys in
 * at least n buckets the longest chain stays around log n / log log n. */
static void
test_chains(void)
{
    enum { N = 65535 };
    struct flow *flows = calloc(N, sizeof(*flows));
    struct sockaddr_in sin;
    struct sr_flowtab t;
    uint64_t seeds[3][2] = {{0, 0}, {1, 2}, {0xdeadbeefcafef00dull, 0x0123456789abcdefull}};
    size_t s;
    uint32_t i;

    ASSERT(flows != NULL);
    for (s = 0; s < 3; s++) {
        ASSERT_EQ(sr_flowtab_init(&t, seeds[s][0], seeds[s][1]), 0);
        for (i = 0; i < N; i++) {
            v4(&sin, "203.0.113.9", (uint16_t)(i + 1));
            ASSERT_EQ(sr_flowkey_set(&flows[i].node.key, 1, (struct sockaddr *)&sin), 0);
            sr_flowtab_insert(&t, &flows[i].node);
        }
        ASSERT_GE(t.n_buckets, t.n);
        ASSERT_LE(sr_flowtab_longest_chain(&t), 12);
        for (i = 0; i < N; i++) {
            sr_flowtab_remove(&t, &flows[i].node);
        }
        ASSERT_EQ(t.n, 0);
        for (i = 0; i < N; i++) {
            sin.sin_addr.s_addr = htonl(0xc6120000u + i); /* 198.18.0.0/15 */
            sin.sin_port = htons(443);
            ASSERT_EQ(sr_flowkey_set(&flows[i].node.key, 1, (struct sockaddr *)&sin), 0);
            sr_flowtab_insert(&t, &flows[i].node);
        }
        ASSERT_LE(sr_flowtab_longest_chain(&t), 12);
        sr_flowtab_fini(&t);
    }
    free(flows);
}

/* Connection ID keys: the bytes and the length both count, the socket too; an ID key
 * never equals an address key of the same socket in practice (the length byte). */
static void
test_cid_keys(void)
{
    static const uint8_t id[20] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                   11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    struct sr_flowkey a;
    struct sr_flowkey b;

    sr_flowkey_set_cid(&a, 3, id, 20);
    sr_flowkey_set_cid(&b, 3, id, 20);
    ASSERT_EQ(memcmp(&a, &b, sizeof(a)), 0);
    ASSERT_EQ(a.sock, 3u | 20u << 24);
    ASSERT_EQ(a.addr[15], 16);
    sr_flowkey_set_cid(&b, 3, id, 19); /* a prefix: another ID */
    ASSERT_NE(memcmp(&a, &b, sizeof(a)), 0);
    sr_flowkey_set_cid(&b, 4, id, 20);
    ASSERT_NE(memcmp(&a, &b, sizeof(a)), 0);
    sr_flowkey_set_cid(&a, 3, id, 8);
    ASSERT_EQ(a.addr[8], 0);
    ASSERT_EQ(a.port, 0);
}

int
main(void)
{
    test_keys();
    test_cid_keys();
    test_against_array();
    test_chains();
    return 0;
}
