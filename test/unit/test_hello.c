/* SPDX-License-Identifier: MIT */
/* ClientHello parser tests: real captured hellos and hand-built ones, each fed whole, byte
 * by byte, at every split and re-framed into records of several sizes, all of which must
 * agree; every length field nudged by one; and every malformed shape the issue names. */
#include "sniroute/wire/hello.h"

#include <stdlib.h>
#include <string.h>

#include "support/assert.h"
#include "support/fixture.h"

/* ---- helpers ----------------------------------------------------------------------- */

static struct sr_hello_scratch sc; /* for direct calls on single-record inputs */

/* Everything a caller may use from a result, with the views copied out, so results from
 * different buffers (whole, split, re-framed) can be compared. */
struct outcome {
    enum sr_hello_status status;
    enum sr_hello_reason reason;
    enum sr_name_error name_error;
    char sni[SR_NAME_MAX + 3];
    char alpn[1024]; /* protocols joined with ',' */
    bool has_alpn;
    bool alpn_dropped;
    bool has_ech;
    uint16_t legacy_version;
    uint16_t max_version;
};

static bool
view_inside(struct sr_view v, const void *base, size_t cap)
{
    const uint8_t *b = base;
    if (v.len == 0) {
        return true;
    }
    return v.ptr >= b && v.ptr <= b + cap && v.len <= (size_t)(b + cap - v.ptr);
}

/* Parse <buf>/<len> with a poisoned scratch, check the views lie in the input or the
 * scratch, and return the outcome. */
static struct outcome
parse(const uint8_t *buf, size_t len, struct sr_hello_result *res_out)
{
    struct sr_hello_scratch scratch;
    struct sr_hello_result res;
    struct outcome o;
    struct sr_view cur;
    struct sr_view proto;
    size_t n = 0;

    memset(&scratch, 0xa5, sizeof(scratch));
    memset(&o, 0, sizeof(o));
    sr_hello_parse(buf, len, &scratch, &res);
    o.status = res.status;
    o.reason = res.reason;
    o.name_error = res.name_error;
    if (res.status == SR_HELLO_NEED_MORE) {
        ASSERT_GE(res.need, 1);
    } else {
        ASSERT_EQ(res.need, 0);
    }
    if (res.status == SR_HELLO_MALFORMED || res.status == SR_HELLO_NOT_TLS) {
        ASSERT_NE(res.reason, SR_HELLO_REASON_NONE);
    } else {
        ASSERT_EQ(res.reason, SR_HELLO_REASON_NONE);
    }
    if (res.status == SR_HELLO_FOUND) {
        ASSERT(view_inside(res.sni, buf, len) ||
               view_inside(res.sni, scratch.name, sizeof(scratch.name)));
        ASSERT_GT(res.sni.len, 0);
        ASSERT_LE(res.sni.len, SR_NAME_MAX + 1);
        ASSERT_EQ(sr_name_validate(res.sni.ptr, res.sni.len), SR_NAME_OK);
        memcpy(o.sni, res.sni.ptr, res.sni.len);
    } else {
        ASSERT_EQ(res.sni.len, 0);
    }
    if (res.status == SR_HELLO_FOUND || res.status == SR_HELLO_NO_SNI) {
        ASSERT_LE(res.hello_len, len);
        ASSERT_GE(res.n_records, 1);
        ASSERT(view_inside(res.alpn, buf, len) ||
               view_inside(res.alpn, scratch.alpn, sizeof(scratch.alpn)));
        if (!res.has_alpn || res.alpn_dropped) {
            ASSERT_EQ(res.alpn.len, 0);
        } else {
            ASSERT_GT(res.alpn.len, 0);
        }
        cur = res.alpn;
        while (sr_hello_alpn_next(&cur, &proto)) {
            ASSERT_LT(n + proto.len + 1, sizeof(o.alpn));
            if (n > 0) {
                o.alpn[n++] = ',';
            }
            memcpy(o.alpn + n, proto.ptr, proto.len);
            n += proto.len;
        }
        ASSERT_EQ(cur.len, 0); /* the iterator consumed the whole, valid list */
    }
    o.has_alpn = res.has_alpn;
    o.alpn_dropped = res.alpn_dropped;
    o.has_ech = res.has_ech;
    o.legacy_version = res.legacy_version;
    o.max_version = res.max_version;
    if (res_out != NULL) {
        *res_out = res;
    }
    return o;
}

static void
assert_same(const struct outcome *a, const struct outcome *b, const char *what)
{
    if (a->status != b->status || a->reason != b->reason || a->name_error != b->name_error ||
        strcmp(a->sni, b->sni) != 0 || strcmp(a->alpn, b->alpn) != 0 ||
        a->has_alpn != b->has_alpn || a->alpn_dropped != b->alpn_dropped ||
        a->has_ech != b->has_ech || a->legacy_version != b->legacy_version ||
        a->max_version != b->max_version) {
        SR_FAIL("%s: %s/%s sni=%s alpn=%s vs %s/%s sni=%s alpn=%s", what,
                sr_hello_status_str(a->status), sr_hello_reason_str(a->reason), a->sni, a->alpn,
                sr_hello_status_str(b->status), sr_hello_reason_str(b->reason), b->sni, b->alpn);
    }
}

/* Parse from a heap copy of exactly <len> bytes, so ASan catches any read past the end. */
static struct outcome
parse_exact(const uint8_t *buf, size_t len, struct sr_hello_result *res)
{
    uint8_t *copy = malloc(len ? len : 1);
    struct outcome o;

    ASSERT(copy != NULL);
    memcpy(copy, buf, len);
    o = parse(copy, len, res);
    free(copy);
    return o;
}

/* A caller that waits for <need> more bytes each time. A good hello never asks for more
 * than it holds. A broken one may (its lengths promise bytes never sent, or the byte that
 * breaks it sits where a record header would start); such a caller parses once more when the
 * peer goes quiet, modelled here by stopping at <len>, and must then get <want> too. Returns
 * the number of parses. */
static unsigned
feed_following_need(const uint8_t *buf, size_t len, const struct outcome *want)
{
    struct sr_hello_result res;
    struct outcome o;
    size_t have = 0;
    unsigned parses = 0;
    bool good = want->status == SR_HELLO_FOUND || want->status == SR_HELLO_NO_SNI;

    for (;;) {
        o = parse_exact(buf, have, &res);
        parses++;
        if (o.status != SR_HELLO_NEED_MORE || have == len) {
            break;
        }
        if (good) {
            ASSERT_LE(have + res.need, len);
        }
        have = have + res.need < len ? have + res.need : len;
    }
    assert_same(&o, want, "following need");
    return parses;
}

/* Pull the handshake message out of its records (the fixture is known good). */
static size_t
deframe(const uint8_t *buf, size_t len, uint8_t *hs)
{
    size_t pos = 0;
    size_t n = 0;

    while (pos + 5 <= len) {
        size_t body = (size_t)buf[pos + 3] << 8 | buf[pos + 4];
        ASSERT_LE(pos + 5 + body, len);
        memcpy(hs + n, buf + pos + 5, body);
        n += body;
        pos += 5 + body;
        if (n >= 4 && n >= 4 + ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3])) {
            break;
        }
    }
    return n;
}

