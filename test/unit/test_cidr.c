/* SPDX-License-Identifier: MIT */
/* CIDR tests as tables: each text parses to an exact error or to a range that formats back
 * to a pinned spelling; each (range, address) pair matches or does not, whether the address
 * arrives as IPv4 or as v4-mapped IPv6. */
#include "sniroute/config/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "support/assert.h"

struct parse_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    enum sr_cidr_error err;
    const char *formatted; /* OK and HOST_BITS: sr_cidr_format() of the result */
};

static const struct parse_case parse_cases[] = {
    {"10.0.0.0/8", 0, SR_CIDR_OK, "10.0.0.0/8"},
    {"192.168.1.7", 0, SR_CIDR_OK, "192.168.1.7/32"},
    {"192.168.1.7/32", 0, SR_CIDR_OK, "192.168.1.7/32"},
    {"0.0.0.0/0", 0, SR_CIDR_OK, "0.0.0.0/0"},
    {"172.16.0.0/12", 0, SR_CIDR_OK, "172.16.0.0/12"},
    {"255.255.255.255/32", 0, SR_CIDR_OK, "255.255.255.255/32"},
    {"::1/128", 0, SR_CIDR_OK, "::1/128"},
    {"::1", 0, SR_CIDR_OK, "::1/128"},
    {"fd00::/8", 0, SR_CIDR_OK, "fd00::/8"},
    {"FD00::/8", 0, SR_CIDR_OK, "fd00::/8"},
    {"::/0", 0, SR_CIDR_OK, "::/0"},
    {"2001:db8::/32", 0, SR_CIDR_OK, "2001:db8::/32"},
    {"2001:0db8:0000:0000:0000:0000:0000:0000/32", 0, SR_CIDR_OK, "2001:db8::/32"},
    {"::ffff:10.0.0.0/104", 0, SR_CIDR_OK, "::ffff:10.0.0.0/104"},
    {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128", 0, SR_CIDR_OK,
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"},
    /* host bits: refused, with the masked network left in <out> for a hint */
    {"10.1.2.3/8", 0, SR_CIDR_HOST_BITS, "10.0.0.0/8"},
    {"192.168.1.7/24", 0, SR_CIDR_HOST_BITS, "192.168.1.0/24"},
    {"10.0.0.1/0", 0, SR_CIDR_HOST_BITS, "0.0.0.0/0"},
    {"172.31.0.0/12", 0, SR_CIDR_HOST_BITS, "172.16.0.0/12"},
    {"fd00::1/8", 0, SR_CIDR_HOST_BITS, "fd00::/8"},
    {"fd80::/8", 0, SR_CIDR_HOST_BITS, "fd00::/8"},
    {"::1/127", 0, SR_CIDR_HOST_BITS, "::/127"},
    /* bad inputs */
    {"", 0, SR_CIDR_EMPTY, NULL},
    {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/1280", 0, SR_CIDR_TOO_LONG, NULL},
    {"/8", 0, SR_CIDR_BAD_ADDRESS, NULL},
    {"10.0.0/8", 0, SR_CIDR_BAD_ADDRESS, NULL},
    {"10.0.0.0.0/8", 0, SR_CIDR_BAD_ADDRESS, NULL},
    {"010.0.0.0/8", 0, SR_CIDR_BAD_ADDRESS, NULL}, /* leading zero: octal to some tools */
    {"256.0.0.0/8", 0, SR_CIDR_BAD_ADDRESS, NULL},
    {"10.0.0.0 /8", 0, SR_CIDR_BAD_ADDRESS, NULL},
    {" 10.0.0.0/8", 0, SR_CIDR_BAD_ADDRESS, NULL},
    {"[::1]/128", 0, SR_CIDR_BAD_ADDRESS, NULL},
    {"fe80::1%eth0/64", 0, SR_CIDR_BAD_ADDRESS, NULL},
    {"example.com/8", 0, SR_CIDR_BAD_ADDRESS, NULL},
    {"1:2:3:4:5:6:7:8:9/64", 0, SR_CIDR_BAD_ADDRESS, NULL},
    {"10.0.0.0\0/8", 11, SR_CIDR_BAD_ADDRESS, NULL},
    {"10.0.0.0/", 0, SR_CIDR_BAD_PREFIX, NULL},
    {"10.0.0.0/08", 0, SR_CIDR_BAD_PREFIX, NULL},
    {"10.0.0.0/00", 0, SR_CIDR_BAD_PREFIX, NULL},
    {"10.0.0.0/+8", 0, SR_CIDR_BAD_PREFIX, NULL},
    {"10.0.0.0/-1", 0, SR_CIDR_BAD_PREFIX, NULL},
    {"10.0.0.0/8 ", 0, SR_CIDR_BAD_PREFIX, NULL},
    {"10.0.0.0/8/8", 0, SR_CIDR_BAD_PREFIX, NULL},
    {"10.0.0.0/1000", 0, SR_CIDR_BAD_PREFIX, NULL},
    {"10.0.0.0/\0", 10, SR_CIDR_BAD_PREFIX, NULL},
    {"10.0.0.0/33", 0, SR_CIDR_PREFIX_RANGE, NULL},
    {"::/129", 0, SR_CIDR_PREFIX_RANGE, NULL},
    {"::/999", 0, SR_CIDR_PREFIX_RANGE, NULL},
};

static void
test_parse_table(void)
{
    size_t i;

    for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct parse_case *tc = &parse_cases[i];
        size_t len = tc->len ? tc->len : strlen(tc->in);
        struct sr_cidr c;
        struct sr_cidr zero;
        char text[SR_CIDR_TEXT_MAX + 1];
        enum sr_cidr_error err;

        memset(&c, 0x5a, sizeof(c));
        err = sr_cidr_parse(tc->in, len, &c);
        if (err != tc->err) {
            SR_FAIL("\"%s\": got %s, want %s", tc->in, sr_cidr_error_str(err),
                    sr_cidr_error_str(tc->err));
        }
        if (tc->formatted != NULL) {
            ASSERT_GT(sr_cidr_format(&c, text, sizeof(text)), 0);
            ASSERT_STR_EQ(text, tc->formatted);
        } else {
            memset(&zero, 0, sizeof(zero));
            ASSERT_EQ(memcmp(&c, &zero, sizeof(c)), 0);
        }
    }
}

static struct sockaddr_storage
sa_from(const char *text)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(4242);
    } else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(4242);
    } else {
        SR_FAIL("bad test address %s", text);
    }
    return ss;
}

