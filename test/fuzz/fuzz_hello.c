/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the ClientHello parser. Parses the input whole, then again fed in
 * pieces whose sizes come from the input itself, each piece from an exact-size heap copy so
 * ASan sees any read past the end; then, for a good hello, re-framed into other record
 * sizes. Every answer must agree and every view must lie in the input or the scratch.
 * Deterministic: no clock, no global state. Seeds: test/fixtures/hello. */
#include "sniroute/wire/hello.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
inside(struct sr_view v, const void *base, size_t cap)
{
    const uint8_t *b = base;
    return v.len == 0 || (v.ptr >= b && v.ptr <= b + cap && v.len <= (size_t)(b + cap - v.ptr));
}

static void
parse_checked(const uint8_t *buf, size_t len, struct sr_hello_scratch *sc,
              struct sr_hello_result *res)
{
    sr_hello_parse(buf, len, sc, res);
    CHECK(inside(res->sni, buf, len) || inside(res->sni, sc->name, sizeof(sc->name)));
    CHECK(inside(res->alpn, buf, len) || inside(res->alpn, sc->alpn, sizeof(sc->alpn)));
    CHECK((res->status == SR_HELLO_NEED_MORE) == (res->need > 0));
    if (res->status == SR_HELLO_FOUND) {
        CHECK(res->sni.len > 0 && sr_name_validate(res->sni.ptr, res->sni.len) == SR_NAME_OK);
    } else {
        CHECK(res->sni.len == 0);
    }
    if (res->status == SR_HELLO_FOUND || res->status == SR_HELLO_NO_SNI) {
        struct sr_view cur = res->alpn;
        struct sr_view proto;
        CHECK(res->hello_len <= len && res->n_records >= 1);
        while (sr_hello_alpn_next(&cur, &proto)) {
        }
        CHECK(cur.len == 0);
    }
}

static bool
view_eq(struct sr_view a, struct sr_view b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* The same answer about the same handshake message. */
static void
check_same(const struct sr_hello_result *a, const struct sr_hello_result *b, bool same_framing)
{
    CHECK(a->status == b->status);
    CHECK(a->reason == b->reason);
    CHECK(a->name_error == b->name_error);
    if (a->status != SR_HELLO_FOUND && a->status != SR_HELLO_NO_SNI) {
        return;
    }
    CHECK(view_eq(a->sni, b->sni));
    CHECK(a->has_alpn == b->has_alpn && a->has_ech == b->has_ech);
    CHECK(a->legacy_version == b->legacy_version && a->max_version == b->max_version);
    if (!a->alpn_dropped && !b->alpn_dropped) {
        CHECK(view_eq(a->alpn, b->alpn));
    }
    if (same_framing) {
        CHECK(a->hello_len == b->hello_len && a->n_records == b->n_records);
        CHECK(a->alpn_dropped == b->alpn_dropped);
        CHECK(a->record_version == b->record_version);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sr_hello_scratch sc_whole;
    static struct sr_hello_scratch sc_piece;
    struct sr_hello_result whole;
    struct sr_hello_result piece;
    uint32_t h = 2166136261u; /* FNV-1a of the input picks the piece sizes */
    size_t have = 0;
    size_t i;

    for (i = 0; i < size; i++) {
        h = (h ^ data[i]) * 16777619u;
    }
    memset(&sc_whole, 0x5a, sizeof(sc_whole));
    parse_checked(data, size, &sc_whole, &whole);

    /* In pieces: a prefix's answer, once it is not NEED_MORE, is final and must be the whole
     * input's; while it is NEED_MORE, the hello cannot complete within <need> bytes. */
    for (;;) {
        uint8_t *copy = malloc(have ? have : 1);
        size_t step;

        CHECK(copy != NULL);
        memcpy(copy, data, have);
        memset(&sc_piece, 0xa5, sizeof(sc_piece));
        parse_checked(copy, have, &sc_piece, &piece);
        if (piece.status != SR_HELLO_NEED_MORE) {
            check_same(&piece, &whole, true);
            free(copy);
            break;
        }
        free(copy);
        CHECK(have < size || whole.status == SR_HELLO_NEED_MORE);
        if (have == size) {
            check_same(&piece, &whole, true);
            break;
        }
        if (whole.status == SR_HELLO_FOUND || whole.status == SR_HELLO_NO_SNI) {
            CHECK(have + piece.need <= whole.hello_len);
        }
        /* Mostly follow need like the proxy does; sometimes a smaller, input-chosen step. */
        h = h * 1103515245u + 12345u;
        step = (h >> 16) % 4 == 0 ? 1 + (h >> 18) % 64 : piece.need;
        have = size - have < step ? size : have + step;
    }

    /* A good hello re-framed into records of an input-chosen size says the same things. */
    if ((whole.status == SR_HELLO_FOUND || whole.status == SR_HELLO_NO_SNI) && size > 0) {
        size_t rec = 1 + (h >> 8) % 700;
        size_t hs_len = 0;
        size_t pos = 0;
        size_t n = 0;
        uint8_t *hs = malloc(whole.hello_len);
        uint8_t *framed;

        CHECK(hs != NULL);
        while (pos < whole.hello_len) {
            size_t body = (size_t)data[pos + 3] << 8 | data[pos + 4];
            memcpy(hs + hs_len, data + pos + 5, body);
            hs_len += body;
            pos += 5 + body;
        }
        framed = malloc(hs_len + 5 * (hs_len / rec + 1));
        CHECK(framed != NULL);
        for (i = 0; i < hs_len; i += rec) {
            size_t c = hs_len - i < rec ? hs_len - i : rec;
            framed[n++] = 22;
            framed[n++] = 3;
            framed[n++] = 3;
            framed[n++] = (uint8_t)(c >> 8);
            framed[n++] = (uint8_t)c;
            memcpy(framed + n, hs + i, c);
            n += c;
        }
        memset(&sc_piece, 0xa5, sizeof(sc_piece));
        parse_checked(framed, n, &sc_piece, &piece);
        check_same(&piece, &whole, false);
        CHECK(piece.hello_len == n);
        free(framed);
        free(hs);
    }
    return 0;
}