/* Cut a handshake message into records of <size>-byte bodies (the last one shorter). */
static size_t
reframe(const uint8_t *hs, size_t hs_len, size_t size, uint16_t version, uint8_t *out)
{
    size_t i = 0;
    size_t n = 0;

    while (i < hs_len) {
        size_t c = hs_len - i < size ? hs_len - i : size;
        out[n++] = 22;
        out[n++] = (uint8_t)(version >> 8);
        out[n++] = (uint8_t)version;
        out[n++] = (uint8_t)(c >> 8);
        out[n++] = (uint8_t)c;
        memcpy(out + n, hs + i, c);
        n += c;
        i += c;
    }
    return n;
}

/* ---- every way of feeding one good hello must agree ---------------------------------- */

/* Whole, every strict prefix (byte by byte), every two-way split, following need. */
static void
check_all_feeds(const uint8_t *buf, size_t len, const struct outcome *want, bool every_prefix,
                unsigned *parses)
{
    struct sr_hello_result res;
    struct outcome o;
    size_t k;
    uint8_t *two = malloc(len);

    ASSERT(two != NULL);
    o = parse_exact(buf, len, &res);
    assert_same(&o, want, "whole");
    ASSERT_EQ(res.hello_len, len);
    if (every_prefix) {
        for (k = 0; k < len; k++) {
            o = parse_exact(buf, k, &res);
            if (o.status != SR_HELLO_NEED_MORE) {
                SR_FAIL("prefix %zu of %zu: %s (%s)", k, len, sr_hello_status_str(o.status),
                        sr_hello_reason_str(o.reason));
            }
            /* need is a lower bound on when the hello can complete, and it does at len. */
            ASSERT_LE(k + res.need, len);
        }
        /* Two reads into one buffer: the first k bytes, then the rest behind them. The
         * tail is poisoned before the second read to show nothing past k was used. */
        for (k = 1; k < len; k++) {
            memset(two, 0x16, len);
            memcpy(two, buf, k);
            o = parse(two, k, NULL);
            ASSERT_EQ(o.status, SR_HELLO_NEED_MORE);
            memcpy(two + k, buf + k, len - k);
            o = parse(two, len, NULL);
            assert_same(&o, want, "two-way split");
        }
    }
    *parses = feed_following_need(buf, len, want);
    free(two);
}

struct fixture {
    const char *file;
    enum sr_hello_status status;
    const char *sni;
    const char *alpn;
    bool has_alpn;
    bool alpn_dropped;
    bool has_ech;
    uint16_t record_version;
    uint16_t legacy_version;
    uint16_t max_version;
    unsigned n_records;
};

#define FOUND  SR_HELLO_FOUND
#define NO_SNI SR_HELLO_NO_SNI

static const struct fixture fixtures[] = {
    /* file                        status  sni                alpn           has  drop  ech */
    {"openssl-tls13-sni.bin", FOUND, "openssl.example", "", 0, 0, 0, 0x0301, 0x0303, 0x0304, 1},
    {"openssl-tls12-sni.bin", FOUND, "openssl12.example", "", 0, 0, 0, 0x0301, 0x0303, 0x0303, 1},
    {"openssl-tls13-nosni.bin", NO_SNI, "", "", 0, 0, 0, 0x0301, 0x0303, 0x0304, 1},
    {"openssl-tls12-nosni.bin", NO_SNI, "", "", 0, 0, 0, 0x0301, 0x0303, 0x0303, 1},
    {"openssl-tls13-alpn.bin", FOUND, "alpn.example", "h2,http/1.1", 1, 0, 0, 0x0301, 0x0303,
     0x0304, 1},
    {"openssl-tls10-sni.bin", FOUND, "old.example", "", 0, 0, 0, 0x0301, 0x0301, 0x0301, 1},
    {"openssl-tls13-bigshare.bin", FOUND, "big.example", "", 0, 0, 0, 0x0301, 0x0303, 0x0304, 1},
    {"curl.bin", FOUND, "curl.example", "h2,http/1.1", 1, 0, 0, 0x0301, 0x0303, 0x0304, 1},
    {"gnutls-cli.bin", FOUND, "gnutls.example", "", 0, 0, 0, 0x0301, 0x0303, 0x0304, 1},
    {"python-ssl.bin", FOUND, "python.example", "h2,http/1.1", 1, 0, 0, 0x0301, 0x0303, 0x0304, 1},
    {"hand-ech.bin", FOUND, "public.ech.example", "h2,http/1.1", 1, 0, 1, 0x0301, 0x0303, 0x0304,
     1},
    {"hand-pq.bin", FOUND, "pq.example", "h2,http/1.1", 1, 0, 0, 0x0301, 0x0303, 0x0304, 1},
    {"hand-fragmented.bin", FOUND, "fragmented.example", "h2,http/1.1", 1, 0, 0, 0x0301, 0x0303,
     0x0304, 10},
    {"hand-16k.bin", FOUND, "big.example", "", 0, 0, 0, 0x0301, 0x0303, 0x0304, 1},
    {"hand-20k-2rec.bin", FOUND, "twenty.example", "", 0, 0, 0, 0x0301, 0x0303, 0x0304, 2},
    {"hand-noext.bin", NO_SNI, "", "", 0, 0, 0, 0x0303, 0x0303, 0x0303, 1},
    {"hand-alpn-big.bin", FOUND, "alpn.example", NULL, 1, 0, 0, 0x0301, 0x0303, 0x0303, 1},
    {"hand-alpn-dropped.bin", FOUND, "alpn.example", "", 1, 1, 0, 0x0301, 0x0303, 0x0303, 8},
    {"hand-longname.bin", FOUND,
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
     "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb."
     "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc."
     "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd.",
     "", 0, 0, 0, 0x0301, 0x0303, 0x0303, 2},
};

/* ---- length fields of a good hello, for nudging -------------------------------------- */

struct field {
    size_t off;
    unsigned width;
    char what[32];
};

static size_t
get(const uint8_t *p, unsigned width)
{
    size_t v = 0;
    while (width-- > 0) {
        v = v << 8 | *p++;
    }
    return v;
}

static void
add_field(struct field *f, size_t *n, size_t off, unsigned width, const char *what)
{
    ASSERT_LT(*n, 256);
    f[*n].off = off;
    f[*n].width = width;
    snprintf(f[*n].what, sizeof(f[*n].what), "%s", what);
    (*n)++;
}