struct match_case {
    const char *cidr;
    const char *addr;
    bool match;
};

static const struct match_case match_cases[] = {
    {"10.0.0.0/8", "10.0.0.0", true},
    {"10.0.0.0/8", "10.255.255.255", true},
    {"10.0.0.0/8", "11.0.0.0", false},
    {"10.0.0.0/8", "9.255.255.255", false},
    {"10.0.0.0/8", "::ffff:10.1.2.3", true}, /* v4 client on a dual-stack socket */
    {"10.0.0.0/8", "::ffff:11.1.2.3", false},
    {"10.0.0.0/8", "::10.1.2.3", false}, /* v4-compatible (deprecated) is not v4-mapped */
    {"10.0.0.0/8", "fd00::1", false},
    {"192.168.1.7", "192.168.1.7", true},
    {"192.168.1.7", "192.168.1.8", false},
    {"192.168.1.7", "::ffff:192.168.1.7", true},
    {"172.16.0.0/12", "172.31.255.255", true},
    {"172.16.0.0/12", "172.32.0.0", false},
    {"0.0.0.0/0", "1.2.3.4", true},
    {"0.0.0.0/0", "::ffff:1.2.3.4", true},
    {"0.0.0.0/0", "::1", false},
    {"0.0.0.0/0", "2001:db8::1", false},
    {"::/0", "2001:db8::1", true},
    {"::/0", "1.2.3.4", true}, /* the same host as ::ffff:1.2.3.4 */
    {"::1/128", "::1", true},
    {"::1", "::2", false},
    {"::1/128", "127.0.0.1", false},
    {"fd00::/8", "fd12:3456::1", true},
    {"fd00::/8", "fe00::1", false},
    {"fd00::/7", "fc00::1", true},
    {"2001:db8::/32", "2001:db8:ffff::1", true},
    {"2001:db8::/32", "2001:db9::1", false},
    {"2001:db8::/33", "2001:db8:7fff::1", true},
    {"2001:db8::/33", "2001:db8:8000::1", false},
    {"::ffff:10.0.0.0/104", "10.9.8.7", true},
    {"::ffff:10.0.0.0/104", "::ffff:10.9.8.7", true},
    {"::ffff:10.0.0.0/104", "11.9.8.7", false},
    {"::ffff:0:0/96", "203.0.113.9", true},
    {"203.0.113.9/31", "203.0.113.8", true},
    {"203.0.113.9/32", "203.0.113.8", false},
};

static void
test_match_table(void)
{
    size_t i;

    for (i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const struct match_case *tc = &match_cases[i];
        struct sr_cidr c;
        struct sockaddr_storage ss = sa_from(tc->addr);
        enum sr_cidr_error err = sr_cidr_parse(tc->cidr, strlen(tc->cidr), &c);

        if (err == SR_CIDR_HOST_BITS) {
            err = SR_CIDR_OK; /* "203.0.113.9/31": use the masked network, as a hint would */
        }
        ASSERT_EQ(err, SR_CIDR_OK);
        if (sr_cidr_match(&c, (const struct sockaddr *)&ss) != tc->match) {
            SR_FAIL("%s in %s: want %s", tc->addr, tc->cidr, tc->match ? "match" : "no match");
        }
    }
}

