/* SPDX-License-Identifier: MIT */
/* QUIC Initial reader tests: the RFC 9001 and RFC 9369 Appendix A keys and client Initials
 * (decrypted to their published bytes, and rebuilt byte for byte by the builder); real
 * clients' first flights fed whole, in reverse datagram order, packet by packet, each
 * datagram twice, truncated at every length and with every byte flipped; builder flights cut
 * the hard ways (frames shuffled, overlapping, with PING and PADDING, over several packets and
 * datagrams, with 0-RTT, v1 and v2) in every datagram order; and each malformed shape pinned
 * to its reason, with the flow left as it was. */
#include "sniroute/wire/quic.h"

#include <stdlib.h>
#include <string.h>

#include "sniroute/wire/hellogen.h"
#include "sniroute/wire/quicgen.h"
#include "support/assert.h"
#include "support/fixture.h"

/* ---- helpers ----------------------------------------------------------------------- */

static struct sr_quic_ctx ctx; /* 66 KB: static, as a worker would own it */

#define MAX_DGRAMS 16

struct dgram {
    const uint8_t *p;
    size_t len;
};

/* The fixture format: each datagram as a 2-byte big-endian length, then its bytes. */
static size_t
split_dgrams(const uint8_t *buf, size_t len, struct dgram *d)
{
    size_t pos = 0;
    size_t n = 0;

    while (pos < len) {
        size_t dl;
        ASSERT_LE(pos + 2, len);
        dl = (size_t)buf[pos] << 8 | buf[pos + 1];
        ASSERT_LE(pos + 2 + dl, len);
        ASSERT_LT(n, MAX_DGRAMS);
        d[n].p = buf + pos + 2;
        d[n].len = dl;
        n++;
        pos += 2 + dl;
    }
    return n;
}

/* What a caller may use from a result, copied out for comparison. */
struct outcome {
    enum sr_quic_status status;
    enum sr_quic_reason reason;
    enum sr_hello_reason hello_reason;
    char sni[SR_NAME_MAX + 3];
    char alpn[512];
    bool has_ech;
};

static bool
in_state(struct sr_view v, const struct sr_quic_initial *st)
{
    return v.len == 0 || (v.ptr >= st->crypto && v.ptr + v.len <= st->crypto + sizeof(st->crypto));
}

/* Feed one datagram from an exact-size heap copy (ASan sees any read past its end), check
 * the result's invariants, and return its outcome. */
static struct outcome
feed(struct sr_quic_initial *st, const uint8_t *p, size_t len, struct sr_quic_result *res_out)
{
    uint8_t *copy = malloc(len ? len : 1);
    struct sr_quic_result res;
    struct outcome o;
    struct sr_view cur;
    struct sr_view proto;
    size_t n = 0;

    ASSERT(copy != NULL);
    memcpy(copy, p, len);
    sr_quic_feed(&ctx, st, copy, len, &res);
    free(copy);
    memset(&o, 0, sizeof(o));
    o.status = res.status;
    o.reason = res.reason;
    o.hello_reason = res.hello.reason;
    if (res.status == SR_QUIC_NOT_QUIC || res.status == SR_QUIC_MALFORMED) {
        ASSERT_NE(res.reason, SR_QUIC_REASON_NONE);
    } else {
        ASSERT_EQ(res.reason, SR_QUIC_REASON_NONE);
    }
    ASSERT(res.status != SR_QUIC_ERROR);
    ASSERT_EQ(res.reason == SR_QUIC_REASON_HELLO, res.hello.status == SR_HELLO_MALFORMED);
    ASSERT(in_state(res.hello.sni, st) && in_state(res.hello.alpn, st));
    if (res.status == SR_QUIC_FOUND) {
        ASSERT_EQ(res.hello.status, SR_HELLO_FOUND);
        ASSERT_EQ(sr_name_validate(res.hello.sni.ptr, res.hello.sni.len), SR_NAME_OK);
        memcpy(o.sni, res.hello.sni.ptr, res.hello.sni.len);
    } else {
        ASSERT_EQ(res.hello.sni.len, 0);
    }
    if (res.status == SR_QUIC_FOUND || res.status == SR_QUIC_NO_SNI) {
        ASSERT_EQ(res.hello.hello_len, st->hello_len);
        ASSERT_EQ(st->contig, st->hello_len);
        cur = res.hello.alpn;
        while (sr_hello_alpn_next(&cur, &proto)) {
            ASSERT_LT(n + proto.len + 2, sizeof(o.alpn));
            if (n > 0) {
                o.alpn[n++] = ',';
            }
            memcpy(o.alpn + n, proto.ptr, proto.len);
            n += proto.len;
        }
        ASSERT_EQ(cur.len, 0);
    }
    o.has_ech = res.hello.has_ech;
    if (res_out != NULL) {
        *res_out = res;
    }
    return o;
}

static bool
same(const struct outcome *a, const struct outcome *b)
{
    return a->status == b->status && a->reason == b->reason && a->hello_reason == b->hello_reason &&
           strcmp(a->sni, b->sni) == 0 && strcmp(a->alpn, b->alpn) == 0 && a->has_ech == b->has_ech;
}

static void
assert_same(const struct outcome *a, const struct outcome *b, const char *what)
{
    if (!same(a, b)) {
        SR_FAIL("%s: %s/%s sni=%s alpn=%s vs %s/%s sni=%s alpn=%s", what,
                sr_quic_status_str(a->status), sr_quic_reason_str(a->reason), a->sni, a->alpn,
                sr_quic_status_str(b->status), sr_quic_reason_str(b->reason), b->sni, b->alpn);
    }
}

static void
expect(const struct outcome *o, enum sr_quic_status status, enum sr_quic_reason reason,
       const char *what)
{
    if (o->status != status || o->reason != reason) {
        SR_FAIL("%s: got %s/%s, want %s/%s", what, sr_quic_status_str(o->status),
                sr_quic_reason_str(o->reason), sr_quic_status_str(status),
                sr_quic_reason_str(reason));
    }
}

/* The flow state a refused datagram must leave untouched: every field a feed may change,
 * and the CRYPTO bytes marked received. */
static void
assert_state_same(const struct sr_quic_initial *a, const struct sr_quic_initial *b,
                  const char *what)
{
    size_t i;

    if (a->version != b->version || a->dcid_len != b->dcid_len ||
        memcmp(a->dcid, b->dcid, sizeof(a->dcid)) != 0 || a->scid_len != b->scid_len ||
        memcmp(a->scid, b->scid, sizeof(a->scid)) != 0 || a->n_initial != b->n_initial ||
        a->contig != b->contig || a->hello_len != b->hello_len || a->crypto_end != b->crypto_end ||
        a->largest_pn != b->largest_pn || a->n_crypto_frames != b->n_crypto_frames ||
        a->n_crypto_out_of_order != b->n_crypto_out_of_order ||
        memcmp(a->have, b->have, sizeof(a->have)) != 0) {
        SR_FAIL("%s: the flow changed", what);
    }
    for (i = 0; i < sizeof(a->crypto); i++) {
        if ((a->have[i / 8] >> (i % 8)) & 1) {
            ASSERT_EQ(a->crypto[i], b->crypto[i]);
        }
    }
}

/* Feed datagrams in <order> to a fresh flow until one answers other than NEED_MORE. A refused
 * datagram must leave the flow as it was. */
static struct outcome
feed_all(const struct dgram *d, const size_t *order, size_t n, struct sr_quic_initial *st)
{
    static struct sr_quic_initial before;
    struct outcome o;
    size_t i;

    memset(&o, 0, sizeof(o));
    sr_quic_initial_init(st, 0);
    for (i = 0; i < n; i++) {
        before = *st;
        o = feed(st, d[order[i]].p, d[order[i]].len, NULL);
        if (o.status == SR_QUIC_MALFORMED || o.status == SR_QUIC_NOT_QUIC) {
            assert_state_same(st, &before, "feed_all");
        }
        if (o.status != SR_QUIC_NEED_MORE) {
            break;
        }
    }
    return o;
}

/* A packet inside a datagram, found by a walker independent of the reader. */
struct span {
    size_t start;
    size_t end;
    unsigned type; /* v1 numbering: 0 Initial, 1 0-RTT, 2 Handshake */
};

static bool
varint_at(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
    size_t n;
    size_t i;

    if (*pos >= len) {
        return false;
    }
    n = (size_t)1 << (p[*pos] >> 6);
    if (*pos + n > len) {
        return false;
    }
    *v = p[*pos] & 0x3f;
    for (i = 1; i < n; i++) {
        *v = *v << 8 | p[*pos + i];
    }
    *pos += n;
    return true;
}

/* The long header packets of a good datagram, until the first that does not parse. */
static size_t
walk_packets(const uint8_t *p, size_t len, struct span *sp, size_t cap)
{
    size_t pos = 0;
    size_t n = 0;

    while (pos + 7 <= len && (p[pos] & 0x80) != 0 && n < cap) {
        uint32_t version = (uint32_t)p[pos + 1] << 24 | (uint32_t)p[pos + 2] << 16 |
                           (uint32_t)p[pos + 3] << 8 | p[pos + 4];
        unsigned t = (p[pos] >> 4) & 3;
        size_t q = pos + 5;
        uint64_t v;

        if (version != SR_QUIC_V1 && version != SR_QUIC_V2) {
            break;
        }
        if (version == SR_QUIC_V2) {
            t = t == 0 ? 3 : t - 1;
        }
        q += 1 + p[q];
        if (q >= len) {
            break;
        }
        q += 1 + p[q];
        if (t == 0 && (!varint_at(p, len, &q, &v) || (q += v) > len)) {
            break;
        }
        if (t == 3 || !varint_at(p, len, &q, &v) || q + v > len) {
            break;
        }
        sp[n].start = pos;
        sp[n].end = q + v;
        sp[n].type = t;
        n++;
        pos = q + v;
    }
    return n;
}

static void
fill_random(struct sr_hellogen_random *rnd)
{
    uint8_t *p = (uint8_t *)rnd;
    size_t i;

    for (i = 0; i < sizeof(*rnd); i++) {
        p[i] = (uint8_t)(i * 7 + 3);
    }
}