/* Find every length field the parser checks, in a good single-record hello. */
static size_t
find_length_fields(const uint8_t *b, size_t len, struct field *f)
{
    size_t n = 0;
    size_t p = 9 + 2 + 32; /* record header, handshake header, legacy_version, random */
    size_t ext_end;

    ASSERT_GT(len, p);
    add_field(f, &n, 3, 2, "record length");
    add_field(f, &n, 6, 3, "handshake length");
    add_field(f, &n, p, 1, "session id length");
    p += 1 + b[p];
    add_field(f, &n, p, 2, "cipher suites length");
    p += 2 + get(b + p, 2);
    add_field(f, &n, p, 1, "compression length");
    p += 1 + b[p];
    if (p == len) {
        return n;
    }
    add_field(f, &n, p, 2, "extensions length");
    ext_end = p + 2 + get(b + p, 2);
    p += 2;
    while (p < ext_end) {
        size_t type = get(b + p, 2);
        size_t elen = get(b + p + 2, 2);
        size_t q = p + 4;

        add_field(f, &n, p + 2, 2, "extension length");
        if (type == 0) {
            add_field(f, &n, q, 2, "server_name list length");
            add_field(f, &n, q + 3, 2, "host_name length");
        } else if (type == 16) {
            size_t end = q + elen;
            add_field(f, &n, q, 2, "ALPN list length");
            for (q += 2; q < end; q += 1 + b[q]) {
                add_field(f, &n, q, 1, "protocol length");
            }
        } else if (type == 43) {
            add_field(f, &n, q, 1, "supported_versions length");
        }
        p += 4 + elen;
    }
    ASSERT_EQ(p, len);
    return n;
}

/* Nudge every length field by +1 and -1 (modulo its width): the answer must be MALFORMED
 * or NEED_MORE, the same fed whole and following need. One exception: ALPN protocols are
 * self-delimiting, so a shifted protocol length can re-synchronize and still end exactly at
 * the list's end; then the bytes really are a valid hello with other protocols, and it must
 * say so: same name, a different list. Never FOUND with anything else changed. */
static void
check_nudges(const char *name, const uint8_t *buf, size_t len, const struct outcome *good,
             unsigned *counts)
{
    struct field f[256];
    size_t n = find_length_fields(buf, len, f);
    uint8_t *m = malloc(len);
    size_t i;
    int d;

    ASSERT(m != NULL);
    for (i = 0; i < n; i++) {
        for (d = -1; d <= 1; d += 2) {
            size_t mask = ((size_t)1 << (8 * f[i].width)) - 1;
            size_t v = (get(buf + f[i].off, f[i].width) + (size_t)d) & mask;
            struct outcome whole;
            unsigned w;

            memcpy(m, buf, len);
            for (w = 0; w < f[i].width; w++) {
                m[f[i].off + w] = (uint8_t)(v >> (8 * (f[i].width - 1 - w)));
            }
            whole = parse_exact(m, len, NULL);
            if (whole.status == SR_HELLO_FOUND && strcmp(f[i].what, "protocol length") == 0) {
                ASSERT_STR_EQ(whole.sni, good->sni);
                ASSERT(strcmp(whole.alpn, good->alpn) != 0);
                counts[2]++;
            } else if (whole.status == SR_HELLO_MALFORMED || whole.status == SR_HELLO_NEED_MORE) {
                counts[whole.status == SR_HELLO_MALFORMED ? 0 : 1]++;
            } else {
                SR_FAIL("%s: %s at %zu nudged by %d: %s", name, f[i].what, f[i].off, d,
                        sr_hello_status_str(whole.status));
            }
            (void)feed_following_need(m, len, &whole);
        }
    }
    free(m);
}

static void
test_fixtures(void)
{
    static uint8_t hs[1 << 18];
    static uint8_t framed[1 << 19];
    static const size_t sizes[] = {1, 2, 7, 100, 512, 16384};
    size_t i;
    size_t s;
    unsigned counts[3] = {0, 0, 0}; /* malformed, need more, re-synchronized ALPN */

    for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
        const struct fixture *fx = &fixtures[i];
        struct sr_hello_result res;
        struct outcome want;
        struct outcome o;
        size_t len;
        size_t hs_len;
        uint8_t *buf = load_fixture(fx->file, &len);
        unsigned parses;

        memset(&want, 0, sizeof(want));
        want.status = fx->status;
        snprintf(want.sni, sizeof(want.sni), "%s", fx->sni);
        want.has_alpn = fx->has_alpn;
        want.alpn_dropped = fx->alpn_dropped;
        want.has_ech = fx->has_ech;
        want.legacy_version = fx->legacy_version;
        want.max_version = fx->max_version;
        o = parse(buf, len, &res);
        if (fx->alpn == NULL) { /* too long to spell out: 20 protocols of 29 bytes */
            ASSERT_EQ(res.alpn.len, 600);
            ASSERT(res.alpn.ptr >= buf && res.alpn.ptr < buf + len);
        }
        snprintf(want.alpn, sizeof(want.alpn), "%s", fx->alpn ? fx->alpn : o.alpn);
        assert_same(&o, &want, fx->file);
        ASSERT_EQ(res.record_version, fx->record_version);
        ASSERT_EQ(res.n_records, fx->n_records);
        ASSERT_EQ(res.hello_len, len);

        check_all_feeds(buf, len, &want, true, &parses);
        printf("%-28s %5zu bytes %2u records: %s, %u parses following need\n", fx->file, len,
               res.n_records, sr_hello_status_str(o.status), parses);

        /* The same handshake message in other record sizes must give the same answer. With
         * small records a 600-byte ALPN list no longer fits one record, nor the scratch. */
        hs_len = deframe(buf, len, hs);
        for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            struct outcome w2 = want;
            size_t flen = reframe(hs, hs_len, sizes[s], fx->record_version, framed);

            if (fx->alpn == NULL && sizes[s] < 1024) {
                w2.alpn_dropped = true;
                w2.alpn[0] = '\0';
            } else if (fx->alpn_dropped && sizes[s] >= 1024) {
                continue; /* fits one record again: not what this fixture is about */
            }
            o = parse_exact(framed, flen, &res);
            assert_same(&o, &w2, "re-framed");
            ASSERT_EQ(res.n_records, (hs_len + sizes[s] - 1) / sizes[s]);
            ASSERT_EQ(res.hello_len, flen);
            check_all_feeds(framed, flen, &w2, flen <= 4096, &parses);
        }

        /* Nudges need the hello in one record; re-frame if it fits. */
        if (hs_len <= 16384) {
            size_t flen = reframe(hs, hs_len, 16384, fx->record_version, framed);
            struct outcome w1 = want;
            if (fx->alpn_dropped) { /* one record again: the list is reported in place */
                w1.alpn_dropped = false;
            }
            check_nudges(fx->file, framed, flen, &w1, counts);
        }
        free(buf);
    }
    printf("nudged length fields: %u malformed, %u need more, %u valid with other ALPN "
           "protocols, 0 other accepted\n",
           counts[0], counts[1], counts[2]);
}

/* ---- a hand-built hello, annotated, and its nudges pinned ------------------------------ */

#define RANDOM32                                                                                   \
    0x52, 0x41, 0x4e, 0x44, 0x4f, 0x4d, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38,      \
        0x39, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e,  \
        0x6f, 0x70

