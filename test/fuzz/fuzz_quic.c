/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the QUIC Initial reader. The input is a flight of datagrams, each a
 * 2-byte big-endian length then its bytes (the format of test/fixtures/quic; a length past
 * the end takes what is left). If the input starts with "PT", each "datagram" after that is
 * instead the plaintext frames of one Initial, which the builder protects (v1, or v2 when the
 * length's top bit is set; packet number = its index) and pads to 1200 bytes: random bytes
 * never pass AES-GCM, so this is how the fuzzer reaches the frame walker and the CRYPTO
 * reassembly. Checks, for every datagram: the result's invariants, views inside the flow's
 * buffer; a refused datagram leaves the flow as it was; feeding the same datagram again
 * answers the same. Then the datagrams taken up to a FOUND or NO_SNI, fed in reverse order,
 * must give the same answer. Deterministic: no clock, no global state between inputs.
 * Seeds: test/fixtures/quic and test/fuzz/corpus/quic. */
#include "sniroute/wire/quic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sniroute/wire/quicgen.h"

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DGRAMS 64

static const uint8_t dcid[] = {0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7};

struct answer {
    enum sr_quic_status status;
    enum sr_quic_reason reason;
    enum sr_hello_reason hello_reason;
    size_t sni_len;
    uint8_t sni[SR_NAME_MAX + 2];
    size_t alpn_len;
    uint8_t alpn[SR_QUIC_CRYPTO_MAX];
    bool has_ech;
};

static bool
inside(struct sr_view v, const struct sr_quic_initial *st)
{
    return v.len == 0 || (v.ptr >= st->crypto && v.ptr <= st->crypto + sizeof(st->crypto) &&
                          v.len <= (size_t)(st->crypto + sizeof(st->crypto) - v.ptr));
}

static bool
state_same(const struct sr_quic_initial *a, const struct sr_quic_initial *b)
{
    size_t i;

    if (a->version != b->version || a->dcid_len != b->dcid_len || a->scid_len != b->scid_len ||
        memcmp(a->dcid, b->dcid, sizeof(a->dcid)) != 0 ||
        memcmp(a->scid, b->scid, sizeof(a->scid)) != 0 || a->n_initial != b->n_initial ||
        a->contig != b->contig || a->hello_len != b->hello_len || a->crypto_end != b->crypto_end ||
        a->largest_pn != b->largest_pn || a->n_crypto_frames != b->n_crypto_frames ||
        a->n_crypto_out_of_order != b->n_crypto_out_of_order ||
        memcmp(a->have, b->have, sizeof(a->have)) != 0) {
        return false;
    }
    /* The received bytes must match; others are don't-care. By bitmap byte: mostly empty. */
    for (i = 0; i < sizeof(a->have); i++) {
        unsigned bit;

        if (a->have[i] == 0) {
            continue;
        }
        if (a->have[i] == 0xff) {
            if (memcmp(a->crypto + 8 * i, b->crypto + 8 * i, 8) != 0) {
                return false;
            }
            continue;
        }
        for (bit = 0; bit < 8; bit++) {
            if ((a->have[i] >> bit & 1) && a->crypto[8 * i + bit] != b->crypto[8 * i + bit]) {
                return false;
            }
        }
    }
    return true;
}

static void
take_answer(const struct sr_quic_result *res, struct answer *a)
{
    a->status = res->status;
    a->reason = res->reason;
    a->hello_reason = res->hello.reason;
    a->sni_len = res->hello.sni.len;
    if (a->sni_len > 0) {
        memcpy(a->sni, res->hello.sni.ptr, a->sni_len);
    }
    a->alpn_len = res->hello.alpn.len;
    if (a->alpn_len > 0) {
        memcpy(a->alpn, res->hello.alpn.ptr, a->alpn_len);
    }
    a->has_ech = res->hello.has_ech;
}

static bool
answer_same(const struct answer *a, const struct answer *b)
{
    return a->status == b->status && a->reason == b->reason && a->hello_reason == b->hello_reason &&
           a->sni_len == b->sni_len && memcmp(a->sni, b->sni, a->sni_len) == 0 &&
           a->alpn_len == b->alpn_len && memcmp(a->alpn, b->alpn, a->alpn_len) == 0 &&
           a->has_ech == b->has_ech;
}

static bool
accepted(enum sr_quic_status s)
{
    return s == SR_QUIC_NEED_MORE || s == SR_QUIC_FOUND || s == SR_QUIC_NO_SNI;
}

/* The clear connection IDs (NAT rebinding's lookup) are views inside the datagram, within
 * the limits; a short header holds an ID only if the datagram is longer than it. */
static void
check_cids(const uint8_t *d, size_t len)
{
    struct sr_quic_cids ids;
    size_t n;

    if (sr_quic_long_cids(d, len, &ids)) {
        CHECK(ids.dcid_len <= SR_QUIC_MAX_CID && ids.scid_len <= SR_QUIC_MAX_CID);
        CHECK(ids.dcid == d + 6 && ids.scid == d + 7 + ids.dcid_len);
        CHECK(ids.scid + ids.scid_len <= d + len);
    }
    for (n = 0; n <= SR_QUIC_MAX_CID; n++) {
        CHECK(!sr_quic_is_short(d, len, n) || (len > n && (d[0] & 0x80) == 0));
    }
}

/* Feed one datagram from an exact-size heap copy and check what must hold of any answer. */
static void
feed_checked(struct sr_quic_ctx *ctx, struct sr_quic_initial *st, const uint8_t *p, size_t len,
             struct answer *a)
{
    static struct sr_quic_initial before;
    struct sr_quic_result res;
    uint8_t *copy = malloc(len ? len : 1);

    CHECK(copy != NULL);
    memcpy(copy, p, len);
    before = *st;
    check_cids(copy, len);
    sr_quic_feed(ctx, st, copy, len, &res);
    free(copy);
    CHECK(res.status != SR_QUIC_ERROR);
    CHECK((res.reason == SR_QUIC_REASON_NONE) == accepted(res.status));
    CHECK((res.reason == SR_QUIC_REASON_HELLO) == (res.hello.status == SR_HELLO_MALFORMED));
    CHECK(inside(res.hello.sni, st) && inside(res.hello.alpn, st));
    if (!accepted(res.status)) {
        CHECK(state_same(st, &before));
    }
    if (res.status == SR_QUIC_FOUND) {
        CHECK(res.hello.status == SR_HELLO_FOUND);
        CHECK(sr_name_validate(res.hello.sni.ptr, res.hello.sni.len) == SR_NAME_OK);
    } else {
        CHECK(res.hello.sni.len == 0);
    }
    if (res.status == SR_QUIC_FOUND || res.status == SR_QUIC_NO_SNI) {
        CHECK(res.hello.hello_len == st->hello_len && st->contig == st->hello_len);
        CHECK(st->hello_len <= st->max_hello);
        CHECK(st->n_initial >= 1 && st->dcid_len >= SR_QUIC_MIN_INITIAL_DCID);
    }
    take_answer(&res, a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sr_quic_ctx ctx;
    static bool ctx_ready;
    static struct sr_quic_initial st;
    static struct sr_quic_initial st2;
    static struct answer a;
    static struct answer again;
    static struct answer rev;
    static uint8_t built[MAX_DGRAMS][2048];
    const uint8_t *dg[MAX_DGRAMS];
    size_t dlen[MAX_DGRAMS];
    size_t taken[MAX_DGRAMS];
    size_t n = 0;
    size_t n_taken = 0;
    size_t pos = 0;
    bool plaintext = size >= 2 && data[0] == 'P' && data[1] == 'T';
    bool decided = false;
    size_t i;

    if (!ctx_ready) { /* libcrypto's contexts, once per process, as once per worker */
        CHECK(sr_quic_ctx_init(&ctx));
        ctx_ready = true;
    }
    if (plaintext) {
        pos = 2;
    }
    while (pos + 2 <= size && n < MAX_DGRAMS) {
        size_t len = (size_t)data[pos] << 8 | data[pos + 1];
        bool v2 = plaintext && (len & 0x8000) != 0;

        pos += 2;
        if (plaintext) {
            len &= 0x7fff;
        }
        if (len > size - pos) {
            len = size - pos;
        }
        if (plaintext) {
            struct sr_quicgen_packet pk;

            memset(&pk, 0, sizeof(pk));
            pk.version = v2 ? SR_QUIC_V2 : SR_QUIC_V1;
            pk.type = SR_QUICGEN_INITIAL;
            pk.dcid = dcid;
            pk.dcid_len = sizeof(dcid);
            pk.pn = n;
            pk.pn_len = 2;
            dlen[n] =
                sr_quicgen_packet(&ctx, &pk, data + pos, len, 1200, built[n], sizeof(built[n]));
            dg[n] = built[n];
            if (dlen[n] == 0) { /* too long for one packet here: not interesting */
                pos += len;
                continue;
            }
        } else {
            dg[n] = data + pos;
            dlen[n] = len;
        }
        pos += len;
        n++;
    }

    /* In order, each datagram twice, until a decision; the refused ones are dropped, as a
     * caller keeping the flow would. */
    sr_quic_initial_init(&st, 0);
    for (i = 0; i < n && !decided; i++) {
        feed_checked(&ctx, &st, dg[i], dlen[i], &a);
        feed_checked(&ctx, &st, dg[i], dlen[i], &again);
        CHECK(answer_same(&a, &again));
        if (accepted(a.status)) {
            taken[n_taken++] = i;
        }
        decided = a.status == SR_QUIC_FOUND || a.status == SR_QUIC_NO_SNI;
    }

    /* The datagrams taken, backwards: the same CRYPTO bytes, so the same ClientHello. */
    if (decided) {
        sr_quic_initial_init(&st2, 0);
        for (i = n_taken; i > 0; i--) {
            feed_checked(&ctx, &st2, dg[taken[i - 1]], dlen[taken[i - 1]], &rev);
            CHECK(rev.status == SR_QUIC_NEED_MORE || answer_same(&rev, &a));
        }
        CHECK(answer_same(&rev, &a));
    }
    return 0;
}