static uint8_t *
unhex(const char *hex, size_t *len)
{
    size_t n = 0;
    uint8_t *out = malloc(strlen(hex) / 2 + 1);
    unsigned v;

    ASSERT(out != NULL);
    while (*hex != '\0') {
        if (*hex == ' ' || *hex == '\n') {
            hex++;
            continue;
        }
        ASSERT_EQ(sscanf(hex, "%2x", &v), 1);
        out[n++] = (uint8_t)v;
        hex += 2;
    }
    *len = n;
    return out;
}

static void
assert_hex(const uint8_t *p, size_t len, const char *hex, const char *what)
{
    size_t n;
    uint8_t *want = unhex(hex, &n);

    if (n != len || memcmp(p, want, n) != 0) {
        SR_FAIL("%s: bytes differ from the published ones", what);
    }
    free(want);
}

/* ---- RFC 9001 and RFC 9369 Appendix A ---------------------------------------------- */

static const uint8_t rfc_dcid[8] = {0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08};

/* RFC 9001 A.2 and RFC 9369 A.2: the same CRYPTO frame, then PADDING to 1162 bytes. */
static const char rfc_crypto_frame[] =
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868"
    "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578"
    "616d706c652e636f6dff01000100000a00080006001d00170018001000070005"
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba"
    "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400"
    "0d0010000e0403050306030203080408050806002d00020101001c0002400100"
    "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000"
    "75300901100f088394c8f03e51570806048000ffff";

/* RFC 9001 A.3: the server's Initial, 135 bytes. */
static const char rfc9001_server_initial[] =
    "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a"
    "5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3"
    "dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84"
    "022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4"
    "2158407dd074ee";

static void
test_keys(void)
{
    struct sr_quic_keys k;

    /* RFC 9001 A.1 */
    ASSERT(sr_quic_initial_keys(&ctx, SR_QUIC_V1, rfc_dcid, 8, false, &k));
    assert_hex(k.key, 16, "1f369613dd76d5467730efcbe3b1a22d", "v1 client key");
    assert_hex(k.iv, 12, "fa044b2f42a3fd3b46fb255c", "v1 client iv");
    assert_hex(k.hp, 16, "9f50449e04a0e810283a1e9933adedd2", "v1 client hp");
    ASSERT(sr_quic_initial_keys(&ctx, SR_QUIC_V1, rfc_dcid, 8, true, &k));
    assert_hex(k.key, 16, "cf3a5331653c364c88f0f379b6067e37", "v1 server key");
    assert_hex(k.iv, 12, "0ac1493ca1905853b0bba03e", "v1 server iv");
    assert_hex(k.hp, 16, "c206b8d9b9f0f37644430b490eeaa314", "v1 server hp");
    /* RFC 9369 A.1 */
    ASSERT(sr_quic_initial_keys(&ctx, SR_QUIC_V2, rfc_dcid, 8, false, &k));
    assert_hex(k.key, 16, "8b1a0bc121284290a29e0971b5cd045d", "v2 client key");
    assert_hex(k.iv, 12, "91f73e2351d8fa91660e909f", "v2 client iv");
    assert_hex(k.hp, 16, "45b95e15235d6f45a6b19cbcb0294ba9", "v2 client hp");
    ASSERT(sr_quic_initial_keys(&ctx, SR_QUIC_V2, rfc_dcid, 8, true, &k));
    assert_hex(k.key, 16, "82db637861d55e1d011f19ea71d5d2a7", "v2 server key");
    assert_hex(k.iv, 12, "dd13c276499c0249d3310652", "v2 server iv");
    assert_hex(k.hp, 16, "edf6d05c83121201b436e16877593c3a", "v2 server hp");
    /* Only v1 and v2 have keys. */
    ASSERT(!sr_quic_initial_keys(&ctx, 0xff00001d, rfc_dcid, 8, false, &k));
    ASSERT(!sr_quic_initial_keys(&ctx, 0x709a50c4, rfc_dcid, 8, false, &k));
}

static void
check_rfc_initial(const char *file, uint32_t version, const char *header)
{
    static struct sr_quic_initial st;
    static uint8_t built[1300];
    struct sr_quicgen_packet pk;
    struct sr_quic_result res;
    struct outcome o;
    struct dgram d[MAX_DGRAMS];
    uint8_t *payload;
    size_t frame_len;
    size_t len;
    uint8_t *buf = load_fixture(file, &len);
    size_t n = split_dgrams(buf, len, d);
    uint8_t *frame = unhex(rfc_crypto_frame, &frame_len);

    ASSERT_EQ(n, 1);
    ASSERT_EQ(d[0].len, 1200);
    sr_quic_initial_init(&st, 0);
    o = feed(&st, d[0].p, d[0].len, &res);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, file);
    ASSERT_STR_EQ(o.sni, "example.com");
    ASSERT_STR_EQ(o.alpn, "alpn");
    ASSERT_EQ(res.version, version);
    ASSERT_EQ(res.n_initial, 1);
    ASSERT_EQ(st.version, version);
    ASSERT_EQ(st.dcid_len, 8);
    ASSERT(memcmp(st.dcid, rfc_dcid, 8) == 0);
    ASSERT_EQ(st.scid_len, 0);
    ASSERT_EQ(st.largest_pn, 2);
    /* Decrypted to the published bytes: the reassembled stream is the frame's data, and the
     * plaintext left in the context's scratch (after the 22-byte header) is the frame and
     * 917 bytes of PADDING. */
    ASSERT_EQ(st.hello_len, 241);
    ASSERT_EQ(frame_len, 245);
    ASSERT(memcmp(st.crypto, frame + 4, 241) == 0);
    assert_hex(ctx.plain, 22, header, "unprotected header");
    ASSERT(memcmp(ctx.plain + 22, frame, frame_len) == 0);
    for (len = frame_len; len < 1162; len++) {
        ASSERT_EQ(ctx.plain[22 + len], 0);
    }

    /* The builder protects the same plaintext into the same packet, byte for byte. */
    payload = calloc(1162, 1);
    ASSERT(payload != NULL);
    memcpy(payload, frame, frame_len);
    memset(&pk, 0, sizeof(pk));
    pk.version = version;
    pk.type = SR_QUICGEN_INITIAL;
    pk.dcid = rfc_dcid;
    pk.dcid_len = 8;
    pk.pn = 2;
    pk.pn_len = 4;
    ASSERT_EQ(sr_quicgen_packet(&ctx, &pk, payload, 1162, 0, built, sizeof(built)), 1200);
    ASSERT(memcmp(built, d[0].p, 1200) == 0);
    /* Padded to a length instead of by hand: the same packet. */
    ASSERT_EQ(sr_quicgen_packet(&ctx, &pk, frame, frame_len, 1200, built, sizeof(built)), 1200);
    ASSERT(memcmp(built, d[0].p, 1200) == 0);
    printf("%-28s RFC vector: keys, header, plaintext and rebuilt packet match\n", file);
    free(payload);
    free(frame);
    free(buf);
}

static void
test_rfc_vectors(void)
{
    static struct sr_quic_initial st;
    struct outcome o;
    size_t len;
    uint8_t *server = unhex(rfc9001_server_initial, &len);

    check_rfc_initial("rfc9001-a2.bin", SR_QUIC_V1, "c300000001088394c8f03e5157080000449e00000002");
    check_rfc_initial("rfc9369-a2.bin", SR_QUIC_V2, "d36b3343cf088394c8f03e5157080000449e00000002");

    /* The server's Initial (A.3) is no client's first datagram: too small to carry one. */
    ASSERT_EQ(len, 135);
    sr_quic_initial_init(&st, 0);
    o = feed(&st, server, len, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_SMALL_DATAGRAM, "RFC 9001 A.3");
    free(server);
}

/* ---- fixtures: every way of feeding them must agree -------------------------------- */

struct fixture {
    const char *file;
    size_t n_dgrams;
    size_t n_needed; /* datagrams, in order, until the answer (later ones: retransmissions) */
    enum sr_quic_status status;
    enum sr_quic_reason reason;
    const char *sni;
    const char *alpn;
    bool has_ech;
    unsigned n_initial; /* Initial packets in the datagrams needed */
    unsigned n_skipped; /* 0-RTT packets in them */
};

#define FOUND  SR_QUIC_FOUND, SR_QUIC_REASON_NONE
#define NO_SNI SR_QUIC_NO_SNI, SR_QUIC_REASON_NONE

static const struct fixture fixtures[] = {
    /* file                       dgrams  needed  answer  sni  alpn  ech  Initials  0-RTT */
    {"rfc9001-a2.bin", 1, 1, FOUND, "example.com", "alpn", false, 1, 0},
    {"rfc9369-a2.bin", 1, 1, FOUND, "example.com", "alpn", false, 1, 0},
    {"gtlsclient-v1.bin", 1, 1, FOUND, "quic.example", "h3", false, 1, 0},
    {"gtlsclient-ffdhe8192.bin", 2, 2, FOUND, "ffdhe.example", "h3", false, 2, 0},
    {"gtlsclient-0rtt.bin", 1, 1, FOUND, "zerortt.example", "h3", false, 1, 1},
    {"gtlsclient-v2draft.bin", 1, 1, SR_QUIC_NOT_QUIC, SR_QUIC_REASON_VERSION, "", "", false, 0, 0},
    {"chromium-pq.bin", 3, 2, FOUND, "quic.example", "h3", true, 2, 0},
    {"chromium-ip-nosni.bin", 3, 2, NO_SNI, "", "h3", true, 2, 0},
};

/* Each datagram truncated to every length, alone and zero-padded back to its size, after
 * the datagrams before it: never a verdict but the right one, and a FOUND only once every
 * Initial of the datagram is whole. All fed to one flow, which the refused ones must not
 * change; then the whole datagram must still give <want>. */