static const uint8_t hello_min[] = {
    /* TLSPlaintext (RFC 8446 5.1) */
    0x16,       /* [0]  type: handshake */
    0x03, 0x01, /* [1]  legacy_record_version: TLS 1.0, as clients send */
    0x00, 0x51, /* [3]  length: 81 */
    /* Handshake (4) */
    0x01,             /* [5]  msg_type: client_hello */
    0x00, 0x00, 0x4d, /* [6]  length: 77 */
    /* ClientHello (4.1.2) */
    0x03, 0x03, /* [9]  legacy_version: TLS 1.2 */
    RANDOM32,   /* [11] random */
    0x00,       /* [43] legacy_session_id: empty */
    0x00, 0x02, /* [44] cipher_suites length: 2 */
    0x13, 0x01, /* [46]   TLS_AES_128_GCM_SHA256 */
    0x01,       /* [48] legacy_compression_methods length: 1 */
    0x00,       /* [49]   null */
    0x00, 0x22, /* [50] extensions length: 34 */
    /* server_name (RFC 6066 3) */
    0x00, 0x00,                                  /* [52] extension_type: server_name */
    0x00, 0x0e,                                  /* [54] extension_data length: 14 */
    0x00, 0x0c,                                  /* [56] server_name_list length: 12 */
    0x00,                                        /* [58] name_type: host_name */
    0x00, 0x09,                                  /* [59] HostName length: 9 */
    'a', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', /* [61] "a.example" */
    /* application_layer_protocol_negotiation (RFC 7301 3.1) */
    0x00, 0x10,     /* [70] extension_type: ALPN (16) */
    0x00, 0x05,     /* [72] extension_data length: 5 */
    0x00, 0x03,     /* [74] protocol_name_list length: 3 */
    0x02, 'h', '2', /* [76] "h2" */
    /* supported_versions (RFC 8446 4.2.1) */
    0x00, 0x2b, /* [79] extension_type: supported_versions (43) */
    0x00, 0x03, /* [81] extension_data length: 3 */
    0x02,       /* [83] versions length: 2 */
    0x03, 0x04, /* [84] TLS 1.3 */
};

#define MAL(r)   SR_HELLO_MALFORMED, SR_HELLO_REASON_##r
#define NEEDMORE SR_HELLO_NEED_MORE, SR_HELLO_REASON_NONE

struct nudge {
    size_t off;
    unsigned width;
    int delta;
    enum sr_hello_status status;
    enum sr_hello_reason reason;
    const char *why;
};

/* Each worked out by hand from the annotated bytes above. */
static const struct nudge pinned[] = {
    {3, 2, +1, MAL(RECORD_TRAILING), "record holds 1 byte more than the message"},
    {3, 2, -1, MAL(RECORD_TYPE), "last byte 0x04 read as the next record's type"},
    {6, 3, +1, MAL(BLOCK_END), "extensions end 1 byte before the message does"},
    {6, 3, -1, MAL(RECORD_TRAILING), "record holds 1 byte more than the message"},
    {43, 1, +1, MAL(CIPHER_SUITES), "cipher_suites length read as 0x0213: odd"},
    {43, 1, -1, MAL(SESSION_ID), "session id length 255"},
    {44, 2, +1, MAL(CIPHER_SUITES), "3: odd"},
    {44, 2, -1, MAL(CIPHER_SUITES), "1: odd"},
    {48, 1, +1, MAL(OVERRUN), "extensions length read as 0x2200"},
    {48, 1, -1, MAL(COMPRESSION), "no compression method"},
    {50, 2, +1, MAL(OVERRUN), "extensions run past the message"},
    {50, 2, -1, MAL(BLOCK_END), "extensions end before the message"},
    {54, 2, +1, MAL(BLOCK_END), "name list ends before its extension"},
    {54, 2, -1, MAL(OVERRUN), "name list runs past its extension"},
    {56, 2, +1, MAL(OVERRUN), "name list runs past its extension"},
    {56, 2, -1, MAL(BLOCK_END), "name list ends before its extension"},
    {59, 2, +1, MAL(OVERRUN), "name runs past its list"},
    {59, 2, -1, MAL(SNI_TYPE), "\"a.exampl\", then 'e' read as a name_type"},
    {72, 2, +1, MAL(BLOCK_END), "ALPN list ends before its extension"},
    {72, 2, -1, MAL(OVERRUN), "ALPN list runs past its extension"},
    {74, 2, +1, MAL(OVERRUN), "ALPN list runs past its extension"},
    {74, 2, -1, MAL(BLOCK_END), "ALPN list ends before its extension"},
    {76, 1, +1, MAL(OVERRUN), "protocol runs past its list"},
    {76, 1, -1, MAL(OVERRUN), "\"h\", then '2' (50) read as a length"},
    {81, 2, +1, MAL(OVERRUN), "extension runs past the extensions block"},
    {81, 2, -1, MAL(OVERRUN), "versions run past their extension"},
    {83, 1, +1, MAL(OVERRUN), "versions run past their extension"},
    {83, 1, -1, MAL(BLOCK_END), "versions end before their extension"},
};

static void
test_hello_min(void)
{
    struct sr_hello_result res;
    struct outcome o;
    uint8_t m[sizeof(hello_min)];
    size_t i;
    unsigned w;

    o = parse(hello_min, sizeof(hello_min), &res);
    ASSERT_EQ(o.status, SR_HELLO_FOUND);
    ASSERT_STR_EQ(o.sni, "a.example");
    ASSERT_STR_EQ(o.alpn, "h2");
    ASSERT(res.sni.ptr == hello_min + 61); /* in place, not copied */
    ASSERT(res.alpn.ptr == hello_min + 76);
    ASSERT_EQ(res.alpn.len, 3);
    ASSERT_EQ(res.max_version, 0x0304);
    ASSERT_EQ(res.hello_len, sizeof(hello_min));

    /* The need count, step by step: 1 while byte 0 or 1 may say NOT_TLS, then the rest of
     * the header plus at least the 4-byte handshake header, then the rest of the record. */
    sr_hello_parse(hello_min, 0, &sc, &res);
    ASSERT_EQ(res.need, 1);
    sr_hello_parse(hello_min, 1, &sc, &res);
    ASSERT_EQ(res.need, 1);
    sr_hello_parse(hello_min, 2, &sc, &res);
    ASSERT_EQ(res.need, 7);
    sr_hello_parse(hello_min, 5, &sc, &res);
    ASSERT_EQ(res.need, 81);
    sr_hello_parse(hello_min, 9, &sc, &res);
    ASSERT_EQ(res.need, 77);
    sr_hello_parse(hello_min, 60, &sc, &res);
    ASSERT_EQ(res.need, 26);

    for (i = 0; i < sizeof(pinned) / sizeof(pinned[0]); i++) {
        const struct nudge *n = &pinned[i];
        size_t mask = ((size_t)1 << (8 * n->width)) - 1;
        size_t v = (get(hello_min + n->off, n->width) + (size_t)n->delta) & mask;

        memcpy(m, hello_min, sizeof(m));
        for (w = 0; w < n->width; w++) {
            m[n->off + w] = (uint8_t)(v >> (8 * (n->width - 1 - w)));
        }
        o = parse_exact(m, sizeof(m), NULL);
        if (o.status != n->status || o.reason != n->reason) {
            SR_FAIL("nudge [%zu] %+d (%s): got %s/%s", n->off, n->delta, n->why,
                    sr_hello_status_str(o.status), sr_hello_reason_str(o.reason));
        }
    }
}

