/* SPDX-License-Identifier: MIT */
/* PROXY protocol tests: headers captured from HAProxy 2.6 parse to the addresses it sent and
 * our builder reproduces them byte for byte; the spec's example line; every prefix of every
 * input gives NEED_MORE or the whole input's answer, and a good header never completes
 * sooner than <need> says; every malformed shape gives its named reason; build -> parse
 * round trips over a grid of addresses and ports, mixed families included. */
#include "sniroute/wire/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "support/assert.h"
#include "support/fixture.h"

/* ---- helpers ----------------------------------------------------------------------- */

/* Parse from a heap copy of exactly <len> bytes (ASan sees any overread) and check the
 * invariants every result must keep. The authority view is moved to point into <buf>. */
static void
parse(const uint8_t *buf, size_t len, struct sr_proxyproto_result *res)
{
    uint8_t *copy = malloc(len ? len : 1);

    ASSERT(copy != NULL);
    memcpy(copy, buf, len);
    sr_proxyproto_parse(copy, len, res);
    ASSERT_EQ(res->status == SR_PROXYPROTO_NEED_MORE, res->need > 0);
    ASSERT_EQ(res->status == SR_PROXYPROTO_NOT_PROXY || res->status == SR_PROXYPROTO_INVALID,
              res->reason != SR_PROXYPROTO_REASON_NONE);
    if (res->status == SR_PROXYPROTO_OK) {
        ASSERT_GT(res->header_len, 0);
        ASSERT_LE(res->header_len, len);
        ASSERT(res->version == 1 || res->version == 2);
        if (res->version == 1) {
            ASSERT_LE(res->header_len, SR_PROXYPROTO_V1_MAX);
        } else {
            ASSERT_LE(res->header_len, SR_PROXYPROTO_PARSE_MAX);
        }
        if (res->has_authority) {
            ASSERT(res->authority >= copy && res->authority <= copy + res->header_len);
            ASSERT_LE(res->authority_len, (size_t)(copy + res->header_len - res->authority));
            res->authority = buf + (res->authority - copy);
        } else {
            ASSERT(res->authority == NULL && res->authority_len == 0);
        }
        if (res->family == SR_PROXYPROTO_FAMILY_TCP4) {
            ASSERT_EQ(res->src.ss_family, AF_INET);
            ASSERT_EQ(res->dst.ss_family, AF_INET);
        } else if (res->family == SR_PROXYPROTO_FAMILY_TCP6) {
            ASSERT_EQ(res->src.ss_family, AF_INET6);
            ASSERT_EQ(res->dst.ss_family, AF_INET6);
        } else {
            ASSERT_EQ(res->src.ss_family, AF_UNSPEC);
            ASSERT_EQ(res->dst.ss_family, AF_UNSPEC);
        }
    } else {
        ASSERT_EQ(res->header_len, 0);
        ASSERT_EQ(res->version, 0);
        ASSERT(!res->has_authority);
        ASSERT_EQ(res->src.ss_family, AF_UNSPEC);
    }
    free(copy);
}

static bool
same(const struct sr_proxyproto_result *a, const struct sr_proxyproto_result *b)
{
    if (a->status != b->status || a->reason != b->reason) {
        return false;
    }
    if (a->status != SR_PROXYPROTO_OK) {
        return true;
    }
    return a->header_len == b->header_len && a->version == b->version && a->command == b->command &&
           a->family == b->family && memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
           memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0 && a->has_authority == b->has_authority &&
           a->authority_len == b->authority_len &&
           (a->authority_len == 0 || memcmp(a->authority, b->authority, a->authority_len) == 0);
}

/* Every prefix gives NEED_MORE or exactly the whole input's answer; for a good header each
 * strict prefix is NEED_MORE and never asks past the header's end; a caller that waits for
 * <need> bytes each time reaches the same answer. Returns the whole input's result. */
static struct sr_proxyproto_result
check_all_ways(const uint8_t *buf, size_t len)
{
    struct sr_proxyproto_result whole;
    struct sr_proxyproto_result part;
    size_t p;
    size_t have = 0;

    parse(buf, len, &whole);
    for (p = 0; p < len; p++) {
        parse(buf, p, &part);
        if (whole.status == SR_PROXYPROTO_OK && p < whole.header_len) {
            if (part.status != SR_PROXYPROTO_NEED_MORE) {
                SR_FAIL("prefix %zu of a good header: %s/%s", p,
                        sr_proxyproto_status_str(part.status),
                        sr_proxyproto_reason_str(part.reason));
            }
            ASSERT_LE(p + part.need, whole.header_len);
        } else if (part.status != SR_PROXYPROTO_NEED_MORE && !same(&part, &whole)) {
            SR_FAIL("prefix %zu says %s/%s, whole says %s/%s", p,
                    sr_proxyproto_status_str(part.status), sr_proxyproto_reason_str(part.reason),
                    sr_proxyproto_status_str(whole.status), sr_proxyproto_reason_str(whole.reason));
        }
    }
    for (;;) {
        parse(buf, have, &part);
        if (part.status != SR_PROXYPROTO_NEED_MORE || have == len) {
            break;
        }
        have = have + part.need < len ? have + part.need : len;
    }
    ASSERT(same(&part, &whole));
    return whole;
}

static struct sockaddr_storage
sa(const char *text, uint16_t port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
    } else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
    } else {
        SR_FAIL("bad test address %s", text);
    }
    return ss;
}