static void
check_truncated(const struct dgram *d, size_t n, const struct outcome *want, unsigned *count)
{
    static struct sr_quic_initial st;
    static struct sr_quic_initial before;
    static uint8_t padded[SR_QUIC_MAX_DATAGRAM];
    struct span sp[8];
    struct outcome o;
    size_t order[MAX_DGRAMS];
    size_t i;
    size_t j;
    size_t k;

    for (j = 0; j < n; j++) {
        size_t n_sp = walk_packets(d[j].p, d[j].len, sp, 8);
        size_t initials_end = 0;

        for (i = 0; i < n_sp; i++) {
            if (sp[i].type == 0) {
                initials_end = sp[i].end;
            }
        }
        for (i = 0; i < j; i++) {
            order[i] = i;
        }
        o = feed_all(d, order, j, &st);
        for (k = 0; k < d[j].len; k++) {
            int pad;
            for (pad = 0; pad < 2; pad++) {
                size_t len = pad ? d[j].len : k;
                memset(padded, 0, d[j].len);
                memcpy(padded, d[j].p, k);
                before = st;
                o = feed(&st, padded, len, NULL);
                if (o.status == SR_QUIC_FOUND || o.status == SR_QUIC_NO_SNI) {
                    assert_same(&o, want, "truncated");
                    ASSERT_GE(k, initials_end);
                    ASSERT_EQ(pad, 1);
                } else if (o.status != SR_QUIC_NEED_MORE) {
                    assert_state_same(&st, &before, "truncated");
                    if (!pad && k > 0) {
                        ASSERT(o.status == SR_QUIC_MALFORMED || o.status == SR_QUIC_NOT_QUIC);
                    }
                    count[0]++;
                } else {
                    count[1]++;
                }
            }
        }
        o = feed(&st, d[j].p, d[j].len, NULL);
        if (j + 1 == n) {
            assert_same(&o, want, "whole after its truncations");
        }
    }
}

/* Every byte of each datagram flipped (three ways), after the datagrams before it: inside
 * an Initial packet never a FOUND or NO_SNI (everything there is authenticated or decides
 * the keys); outside (0-RTT, junk) the answer must not change. */
static void
check_flipped(const struct dgram *d, size_t n, const struct outcome *want, unsigned *count)
{
    static const uint8_t flips[] = {0x01, 0x40, 0x80};
    static struct sr_quic_initial base;
    static struct sr_quic_initial st;
    static uint8_t m[SR_QUIC_MAX_DATAGRAM];
    struct span sp[8];
    struct outcome whole;
    struct outcome o;
    size_t order[MAX_DGRAMS];
    size_t i;
    size_t j;
    size_t p;
    size_t f;

    for (j = 0; j < n; j++) {
        size_t n_sp = walk_packets(d[j].p, d[j].len, sp, 8);

        for (i = 0; i < j; i++) {
            order[i] = i;
        }
        (void)feed_all(d, order, j, &base);
        st = base;
        whole = feed(&st, d[j].p, d[j].len, NULL);
        if (j + 1 == n) {
            assert_same(&whole, want, "whole");
        }
        for (p = 0; p < d[j].len; p++) {
            bool in_initial = false;

            for (i = 0; i < n_sp; i++) {
                in_initial |= sp[i].type == 0 && p >= sp[i].start && p < sp[i].end;
            }
            for (f = 0; f < sizeof(flips); f++) {
                memcpy(m, d[j].p, d[j].len);
                m[p] ^= flips[f];
                st = base;
                o = feed(&st, m, d[j].len, NULL);
                if (in_initial) {
                    if (o.status == SR_QUIC_FOUND || o.status == SR_QUIC_NO_SNI) {
                        SR_FAIL("byte %zu of datagram %zu flipped by 0x%02x: %s", p, j, flips[f],
                                sr_quic_status_str(o.status));
                    }
                    count[o.status == SR_QUIC_NEED_MORE ? 1 : 0]++;
                } else if (whole.status == SR_QUIC_NOT_QUIC) { /* no packet was read */
                    ASSERT(o.status == SR_QUIC_NOT_QUIC || o.status == SR_QUIC_MALFORMED);
                } else {
                    assert_same(&o, &whole, "flipped outside the Initials");
                    count[2]++;
                }
            }
        }
    }
}

static void
test_fixtures(void)
{
    static struct sr_quic_initial st;
    static uint8_t split[MAX_DGRAMS * 4][SR_QUIC_MIN_INITIAL_DATAGRAM + 1500];
    unsigned trunc[2] = {0, 0};
    unsigned flip[3] = {0, 0, 0};
    size_t i;

    for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
        const struct fixture *fx = &fixtures[i];
        struct dgram d[MAX_DGRAMS];
        struct dgram per_packet[MAX_DGRAMS * 4];
        struct sr_quic_result res;
        struct outcome want;
        struct outcome o;
        struct span sp[8];
        size_t order[MAX_DGRAMS * 4];
        size_t len;
        size_t n_pp = 0;
        size_t j;
        size_t k;
        unsigned n_initial = 0;
        unsigned n_skipped = 0;
        uint8_t *buf = load_fixture(fx->file, &len);
        size_t n = split_dgrams(buf, len, d);

        ASSERT_EQ(n, fx->n_dgrams);
        memset(&want, 0, sizeof(want));
        want.status = fx->status;
        want.reason = fx->reason;
        snprintf(want.sni, sizeof(want.sni), "%s", fx->sni);
        snprintf(want.alpn, sizeof(want.alpn), "%s", fx->alpn);
        want.has_ech = fx->has_ech;

        /* In order, counting packets: the answer comes with datagram <n_needed> and stays
         * (what follows is retransmitted); then reversed; then each datagram twice. */
        sr_quic_initial_init(&st, 0);
        for (j = 0; j < n; j++) {
            o = feed(&st, d[j].p, d[j].len, &res);
            if (j + 1 < fx->n_needed) {
                expect(&o, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "before the answer");
            } else {
                assert_same(&o, &want, fx->file);
            }
            if (j < fx->n_needed) {
                n_initial += res.n_initial;
                n_skipped += res.n_skipped;
            }
        }
        ASSERT_EQ(n_initial, fx->n_initial);
        ASSERT_EQ(n_skipped, fx->n_skipped);
        if (fx->reason == SR_QUIC_REASON_VERSION) {
            ASSERT_EQ(res.version, 0x709a50c4); /* ngtcp2's "v2draft": the provisional draft
                                                   codepoint, not RFC 9369's */
        }
        for (j = 0; j < n; j++) {
            order[j] = n - 1 - j;
        }
        o = feed_all(d, order, n, &st);
        assert_same(&o, &want, "reversed");
        for (j = 0; j < 2 * n; j++) {
            order[j] = j / 2;
        }
        o = feed_all(d, order, 2 * n, &st);
        assert_same(&o, &want, "each twice");

        /* Packet by packet, each in its own datagram, zero-padded to 1200 like a client
         * pads a short datagram (RFC 9000 14.1 allows junk after the packets). */
        for (j = 0; j < n; j++) {
            size_t n_sp = walk_packets(d[j].p, d[j].len, sp, 8);
            for (k = 0; k < n_sp; k++) {
                size_t plen = sp[k].end - sp[k].start;
                ASSERT_LE(plen, sizeof(split[0]));
                memset(split[n_pp], 0, sizeof(split[0]));
                memcpy(split[n_pp], d[j].p + sp[k].start, plen);
                per_packet[n_pp].p = split[n_pp];
                per_packet[n_pp].len = plen < 1200 ? 1200 : plen;
                order[n_pp] = n_pp;
                n_pp++;
            }
        }
        if (fx->status != SR_QUIC_NOT_QUIC) {
            o = feed_all(per_packet, order, n_pp, &st);
            assert_same(&o, &want, "packet by packet");
        }

        /* Only up to the answer: after it, any datagram yields the flow's answer. */
        check_truncated(d, fx->n_needed, &want, trunc);
        check_flipped(d, fx->n_needed, &want, flip);
        printf("%-28s %zu datagram(s): %s %s, in order, reversed, twice, by packet\n", fx->file, n,
               sr_quic_status_str(o.status),
               o.status == SR_QUIC_NOT_QUIC ? sr_quic_reason_str(o.reason) : o.sni);
        free(buf);
    }
    printf("truncated datagrams: %u refused, %u need more; flipped bytes: %u refused, %u need "
           "more inside Initials, %u unchanged outside, 0 wrong answers\n",
           trunc[0], trunc[1], flip[0], flip[1], flip[2]);
}

/* ---- builder flights: the hard shapes, every datagram order ------------------------ */

