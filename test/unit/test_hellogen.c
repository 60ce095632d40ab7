/* SPDX-License-Identifier: MIT */
/* The self-test's ClientHello builder, checked by sniroute's own parser: every case, with
 * and without ALPN, for a short and a 253-character name, must parse to that name whole and
 * when fed in the case's own writes (each shorter prefix NEED_MORE, never a verdict early),
 * with the sizes, record counts and write shapes the cases promise. A QUIC hello is walked
 * extension by extension: TLS 1.3 only, no session ID, and transport parameters that name
 * the connection ID they were given. */
#include "sniroute/wire/hellogen.h"

#include <stdlib.h>
#include <string.h>

#include "sniroute/wire/hello.h"
#include "support/assert.h"

static struct sr_hellogen_random rnd;
static uint8_t buf[SR_HELLOGEN_MAX_LEN];
static size_t ends[SR_HELLOGEN_MAX_LEN];

static void
fill_random(void)
{
    uint8_t *p = (uint8_t *)&rnd;
    size_t i;

    /* A fixed pattern with every byte value: no run of zeros hides a misplaced length. */
    for (i = 0; i < sizeof(rnd); i++) {
        p[i] = (uint8_t)(i * 7 + 3);
    }
}

static bool
contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
    size_t i;

    for (i = 0; i + m <= n; i++) {
        if (memcmp(hay + i, needle, m) == 0) {
            return true;
        }
    }
    return false;
}

/* The joined ALPN list of a parse, "a,b". */
static void
alpn_text(const struct sr_hello_result *res, char *out, size_t cap)
{
    struct sr_view cur = res->alpn, proto;
    size_t n = 0;

    out[0] = '\0';
    while (sr_hello_alpn_next(&cur, &proto)) {
        ASSERT_LT(n + proto.len + 2, cap);
        if (n > 0) {
            out[n++] = ',';
        }
        memcpy(out + n, proto.ptr, proto.len);
        n += proto.len;
        out[n] = '\0';
    }
}

static void
check_found(const uint8_t *p, size_t len, const char *name, const char *alpn,
            struct sr_hello_result *res)
{
    static struct sr_hello_scratch scratch;
    char text[256];

    sr_hello_parse(p, len, &scratch, res);
    if (res->status != SR_HELLO_FOUND) {
        SR_FAIL("status %s reason %s for %s", sr_hello_status_str(res->status),
                sr_hello_reason_str(res->reason), name);
    }
    ASSERT_VIEW_EQ(res->sni.ptr, res->sni.len, name);
    ASSERT_EQ(res->hello_len, len);
    ASSERT_EQ(res->max_version, 0x0304);
    ASSERT_EQ(res->has_alpn, alpn != NULL);
    alpn_text(res, text, sizeof(text));
    ASSERT_STR_EQ(text, alpn != NULL ? alpn : "");
}