/* ---- the bare handshake message (no records), as QUIC's CRYPTO stream carries it ------ */

/* Parse a bare message from an exact-size heap copy; views must lie in the copy. */
static struct outcome
parse_message(const uint8_t *buf, size_t len, struct sr_hello_result *res_out)
{
    uint8_t *copy = malloc(len ? len : 1);
    struct sr_hello_result res;
    struct outcome o;
    struct sr_view cur;
    struct sr_view proto;
    size_t n = 0;

    ASSERT(copy != NULL);
    memcpy(copy, buf, len);
    memset(&o, 0, sizeof(o));
    sr_hello_parse_message(copy, len, &res);
    o.status = res.status;
    o.reason = res.reason;
    o.name_error = res.name_error;
    ASSERT(o.status != SR_HELLO_NOT_TLS);
    ASSERT((res.status == SR_HELLO_NEED_MORE) == (res.need > 0));
    ASSERT(view_inside(res.sni, copy, len));
    ASSERT(view_inside(res.alpn, copy, len));
    ASSERT_EQ(res.n_records, 0);
    ASSERT_EQ(res.record_version, 0);
    if (res.status == SR_HELLO_FOUND) {
        memcpy(o.sni, res.sni.ptr, res.sni.len);
    }
    if (res.status == SR_HELLO_FOUND || res.status == SR_HELLO_NO_SNI) {
        ASSERT_LE(res.hello_len, len);
        cur = res.alpn;
        while (sr_hello_alpn_next(&cur, &proto)) {
            if (n > 0) {
                o.alpn[n++] = ',';
            }
            memcpy(o.alpn + n, proto.ptr, proto.len);
            n += proto.len;
        }
    }
    o.has_alpn = res.has_alpn;
    o.alpn_dropped = res.alpn_dropped;
    o.has_ech = res.has_ech;
    o.legacy_version = res.legacy_version;
    o.max_version = res.max_version;
    free(copy);
    if (res_out != NULL) {
        *res_out = res;
    }
    return o;
}

/* Every fixture's handshake message, bare: the same answer as framed (an ALPN list too big
 * for the scratch is reported in place, since nothing straddles a record); every strict
 * prefix NEED_MORE with <need> exactly the rest; bytes after the message not looked at. */
static void
test_message_fixtures(void)
{
    static uint8_t hs[1 << 18];
    size_t i;
    size_t k;

    for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
        const struct fixture *fx = &fixtures[i];
        struct sr_hello_result res;
        struct outcome framed;
        struct outcome o;
        size_t len;
        size_t hs_len;
        uint8_t *buf = load_fixture(fx->file, &len);

        framed = parse(buf, len, NULL);
        framed.alpn_dropped = false;
        hs_len = deframe(buf, len, hs);
        o = parse_message(hs, hs_len, &res);
        if (fx->alpn_dropped) { /* in place now: the list the framed parse had to drop */
            ASSERT(res.alpn.len > 0);
            snprintf(framed.alpn, sizeof(framed.alpn), "%s", o.alpn);
        }
        assert_same(&o, &framed, "bare message");
        ASSERT_EQ(res.hello_len, hs_len);

        for (k = 0; k < hs_len; k++) {
            o = parse_message(hs, k, &res);
            if (o.status != SR_HELLO_NEED_MORE) {
                SR_FAIL("%s: bare prefix %zu of %zu: %s (%s)", fx->file, k, hs_len,
                        sr_hello_status_str(o.status), sr_hello_reason_str(o.reason));
            }
            /* Without records the rest is known exactly once the 4-byte header is in. */
            ASSERT_EQ(k + res.need, k < 4 ? 4 : hs_len);
        }
        /* Trailing bytes (the next handshake message, garbage) change nothing. */
        memset(hs + hs_len, 0x16, 64);
        o = parse_message(hs, hs_len + 64, &res);
        assert_same(&o, &framed, "bare message with trailing bytes");
        ASSERT_EQ(res.hello_len, hs_len);
        free(buf);
    }
}

/* hello_min's message without its record header: the pinned nudges inside the message say
 * the same bare, but the record layer is gone, so a shorter handshake length is no longer
 * RECORD_TRAILING: the extensions block runs past the message. */
static void
test_message_min(void)
{
    const uint8_t *msg = hello_min + 5;
    size_t len = sizeof(hello_min) - 5;
    struct sr_hello_result res;
    struct outcome o;
    uint8_t m[sizeof(hello_min)];
    size_t i;
    unsigned w;

    o = parse_message(msg, len, &res);
    ASSERT_EQ(o.status, SR_HELLO_FOUND);
    ASSERT_STR_EQ(o.sni, "a.example");
    ASSERT_STR_EQ(o.alpn, "h2");
    ASSERT_EQ(res.hello_len, len);
    sr_hello_parse_message(msg, len, &res);
    ASSERT(res.sni.ptr == msg + 56); /* in place */

    sr_hello_parse_message(msg, 0, &res);
    ASSERT_EQ(res.status, SR_HELLO_NEED_MORE);
    ASSERT_EQ(res.need, 4);
    sr_hello_parse_message(msg, 3, &res);
    ASSERT_EQ(res.need, 1);
    sr_hello_parse_message(msg, 4, &res);
    ASSERT_EQ(res.need, 77);
    sr_hello_parse_message(msg, 55, &res);
    ASSERT_EQ(res.need, 26);

    /* A TLS record handed to the bare parser: byte 0 is 22, not client_hello. */
    o = parse_message(hello_min, sizeof(hello_min), NULL);
    ASSERT_EQ(o.status, SR_HELLO_MALFORMED);
    ASSERT_EQ(o.reason, SR_HELLO_REASON_HANDSHAKE_TYPE);
    o = parse_message(hello_min, 1, NULL);
    ASSERT_EQ(o.reason, SR_HELLO_REASON_HANDSHAKE_TYPE);

    for (i = 0; i < sizeof(pinned) / sizeof(pinned[0]); i++) {
        const struct nudge *n = &pinned[i];
        size_t mask = ((size_t)1 << (8 * n->width)) - 1;
        size_t v;
        enum sr_hello_reason want = n->reason;

        if (n->off < 5) {
            continue; /* the record header is not there */
        }
        if (n->off == 6 && n->delta == -1) {
            want = SR_HELLO_REASON_OVERRUN;
        }
        v = (get(msg + n->off - 5, n->width) + (size_t)n->delta) & mask;
        memcpy(m, msg, len);
        for (w = 0; w < n->width; w++) {
            m[n->off - 5 + w] = (uint8_t)(v >> (8 * (n->width - 1 - w)));
        }
        o = parse_message(m, len, NULL);
        if (o.status != SR_HELLO_MALFORMED || o.reason != want) {
            SR_FAIL("bare nudge [%zu] %+d (%s): got %s/%s", n->off - 5, n->delta, n->why,
                    sr_hello_status_str(o.status), sr_hello_reason_str(o.reason));
        }
    }
    /* Over the largest ClientHello the fields allow: refused from the length alone. */
    memcpy(m, msg, 4);
    m[1] = 0x02; /* 0x020145: one byte over HELLO_BODY_MAX (131396) */
    m[2] = 0x01;
    m[3] = 0x45;
    o = parse_message(m, 4, NULL);
    ASSERT_EQ(o.status, SR_HELLO_MALFORMED);
    ASSERT_EQ(o.reason, SR_HELLO_REASON_HANDSHAKE_TOO_LONG);
    m[3] = 0x44; /* exactly the limit: wait for it */
    sr_hello_parse_message(m, 4, &res);
    ASSERT_EQ(res.status, SR_HELLO_NEED_MORE);
    ASSERT_EQ(res.need, 131396);
}