static bool
next_permutation(size_t *a, size_t n)
{
    size_t i;
    size_t j;

    if (n < 2) {
        return false;
    }
    i = n - 1;
    while (i > 0 && a[i - 1] >= a[i]) {
        i--;
    }
    if (i == 0) {
        return false;
    }
    j = n - 1;
    while (a[j] <= a[i - 1]) {
        j--;
    }
    {
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
    for (j = n - 1; i < j; i++, j--) {
        size_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    return true;
}

struct shape {
    const char *what;
    struct sr_quicgen_flight fl;
};

static const uint8_t dcid_a[] = {0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda};
static const uint8_t dcid_b[] = {0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7};
static const uint8_t scid_c[] = {0xc0, 0xc1, 0xc2, 0xc3};

static const struct shape shapes[] = {
    {"one frame per packet", {.n_frames = 1}},
    {"scid, three frames", {.scid = scid_c, .scid_len = 4, .n_frames = 3}},
    {"chrome-like: shuffled, PING and PADDING",
     {.n_frames = 7, .shuffle_seed = 7, .ping_padding = true}},
    {"shuffled over packets of 300", {.n_frames = 9, .shuffle_seed = 3, .packet_room = 300}},
    {"two Initials per datagram", {.n_frames = 6, .packet_room = 400, .per_datagram = 2}},
    {"overlapping, shuffled",
     {.n_frames = 11, .overlap = 17, .shuffle_seed = 99, .packet_room = 500}},
    {"with 0-RTT", {.n_frames = 2, .zero_rtt = true, .datagram_len = 1350}},
    {"tiny frames, shuffled",
     {.n_frames = 60,
      .shuffle_seed = 12345,
      .ping_padding = true,
      .packet_room = 700,
      .per_datagram = 2,
      .zero_rtt = true}},
    {"400 frames of 3 or 4 bytes",
     {.n_frames = 400, .shuffle_seed = 5, .packet_room = 2000, .datagram_len = 2100}},
};

static void
test_flights(void)
{
    static uint8_t hello[8192];
    static uint8_t out[65536];
    static struct sr_quic_initial st;
    struct sr_hellogen_random rnd;
    struct sr_hellogen_opts ho;
    size_t ends[SR_QUICGEN_MAX_DATAGRAMS];
    unsigned orders = 0;
    size_t h;
    size_t s;
    int v;

    fill_random(&rnd);
    for (h = 0; h < 3; h++) {
        size_t hello_len;

        memset(&ho, 0, sizeof(ho));
        ho.name = h == 2 ? "big.example" : "flight.example";
        ho.name_len = strlen(ho.name);
        ho.alpn = "h3";
        ho.has_pq_share = h >= 1; /* X25519MLKEM768: 1.4 KB, two Initials as in Chrome */
        ho.target_len = h == 2 ? 6000 : 0;
        ho.rnd = &rnd;
        hello_len = sr_hellogen_message(hello, sizeof(hello), &ho);
        ASSERT_GT(hello_len, 0);

        for (v = 0; v < 2; v++) {
            for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
                struct sr_quicgen_flight fl = shapes[s].fl;

                fl.dcid = dcid_a; /* every shape, from the client's one connection ID */
                fl.dcid_len = sizeof(dcid_a);
                struct dgram d[SR_QUICGEN_MAX_DATAGRAMS];
                size_t order[SR_QUICGEN_MAX_DATAGRAMS];
                struct outcome o;
                size_t n = 0;
                size_t len;
                size_t j;

                fl.version = v ? SR_QUIC_V2 : SR_QUIC_V1;
                len = sr_quicgen_flight_build(&ctx, &fl, hello, hello_len, out, sizeof(out), ends,
                                              SR_QUICGEN_MAX_DATAGRAMS, &n);
                if (len == 0) {
                    SR_FAIL("hello %zu, %s: the builder refused", h, shapes[s].what);
                }
                for (j = 0; j < n; j++) {
                    d[j].p = out + (j ? ends[j - 1] : 0);
                    d[j].len = ends[j] - (j ? ends[j - 1] : 0);
                    ASSERT_GE(d[j].len, fl.datagram_len ? fl.datagram_len : 1200);
                    order[j] = j;
                }
                /* Every order for up to 5 datagrams, else in order, reversed and rotated. */
                do {
                    o = feed_all(d, order, n, &st);
                    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, shapes[s].what);
                    ASSERT_STR_EQ(o.sni, ho.name);
                    ASSERT_STR_EQ(o.alpn, "h3");
                    ASSERT_EQ(st.version, fl.version);
                    ASSERT_EQ(st.hello_len, hello_len);
                    ASSERT(memcmp(st.crypto, hello, hello_len) == 0);
                    orders++;
                } while (n <= 5 && next_permutation(order, n));
                if (n > 5) {
                    for (j = 0; j < n; j++) {
                        order[j] = n - 1 - j;
                    }
                    o = feed_all(d, order, n, &st);
                    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "reversed");
                    for (j = 0; j < n; j++) {
                        order[j] = (j + n / 2) % n;
                    }
                    o = feed_all(d, order, n, &st);
                    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "rotated");
                    orders += 2;
                }
                if (h == 1) {
                    printf("%-44s v%d: %zu datagram(s), %zu bytes\n", shapes[s].what, v + 1, n,
                           len);
                }
            }
        }
    }
    printf("builder flights: %u datagram orders, all found\n", orders);
}

/* ---- pinned shapes --------------------------------------------------------------------- */

static uint8_t hello_buf[4096];
static size_t hello_len;

/* One Initial carrying <frames>, padded to <min_len>, from DCID dcid_a, v1, packet number
 * <pn> in 2 bytes. */
static size_t
initial(uint8_t *out, const uint8_t *frames, size_t n, size_t min_len, uint64_t pn)
{
    struct sr_quicgen_packet pk;
    size_t len;

    memset(&pk, 0, sizeof(pk));
    pk.version = SR_QUIC_V1;
    pk.type = SR_QUICGEN_INITIAL;
    pk.dcid = dcid_a;
    pk.dcid_len = sizeof(dcid_a);
    pk.pn = pn;
    pk.pn_len = 2;
    len = sr_quicgen_packet(&ctx, &pk, frames, n, min_len, out, 65536);
    ASSERT_GT(len, 0);
    return len;
}

/* CRYPTO frame for hello bytes [off, off + n). */
static size_t
crypto(uint8_t *out, size_t off, size_t n)
{
    size_t len = sr_quicgen_crypto_frame(out, 8192, off, hello_buf + off, n);
    ASSERT_GT(len, 0);
    return len;
}

static struct outcome
fresh(const uint8_t *p, size_t len, struct sr_quic_result *res)
{
    static struct sr_quic_initial st;
    sr_quic_initial_init(&st, 0);
    return feed(&st, p, len, res);
}

static void
test_not_quic(void)
{
    static uint8_t d[1300];
    struct sr_quic_result res;
    struct outcome o;

    memset(d, 0, sizeof(d));
    o = fresh(d, 0, NULL);
    expect(&o, SR_QUIC_NOT_QUIC, SR_QUIC_REASON_TRUNCATED, "empty");
    memcpy(d, "\x12\x34\x01\x00\x00\x01", 6); /* a DNS query */
    o = fresh(d, 40, NULL);
    expect(&o, SR_QUIC_NOT_QUIC, SR_QUIC_REASON_SHORT_HEADER, "DNS");
    d[0] = 0x41; /* a QUIC short header: no connection to start */
    o = fresh(d, 1200, NULL);
    expect(&o, SR_QUIC_NOT_QUIC, SR_QUIC_REASON_SHORT_HEADER, "short header");
    memcpy(d, "\xc0\x00\x00\x00", 4);
    o = fresh(d, 4, NULL);
    expect(&o, SR_QUIC_NOT_QUIC, SR_QUIC_REASON_TRUNCATED, "4 bytes");
    memcpy(d, "\xc0\xff\x00\x00\x1d\x08", 6); /* draft-29, as old Chrome sent */
    o = fresh(d, 1200, &res);
    expect(&o, SR_QUIC_NOT_QUIC, SR_QUIC_REASON_VERSION, "draft-29");
    ASSERT_EQ(res.version, 0xff00001d);
    memcpy(d, "\xca\x1a\x2a\x3a\x4a\x08", 6); /* a reserved version, forcing negotiation */
    o = fresh(d, 1200, &res);
    expect(&o, SR_QUIC_NOT_QUIC, SR_QUIC_REASON_VERSION, "0x1a2a3a4a");
    ASSERT_EQ(res.version, 0x1a2a3a4a);
    /* The cheap first look agrees: none of these starts an Initial. */
    ASSERT(!sr_quic_starts_initial(d, 4));
    ASSERT(!sr_quic_starts_initial(d, 1200));
    memcpy(d, "\xc0\x00\x00\x00\x01", 5); /* v1 Initial */
    ASSERT(sr_quic_starts_initial(d, 5));
    d[0] = 0xd0; /* v1 0-RTT */
    ASSERT(!sr_quic_starts_initial(d, 1200));
    d[0] = 0x40; /* short header */
    ASSERT(!sr_quic_starts_initial(d, 1200));
    memcpy(d, "\xd0\x6b\x33\x43\xcf", 5); /* v2 Initial: type 1 */
    ASSERT(sr_quic_starts_initial(d, 1200));
    d[0] = 0xc0; /* v2 Retry */
    ASSERT(!sr_quic_starts_initial(d, 1200));
}

static void
test_headers(void)
{
    static uint8_t d[70000];
    static uint8_t f[2048];
    struct outcome o;
    size_t n;
    size_t len;

    memset(d, 0, sizeof(d));
    memcpy(d, "\xc0\x00\x00\x00\x00\x08", 6);
    o = fresh(d, 1200, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_VERSION_NEGOTIATION, "version 0");
    memcpy(d, "\xf0\x00\x00\x00\x01\x08", 6); /* v1 type 3 */
    o = fresh(d, 1200, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_RETRY, "v1 Retry");
    memcpy(d, "\xc0\x6b\x33\x43\xcf\x08", 6); /* v2 type 0 */
    o = fresh(d, 1200, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_RETRY, "v2 Retry");
    memcpy(d, "\xc0\x00\x00\x00\x01\x15", 6); /* DCID of 21 bytes */
    o = fresh(d, 1200, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_CID_LENGTH, "dcid 21");
    d[5] = 8;
    d[14] = 21; /* SCID of 21 bytes */
    o = fresh(d, 1200, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_CID_LENGTH, "scid 21");
    o = fresh(d, 10, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_HEADER, "truncated in the dcid");
    d[14] = 0;
    d[15] = 0x44; /* token length 0x4b0 = 1200: past the datagram */
    d[16] = 0xb0;
    o = fresh(d, 1200, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_HEADER, "token");
    d[15] = 0;
    d[16] = 0x44; /* Length 0x4b0 = 1200: past the datagram */
    d[17] = 0xb0;
    o = fresh(d, 1200, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_PACKET_LENGTH, "length");
    d[16] = 0x40; /* Length 19 fits, but cannot hold a sample after a 4-byte packet number */
    d[17] = 19;
    o = fresh(d, 1200, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_PACKET_SHORT, "length 19");
    o = fresh(d, 65528, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_LARGE_DATAGRAM, "65528 bytes");

    /* A good packet, then the shapes around it. */
    n = crypto(f, 0, hello_len);
    len = initial(d, f, n, 1200, 0);
    o = fresh(d, len, NULL);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "good");
    o = fresh(d, len - 1, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_PACKET_LENGTH, "one byte short");
    d[len - 1] ^= 1;
    o = fresh(d, len, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_DECRYPT, "tag");
    len = initial(d, f, n, 0, 0); /* unpadded: RFC 9000 14.1 */
    ASSERT_LT(len, 1200);
    o = fresh(d, len, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_SMALL_DATAGRAM, "small datagram");
    memset(d + len, 0, 1200 - len); /* zeros after it: a client may pad the datagram so */
    o = fresh(d, 1200, NULL);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "padded after the packet");
    memset(d + len, 0xc3, 1200 - len); /* junk that looks like a long header */
    o = fresh(d, 1200, NULL);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "junk after the packet");
}