static void
check_case(const struct sr_hellogen_case *c, const char *name, const char *alpn)
{
    static struct sr_hello_scratch scratch;
    struct sr_hello_result res;
    size_t len, n_ends, i;
    static const uint8_t pq_share[] = {0x11, 0xec, 0x04, 0xc0}; /* group, length 1216 */

    len = sr_hellogen_case_build(c, name, strlen(name), alpn, &rnd, buf, sizeof(buf), ends,
                                 sizeof(ends) / sizeof(ends[0]), &n_ends);
    ASSERT_GT(len, 0);
    ASSERT_GT(n_ends, 0);
    ASSERT_EQ(ends[n_ends - 1], len);

    /* Whole. */
    check_found(buf, len, name, alpn, &res);
    ASSERT_EQ(contains(buf, len, pq_share, sizeof(pq_share)), c->has_pq_share);

    /* In the case's writes: every prefix that ends a write but the last needs more. */
    for (i = 0; i + 1 < n_ends; i++) {
        ASSERT_LT(ends[i], ends[i + 1]);
        sr_hello_parse(buf, ends[i], &scratch, &res);
        if (res.status != SR_HELLO_NEED_MORE) {
            SR_FAIL("case %s: %s after write %zu (%zu bytes)", c->name,
                    sr_hello_status_str(res.status), i, ends[i]);
        }
        ASSERT_LE(ends[i] + res.need, len);
    }
    check_found(buf, ends[n_ends - 1], name, alpn, &res);

    /* The shape the case promises. */
    if (strcmp(c->name, "plain") == 0) {
        ASSERT_EQ(n_ends, 1);
        ASSERT_EQ(res.n_records, 1);
    } else if (strcmp(c->name, "bytewise") == 0) {
        ASSERT_EQ(n_ends, len);
    } else if (strcmp(c->name, "records") == 0) {
        ASSERT_EQ(res.n_records, 5);
        ASSERT_EQ(n_ends, 5);
        for (i = 0; i + 1 < n_ends; i++) { /* each write ends a record */
            ASSERT_EQ(buf[ends[i]], 22);
        }
    } else if (strcmp(c->name, "header_split") == 0) {
        ASSERT_EQ(n_ends, 3);
        ASSERT_EQ(ends[0], 3);
        ASSERT_EQ(ends[1], 5);
    } else if (strcmp(c->name, "slow") == 0) {
        ASSERT_EQ(n_ends, 3);
        ASSERT_GE(c->pause_ms, 500);
    } else if (strcmp(c->name, "pq") == 0) {
        ASSERT_EQ(len, 1900);
        ASSERT_EQ(n_ends, 1);
    } else if (strcmp(c->name, "large") == 0) {
        /* A handshake message over 2^14 bytes: a full record, then the rest. */
        ASSERT_EQ(res.n_records, 2);
        ASSERT_EQ((size_t)buf[3] << 8 | buf[4], 16384);
        ASSERT_EQ(len, 17000 + 2 * 5);
        ASSERT_EQ(n_ends, 1);
    } else {
        SR_FAIL("case %s has no expectation here", c->name);
    }
}

static void
test_cases(void)
{
    static const char *const alpns[] = {NULL, "h2,http/1.1", "acme-tls/1"};
    char long_name[254];
    size_t i, a;

    /* 253 characters: four labels of 63 and a final "a". */
    memset(long_name, 'x', 253);
    long_name[63] = long_name[127] = long_name[191] = long_name[251] = '.';
    long_name[253] = '\0';
    ASSERT_EQ(sr_name_validate((const uint8_t *)long_name, 253), SR_NAME_OK);

    ASSERT_EQ(sr_hellogen_n_cases, 7);
    for (i = 0; i < sr_hellogen_n_cases; i++) {
        const struct sr_hellogen_case *c = &sr_hellogen_cases[i];

        ASSERT(sr_hellogen_case_find(c->name) == c);
        for (a = 0; a < sizeof(alpns) / sizeof(alpns[0]); a++) {
            check_case(c, "a.test", alpns[a]);
            check_case(c, long_name, alpns[a]);
        }
    }
    ASSERT(sr_hellogen_case_find("nope") == NULL);
}