/* ---- malformed shapes, built field by field ----------------------------------------- */

struct bld {
    uint8_t b[1 << 17];
    size_t n;
    size_t open[8];
    unsigned width[8];
    unsigned depth;
};

static void
put(struct bld *b, const void *p, size_t n)
{
    ASSERT_LE(b->n + n, sizeof(b->b));
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void
put_uint(struct bld *b, size_t v, unsigned width)
{
    while (width-- > 0) {
        uint8_t c = (uint8_t)(v >> (8 * width));
        put(b, &c, 1);
    }
}

/* Start a length-prefixed block of <width> bytes; blk_end() fills the length in. */
static void
blk(struct bld *b, unsigned width)
{
    ASSERT_LT(b->depth, 8);
    b->open[b->depth] = b->n;
    b->width[b->depth++] = width;
    put_uint(b, 0, width);
}

static void
blk_end(struct bld *b)
{
    size_t at;
    size_t v;
    unsigned w;

    ASSERT_GT(b->depth, 0);
    b->depth--;
    at = b->open[b->depth];
    w = b->width[b->depth];
    v = b->n - at - w;
    while (w-- > 0) {
        b->b[at++] = (uint8_t)(v >> (8 * w));
    }
}

static void
ext_sni(struct bld *b, unsigned type, const char *name, size_t len)
{
    put_uint(b, 0, 2); /* server_name */
    blk(b, 2);
    blk(b, 2);
    put_uint(b, type, 1);
    blk(b, 2);
    put(b, name, len);
    blk_end(b);
    blk_end(b);
    blk_end(b);
}

static void
ext_raw(struct bld *b, unsigned type, const char *data, size_t len)
{
    put_uint(b, type, 2);
    blk(b, 2);
    put(b, data, len);
    blk_end(b);
}

/* One record holding a ClientHello whose extensions block holds <exts>/<exts_len>. */
static void
hello_with(struct bld *b, const uint8_t *exts, size_t exts_len)
{
    static const uint8_t random[32] = {RANDOM32};

    b->n = 0;
    b->depth = 0;
    put_uint(b, 22, 1);
    put_uint(b, 0x0301, 2);
    blk(b, 2); /* record */
    put_uint(b, 1, 1);
    blk(b, 3); /* handshake */
    put_uint(b, 0x0303, 2);
    put(b, random, 32);
    put_uint(b, 0, 1);      /* session id */
    put_uint(b, 2, 2);      /* cipher suites */
    put_uint(b, 0x1301, 2); /* TLS_AES_128_GCM_SHA256 */
    put_uint(b, 1, 1);      /* compression: null */
    put_uint(b, 0, 1);
    blk(b, 2);
    put(b, exts, exts_len);
    blk_end(b);
    blk_end(b);
    blk_end(b);
}

struct shape {
    const char *what;
    enum sr_hello_status status;
    enum sr_hello_reason reason;
    enum sr_name_error name_error;
};

static void
expect_shape(const struct bld *b, const struct shape *s)
{
    struct outcome o = parse_exact(b->b, b->n, NULL);

    if (o.status != s->status || o.reason != s->reason || o.name_error != s->name_error) {
        SR_FAIL("%s: got %s/%s/%s", s->what, sr_hello_status_str(o.status),
                sr_hello_reason_str(o.reason), sr_name_error_str(o.name_error));
    }
    /* The same answer for a caller that waits for <need>; never FOUND on the way. */
    (void)feed_following_need(b->b, b->n, &o);
}

static void
test_bad_names(void)
{
    static struct bld e;
    static struct bld h;
    static char long_name[300];
    static const struct {
        const char *name;
        size_t len;
        enum sr_name_error err;
    } names[] = {
        {"a\0b.example", 11, SR_NAME_BAD_CHAR},
        {"a/b.example", 11, SR_NAME_BAD_CHAR},
        {"a b.example", 11, SR_NAME_BAD_CHAR},
        {"a..example", 10, SR_NAME_EMPTY_LABEL},
        {".example", 8, SR_NAME_EMPTY_LABEL},
        {"example..", 9, SR_NAME_EMPTY_LABEL},
        {"", 0, SR_NAME_EMPTY},
        {".", 1, SR_NAME_EMPTY},
        {"*.example", 9, SR_NAME_BAD_CHAR},
        {"example.com:443", 15, SR_NAME_BAD_CHAR},
        {NULL, 256, SR_NAME_TOO_LONG}, /* over 255: refused from the length alone */
        {NULL, 255, SR_NAME_TOO_LONG},
        {NULL, 254, SR_NAME_TOO_LONG}, /* 254 without a trailing dot */
    };
    size_t i;

    memset(long_name, 'a', sizeof(long_name));
    for (i = 63; i < sizeof(long_name); i += 64) {
        long_name[i] = '.';
    }
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct shape s = {"bad name", SR_HELLO_MALFORMED, SR_HELLO_REASON_SNI_NAME, names[i].err};
        e.n = 0;
        ext_sni(&e, 0, names[i].name ? names[i].name : long_name, names[i].len);
        hello_with(&h, e.b, e.n);
        expect_shape(&h, &s);
    }
    /* A label of 64 characters. */
    {
        static char label[64];
        struct shape s = {"long label", SR_HELLO_MALFORMED, SR_HELLO_REASON_SNI_NAME,
                          SR_NAME_LABEL_TOO_LONG};
        memset(label, 'a', sizeof(label));
        e.n = 0;
        ext_sni(&e, 0, label, sizeof(label));
        hello_with(&h, e.b, e.n);
        expect_shape(&h, &s);
    }
}