/* Packet fields through the builder: DCID length, token, packet numbers, reserved bits, an
 * empty payload, and the keys of a second DCID. */
static void
test_packets(void)
{
    static uint8_t d[4096];
    static uint8_t f[2048];
    static struct sr_quic_initial st;
    static const uint8_t token[50] = {1, 2, 3};
    struct sr_quicgen_packet pk;
    struct sr_quic_result res;
    struct outcome o;
    size_t n = crypto(f, 0, hello_len);
    size_t len;
    size_t pn_len;

    memset(&pk, 0, sizeof(pk));
    pk.version = SR_QUIC_V1;
    pk.type = SR_QUICGEN_INITIAL;
    pk.dcid = dcid_a;
    pk.dcid_len = 7;
    pk.pn_len = 1;
    len = sr_quicgen_packet(&ctx, &pk, f, n, 1200, d, sizeof(d));
    o = fresh(d, len, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_DCID_SHORT, "dcid 7");

    pk.dcid_len = 8;
    pk.token = token;
    pk.token_len = sizeof(token);
    for (pn_len = 1; pn_len <= 4; pn_len++) {
        pk.pn_len = pn_len;
        pk.pn = pn_len == 1 ? 0 : pn_len == 2 ? 40000 : 0x123456;
        len = sr_quicgen_packet(&ctx, &pk, f, n, 1200, d, sizeof(d));
        sr_quic_initial_init(&st, 0);
        o = feed(&st, d, len, NULL);
        expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "packet number lengths, token");
        ASSERT_EQ(st.largest_pn, (int64_t)pk.pn);
    }

    /* Packet numbers recovered from one byte against the largest seen (RFC 9000 A.3):
     * 254, then 256 sent as 0x00, then a late 250 sent as 0xfa. Decryption proves each. */
    {
        static const uint64_t pns[3] = {254, 256, 250};
        size_t part = hello_len / 3;
        size_t i;

        sr_quic_initial_init(&st, 0);
        pk.pn_len = 1;
        pk.token_len = 0;
        for (i = 0; i < 3; i++) {
            size_t off = i * part;
            size_t m = crypto(f, off, i == 2 ? hello_len - off : part);

            pk.pn = pns[i]; /* its low byte on the wire, all of it in the nonce */
            len = sr_quicgen_packet(&ctx, &pk, f, m, 1200, d, sizeof(d));
            o = feed(&st, d, len, NULL);
            expect(&o, i == 2 ? SR_QUIC_FOUND : SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE,
                   "packet number recovery");
        }
        ASSERT_EQ(st.largest_pn, 256);
        pk.token = token;
        pk.token_len = sizeof(token);
    }

    pk.reserved_bits = 0x08;
    len = sr_quicgen_packet(&ctx, &pk, f, n, 1200, d, sizeof(d));
    o = fresh(d, len, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_RESERVED_BITS, "reserved bits");
    pk.reserved_bits = 0;

    pk.pn_len = 4; /* 4 bytes of packet number, no payload: nothing but the tag */
    len = sr_quicgen_packet(&ctx, &pk, f, 0, 0, d, sizeof(d));
    memset(d + len, 0, 1200 - len);
    o = fresh(d, 1200, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_PACKET_SHORT, "no frame");

    /* A 0-RTT or Handshake packet alone: nothing to read yet. */
    pk.type = SR_QUICGEN_0RTT;
    len = sr_quicgen_packet(&ctx, &pk, f, n, 1200, d, sizeof(d));
    o = fresh(d, len, &res);
    expect(&o, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "0-RTT alone");
    ASSERT_EQ(res.n_initial, 0);
    ASSERT_EQ(res.n_skipped, 1);
    pk.type = SR_QUICGEN_HANDSHAKE;
    pk.version = SR_QUIC_V2;
    len = sr_quicgen_packet(&ctx, &pk, f, n, 1200, d, sizeof(d));
    o = fresh(d, len, &res);
    expect(&o, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "v2 Handshake alone");
    ASSERT_EQ(res.n_skipped, 1);
}

static void
test_frames(void)
{
    static uint8_t d[4096];
    static uint8_t f[2048];
    struct sr_quic_result res;
    struct outcome o;
    size_t n;
    size_t len;
    static const struct {
        const char *bytes;
        size_t n;
        enum sr_quic_status status;
        enum sr_quic_reason reason;
        const char *what;
    } cases[] = {
        {"\x08\x00\x00", 3, SR_QUIC_MALFORMED, SR_QUIC_REASON_FRAME_TYPE, "STREAM"},
        {"\x07\x01\x00", 3, SR_QUIC_MALFORMED, SR_QUIC_REASON_FRAME_TYPE, "NEW_TOKEN"},
        {"\x1d\x00\x00", 3, SR_QUIC_MALFORMED, SR_QUIC_REASON_FRAME_TYPE, "app CONNECTION_CLOSE"},
        {"\x1e", 1, SR_QUIC_MALFORMED, SR_QUIC_REASON_FRAME_TYPE, "HANDSHAKE_DONE"},
        {"\x40\x01", 2, SR_QUIC_MALFORMED, SR_QUIC_REASON_FRAME_TYPE, "PING in two bytes"},
        {"\x06\x00\x50\x00", 4, SR_QUIC_MALFORMED, SR_QUIC_REASON_FRAME, "CRYPTO past packet"},
        {"\x06\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10, SR_QUIC_MALFORMED, SR_QUIC_REASON_FRAME,
         "CRYPTO past 2^62"},
        {"\x06\x80\x00\x3f\xff\x02\x01\x01", 8, SR_QUIC_MALFORMED, SR_QUIC_REASON_TOO_LARGE,
         "CRYPTO [16383, 16385)"},
        {"\x06\x80\x00\x3f\xff\x01\x01", 7, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE,
         "CRYPTO [16383, 16384)"},
        {"\x06\x7f\xff\x00", 4, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "empty CRYPTO far out"},
        {"\x02\x05\x00\x00\x06", 5, SR_QUIC_MALFORMED, SR_QUIC_REASON_FRAME, "ACK below 0"},
        {"\x02\x05\x00\x01\x01\x02\x01", 7, SR_QUIC_MALFORMED, SR_QUIC_REASON_FRAME,
         "ACK gap below 0"},
        {"\x02\x05\x00\x01\x01\x00\x02", 7, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "ACK 5-4, 2-0"},
        {"\x02\x05\x00\x01\x01\x00\x03", 7, SR_QUIC_MALFORMED, SR_QUIC_REASON_FRAME,
         "ACK range below 0"},
        {"\x03\x05\x00\x00\x00\x01\x02\x03", 8, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE,
         "ACK with ECN counts"},
        {"\x1c\x0a\x00\x03"
         "bye",
         7, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "CONNECTION_CLOSE"},
        {"\x1c\x0a\x00\x50\x00", 5, SR_QUIC_MALFORMED, SR_QUIC_REASON_FRAME,
         "CONNECTION_CLOSE reason past packet"},
        {"\x01\x00\x01", 3, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "PING, PADDING, PING"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(f, cases[i].bytes, cases[i].n);
        len = initial(d, f, cases[i].n, 1200, 0);
        o = fresh(d, len, &res);
        expect(&o, cases[i].status, cases[i].reason, cases[i].what);
        ASSERT_EQ(res.has_close, cases[i].bytes[0] == 0x1c && o.status == SR_QUIC_NEED_MORE);
    }

    /* A frame error after the ClientHello's CRYPTO frame still refuses the datagram. */
    n = crypto(f, 0, hello_len);
    f[n++] = 0x08;
    len = initial(d, f, n, 1200, 0);
    o = fresh(d, len, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_FRAME_TYPE, "STREAM after the hello");

    /* CONNECTION_CLOSE beside the hello: found, and the caller learns the client gave up. */
    n = crypto(f, 0, hello_len);
    memcpy(f + n, "\x1c\x00\x00\x00", 4);
    len = initial(d, f, n + 4, 1200, 0);
    o = fresh(d, len, &res);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "hello and CONNECTION_CLOSE");
    ASSERT(res.has_close);
}

/* The CRYPTO stream across datagrams: changed bytes, bytes past the hello, size limits, a
 * malformed hello seen early, a second DCID as after a Retry, and v1 beside v2. */