/* The message builder on its own: exact padding, and every refusal. */
static void
test_message(void)
{
    static uint8_t msg[SR_HELLOGEN_MAX_LEN];
    struct sr_hellogen_opts o = {.name = "a.test", .name_len = 6, .rnd = &rnd};
    size_t n, base, t;

    base = sr_hellogen_message(msg, sizeof(msg), &o);
    ASSERT_GT(base, 100);
    ASSERT_EQ(msg[0], 1);
    ASSERT_EQ(((size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3]) + 4, base);

    /* Padding reaches the target exactly from 4 bytes over the bare message on, and
     * overshoots by at most 4 below that. */
    for (t = base - 2; t < base + 10; t++) {
        o.target_len = t;
        n = sr_hellogen_message(msg, sizeof(msg), &o);
        if (t <= base) {
            ASSERT_EQ(n, base);
        } else if (t < base + 4) {
            ASSERT_EQ(n, base + 4);
        } else {
            ASSERT_EQ(n, t);
        }
    }
    o.target_len = 0;

    /* Refusals: no room, empty name, too long a name, an empty or oversized protocol. */
    ASSERT_EQ(sr_hellogen_message(msg, base - 1, &o), 0);
    ASSERT_EQ(sr_hellogen_message(msg, base, &o), base);
    o.name_len = 0;
    ASSERT_EQ(sr_hellogen_message(msg, sizeof(msg), &o), 0);
    o.name = (const char *)msg; /* any 256 bytes */
    o.name_len = 256;
    ASSERT_EQ(sr_hellogen_message(msg + 1024, sizeof(msg) - 1024, &o), 0);
    o.name = "a.test";
    o.name_len = 6;
    o.alpn = "h2,,http/1.1";
    ASSERT_EQ(sr_hellogen_message(msg, sizeof(msg), &o), 0);
    o.alpn = "";
    ASSERT_EQ(sr_hellogen_message(msg, sizeof(msg), &o), 0);

    /* Framing refusals. */
    ASSERT_EQ(sr_hellogen_frame(buf, sizeof(buf), msg, 10, 0), 0);
    ASSERT_EQ(sr_hellogen_frame(buf, sizeof(buf), msg, 10, 11), 0);
    ASSERT_EQ(sr_hellogen_frame(buf, 10 + 5 - 1, msg, 10, 1), 0);
    ASSERT_EQ(sr_hellogen_frame(buf, 10 + 5, msg, 10, 1), 15);
    ASSERT_EQ(sr_hellogen_frame(buf, sizeof(buf), msg, 10, 3), 10 + 3 * 5);
    ASSERT_EQ((size_t)buf[3] << 8 | buf[4], 4); /* 4, 3, 3 */
}

/* The extension <type> of the bare ClientHello <msg>/<len>: its body in <*body>/<*body_len>.
 * The walk checks every length against its parent, so a wrong one fails here too. */
static bool
find_ext(const uint8_t *msg, size_t len, unsigned type, const uint8_t **body, size_t *body_len)
{
    size_t at = 4 + 2 + 32, end;

    ASSERT_EQ(((size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3]) + 4, len);
    at += 1 + msg[at];                                   /* legacy_session_id */
    at += 2 + ((size_t)msg[at] << 8 | msg[at + 1]);      /* cipher_suites */
    at += 1 + msg[at];                                   /* legacy_compression_methods */
    end = at + 2 + ((size_t)msg[at] << 8 | msg[at + 1]); /* extensions */
    ASSERT_EQ(end, len);
    for (at += 2; at < end;) {
        unsigned t = (unsigned)msg[at] << 8 | msg[at + 1];
        size_t n = (size_t)msg[at + 2] << 8 | msg[at + 3];

        ASSERT_LE(at + 4 + n, end);
        if (t == type) {
            *body = msg + at + 4;
            *body_len = n;
            return true;
        }
        at += 4 + n;
    }
    return false;
}

/* A QUIC variable-length integer at <*p>, advancing it; within <end>. */
static uint64_t
varint(const uint8_t **p, const uint8_t *end)
{
    size_t n = (size_t)1 << (**p >> 6), i;
    uint64_t v = **p & 0x3f;

    ASSERT_LE(n, (size_t)(end - *p));
    for (i = 1; i < n; i++) {
        v = v << 8 | (*p)[i];
    }
    *p += n;
    return v;
}