static void
test_shapes(void)
{
    static struct bld e;
    static struct bld h;
    struct shape s;
    struct outcome o;
    struct sr_hello_result res;
    size_t i;

    /* name_type 1 is not host_name */
    e.n = 0;
    ext_sni(&e, 1, "a.example", 9);
    hello_with(&h, e.b, e.n);
    s = (struct shape){"name type 1", MAL(SNI_TYPE), SR_NAME_OK};
    expect_shape(&h, &s);

    /* Two host_names in one list. */
    e.n = 0;
    put_uint(&e, 0, 2);
    blk(&e, 2);
    blk(&e, 2);
    put_uint(&e, 0, 1);
    blk(&e, 2);
    put(&e, "a.example", 9);
    blk_end(&e);
    put_uint(&e, 0, 1);
    blk(&e, 2);
    put(&e, "b.example", 9);
    blk_end(&e);
    blk_end(&e);
    blk_end(&e);
    hello_with(&h, e.b, e.n);
    s = (struct shape){"two names", MAL(SNI_MULTIPLE), SR_NAME_OK};
    expect_shape(&h, &s);

    /* An empty server_name list, and an empty server_name extension. */
    e.n = 0;
    ext_raw(&e, 0, "\0\0", 2);
    hello_with(&h, e.b, e.n);
    s = (struct shape){"empty name list", MAL(SNI_LIST), SR_NAME_OK};
    expect_shape(&h, &s);
    e.n = 0;
    ext_raw(&e, 0, "", 0);
    hello_with(&h, e.b, e.n);
    s = (struct shape){"empty server_name", MAL(OVERRUN), SR_NAME_OK};
    expect_shape(&h, &s);

    /* Two server_name extensions, two ALPN, two unknown (GREASE) of one type. */
    e.n = 0;
    ext_sni(&e, 0, "a.example", 9);
    ext_sni(&e, 0, "a.example", 9);
    hello_with(&h, e.b, e.n);
    s = (struct shape){"two server_name", MAL(DUPLICATE_EXTENSION), SR_NAME_OK};
    expect_shape(&h, &s);
    e.n = 0;
    ext_raw(&e, 0x1a1a, "", 0);
    ext_sni(&e, 0, "a.example", 9);
    ext_raw(&e, 0x1a1a, "x", 1);
    hello_with(&h, e.b, e.n);
    s = (struct shape){"two GREASE", MAL(DUPLICATE_EXTENSION), SR_NAME_OK};
    expect_shape(&h, &s);

    /* Two different GREASE types, an unknown type, ECH: all fine. */
    e.n = 0;
    ext_raw(&e, 0x1a1a, "", 0);
    ext_sni(&e, 0, "A.Example.", 10);
    ext_raw(&e, 0xfe0d, "\0\0\1\0\1\7", 6);
    ext_raw(&e, 0x9999, "xyz", 3);
    ext_raw(&e, 43, "\x04\x3a\x3a\x03\x03", 5); /* GREASE and TLS 1.2 */
    ext_raw(&e, 0xfafa, "", 0);
    hello_with(&h, e.b, e.n);
    o = parse_exact(h.b, h.n, &res);
    ASSERT_EQ(o.status, SR_HELLO_FOUND);
    ASSERT_STR_EQ(o.sni, "A.Example."); /* as sent: normalizing is the router's job */
    ASSERT(o.has_ech);
    ASSERT_EQ(res.max_version, 0x0303);

    /* ALPN: empty list, empty protocol, protocol past the list. */
    e.n = 0;
    ext_raw(&e, 16, "\0\0", 2);
    hello_with(&h, e.b, e.n);
    s = (struct shape){"empty ALPN list", MAL(ALPN), SR_NAME_OK};
    expect_shape(&h, &s);
    e.n = 0;
    ext_raw(&e, 16, "\0\4\2h2\0", 6);
    hello_with(&h, e.b, e.n);
    s = (struct shape){"empty protocol", MAL(ALPN), SR_NAME_OK};
    expect_shape(&h, &s);

    /* supported_versions: odd, empty, only GREASE (falls back to legacy_version). */
    e.n = 0;
    ext_raw(&e, 43, "\3\3\4\3", 4);
    hello_with(&h, e.b, e.n);
    s = (struct shape){"odd versions", MAL(SUPPORTED_VERSIONS), SR_NAME_OK};
    expect_shape(&h, &s);
    e.n = 0;
    ext_raw(&e, 43, "\0", 1);
    hello_with(&h, e.b, e.n);
    s = (struct shape){"no versions", MAL(SUPPORTED_VERSIONS), SR_NAME_OK};
    expect_shape(&h, &s);
    e.n = 0;
    ext_raw(&e, 43, "\2\x2a\x2a", 3);
    hello_with(&h, e.b, e.n);
    o = parse_exact(h.b, h.n, &res);
    ASSERT_EQ(o.status, SR_HELLO_NO_SNI);
    ASSERT_EQ(res.max_version, 0x0303);

    /* A stray byte after the last extension, inside the block. */
    e.n = 0;
    ext_sni(&e, 0, "a.example", 9);
    put_uint(&e, 0, 1);
    hello_with(&h, e.b, e.n);
    s = (struct shape){"stray byte", MAL(OVERRUN), SR_NAME_OK};
    expect_shape(&h, &s);

    /* 128 distinct extensions are fine; the 129th is refused. */
    e.n = 0;
    for (i = 0; i < SR_HELLO_MAX_EXTENSIONS; i++) {
        ext_raw(&e, 0x1000 + (unsigned)i, "", 0);
    }
    hello_with(&h, e.b, e.n);
    ASSERT_EQ(parse_exact(h.b, h.n, NULL).status, SR_HELLO_NO_SNI);
    ext_raw(&e, 0x2000, "", 0);
    hello_with(&h, e.b, e.n);
    s = (struct shape){"129 extensions", MAL(TOO_MANY_EXTENSIONS), SR_NAME_OK};
    expect_shape(&h, &s);
}