static void
test_stream(void)
{
    static uint8_t d1[4096];
    static uint8_t d2[4096];
    static uint8_t f[4096];
    static struct sr_quic_initial st;
    static struct sr_quic_initial before;
    static const uint8_t retry_token[] = "a token from a Retry";
    struct sr_quicgen_packet pk;
    struct sr_quic_result res;
    struct outcome o;
    size_t l1;
    size_t l2;
    size_t n;

    /* [0, 100) then [50, hello_len) with one byte changed in the overlap: refused, the flow
     * as before; then the right bytes complete it. */
    n = crypto(f, 0, 100);
    l1 = initial(d1, f, n, 1200, 0);
    sr_quic_initial_init(&st, 0);
    o = feed(&st, d1, l1, NULL);
    expect(&o, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "first 100 bytes");
    ASSERT_EQ(st.contig, 100);
    ASSERT_EQ(st.hello_len, hello_len);
    n = crypto(f, 50, hello_len - 50);
    f[1 + 1 + 2 + 10] ^= 0xff; /* type, offset, 2-byte length: data byte 60 */
    l2 = initial(d2, f, n, 1200, 1);
    before = st;
    o = feed(&st, d2, l2, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_CRYPTO_CHANGED, "changed overlap");
    assert_state_same(&st, &before, "changed overlap");
    n = crypto(f, 50, hello_len - 50);
    l2 = initial(d2, f, n, 1200, 1);
    o = feed(&st, d2, l2, NULL);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "right overlap");
    ASSERT_EQ(st.n_initial, 2);

    /* [100, 200), then [0, 150) changed at 120: bytes 0 to 99 were new when the conflict
     * came, and must be forgotten with the rest. */
    n = crypto(f, 100, 100);
    l1 = initial(d1, f, n, 1200, 0);
    sr_quic_initial_init(&st, 0);
    o = feed(&st, d1, l1, NULL);
    expect(&o, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "[100, 200)");
    n = crypto(f, 0, 150);
    f[1 + 1 + 2 + 120] ^= 0x20; /* type, offset, 2-byte length: data byte 120 */
    l2 = initial(d2, f, n, 1200, 1);
    before = st;
    o = feed(&st, d2, l2, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_CRYPTO_CHANGED, "changed after new bytes");
    assert_state_same(&st, &before, "changed after new bytes");
    ASSERT_EQ(st.contig, 0);

    /* A datagram whose first Initial is good and whose second fails: taken not at all. */
    n = crypto(f, 0, 100);
    l1 = initial(d1, f, n, 0, 0);
    n = crypto(f, 100, hello_len - 100);
    l2 = initial(d1 + l1, f, n, 1200 - l1, 1);
    sr_quic_initial_init(&st, 0);
    o = feed(&st, d1, l1 + l2, &res);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "two Initials in one datagram");
    ASSERT_EQ(res.n_initial, 2);
    d1[l1 + l2 - 1] ^= 1;
    sr_quic_initial_init(&st, 0);
    before = st;
    o = feed(&st, d1, l1 + l2, &res);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_DECRYPT, "second Initial corrupt");
    assert_state_same(&st, &before, "second Initial corrupt");
    ASSERT_EQ(st.n_initial, 0);
    ASSERT_EQ(st.version, 0);

    /* The second Initial under another DCID in the same datagram is not read (RFC 9000
     * 12.2), though it is a valid packet. */
    memset(&pk, 0, sizeof(pk));
    pk.version = SR_QUIC_V1;
    pk.type = SR_QUICGEN_INITIAL;
    pk.dcid = dcid_b;
    pk.dcid_len = sizeof(dcid_b);
    pk.pn = 1;
    pk.pn_len = 1;
    n = crypto(f, 0, 100);
    l1 = initial(d1, f, n, 0, 0);
    n = crypto(f, 100, hello_len - 100);
    l2 = sr_quicgen_packet(&ctx, &pk, f, n, 1200 - l1, d1 + l1, sizeof(d1) - l1);
    sr_quic_initial_init(&st, 0);
    o = feed(&st, d1, l1 + l2, &res);
    expect(&o, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "other DCID coalesced");
    ASSERT_EQ(res.n_initial, 1);

    /* The same packet in its own datagram: a new DCID with a token, as after a Retry. Its
     * own keys read it; the flow keeps the original DCID. */
    pk.token = retry_token;
    pk.token_len = sizeof(retry_token);
    l2 = sr_quicgen_packet(&ctx, &pk, f, n, 1200, d2, sizeof(d2));
    o = feed(&st, d2, l2, &res);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "second DCID");
    ASSERT_EQ(st.dcid_len, sizeof(dcid_a));
    ASSERT(memcmp(st.dcid, dcid_a, sizeof(dcid_a)) == 0);

    /* v2 for the rest of a stream begun in v1: each packet by its own version. */
    pk.version = SR_QUIC_V2;
    pk.token_len = 0;
    l2 = sr_quicgen_packet(&ctx, &pk, f, n, 1200, d2, sizeof(d2));
    sr_quic_initial_init(&st, 0);
    o = feed(&st, d1, l1 + 0, NULL); /* d1's first packet alone is under 1200 bytes */
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_SMALL_DATAGRAM, "alone");
    memset(d1 + l1, 0, 1200 - l1);
    o = feed(&st, d1, 1200, NULL);
    expect(&o, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "v1 part");
    o = feed(&st, d2, l2, NULL);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "v2 part");
    ASSERT_EQ(st.version, SR_QUIC_V1);

    /* Bytes past the hello in the stream. */
    memcpy(f, "\x06\x00", 2);
    f[2] = (uint8_t)(0x40 | (hello_len + 3) >> 8);
    f[3] = (uint8_t)(hello_len + 3);
    memcpy(f + 4, hello_buf, hello_len);
    memcpy(f + 4 + hello_len, "\x02\x00\x00", 3);
    l1 = initial(d1, f, 4 + hello_len + 3, 1200, 0);
    o = fresh(d1, l1, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_CRYPTO_PAST_HELLO, "past the hello");
    /* ... also when they came first, before the hello's length was known. */
    n = sr_quicgen_crypto_frame(f, sizeof(f), hello_len, (const uint8_t *)"xyz", 3);
    l1 = initial(d1, f, n, 1200, 0);
    sr_quic_initial_init(&st, 0);
    o = feed(&st, d1, l1, NULL);
    expect(&o, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "tail first");
    n = crypto(f, 0, hello_len);
    l2 = initial(d2, f, n, 1200, 1);
    o = feed(&st, d2, l2, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_CRYPTO_PAST_HELLO, "then the hello");

    /* The size limit: by the data's reach, and by the hello's length field alone. */
    n = crypto(f, 0, hello_len);
    l1 = initial(d1, f, n, 1200, 0);
    sr_quic_initial_init(&st, hello_len - 1);
    o = feed(&st, d1, l1, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_TOO_LARGE, "limit one below");
    sr_quic_initial_init(&st, hello_len);
    o = feed(&st, d1, l1, NULL);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "limit exact");
    n = sr_quicgen_crypto_frame(f, sizeof(f), 0, (const uint8_t *)"\x01\x00\x50\x00", 4);
    l1 = initial(d1, f, n, 1200, 0);
    o = fresh(d1, l1, NULL);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_TOO_LARGE, "hello length 20484");

    /* A malformed hello is seen from its first bytes. */
    n = sr_quicgen_crypto_frame(f, sizeof(f), 0, (const uint8_t *)"\x02\x00\x00\x10", 4);
    l1 = initial(d1, f, n, 1200, 0);
    o = fresh(d1, l1, &res);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_HELLO, "server hello type");
    ASSERT_EQ(res.hello.reason, SR_HELLO_REASON_HANDSHAKE_TYPE);
}

/* The CRYPTO frame counters: every frame with data, and those starting below the end of
 * what the flow already had (before them, in this datagram or an earlier one). */
static void
expect_counts(const struct sr_quic_result *res, const struct sr_quic_initial *st, unsigned frames,
              unsigned ooo, unsigned flow_frames, unsigned flow_ooo, const char *what)
{
    if (res->n_crypto_frames != frames || res->n_crypto_out_of_order != ooo ||
        st->n_crypto_frames != flow_frames || st->n_crypto_out_of_order != flow_ooo) {
        SR_FAIL("%s: CRYPTO frames %u (%u out of order), flow %u (%u); want %u (%u), flow %u "
                "(%u)",
                what, res->n_crypto_frames, res->n_crypto_out_of_order, st->n_crypto_frames,
                st->n_crypto_out_of_order, frames, ooo, flow_frames, flow_ooo);
    }
}