/* "addr port" of a parsed endpoint, for readable comparisons. */
static const char *
endpoint(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char a[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
        snprintf(out, cap, "%s %u", a, ntohs(sin->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
        snprintf(out, cap, "%s %u", a, ntohs(sin6->sin6_port));
    } else {
        snprintf(out, cap, "-");
    }
    return out;
}

#define ASSERT_ENDPOINT(ss, want)                                                                  \
    do {                                                                                           \
        char ep_[80];                                                                              \
        ASSERT_STR_EQ(endpoint(&(ss), ep_, sizeof(ep_)), want);                                    \
    } while (0)

#define PAYLOAD "PAYLOAD-AFTER-HEADER\n"

/* ---- HAProxy captures ---------------------------------------------------------------- */

struct capture {
    const char *file;
    unsigned version;
    enum sr_proxyproto_command command;
    enum sr_proxyproto_family family;
    const char *src;
    const char *dst;
    const char *authority; /* NULL: none */
    bool rebuild;          /* our builder must reproduce the header byte for byte */
};

static const struct capture captures[] = {
    {"haproxy-v1-tcp4.bin", 1, SR_PROXYPROTO_CMD_PROXY, SR_PROXYPROTO_FAMILY_TCP4,
     "127.0.0.1 55806", "127.0.0.1 50165", NULL, true},
    {"haproxy-v1-tcp6.bin", 1, SR_PROXYPROTO_CMD_PROXY, SR_PROXYPROTO_FAMILY_TCP6, "::1 52306",
     "::1 36551", NULL, true},
    {"haproxy-v2-tcp4.bin", 2, SR_PROXYPROTO_CMD_PROXY, SR_PROXYPROTO_FAMILY_TCP4,
     "127.0.0.1 50780", "127.0.0.1 46037", NULL, true},
    {"haproxy-v2-tcp6.bin", 2, SR_PROXYPROTO_CMD_PROXY, SR_PROXYPROTO_FAMILY_TCP6, "::1 56292",
     "::1 35941", NULL, true},
    /* CRC32C, AUTHORITY, UNIQUE_ID and SSL TLVs, relayed from a client's own v2 header */
    {"haproxy-v2-tlv.bin", 2, SR_PROXYPROTO_CMD_PROXY, SR_PROXYPROTO_FAMILY_TCP4,
     "192.0.2.10 51234", "198.51.100.20 443", "app.example.com", false},
    {"haproxy-v2-local.bin", 2, SR_PROXYPROTO_CMD_LOCAL, SR_PROXYPROTO_FAMILY_UNSPEC, "-", "-",
     NULL, true},
};

static void
test_haproxy_captures(void)
{
    size_t i;

    for (i = 0; i < sizeof(captures) / sizeof(captures[0]); i++) {
        const struct capture *c = &captures[i];
        size_t len;
        uint8_t *buf = load_fixture(c->file, &len);
        struct sr_proxyproto_result res = check_all_ways(buf, len);

        if (res.status != SR_PROXYPROTO_OK) {
            SR_FAIL("%s: %s/%s", c->file, sr_proxyproto_status_str(res.status),
                    sr_proxyproto_reason_str(res.reason));
        }
        ASSERT_EQ(res.version, c->version);
        ASSERT_EQ(res.command, c->command);
        ASSERT_EQ(res.family, c->family);
        ASSERT_ENDPOINT(res.src, c->src);
        ASSERT_ENDPOINT(res.dst, c->dst);
        if (c->authority != NULL) {
            ASSERT(res.has_authority);
            ASSERT_VIEW_EQ(res.authority, res.authority_len, c->authority);
        } else {
            ASSERT(!res.has_authority);
        }
        /* The payload starts right after the header (the health check has none). */
        if (c->command == SR_PROXYPROTO_CMD_PROXY) {
            ASSERT_VIEW_EQ(buf + res.header_len, len - res.header_len, PAYLOAD);
        } else {
            ASSERT_EQ(res.header_len, len);
        }
        if (c->rebuild) {
            uint8_t out[SR_PROXYPROTO_V2_BUILD_MAX];
            const struct sockaddr *s = (const struct sockaddr *)&res.src;
            const struct sockaddr *d = (const struct sockaddr *)&res.dst;
            size_t n = c->version == 1 ? sr_proxyproto_build_v1((char *)out, sizeof(out), s, d)
                                       : sr_proxyproto_build_v2(out, sizeof(out), s, d, NULL, 0);
            ASSERT_EQ(n, res.header_len);
            ASSERT_EQ(memcmp(out, buf, n), 0);
        }
        free(buf);
    }
}

/* HAProxy's CRC32C is verified: change one byte of the unique id and the header is refused;
 * change it back and it passes. */
static void
test_haproxy_crc32c(void)
{
    size_t len;
    uint8_t *buf = load_fixture("haproxy-v2-tlv.bin", &len);
    struct sr_proxyproto_result res;
    uint8_t *id = memchr(buf + 16, ':', len - 16); /* inside the UNIQUE_ID value */

    ASSERT(id != NULL);
    *id ^= 1;
    parse(buf, len, &res);
    ASSERT_EQ(res.status, SR_PROXYPROTO_INVALID);
    ASSERT_EQ(res.reason, SR_PROXYPROTO_REASON_V2_CRC32C);
    *id ^= 1;
    parse(buf, len, &res);
    ASSERT_EQ(res.status, SR_PROXYPROTO_OK);
    free(buf);
}

/* Each v2 fixture's length field nudged by one either way gets a pinned answer. */
static void
test_v2_length_nudges(void)
{
    static const struct {
        const char *file;
        enum sr_proxyproto_status minus_status;
        enum sr_proxyproto_reason minus_reason;
        enum sr_proxyproto_status plus_status;
        enum sr_proxyproto_reason plus_reason;
    } nudges[] = {
        /* one byte short of the address block */
        {"haproxy-v2-tcp4.bin", SR_PROXYPROTO_INVALID, SR_PROXYPROTO_REASON_V2_ADDRESS_LEN,
         /* one byte more: 'P' of the payload is a TLV type without room for its length */
         SR_PROXYPROTO_INVALID, SR_PROXYPROTO_REASON_V2_TLV},
        {"haproxy-v2-tcp6.bin", SR_PROXYPROTO_INVALID, SR_PROXYPROTO_REASON_V2_ADDRESS_LEN,
         SR_PROXYPROTO_INVALID, SR_PROXYPROTO_REASON_V2_TLV},
        /* the SSL TLV is last: one byte less cuts it, one more leaves a stray byte */
        {"haproxy-v2-tlv.bin", SR_PROXYPROTO_INVALID, SR_PROXYPROTO_REASON_V2_TLV,
         SR_PROXYPROTO_INVALID, SR_PROXYPROTO_REASON_V2_TLV},
    };
    size_t i;

    for (i = 0; i < sizeof(nudges) / sizeof(nudges[0]); i++) {
        size_t len;
        uint8_t *buf = load_fixture(nudges[i].file, &len);
        struct sr_proxyproto_result res;
        unsigned hlen = (unsigned)buf[14] << 8 | buf[15];

        buf[14] = (uint8_t)((hlen - 1) >> 8);
        buf[15] = (uint8_t)(hlen - 1);
        res = check_all_ways(buf, len);
        ASSERT_EQ(res.status, nudges[i].minus_status);
        ASSERT_EQ(res.reason, nudges[i].minus_reason);
        buf[14] = (uint8_t)((hlen + 1) >> 8);
        buf[15] = (uint8_t)(hlen + 1);
        res = check_all_ways(buf, len);
        ASSERT_EQ(res.status, nudges[i].plus_status);
        ASSERT_EQ(res.reason, nudges[i].plus_reason);
        free(buf);
    }
}

/* ---- building, byte for byte --------------------------------------------------------- */

static void
test_build_v1_exact(void)
{
    char out[SR_PROXYPROTO_V1_MAX];
    struct sockaddr_storage s = sa("192.168.0.1", 56324);
    struct sockaddr_storage d = sa("192.168.0.11", 443);
    struct sockaddr_storage s6 = sa("2001:db8::1", 65535);
    struct sockaddr_storage d6 = sa("2001:db8:0:0:1::2", 0);
    struct sockaddr_storage max6 = sa("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    struct sockaddr_storage un;
    const char *spec = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"; /* spec 2.1 */
    size_t n;

    n = sr_proxyproto_build_v1(out, sizeof(out), (struct sockaddr *)&s, (struct sockaddr *)&d);
    ASSERT_VIEW_EQ(out, n, spec);
    n = sr_proxyproto_build_v1(out, sizeof(out), (struct sockaddr *)&s6, (struct sockaddr *)&d6);
    ASSERT_VIEW_EQ(out, n, "PROXY TCP6 2001:db8::1 2001:db8::1:0:0:2 65535 0\r\n");
    /* mixed: the IPv4 end becomes v4-mapped, as HAProxy writes it */
    n = sr_proxyproto_build_v1(out, sizeof(out), (struct sockaddr *)&s, (struct sockaddr *)&d6);
    ASSERT_VIEW_EQ(out, n, "PROXY TCP6 ::ffff:192.168.0.1 2001:db8::1:0:0:2 56324 0\r\n");
    n = sr_proxyproto_build_v1(out, sizeof(out), (struct sockaddr *)&s6, (struct sockaddr *)&d);
    ASSERT_VIEW_EQ(out, n, "PROXY TCP6 2001:db8::1 ::ffff:192.168.0.11 65535 443\r\n");
    /* no usable family */
    memset(&un, 0, sizeof(un));
    un.ss_family = AF_UNIX;
    n = sr_proxyproto_build_v1(out, sizeof(out), (struct sockaddr *)&un, (struct sockaddr *)&d);
    ASSERT_VIEW_EQ(out, n, "PROXY UNKNOWN\r\n");
    n = sr_proxyproto_build_v1(out, sizeof(out), NULL, NULL);
    ASSERT_VIEW_EQ(out, n, "PROXY UNKNOWN\r\n");
    /* the longest TCP6 line the spec counts: 104 bytes */
    n = sr_proxyproto_build_v1(out, sizeof(out), (struct sockaddr *)&max6,
                               (struct sockaddr *)&max6);
    ASSERT_EQ(n, 104);
    /* exact fit, then one byte short */
    ASSERT_EQ(
        sr_proxyproto_build_v1(out, strlen(spec), (struct sockaddr *)&s, (struct sockaddr *)&d),
        strlen(spec));
    ASSERT_EQ(
        sr_proxyproto_build_v1(out, strlen(spec) - 1, (struct sockaddr *)&s, (struct sockaddr *)&d),
        0);
}

static void
test_build_v2_exact(void)
{
    static const uint8_t want4[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* sig */
        0x21,                                                                   /* v2 PROXY */
        0x11,                                                                   /* TCP4 */
        0x00, 0x1c,                                                             /* 12 + 3 + 13 */
        192,  0,    2,    1,                                                    /* src */
        198,  51,   100,  7,                                                    /* dst */
        0xdc, 0x05,                                                             /* 56325 */
        0x01, 0xbb,                                                             /* 443 */
        0x02, 0x00, 0x0d,                                                       /* AUTHORITY, 13 */
        'w',  'w',  'w',  '.',  'e',  'x',  'a',  'm',  'p',  'l',  'e',  '.',  'c'};
    static const uint8_t want6[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55,
                                    0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 0x24, /* 36 */
                                    0,    0,    0,    0,    0,    0,    0,    0,    0,
                                    0,    0xff, 0xff, 192,  0,    2,    1,    0x20, 0x01,
                                    0x0d, 0xb8, 0,    0,    0,    0,    0,    0,    0,
                                    0,    0,    0,    0,    2,    0xdc, 0x05, 0x01, 0xbb};
    static const uint8_t want_local[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a,
                                         0x51, 0x55, 0x49, 0x54, 0x0a, 0x20, 0x00,
                                         0x00, 0x05, 0x02, 0x00, 0x02, 'a',  'b'};
    uint8_t out[SR_PROXYPROTO_V2_BUILD_MAX];
    struct sockaddr_storage s = sa("192.0.2.1", 56325);
    struct sockaddr_storage d = sa("198.51.100.7", 443);
    struct sockaddr_storage d6 = sa("2001:db8::2", 443);
    char big[SR_PROXYPROTO_AUTHORITY_MAX + 1];
    size_t n;

    n = sr_proxyproto_build_v2(out, sizeof(out), (struct sockaddr *)&s, (struct sockaddr *)&d,
                               "www.example.c", 13);
    ASSERT_EQ(n, sizeof(want4));
    ASSERT_EQ(memcmp(out, want4, n), 0);
    n = sr_proxyproto_build_v2(out, sizeof(out), (struct sockaddr *)&s, (struct sockaddr *)&d6,
                               NULL, 0);
    ASSERT_EQ(n, sizeof(want6));
    ASSERT_EQ(memcmp(out, want6, n), 0);
    n = sr_proxyproto_build_v2(out, sizeof(out), NULL, (struct sockaddr *)&d, "ab", 2);
    ASSERT_EQ(n, sizeof(want_local));
    ASSERT_EQ(memcmp(out, want_local, n), 0);
    /* exact fit, one short */
    ASSERT_EQ(sr_proxyproto_build_v2(out, sizeof(want4), (struct sockaddr *)&s,
                                     (struct sockaddr *)&d, "www.example.c", 13),
              sizeof(want4));
    ASSERT_EQ(sr_proxyproto_build_v2(out, sizeof(want4) - 1, (struct sockaddr *)&s,
                                     (struct sockaddr *)&d, "www.example.c", 13),
              0);
    /* the largest header fits SR_PROXYPROTO_V2_BUILD_MAX; a longer authority is refused */
    memset(big, 'a', sizeof(big));
    ASSERT_EQ(sr_proxyproto_build_v2(out, sizeof(out), (struct sockaddr *)&d6,
                                     (struct sockaddr *)&d6, big, SR_PROXYPROTO_AUTHORITY_MAX),
              SR_PROXYPROTO_V2_BUILD_MAX);
    ASSERT_EQ(sr_proxyproto_build_v2(out, sizeof(out), (struct sockaddr *)&d6,
                                     (struct sockaddr *)&d6, big, sizeof(big)),
              0);
}

/* ---- round trips ------------------------------------------------------------------- */

static void
test_round_trips(void)
{
    static const char *addrs[] = {
        "0.0.0.0",     "127.0.0.1",
        "192.0.2.1",   "255.255.255.255",
        "::",          "::1",
        "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe80::1",     "::ffff:10.1.2.3",
    };
    static const uint16_t ports[] = {0, 1, 443, 9999, 65535};
    size_t i;
    size_t j;
    size_t k;

    for (i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        for (j = 0; j < sizeof(addrs) / sizeof(addrs[0]); j++) {
            for (k = 0; k < sizeof(ports) / sizeof(ports[0]); k++) {
                uint16_t sp = ports[k];
                uint16_t dp = ports[(k + j + 1) % (sizeof(ports) / sizeof(ports[0]))];
                struct sockaddr_storage s = sa(addrs[i], sp);
                struct sockaddr_storage d = sa(addrs[j], dp);
                bool v4 = s.ss_family == AF_INET && d.ss_family == AF_INET;
                uint8_t out[SR_PROXYPROTO_V2_BUILD_MAX + 8];
                char want[2][80];
                struct sockaddr_storage ms;
                struct sockaddr_storage md;
                struct sr_proxyproto_result res;
                int version;

                /* What a receiver must see: the same endpoints, v4-mapped if mixed. */
                ms = s;
                md = d;
                if (!v4) {
                    char text[INET6_ADDRSTRLEN + 8];
                    if (s.ss_family == AF_INET) {
                        snprintf(text, sizeof(text), "::ffff:%s", addrs[i]);
                        ms = sa(text, sp);
                    }
                    if (d.ss_family == AF_INET) {
                        snprintf(text, sizeof(text), "::ffff:%s", addrs[j]);
                        md = sa(text, dp);
                    }
                }
                endpoint(&ms, want[0], sizeof(want[0]));
                endpoint(&md, want[1], sizeof(want[1]));
                for (version = 1; version <= 2; version++) {
                    size_t n;
                    if (version == 1) {
                        n = sr_proxyproto_build_v1((char *)out, sizeof(out), (struct sockaddr *)&s,
                                                   (struct sockaddr *)&d);
                    } else {
                        n = sr_proxyproto_build_v2(out, sizeof(out), (struct sockaddr *)&s,
                                                   (struct sockaddr *)&d, "sni.example", 11);
                    }
                    ASSERT_GT(n, 0);
                    memcpy(out + n, "\x16\x03\x01", 3); /* a ClientHello would follow */
                    res = check_all_ways(out, n + 3);
                    ASSERT_EQ(res.status, SR_PROXYPROTO_OK);
                    ASSERT_EQ(res.header_len, n);
                    ASSERT_EQ(res.version, (unsigned)version);
                    ASSERT_EQ(res.command, SR_PROXYPROTO_CMD_PROXY);
                    ASSERT_EQ(res.family,
                              v4 ? SR_PROXYPROTO_FAMILY_TCP4 : SR_PROXYPROTO_FAMILY_TCP6);
                    ASSERT_ENDPOINT(res.src, want[0]);
                    ASSERT_ENDPOINT(res.dst, want[1]);
                    if (version == 2) {
                        ASSERT_VIEW_EQ(res.authority, res.authority_len, "sni.example");
                    }
                }
            }
        }
    }
}

/* ---- malformed and edge shapes ------------------------------------------------------- */

struct shape {
    const char *name;
    const char *bytes;
    size_t len; /* 0: strlen(bytes) */
    enum sr_proxyproto_status status;
    enum sr_proxyproto_reason reason;
};

#define NEED(name, b)                                                                              \
    {                                                                                              \
        name, b, 0, SR_PROXYPROTO_NEED_MORE, SR_PROXYPROTO_REASON_NONE                             \
    }
#define OKS(name, b)                                                                               \
    {                                                                                              \
        name, b, 0, SR_PROXYPROTO_OK, SR_PROXYPROTO_REASON_NONE                                    \
    }
#define NOTP(name, b)                                                                              \
    {                                                                                              \
        name, b, 0, SR_PROXYPROTO_NOT_PROXY, SR_PROXYPROTO_REASON_SIGNATURE                        \
    }
#define BAD(name, b, r)                                                                            \
    {                                                                                              \
        name, b, 0, SR_PROXYPROTO_INVALID, SR_PROXYPROTO_REASON_##r                                \
    }
#define BADN(name, b, n, r)                                                                        \
    {                                                                                              \
        name, b, n, SR_PROXYPROTO_INVALID, SR_PROXYPROTO_REASON_##r                                \
    }

#define SIG "\r\n\r\n\0\r\nQUIT\n"

static const struct shape shapes[] = {
    NEED("empty", ""),
    NEED("P", "P"),
    NEED("PROXY", "PROXY"),
    NEED("v1 keyword part", "PROXY TC"),
    NEED("v1 no CRLF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2"),
    NEED("v1 CR only", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"),
    NEED("v1 bad address before CRLF", "PROXY TCP4 999.2.3.4 "), /* decoded at the CRLF */
    NEED("v2 sig part", "\r\n\r"),
    NOTP("TLS record", "\x16\x03\x01\x02\x00"),
    NOTP("HTTP", "GET / HTTP/1.1\r\n"),
    NOTP("lower case", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
    NOTP("PROXZ", "PROXZ"),
    NOTP("PR then space", "PR "),
    NOTP("CR LF LF", "\r\n\n"),
    {"v2 sig NUL wrong", "\r\n\r\n\x01", 5, SR_PROXYPROTO_NOT_PROXY,
     SR_PROXYPROTO_REASON_SIGNATURE},
    {"v2 sig QUIX", "\r\n\r\n\0\r\nQUIX", 11, SR_PROXYPROTO_NOT_PROXY,
     SR_PROXYPROTO_REASON_SIGNATURE},
    NOTP("bare CRLF", "\r\nQUIT"),
    /* v1 */
    OKS("v1 zeros", "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n"),
    OKS("v1 TCP6 short", "PROXY TCP6 :: :: 0 0\r\n"),
    OKS("v1 TCP6 upper hex", "PROXY TCP6 FE80::A ::FFFF:1.2.3.4 1 65535\r\n"),
    OKS("v1 UNKNOWN short", "PROXY UNKNOWN\r\n"),
    OKS("v1 UNKNOWN long", "PROXY UNKNOWN ffff:f::f ffff:f::f 65535 65535 whatever\r\n"),
    BAD("v1 no space", "PROXYTCP4", V1_PROTOCOL),
    BAD("v1 two spaces", "PROXY  TCP4", V1_PROTOCOL),
    BAD("v1 TCP5", "PROXY TCP5 ", V1_PROTOCOL),
    BAD("v1 lower keyword", "PROXY tcp4 ", V1_PROTOCOL),
    BAD("v1 UDP4", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", V1_PROTOCOL),
    BAD("v1 TCP4 no space", "PROXY TCP4\r\n", V1_PROTOCOL),
    BAD("v1 UNKNOWNX", "PROXY UNKNOWNX\r\n", V1_PROTOCOL),
    BAD("v1 LF alone", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", V1_EOL),
    BAD("v1 LF early", "PROXY TCP4 1.2.3.4\n", V1_EOL),
    BAD("v1 CR X", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", V1_EOL),
    BAD("v1 CR CR LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", V1_EOL),
    BAD("v1 UNKNOWN LF", "PROXY UNKNOWN\n", V1_EOL),
    BAD("v1 letter in TCP4", "PROXY TCP4 1.2.3.a", V1_CHARACTER),
    BAD("v1 colon in TCP4", "PROXY TCP4 ::1 ::1 1 2\r\n", V1_CHARACTER),
    BAD("v1 g in TCP6", "PROXY TCP6 ::g", V1_CHARACTER),
    BAD("v1 zone in TCP6", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", V1_CHARACTER),
    BAD("v1 sign in port", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", V1_CHARACTER),
    BAD("v1 tab", "PROXY TCP4 1.2.3.4\t", V1_CHARACTER),
    BAD("v1 control in UNKNOWN", "PROXY UNKNOWN \x01", V1_CHARACTER),
    BADN("v1 NUL in UNKNOWN", "PROXY UNKNOWN \0\r\n", 17, V1_CHARACTER),
    BAD("v1 double space", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", V1_FIELDS),
    BAD("v1 three fields", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", V1_FIELDS),
    BAD("v1 five fields", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", V1_FIELDS),
    BAD("v1 trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", V1_FIELDS),
    BAD("v1 no fields", "PROXY TCP4 \r\n", V1_FIELDS),
    BAD("v1 leading zero", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", V1_ADDRESS),
    BAD("v1 octet 256", "PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n", V1_ADDRESS),
    BAD("v1 three octets", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", V1_ADDRESS),
    BAD("v1 v4 in TCP6", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", V1_ADDRESS),
    BAD("v1 nine groups", "PROXY TCP6 ::1 1:2:3:4:5:6:7:8:9 1 2\r\n", V1_ADDRESS),
    BAD("v1 two double colons", "PROXY TCP6 1::2::3 ::1 1 2\r\n", V1_ADDRESS),
    BAD("v1 port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", V1_PORT),
    BAD("v1 port leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", V1_PORT),
    BAD("v1 port 00", "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", V1_PORT),
    BAD("v1 port 6 digits", "PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n", V1_PORT),
    BAD("v1 port dot", "PROXY TCP4 1.2.3.4 5.6.7.8 1. 2\r\n", V1_PORT),
    /* v2 fixed part: decided as soon as the byte arrives */
    BADN("v2 version 1", SIG "\x11", 13, V2_VERSION),
    BADN("v2 version 3", SIG "\x31", 13, V2_VERSION),
    BADN("v2 command 2", SIG "\x22", 13, V2_COMMAND),
    BADN("v2 command f", SIG "\x2f", 13, V2_COMMAND),
    BADN("v2 family 13", SIG "\x21\x13", 14, V2_FAMILY),
    BADN("v2 family 41", SIG "\x21\x41", 14, V2_FAMILY),
    BADN("v2 family 01", SIG "\x21\x01", 14, V2_FAMILY),
    BADN("v2 family 10", SIG "\x21\x10", 14, V2_FAMILY),
    BADN("v2 LOCAL family 41", SIG "\x20\x41", 14, V2_FAMILY),
    BADN("v2 TCP4 len 11", SIG "\x21\x11\x00\x0b", 16, V2_ADDRESS_LEN),
    BADN("v2 TCP6 len 0", SIG "\x21\x21\x00\x00", 16, V2_ADDRESS_LEN),
    BADN("v2 UNIX len 215", SIG "\x21\x31\x00\xd7", 16, V2_ADDRESS_LEN),
    BADN("v2 TCP4 len 12+1025", SIG "\x21\x11\x04\x0d", 16, V2_TOO_LONG),
    BADN("v2 LOCAL len 1025", SIG "\x20\x00\x04\x01", 16, V2_TOO_LONG),
    BADN("v2 len 65535", SIG "\x21\x11\xff\xff", 16, V2_TOO_LONG),
    /* v2 LOCAL and UNSPEC: the block is skipped whatever it holds */
    {"v2 LOCAL empty", SIG "\x20\x00\x00\x00", 16, SR_PROXYPROTO_OK, SR_PROXYPROTO_REASON_NONE},
    {"v2 LOCAL junk", SIG "\x20\x11\x00\x03\xff\xff\xff", 19, SR_PROXYPROTO_OK,
     SR_PROXYPROTO_REASON_NONE},
    {"v2 PROXY UNSPEC junk", SIG "\x21\x00\x00\x02\xff\xff", 18, SR_PROXYPROTO_OK,
     SR_PROXYPROTO_REASON_NONE},
    {"v2 TCP4 part", SIG "\x21\x11\x00\x0c\x01\x02", 18, SR_PROXYPROTO_NEED_MORE,
     SR_PROXYPROTO_REASON_NONE},
};

static void
test_shapes(void)
{
    size_t i;

    for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        const struct shape *sh = &shapes[i];
        size_t len = sh->len ? sh->len : strlen(sh->bytes);
        struct sr_proxyproto_result res = check_all_ways((const uint8_t *)sh->bytes, len);

        if (res.status != sh->status || res.reason != sh->reason) {
            SR_FAIL("%s: got %s/%s, want %s/%s", sh->name, sr_proxyproto_status_str(res.status),
                    sr_proxyproto_reason_str(res.reason), sr_proxyproto_status_str(sh->status),
                    sr_proxyproto_reason_str(sh->reason));
        }
    }
}

/* v2 with a TCP4 block and <tlvs>, built by hand; returns the header length. */
static size_t
v2_tcp4(uint8_t *out, const uint8_t *tlvs, size_t tlvs_len)
{
    static const uint8_t head[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a,
                                   0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11};
    static const uint8_t addrs[] = {10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0x01, 0xbb};
    size_t body = sizeof(addrs) + tlvs_len;

    memcpy(out, head, sizeof(head));
    out[14] = (uint8_t)(body >> 8);
    out[15] = (uint8_t)body;
    memcpy(out + 16, addrs, sizeof(addrs));
    memcpy(out + 28, tlvs, tlvs_len);
    return 28 + tlvs_len;
}

static uint32_t
crc32c_ref(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    size_t i;
    int k;

    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (k = 0; k < 8; k++) {
            crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
        }
    }
    return ~crc;
}

static void
test_v2_tlvs(void)
{
    static const struct {
        const char *name;
        const char *tlvs;
        size_t len;
        enum sr_proxyproto_status status;
        enum sr_proxyproto_reason reason;
        const char *authority;
    } cases[] = {
        {"none", "", 0, SR_PROXYPROTO_OK, SR_PROXYPROTO_REASON_NONE, NULL},
        {"authority",
         "\x02\x00\x03"
         "a.b",
         6, SR_PROXYPROTO_OK, SR_PROXYPROTO_REASON_NONE, "a.b"},
        {"empty authority", "\x02\x00\x00", 3, SR_PROXYPROTO_OK, SR_PROXYPROTO_REASON_NONE, ""},
        {"noop, alpn, authority, custom", "\x04\x00\x01z\x01\x00\x02h2\x02\x00\x01x\xe0\x00\x00",
         16, SR_PROXYPROTO_OK, SR_PROXYPROTO_REASON_NONE, "x"},
        {"ssl with sub-TLVs", "\x20\x00\x0c\x01\x00\x00\x00\x00\x21\x00\x04TLS3", 15,
         SR_PROXYPROTO_OK, SR_PROXYPROTO_REASON_NONE, NULL},
        {"one stray byte", "\x04", 1, SR_PROXYPROTO_INVALID, SR_PROXYPROTO_REASON_V2_TLV, NULL},
        {"two stray bytes", "\x04\x00", 2, SR_PROXYPROTO_INVALID, SR_PROXYPROTO_REASON_V2_TLV,
         NULL},
        {"value overruns",
         "\x02\x00\x04"
         "abc",
         6, SR_PROXYPROTO_INVALID, SR_PROXYPROTO_REASON_V2_TLV, NULL},
        {"second overruns", "\x02\x00\x01x\x04\xff\xff", 7, SR_PROXYPROTO_INVALID,
         SR_PROXYPROTO_REASON_V2_TLV, NULL},
        {"authority twice", "\x02\x00\x01x\x02\x00\x01y", 8, SR_PROXYPROTO_INVALID,
         SR_PROXYPROTO_REASON_V2_DUPLICATE, NULL},
        {"crc twice", "\x03\x00\x04\0\0\0\0\x03\x00\x04\0\0\0\0", 14, SR_PROXYPROTO_INVALID,
         SR_PROXYPROTO_REASON_V2_DUPLICATE, NULL},
        {"crc 3 bytes", "\x03\x00\x03\0\0\0", 6, SR_PROXYPROTO_INVALID,
         SR_PROXYPROTO_REASON_V2_CRC32C_LEN, NULL},
        {"crc wrong", "\x03\x00\x04\0\0\0\0", 7, SR_PROXYPROTO_INVALID,
         SR_PROXYPROTO_REASON_V2_CRC32C, NULL},
        {"ssl 4 bytes", "\x20\x00\x04\x01\0\0\0", 7, SR_PROXYPROTO_INVALID,
         SR_PROXYPROTO_REASON_V2_SSL, NULL},
        {"ssl sub overruns", "\x20\x00\x0b\x01\0\0\0\0\x21\x00\x04TLS", 14, SR_PROXYPROTO_INVALID,
         SR_PROXYPROTO_REASON_V2_SSL, NULL},
        {"ssl stray sub byte", "\x20\x00\x06\x01\0\0\0\0\x21", 9, SR_PROXYPROTO_INVALID,
         SR_PROXYPROTO_REASON_V2_SSL, NULL},
    };
    uint8_t buf[SR_PROXYPROTO_PARSE_MAX + 8];
    uint8_t tlvs[SR_PROXYPROTO_V2_TLV_MAX + 1];
    struct sr_proxyproto_result res;
    size_t i;
    size_t n;
    uint32_t crc;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n = v2_tcp4(buf, (const uint8_t *)cases[i].tlvs, cases[i].len);
        res = check_all_ways(buf, n);
        if (res.status != cases[i].status || res.reason != cases[i].reason) {
            SR_FAIL("%s: got %s/%s", cases[i].name, sr_proxyproto_status_str(res.status),
                    sr_proxyproto_reason_str(res.reason));
        }
        if (cases[i].authority != NULL) {
            ASSERT(res.has_authority);
            ASSERT_VIEW_EQ(res.authority, res.authority_len, cases[i].authority);
        } else {
            ASSERT(!res.has_authority);
        }
    }

    /* A correct CRC32C over the header with its own value zeroed. */
    memcpy(tlvs, "\x02\x00\x01x\x03\x00\x04\0\0\0\0", 11);
    n = v2_tcp4(buf, tlvs, 11);
    crc = crc32c_ref(buf, n);
    buf[n - 4] = (uint8_t)(crc >> 24);
    buf[n - 3] = (uint8_t)(crc >> 16);
    buf[n - 2] = (uint8_t)(crc >> 8);
    buf[n - 1] = (uint8_t)crc;
    res = check_all_ways(buf, n);
    ASSERT_EQ(res.status, SR_PROXYPROTO_OK);
    buf[16] ^= 0x80; /* the source address changes: the checksum no longer matches */
    res = check_all_ways(buf, n);
    ASSERT_EQ(res.reason, SR_PROXYPROTO_REASON_V2_CRC32C);

    /* The TLV cap: exactly SR_PROXYPROTO_V2_TLV_MAX bytes of TLVs pass, one more does not. */
    memset(tlvs, 'n', sizeof(tlvs));
    tlvs[0] = 0x04; /* NOOP */
    tlvs[1] = (uint8_t)((SR_PROXYPROTO_V2_TLV_MAX - 3) >> 8);
    tlvs[2] = (uint8_t)(SR_PROXYPROTO_V2_TLV_MAX - 3);
    n = v2_tcp4(buf, tlvs, SR_PROXYPROTO_V2_TLV_MAX);
    res = check_all_ways(buf, n);
    ASSERT_EQ(res.status, SR_PROXYPROTO_OK);
    ASSERT_EQ(res.header_len, 16 + 12 + SR_PROXYPROTO_V2_TLV_MAX);
    tlvs[1] = (uint8_t)((SR_PROXYPROTO_V2_TLV_MAX - 2) >> 8);
    tlvs[2] = (uint8_t)(SR_PROXYPROTO_V2_TLV_MAX - 2);
    n = v2_tcp4(buf, tlvs, SR_PROXYPROTO_V2_TLV_MAX + 1);
    parse(buf, 16, &res); /* refused from the fixed part alone */
    ASSERT_EQ(res.reason, SR_PROXYPROTO_REASON_V2_TOO_LONG);

    /* The largest header the parser takes: AF_UNIX block plus the TLV cap. */
    memcpy(buf, SIG "\x21\x31", 14);
    buf[14] = (uint8_t)((216 + SR_PROXYPROTO_V2_TLV_MAX) >> 8);
    buf[15] = (uint8_t)(216 + SR_PROXYPROTO_V2_TLV_MAX);
    memset(buf + 16, 0, 216);
    tlvs[1] = (uint8_t)((SR_PROXYPROTO_V2_TLV_MAX - 3) >> 8);
    tlvs[2] = (uint8_t)(SR_PROXYPROTO_V2_TLV_MAX - 3);
    memcpy(buf + 16 + 216, tlvs, SR_PROXYPROTO_V2_TLV_MAX);
    res = check_all_ways(buf, SR_PROXYPROTO_PARSE_MAX);
    ASSERT_EQ(res.status, SR_PROXYPROTO_OK);
    ASSERT_EQ(res.family, SR_PROXYPROTO_FAMILY_UNSPEC);
    ASSERT_EQ(res.header_len, SR_PROXYPROTO_PARSE_MAX);

    /* UDP over IPv4: addresses ignored (UNSPEC), TLVs still read. */
    n = v2_tcp4(buf, (const uint8_t *)"\x02\x00\x01q", 4);
    buf[13] = 0x12;
    res = check_all_ways(buf, n);
    ASSERT_EQ(res.status, SR_PROXYPROTO_OK);
    ASSERT_EQ(res.family, SR_PROXYPROTO_FAMILY_UNSPEC);
    ASSERT_VIEW_EQ(res.authority, res.authority_len, "q");
}

/* v1 length limit: 107 bytes with the CRLF pass; the CRLF must start by byte 105, and a
 * line that cannot end in time is refused as soon as that is certain. */
static void
test_v1_length(void)
{
    char line[200];
    struct sr_proxyproto_result res;
    size_t n;

    memcpy(line, "PROXY UNKNOWN ", 14);
    memset(line + 14, 'x', sizeof(line) - 14);
    memcpy(line + 105, "\r\n", 2);
    res = check_all_ways((const uint8_t *)line, 107);
    ASSERT_EQ(res.status, SR_PROXYPROTO_OK);
    ASSERT_EQ(res.header_len, SR_PROXYPROTO_V1_MAX);

    memset(line + 14, 'x', sizeof(line) - 14);
    memcpy(line + 106, "\r\n", 2);
    for (n = 105; n <= 108; n++) {
        parse((const uint8_t *)line, n, &res);
        if (n == 105) {
            ASSERT_EQ(res.status, SR_PROXYPROTO_NEED_MORE);
            ASSERT_EQ(res.need, 2);
        } else {
            ASSERT_EQ(res.status, SR_PROXYPROTO_INVALID);
            ASSERT_EQ(res.reason, SR_PROXYPROTO_REASON_V1_TOO_LONG);
        }
    }
    res = check_all_ways((const uint8_t *)line, sizeof(line));
    ASSERT_EQ(res.reason, SR_PROXYPROTO_REASON_V1_TOO_LONG);
}

/* <need> is 1 while each byte may still say NOT_PROXY, then the rest of what a valid header
 * must hold. */
static void
test_need(void)
{
    static const struct {
        const char *bytes;
        size_t len;
        size_t need;
    } cases[] = {
        {"", 0, 1},
        {"PROX", 4, 1},
        {"PROXY", 5, 10},         /* "PROXY UNKNOWN\r\n" */
        {"PROXY TCP", 9, 6},      /* the shortest line of any kind is 15 */
        {"PROXY TCP4 ", 11, 21},  /* the shortest TCP4 line is 32 */
        {"PROXY TCP6 ", 11, 11},  /* the shortest TCP6 line is 22 */
        {"PROXY UNKNOWN", 13, 2}, /* CR LF */
        {"PROXY TCP4 255.255.255.255 255.255.255.255 1 2", 46, 2},
        {SIG, 11, 1},
        {SIG, 12, 4},
        {SIG "\x21\x11", 14, 2},
        {SIG "\x21\x11\x00\x0c", 16, 12},
        {SIG "\x21\x11\x00\x0c\x01", 17, 11},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sr_proxyproto_result res;
        parse((const uint8_t *)cases[i].bytes, cases[i].len, &res);
        ASSERT_EQ(res.status, SR_PROXYPROTO_NEED_MORE);
        if (res.need != cases[i].need) {
            SR_FAIL("case %zu: need %zu, want %zu", i, res.need, cases[i].need);
        }
    }
}

static void
test_strings(void)
{
    int r;
    int s;

    for (r = SR_PROXYPROTO_REASON_NONE; r <= SR_PROXYPROTO_REASON_V2_CRC32C; r++) {
        const char *a = sr_proxyproto_reason_str((enum sr_proxyproto_reason)r);
        int q;
        ASSERT(strcmp(a, "unknown") != 0);
        for (q = SR_PROXYPROTO_REASON_NONE; q < r; q++) {
            ASSERT(strcmp(a, sr_proxyproto_reason_str((enum sr_proxyproto_reason)q)) != 0);
        }
    }
    for (s = SR_PROXYPROTO_NEED_MORE; s <= SR_PROXYPROTO_INVALID; s++) {
        ASSERT(strcmp(sr_proxyproto_status_str((enum sr_proxyproto_status)s), "unknown") != 0);
    }
    ASSERT_STR_EQ(sr_proxyproto_status_str(SR_PROXYPROTO_NOT_PROXY), "not_proxy");
}

int
main(void)
{
    test_haproxy_captures();
    test_haproxy_crc32c();
    test_v2_length_nudges();
    test_build_v1_exact();
    test_build_v2_exact();
    test_round_trips();
    test_shapes();
    test_v2_tlvs();
    test_v1_length();
    test_need();
    test_strings();
    printf("test_proxyproto: ok\n");
    return 0;
}