static void
test_records(void)
{
    static uint8_t b[sizeof(hello_min) + 64];
    struct sr_hello_result res;
    struct outcome o;

    /* Record length 0, and 2^14 + 1: decided from the header alone. */
    memcpy(b, "\x16\x03\x01\x00\x00", 5);
    sr_hello_parse(b, 5, &sc, &res);
    ASSERT_EQ(res.status, SR_HELLO_MALFORMED);
    ASSERT_EQ(res.reason, SR_HELLO_REASON_RECORD_EMPTY);
    memcpy(b, "\x16\x03\x01\x40\x01", 5);
    sr_hello_parse(b, 5, &sc, &res);
    ASSERT_EQ(res.status, SR_HELLO_MALFORMED);
    ASSERT_EQ(res.reason, SR_HELLO_REASON_RECORD_TOO_LONG);

    /* hello_min cut after 40 handshake bytes; the second record is an alert, a
     * change_cipher_spec, application data, or an empty handshake record. */
    {
        static const uint8_t types[] = {21, 20, 23};
        size_t t;
        for (t = 0; t <= sizeof(types); t++) {
            memcpy(b, hello_min, 45);
            b[4] = 40;
            memcpy(b + 45, "\x16\x03\x03", 3);
            b[48] = 0;
            b[49] = 41;
            memcpy(b + 50, hello_min + 45, 41);
            if (t < sizeof(types)) {
                b[45] = types[t];
            } else {
                b[49] = 0;
            }
            o = parse_exact(b, 91, NULL);
            ASSERT_EQ(o.status, SR_HELLO_MALFORMED);
            ASSERT_EQ(o.reason, t < sizeof(types) ? SR_HELLO_REASON_RECORD_TYPE
                                                  : SR_HELLO_REASON_RECORD_EMPTY);
        }
        /* Put back the handshake type: two records, FOUND; the later record's version is
         * ignored (RFC 8446 5.1). */
        b[45] = 22;
        b[46] = 0x07;
        b[49] = 41;
        o = parse_exact(b, 91, &res);
        ASSERT_EQ(o.status, SR_HELLO_FOUND);
        ASSERT_EQ(res.n_records, 2);
        ASSERT_EQ(res.hello_len, 91);

        /* The second, last record one byte longer than the rest of the message: refused
         * from its header, before the extra byte arrives. */
        b[49] = 42;
        b[91] = 0;
        sr_hello_parse(b, 50, &sc, &res);
        ASSERT_EQ(res.status, SR_HELLO_MALFORMED);
        ASSERT_EQ(res.reason, SR_HELLO_REASON_RECORD_TRAILING);
        o = parse_exact(b, 92, NULL);
        ASSERT_EQ(o.reason, SR_HELLO_REASON_RECORD_TRAILING);
    }

    /* A record holding the hello plus one byte: refused as soon as the lengths disagree. */
    memcpy(b, hello_min, sizeof(hello_min));
    b[4]++;
    b[sizeof(hello_min)] = 0;
    sr_hello_parse(b, 9, &sc, &res);
    ASSERT_EQ(res.status, SR_HELLO_MALFORMED);
    ASSERT_EQ(res.reason, SR_HELLO_REASON_RECORD_TRAILING);
    o = parse_exact(b, sizeof(hello_min) + 1, NULL);
    ASSERT_EQ(o.status, SR_HELLO_MALFORMED);
    ASSERT_EQ(o.reason, SR_HELLO_REASON_RECORD_TRAILING);

    /* Bytes after the hello's record (early data, a change_cipher_spec) are not ours. */
    memcpy(b, hello_min, sizeof(hello_min));
    memcpy(b + sizeof(hello_min), "\x14\x03\x03\x00\x01\x01", 6);
    o = parse_exact(b, sizeof(hello_min) + 6, &res);
    ASSERT_EQ(o.status, SR_HELLO_FOUND);
    ASSERT_EQ(res.hello_len, sizeof(hello_min));

    /* Handshake type 2 (server_hello), a length over any ClientHello, legacy_version 2.0. */
    memcpy(b, hello_min, sizeof(hello_min));
    b[5] = 2;
    sr_hello_parse(b, 6, &sc, &res);
    ASSERT_EQ(res.reason, SR_HELLO_REASON_HANDSHAKE_TYPE);
    memcpy(b, "\x16\x03\x01\x40\x00\x01\x02\x01\x45", 9); /* 131397 */
    sr_hello_parse(b, 9, &sc, &res);
    ASSERT_EQ(res.reason, SR_HELLO_REASON_HANDSHAKE_TOO_LONG);
    b[8] = 0x44; /* 131396 is the most: wait for it */
    sr_hello_parse(b, 9, &sc, &res);
    ASSERT_EQ(res.status, SR_HELLO_NEED_MORE);
    ASSERT_EQ(res.need, 16384 - 4 + 131400 - 16384 + 5 * 8);
    memcpy(b, hello_min, sizeof(hello_min));
    b[9] = 2;
    sr_hello_parse(b, sizeof(hello_min), &sc, &res);
    ASSERT_EQ(res.reason, SR_HELLO_REASON_VERSION);

    /* Session id of 33 bytes. */
    memcpy(b, hello_min, sizeof(hello_min));
    b[43] = 33;
    sr_hello_parse(b, sizeof(hello_min), &sc, &res);
    ASSERT_EQ(res.reason, SR_HELLO_REASON_SESSION_ID);
}

static void
test_not_tls(void)
{
    static const struct {
        const char *bytes;
        size_t len;
        enum sr_hello_reason reason;
    } cases[] = {
        {"S", 1, SR_HELLO_REASON_NOT_HANDSHAKE}, /* "SSH-2.0-...": one byte is enough */
        {"SSH-2.0-OpenSSH_9.2\r\n", 21, SR_HELLO_REASON_NOT_HANDSHAKE},
        {"GET ", 4, SR_HELLO_REASON_NOT_HANDSHAKE},
        {"G", 1, SR_HELLO_REASON_NOT_HANDSHAKE},
        {"\x80\x2e\x01\x03\x01", 5, SR_HELLO_REASON_NOT_HANDSHAKE}, /* SSLv2-compatible */
        {"\x16\x02", 2, SR_HELLO_REASON_NOT_TLS_VERSION},
        {"\x16\x47\x45\x54", 4, SR_HELLO_REASON_NOT_TLS_VERSION},
        {"", 1, SR_HELLO_REASON_NOT_HANDSHAKE}, /* a NUL byte */
    };
    struct sr_hello_result res;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct outcome o = parse_exact((const uint8_t *)cases[i].bytes, cases[i].len, &res);
        ASSERT_EQ(o.status, SR_HELLO_NOT_TLS);
        ASSERT_EQ(o.reason, cases[i].reason);
    }
    sr_hello_parse((const uint8_t *)"\x16", 1, &sc, &res);
    ASSERT_EQ(res.status, SR_HELLO_NEED_MORE);
    ASSERT_EQ(res.need, 1);
}

static void
test_strings_and_alert(void)
{
    uint8_t alert[SR_HELLO_ALERT_LEN];
    struct sr_view cur = {(const uint8_t *)"\2h2\x08http/1.1", 12};
    struct sr_view bad = {(const uint8_t *)"\5h2", 3};
    struct sr_view p;
    int r;

    ASSERT_STR_EQ(sr_hello_status_str(SR_HELLO_NEED_MORE), "need_more");
    ASSERT_STR_EQ(sr_hello_status_str(SR_HELLO_FOUND), "found");
    ASSERT_STR_EQ(sr_hello_status_str(SR_HELLO_NO_SNI), "no_sni");
    ASSERT_STR_EQ(sr_hello_status_str(SR_HELLO_NOT_TLS), "not_tls");
    ASSERT_STR_EQ(sr_hello_status_str(SR_HELLO_MALFORMED), "malformed");
    for (r = SR_HELLO_REASON_NONE; r <= SR_HELLO_REASON_SUPPORTED_VERSIONS; r++) {
        ASSERT(strcmp(sr_hello_reason_str((enum sr_hello_reason)r), "unknown reason") != 0);
    }
    ASSERT_STR_EQ(sr_hello_reason_str(SR_HELLO_REASON_DUPLICATE_EXTENSION), "duplicate extension");

    sr_hello_alert(alert, SR_TLS_ALERT_UNRECOGNIZED_NAME);
    ASSERT_EQ(memcmp(alert, "\x15\x03\x03\x00\x02\x02\x70", 7), 0);

    ASSERT(sr_hello_alpn_next(&cur, &p));
    ASSERT_VIEW_EQ(p.ptr, p.len, "h2");
    ASSERT(sr_hello_alpn_next(&cur, &p));
    ASSERT_VIEW_EQ(p.ptr, p.len, "http/1.1");
    ASSERT(!sr_hello_alpn_next(&cur, &p));
    ASSERT(!sr_hello_alpn_next(&bad, &p));
}

int
main(void)
{
    test_strings_and_alert();
    test_not_tls();
    test_records();
    test_hello_min();
    test_bad_names();
    test_shapes();
    test_fixtures();
    test_message_min();
    test_message_fixtures();
    printf("test_hello: ok\n");
    return 0;
}