static void
test_crypto_counts(void)
{
    static struct sr_quic_initial st;
    static struct sr_quic_initial before;
    static uint8_t d1[4096];
    static uint8_t d2[4096];
    static uint8_t f[4096];
    static uint8_t hello[8192];
    static uint8_t out[65536];
    struct sr_hellogen_random rnd;
    struct sr_hellogen_opts ho;
    struct sr_quic_result res;
    struct dgram d[MAX_DGRAMS];
    size_t ends[SR_QUICGEN_MAX_DATAGRAMS];
    struct outcome o;
    uint8_t *buf;
    size_t pq_len;
    size_t len;
    size_t n;
    size_t l1;
    size_t l2;
    size_t s;
    size_t j;

    /* Chromium's post-quantum hello (chromium-pq.txt). Its CRYPTO frames, decoded apart from
     * this reader (a few lines of Python over the `cryptography` package), as [offset, +len):
     * datagram 1: 1507+22 47+32 18+29 1633+66 17+1 1056+312 1529+104 0+17 1368+139 1699+250,
     * datagram 2: 79+478 606+275 570+36 935+121 557+13 881+54. In that order 7 of the first
     * 10 start below the end already reached, and all 6 of the second; the other way round,
     * 3 of the 6 and 7 of the 10. */
    buf = load_fixture("chromium-pq.bin", &len);
    ASSERT_EQ(split_dgrams(buf, len, d), 3);
    sr_quic_initial_init(&st, 0);
    o = feed(&st, d[0].p, d[0].len, &res);
    expect(&o, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, "chromium-pq 1");
    expect_counts(&res, &st, 10, 7, 10, 7, "chromium-pq 1");
    o = feed(&st, d[1].p, d[1].len, &res);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "chromium-pq 2");
    expect_counts(&res, &st, 6, 6, 16, 13, "chromium-pq 2");
    sr_quic_initial_init(&st, 0);
    o = feed(&st, d[1].p, d[1].len, &res);
    expect_counts(&res, &st, 6, 3, 6, 3, "chromium-pq 2 first");
    /* A refused datagram counts nothing in the flow. */
    memcpy(d1, d[0].p, d[0].len);
    d1[d[0].len / 2] ^= 0x01;
    before = st;
    o = feed(&st, d1, d[0].len, &res);
    expect(&o, SR_QUIC_MALFORMED, SR_QUIC_REASON_DECRYPT, "chromium-pq 1 corrupt");
    assert_state_same(&st, &before, "chromium-pq 1 corrupt");
    o = feed(&st, d[0].p, d[0].len, &res);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "chromium-pq 1 then");
    expect_counts(&res, &st, 10, 7, 16, 10, "chromium-pq 1 then");
    free(buf);

    /* Pinned: [100, 200), an empty frame at 0 (not counted), [0, 100), [50, 150) (overlap:
     * below), [200, end) (exactly at the end reached: in order); then [0, 50) again. */
    n = crypto(f, 100, 100);
    n += sr_quicgen_crypto_frame(f + n, sizeof(f) - n, 0, hello_buf, 0);
    n += crypto(f + n, 0, 100);
    n += crypto(f + n, 50, 100);
    n += crypto(f + n, 200, hello_len - 200);
    l1 = initial(d1, f, n, 1200, 0);
    sr_quic_initial_init(&st, 0);
    o = feed(&st, d1, l1, &res);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "pinned frames");
    expect_counts(&res, &st, 4, 2, 4, 2, "pinned frames");
    n = crypto(f, 0, 50);
    l2 = initial(d2, f, n, 1200, 1);
    o = feed(&st, d2, l2, &res);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "pinned retransmission");
    expect_counts(&res, &st, 1, 1, 5, 3, "pinned retransmission");

    /* Builder flights of a post-quantum hello over two Initials: in offset order none is out
     * of order, whatever the packets; overlapping, all but the first; shuffled as Chrome
     * does, some (the shuffle puts a later piece first). */
    fill_random(&rnd);
    memset(&ho, 0, sizeof(ho));
    ho.name = "counts.example";
    ho.name_len = strlen(ho.name);
    ho.alpn = "h3";
    ho.has_pq_share = true;
    ho.rnd = &rnd;
    pq_len = sr_hellogen_message(hello, sizeof(hello), &ho);
    ASSERT_GT(pq_len, 1200);
    for (s = 0; s < 3; s++) {
        struct sr_quicgen_flight fl;
        unsigned frames = 0;
        unsigned ooo = 0;

        memset(&fl, 0, sizeof(fl));
        fl.version = SR_QUIC_V1;
        fl.dcid = dcid_a;
        fl.dcid_len = sizeof(dcid_a);
        fl.n_frames = 7;
        fl.overlap = s == 1 ? 17 : 0;
        fl.shuffle_seed = s == 2 ? 7 : 0;
        fl.ping_padding = s == 2;
        len = sr_quicgen_flight_build(&ctx, &fl, hello, pq_len, out, sizeof(out), ends,
                                      SR_QUICGEN_MAX_DATAGRAMS, &n);
        ASSERT_GT(len, 0);
        ASSERT_GE(n, 2);
        sr_quic_initial_init(&st, 0);
        for (j = 0; j < n; j++) {
            size_t start = j ? ends[j - 1] : 0;

            o = feed(&st, out + start, ends[j] - start, &res);
            expect(&o, j + 1 < n ? SR_QUIC_NEED_MORE : SR_QUIC_FOUND, SR_QUIC_REASON_NONE,
                   "counted flight");
            frames += res.n_crypto_frames;
            ooo += res.n_crypto_out_of_order;
        }
        ASSERT_EQ(st.n_crypto_frames, frames);
        ASSERT_EQ(st.n_crypto_out_of_order, ooo);
        ASSERT_EQ(frames, 7);
        if (s == 0) {
            ASSERT_EQ(ooo, 0);
        } else if (s == 1) {
            ASSERT_EQ(ooo, 6);
        } else {
            ASSERT_GE(ooo, 1);
            ASSERT_LT(ooo, 7);
        }
        printf("flight of 7 CRYPTO frames, %s: %zu datagrams, %u out of order\n",
               s == 0   ? "in order"
               : s == 1 ? "overlapping"
                        : "shuffled",
               n, ooo);
    }
}

/* The builder's own edges: what it refuses, and a Length that needs 4 bytes. */
static void
test_builder(void)
{
    static uint8_t d[32768];
    static uint8_t f[2048];
    static struct sr_quic_initial st;
    struct sr_quicgen_flight fl;
    struct sr_quicgen_packet pk;
    struct outcome o;
    uint8_t b[8];
    size_t ends[4];
    size_t n_dgrams;
    size_t n = crypto(f, 0, hello_len);
    size_t len;

    ASSERT_EQ(sr_quicgen_varint(b, sizeof(b), 63), 1);
    ASSERT_EQ(sr_quicgen_varint(b, sizeof(b), 16383), 2);
    ASSERT_EQ(sr_quicgen_varint(b, sizeof(b), 16384), 4);
    ASSERT_EQ(sr_quicgen_varint(b, sizeof(b), (UINT64_C(1) << 62) - 1), 8);
    ASSERT(memcmp(b, "\xff\xff\xff\xff\xff\xff\xff\xff", 8) == 0);
    ASSERT_EQ(sr_quicgen_varint(b, sizeof(b), UINT64_C(1) << 62), 0);
    ASSERT_EQ(sr_quicgen_varint(b, 1, 64), 0);
    ASSERT_EQ(sr_quicgen_crypto_frame(b, sizeof(b), 0, hello_buf, 5), 8); /* exactly */
    ASSERT_EQ(sr_quicgen_crypto_frame(b, sizeof(b), 0, hello_buf, 6), 0);

    memset(&pk, 0, sizeof(pk));
    pk.version = SR_QUIC_V2;
    pk.type = SR_QUICGEN_INITIAL;
    pk.dcid = dcid_a;
    pk.dcid_len = sizeof(dcid_a);
    pk.pn_len = 3;
    len = sr_quicgen_packet(&ctx, &pk, f, n, 20000, d, sizeof(d)); /* Length: 4 bytes */
    ASSERT_EQ(len, 20000);
    sr_quic_initial_init(&st, 0);
    o = feed(&st, d, len, NULL);
    expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, "4-byte Length");
    ASSERT_EQ(sr_quicgen_packet(&ctx, &pk, f, n, 1200, d, 1199), 0);
    pk.pn_len = 5;
    ASSERT_EQ(sr_quicgen_packet(&ctx, &pk, f, n, 1200, d, sizeof(d)), 0);
    pk.pn_len = 1;
    pk.version = 0xff00001d;
    ASSERT_EQ(sr_quicgen_packet(&ctx, &pk, f, n, 1200, d, sizeof(d)), 0);

    memset(&fl, 0, sizeof(fl));
    fl.version = SR_QUIC_V1;
    fl.dcid = dcid_a;
    fl.dcid_len = 7;
    ASSERT_EQ(
        sr_quicgen_flight_build(&ctx, &fl, hello_buf, hello_len, d, sizeof(d), ends, 4, &n_dgrams),
        0);
    fl.dcid_len = 8;
    ASSERT_EQ(sr_quicgen_flight_build(&ctx, &fl, hello_buf, 0, d, sizeof(d), ends, 4, &n_dgrams),
              0);
    fl.packet_room = 40; /* 14-byte frames, one a packet: more than 4 datagrams */
    ASSERT_EQ(
        sr_quicgen_flight_build(&ctx, &fl, hello_buf, hello_len, d, sizeof(d), ends, 4, &n_dgrams),
        0);
    fl.packet_room = 0;
    ASSERT_EQ(sr_quicgen_flight_build(&ctx, &fl, hello_buf, hello_len, d, 1000, ends, 4, &n_dgrams),
              0);
    ASSERT_GT(
        sr_quicgen_flight_build(&ctx, &fl, hello_buf, hello_len, d, sizeof(d), ends, 4, &n_dgrams),
        0);
    ASSERT_EQ(n_dgrams, 1);
}

/* Keys from another connection ID than the header's, and the server's keys: AES-GCM's
 * ciphertext depends on key and nonce only, the header is additional data, so a packet to
 * DCID A under B's keys equals one to B under B's keys but for the DCID bytes and the tag. */
static void
test_keys_dcid(void)
{
    static const uint8_t dcid_x[] = {0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a};
    static uint8_t p1[1200], p2[1200], p3[1200], p4[1200];
    static uint8_t f[2048];
    struct sr_quicgen_packet pk;
    size_t n = crypto(f, 0, hello_len);
    size_t hdr = 1 + 4 + 1 + sizeof(dcid_a) + 1 + 1 + 2 + 2; /* ... scid 0, token 0 */

    memset(&pk, 0, sizeof(pk));
    pk.version = SR_QUIC_V1;
    pk.type = SR_QUICGEN_INITIAL;
    pk.dcid = dcid_a;
    pk.dcid_len = sizeof(dcid_a);
    pk.keys_dcid = dcid_x;
    pk.keys_dcid_len = sizeof(dcid_x);
    pk.pn_len = 2;
    ASSERT_EQ(sr_quicgen_packet(&ctx, &pk, f, n, 1200, p1, sizeof(p1)), 1200);
    pk.dcid = dcid_x;
    pk.keys_dcid = NULL;
    ASSERT_EQ(sr_quicgen_packet(&ctx, &pk, f, n, 1200, p2, sizeof(p2)), 1200);
    pk.dcid = dcid_a;
    ASSERT_EQ(sr_quicgen_packet(&ctx, &pk, f, n, 1200, p3, sizeof(p3)), 1200);
    pk.dcid = dcid_x;
    pk.is_server = true;
    ASSERT_EQ(sr_quicgen_packet(&ctx, &pk, f, n, 1200, p4, sizeof(p4)), 1200);

    ASSERT(memcmp(p1 + 6, dcid_a, sizeof(dcid_a)) == 0);
    ASSERT(memcmp(p2 + 6, dcid_x, sizeof(dcid_x)) == 0);
    ASSERT_EQ(p1[0], p2[0]); /* the same header protection mask: the same ciphertext sample */
    ASSERT(memcmp(p1 + hdr, p2 + hdr, 1200 - hdr - 16) == 0);
    ASSERT(memcmp(p1 + 1200 - 16, p2 + 1200 - 16, 16) != 0);
    ASSERT(memcmp(p1 + hdr + 2, p3 + hdr + 2, 16) != 0); /* A's own keys differ */
    ASSERT(memcmp(p2 + hdr + 2, p4 + hdr + 2, 16) != 0); /* and so do the server's */
}

/* The self-test's cases: each builds a flight of the shape it promises, which the reader
 * finds in every datagram order; with a Retry's token and packet numbers going on. */