static void
check_quic_hello(const uint8_t *scid, size_t scid_len, bool has_pq, size_t target_len)
{
    static uint8_t msg[SR_HELLOGEN_MAX_LEN];
    struct sr_hellogen_opts o = {.name = "q.test",
                                 .name_len = 6,
                                 .alpn = "h3",
                                 .has_pq_share = has_pq,
                                 .target_len = target_len,
                                 .rnd = &rnd,
                                 .is_quic = true,
                                 .quic_scid = scid,
                                 .quic_scid_len = scid_len};
    struct sr_hello_result res;
    const uint8_t *b, *p, *end;
    size_t n, len;
    bool seen[64] = {false};
    bool has_scid = false;

    len = sr_hellogen_message(msg, sizeof(msg), &o);
    ASSERT_GT(len, 0);
    if (target_len > 0) {
        ASSERT_EQ(len, target_len);
    }
    sr_hello_parse_message(msg, len, &res);
    ASSERT_EQ(res.status, SR_HELLO_FOUND);
    ASSERT_VIEW_EQ(res.sni.ptr, res.sni.len, "q.test");
    ASSERT_EQ(res.max_version, 0x0304);
    ASSERT_EQ(msg[38], 0);                        /* legacy_session_id: empty (RFC 9001 8.4) */
    ASSERT_EQ((size_t)msg[39] << 8 | msg[40], 6); /* the three TLS 1.3 suites only */
    ASSERT(find_ext(msg, len, 43, &b, &n));       /* supported_versions: 1.3 alone */
    ASSERT_EQ(n, 3);
    ASSERT(b[0] == 2 && b[1] == 3 && b[2] == 4);
    ASSERT(!find_ext(msg, len, 11, &b, &n)); /* no TLS 1.2-only extensions */
    ASSERT(!find_ext(msg, len, 23, &b, &n));
    ASSERT(!find_ext(msg, len, 0xff01, &b, &n));
    ASSERT(find_ext(msg, len, 51, &b, &n));
    ASSERT_EQ(n, 2 + 4 + 32 + (has_pq ? 4 + SR_HELLOGEN_MLKEM_SHARE_LEN : 0));

    /* Transport parameters: each well formed and once, the connection ID as given. */
    ASSERT(find_ext(msg, len, SR_HELLOGEN_EXT_QUIC_TRANSPORT_PARAMETERS, &b, &n));
    for (p = b, end = b + n; p < end;) {
        uint64_t id = varint(&p, end), vlen = varint(&p, end);
        const uint8_t *v = p;

        ASSERT_LE(vlen, (uint64_t)(end - p));
        ASSERT_LT(id, 64);
        ASSERT(!seen[id]);
        seen[id] = true;
        p += vlen;
        if (id == 0x0f) { /* initial_source_connection_id */
            ASSERT_EQ(vlen, scid_len);
            ASSERT(scid_len == 0 || memcmp(v, scid, scid_len) == 0);
            has_scid = true;
        } else { /* the rest are integers filling their value exactly */
            uint64_t x = varint(&v, p);

            ASSERT(v == p);
            if (id == 0x03) {
                ASSERT_GE(x, 1200); /* max_udp_payload_size (RFC 9000 18.2) */
            }
        }
    }
    ASSERT(p == end);
    ASSERT(has_scid);
}

static void
test_quic_message(void)
{
    static uint8_t msg[SR_HELLOGEN_MAX_LEN];
    static const uint8_t scid[20] = {0x5c, 0x1d, 0x00, 0xff, 0x40, 0x3f, 7,  8,  9,  10,
                                     11,   12,   13,   14,   15,   16,   17, 18, 19, 20};
    struct sr_hellogen_opts o = {.name = "a.test", .name_len = 6, .rnd = &rnd};
    const uint8_t *b;
    size_t n, len;

    check_quic_hello(scid, 8, false, 0);
    check_quic_hello(scid, 20, true, 0);
    check_quic_hello(NULL, 0, false, 0);
    check_quic_hello(scid, 8, true, 3000);

    /* A connection ID over 20 bytes is refused; a TLS hello is as before. */
    o.is_quic = true;
    o.quic_scid = scid;
    o.quic_scid_len = 21;
    ASSERT_EQ(sr_hellogen_message(msg, sizeof(msg), &o), 0);
    o.is_quic = false;
    len = sr_hellogen_message(msg, sizeof(msg), &o);
    ASSERT_GT(len, 0);
    ASSERT_EQ(msg[38], 32);
    ASSERT(!find_ext(msg, len, SR_HELLOGEN_EXT_QUIC_TRANSPORT_PARAMETERS, &b, &n));
    ASSERT(find_ext(msg, len, 0xff01, &b, &n));
}

int
main(void)
{
    fill_random();
    test_message();
    test_quic_message();
    test_cases();
    printf("test_hellogen: ok\n");
    return 0;
}