static void
test_other_families(void)
{
    struct sr_cidr c;
    struct sockaddr_storage ss;

    ASSERT_EQ(sr_cidr_parse("::/0", 4, &c), SR_CIDR_OK);
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    ASSERT(!sr_cidr_match(&c, (const struct sockaddr *)&ss));
    ss.ss_family = AF_UNSPEC;
    ASSERT(!sr_cidr_match(&c, (const struct sockaddr *)&ss));
    ASSERT(!sr_cidr_match(&c, NULL));
}

static void
test_list(void)
{
    struct sr_cidr items[3];
    struct sr_cidr_list list = {items, 0};
    struct sockaddr_storage a = sa_from("10.1.2.3");
    struct sockaddr_storage b = sa_from("fd00::5");
    struct sockaddr_storage c = sa_from("::ffff:192.0.2.1");
    struct sockaddr_storage d = sa_from("198.51.100.1");

    ASSERT(!sr_cidr_list_match(&list, (const struct sockaddr *)&a)); /* empty: nobody */
    ASSERT_EQ(sr_cidr_parse("10.0.0.0/8", 10, &items[0]), SR_CIDR_OK);
    ASSERT_EQ(sr_cidr_parse("fd00::/8", 8, &items[1]), SR_CIDR_OK);
    ASSERT_EQ(sr_cidr_parse("192.0.2.1", 9, &items[2]), SR_CIDR_OK);
    list.n = 3;
    ASSERT(sr_cidr_list_match(&list, (const struct sockaddr *)&a));
    ASSERT(sr_cidr_list_match(&list, (const struct sockaddr *)&b));
    ASSERT(sr_cidr_list_match(&list, (const struct sockaddr *)&c));
    ASSERT(!sr_cidr_list_match(&list, (const struct sockaddr *)&d));
    ASSERT(!sr_cidr_list_match(&list, NULL));
}

static void
test_format_cap(void)
{
    struct sr_cidr c;
    char out[16];

    ASSERT_EQ(sr_cidr_parse("10.0.0.0/8", 10, &c), SR_CIDR_OK);
    ASSERT_EQ(sr_cidr_format(&c, out, 11), 10); /* exactly fits with its NUL */
    ASSERT_STR_EQ(out, "10.0.0.0/8");
    ASSERT_EQ(sr_cidr_format(&c, out, 10), 0);
    ASSERT_EQ(sr_cidr_parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 39, &c), SR_CIDR_OK);
    ASSERT_EQ(sr_cidr_format(&c, out, sizeof(out)), 0);
}

/* Every prefix length of both families: /n matches an address iff its first n bits agree. */
static void
test_every_prefix_len(void)
{
    unsigned n;

    for (n = 0; n <= 128; n++) {
        struct sr_cidr c;
        struct sockaddr_in6 in;
        struct sockaddr_in6 out;
        char text[64];

        snprintf(text, sizeof(text), "::/%u", n);
        ASSERT_EQ(sr_cidr_parse(text, strlen(text), &c), SR_CIDR_OK);
        memset(&in, 0, sizeof(in));
        in.sin6_family = AF_INET6;
        out = in;
        if (n < 128) {
            in.sin6_addr.s6_addr[15 - (127 - n) / 8] = (uint8_t)(1u << ((127 - n) % 8));
        }
        if (n > 0) {
            out.sin6_addr.s6_addr[(n - 1) / 8] = (uint8_t)(0x80u >> ((n - 1) % 8));
        }
        ASSERT(sr_cidr_match(&c, (const struct sockaddr *)&in));
        ASSERT_EQ(sr_cidr_match(&c, (const struct sockaddr *)&out), n == 0);
    }
    for (n = 0; n <= 32; n++) {
        struct sr_cidr c;
        struct sockaddr_in in;
        struct sockaddr_in out;
        char text[64];
        uint32_t host = n < 32 ? 1u << (31 - n) : 0;

        snprintf(text, sizeof(text), "0.0.0.0/%u", n);
        ASSERT_EQ(sr_cidr_parse(text, strlen(text), &c), SR_CIDR_OK);
        memset(&in, 0, sizeof(in));
        in.sin_family = AF_INET;
        out = in;
        in.sin_addr.s_addr = htonl(host);
        out.sin_addr.s_addr = n > 0 ? htonl(1u << (32 - n)) : 0;
        ASSERT(sr_cidr_match(&c, (const struct sockaddr *)&in));
        ASSERT_EQ(sr_cidr_match(&c, (const struct sockaddr *)&out), n == 0);
    }
}

static void
test_error_strings(void)
{
    int e;

    for (e = SR_CIDR_OK; e <= SR_CIDR_HOST_BITS; e++) {
        ASSERT(strcmp(sr_cidr_error_str((enum sr_cidr_error)e), "unknown error") != 0);
    }
    ASSERT_STR_EQ(sr_cidr_error_str(SR_CIDR_HOST_BITS),
                  "address has bits set beyond the prefix length");
}

int
main(void)
{
    test_parse_table();
    test_match_table();
    test_other_families();
    test_list();
    test_format_cap();
    test_every_prefix_len();
    test_error_strings();
    printf("test_cidr: ok\n");
    return 0;
}