static void
test_selftest_cases(void)
{
    static const struct {
        const char *name;
        size_t n_dgrams;
        const char *packets; /* per datagram, its packets: I Initial, Z 0-RTT; '/' between */
    } want[] = {
        {"plain", 1, "I"},       {"two_datagrams", 2, "I/I"},
        {"reordered", 2, "I/I"}, {"coalesced", 1, "IIZ"},
        {"v2", 1, "I"},
    };
    static uint8_t out[16384];
    static struct sr_quic_initial st;
    static const uint8_t token[100] = {0x70, 0x6f, 0x6b, 0x65, 0x6e, 1, 2, 3};
    struct sr_hellogen_random rnd;
    struct sr_quicgen_client cl;
    struct span sp[8];
    size_t ends[SR_QUICGEN_MAX_DATAGRAMS];
    size_t order[SR_QUICGEN_MAX_DATAGRAMS];
    struct dgram d[SR_QUICGEN_MAX_DATAGRAMS];
    size_t i, j, k, t, n, len, hlen;
    struct outcome o;

    fill_random(&rnd);
    ASSERT_EQ(sr_quicgen_n_cases, sizeof(want) / sizeof(want[0]));
    ASSERT(sr_quicgen_case_find("nope") == NULL);
    ASSERT(sr_quicgen_case_find("bytewise") == NULL); /* a TLS case, not a QUIC one */
    for (i = 0; i < sr_quicgen_n_cases; i++) {
        const struct sr_quicgen_case *c = &sr_quicgen_cases[i];

        ASSERT_STR_EQ(c->name, want[i].name);
        ASSERT(sr_quicgen_case_find(c->name) == c);
        for (t = 0; t < 2; t++) { /* without a token, then as after a Retry */
            char pattern[32];
            size_t np = 0;

            memset(&cl, 0, sizeof(cl));
            cl.name = "selftest.example";
            cl.name_len = strlen(cl.name);
            cl.alpn = "h3";
            cl.rnd = &rnd;
            cl.dcid = dcid_a;
            cl.dcid_len = sizeof(dcid_a);
            cl.scid = scid_c;
            cl.scid_len = sizeof(scid_c);
            if (t == 1) {
                cl.token = token;
                cl.token_len = sizeof(token);
                cl.first_pn = 256;
            }
            len = sr_quicgen_case_build(&ctx, c, &cl, out, sizeof(out), ends,
                                        SR_QUICGEN_MAX_DATAGRAMS, &n, &hlen);
            ASSERT_GT(len, 0);
            ASSERT_EQ(n, want[i].n_dgrams);
            ASSERT_GT(hlen, c->has_pq_share ? 1200 : 200);
            for (j = 0; j < n; j++) {
                size_t m;

                d[j].p = out + (j ? ends[j - 1] : 0);
                d[j].len = ends[j] - (j ? ends[j - 1] : 0);
                ASSERT_EQ(d[j].len, 1200); /* RFC 9000 14.1, and no more: a token is room */
                order[j] = j;
                m = walk_packets(d[j].p, d[j].len, sp, 8);
                for (k = 0; k < m; k++) {
                    ASSERT_LT(np + 2, sizeof(pattern));
                    pattern[np++] = sp[k].type == 0 ? 'I' : sp[k].type == 1 ? 'Z' : '?';
                    if (sp[k].type == 0) { /* the token, in the clear in every Initial */
                        size_t at = sp[k].start + 1 + 4 + 1 + sizeof(dcid_a) + 1 + sizeof(scid_c);

                        ASSERT_EQ(d[j].p[at], t == 1 ? 0x40 : 0);
                        ASSERT(t == 0 || memcmp(d[j].p + at + 2, token, sizeof(token)) == 0);
                    }
                }
                pattern[np++] = j + 1 < n ? '/' : '\0';
            }
            ASSERT_STR_EQ(pattern, want[i].packets);
            do {
                o = feed_all(d, order, n, &st);
                expect(&o, SR_QUIC_FOUND, SR_QUIC_REASON_NONE, c->name);
                ASSERT_STR_EQ(o.sni, "selftest.example");
                ASSERT_STR_EQ(o.alpn, "h3");
                ASSERT_EQ(st.version, c->version);
                ASSERT_EQ(st.hello_len, hlen);
                ASSERT_EQ(st.scid_len, sizeof(scid_c));
                ASSERT(memcmp(st.scid, scid_c, sizeof(scid_c)) == 0);
            } while (next_permutation(order, n));
            /* Packet numbers from <first_pn>, one an Initial. */
            ASSERT_EQ(st.largest_pn, (int64_t)(cl.first_pn + st.n_initial - 1));

            /* The first datagram alone: the hard cases' point. */
            if (n > 1) {
                order[0] = 0;
                o = feed_all(d, order, 1, &st);
                expect(&o, SR_QUIC_NEED_MORE, SR_QUIC_REASON_NONE, c->name);
                if (strcmp(c->name, "reordered") == 0) {
                    ASSERT_EQ(st.contig, 0); /* the hello's start is in the second */
                } else {
                    ASSERT_GT(st.contig, 0);
                }
            }
        }
    }

    /* What cannot be built. */
    memset(&cl, 0, sizeof(cl));
    cl.name = "a.test";
    cl.name_len = 6;
    cl.rnd = &rnd;
    cl.dcid = dcid_a;
    cl.dcid_len = 7; /* under RFC 9000 7.2's 8 */
    ASSERT_EQ(sr_quicgen_case_build(&ctx, &sr_quicgen_cases[0], &cl, out, sizeof(out), ends,
                                    SR_QUICGEN_MAX_DATAGRAMS, &n, NULL),
              0);
    cl.dcid_len = 8;
    cl.name_len = 0;
    ASSERT_EQ(sr_quicgen_case_build(&ctx, &sr_quicgen_cases[0], &cl, out, sizeof(out), ends,
                                    SR_QUICGEN_MAX_DATAGRAMS, &n, &hlen),
              0);
    ASSERT_EQ(hlen, 0);
    cl.name_len = 6; /* no ALPN: built all the same (a server is then the one to refuse) */
    ASSERT_GT(sr_quicgen_case_build(&ctx, &sr_quicgen_cases[0], &cl, out, sizeof(out), ends,
                                    SR_QUICGEN_MAX_DATAGRAMS, &n, NULL),
              0);
}

static void
test_strings(void)
{
    int i;

    for (i = SR_QUIC_NEED_MORE; i <= SR_QUIC_ERROR; i++) {
        ASSERT(strcmp(sr_quic_status_str((enum sr_quic_status)i), "unknown") != 0);
    }
    for (i = SR_QUIC_REASON_NONE; i <= SR_QUIC_REASON_LIBCRYPTO; i++) {
        ASSERT(strcmp(sr_quic_reason_str((enum sr_quic_reason)i), "unknown reason") != 0);
    }
    ASSERT_STR_EQ(sr_quic_reason_str(SR_QUIC_REASON_DECRYPT), "decrypt failed");
    ASSERT_STR_EQ(sr_quic_status_str(SR_QUIC_NOT_QUIC), "not_quic");
}

/* The connection IDs in clear that NAT rebinding follows: a long header's two (any
 * version but 0), cut short anywhere, too long; a short header's form bit. */
static void
test_clear_cids(void)
{
    static const uint8_t lng[] = {0xe3, 0x00, 0x00, 0x00, 0x01, 0x04, 0xd1, 0xd2,
                                  0xd3, 0xd4, 0x03, 0x51, 0x52, 0x53, 0x00};
    uint8_t buf[64];
    struct sr_quic_cids ids;
    size_t n;

    ASSERT(sr_quic_long_cids(lng, sizeof(lng), &ids));
    ASSERT_EQ(ids.dcid_len, 4);
    ASSERT(ids.dcid == lng + 6);
    ASSERT_EQ(ids.scid_len, 3);
    ASSERT(ids.scid == lng + 11);
    ASSERT(sr_quic_long_cids(lng, 14, &ids)); /* ends right after the SCID */
    for (n = 0; n < 14; n++) {
        ASSERT(!sr_quic_long_cids(lng, n, &ids));
    }
    memcpy(buf, lng, sizeof(lng));
    buf[1] = buf[2] = buf[3] = buf[4] = 0; /* version negotiation */
    ASSERT(!sr_quic_long_cids(buf, sizeof(lng), &ids));
    memset(buf, 0, sizeof(buf));
    buf[0] = 0xc0;
    buf[4] = 1;
    buf[5] = 21; /* over 20 bytes */
    ASSERT(!sr_quic_long_cids(buf, sizeof(buf), &ids));
    buf[5] = 0;
    buf[6] = 21;
    ASSERT(!sr_quic_long_cids(buf, sizeof(buf), &ids));
    buf[6] = 20;
    ASSERT(sr_quic_long_cids(buf, sizeof(buf), &ids));
    ASSERT(!sr_quic_long_cids(buf + 1, sizeof(buf) - 1, &ids)); /* short header */
    buf[0] = 0x40;
    ASSERT(sr_quic_is_short(buf, 19, 18));
    ASSERT(!sr_quic_is_short(buf, 18, 18));
    buf[0] = 0x00; /* the fixed bit greased (RFC 9287) */
    ASSERT(sr_quic_is_short(buf, 19, 18));
    buf[0] = 0xc0;
    ASSERT(!sr_quic_is_short(buf, 64, 18));
}

int
main(void)
{
    struct sr_hellogen_random rnd;
    struct sr_hellogen_opts ho;

    ASSERT(sr_quic_ctx_init(&ctx));
    fill_random(&rnd);
    memset(&ho, 0, sizeof(ho));
    ho.name = "pinned.example";
    ho.name_len = strlen(ho.name);
    ho.alpn = "h3";
    ho.rnd = &rnd;
    hello_len = sr_hellogen_message(hello_buf, sizeof(hello_buf), &ho);
    ASSERT_GT(hello_len, 200);

    test_strings();
    test_keys();
    test_rfc_vectors();
    test_not_quic();
    test_headers();
    test_packets();
    test_frames();
    test_stream();
    test_crypto_counts();
    test_builder();
    test_keys_dcid();
    test_flights();
    test_selftest_cases();
    test_fixtures();
    test_clear_cids();
    sr_quic_ctx_fini(&ctx);
    printf("test_quic: ok\n");
    return 0;
}
