/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the response reader (the bytes a backend sends). The input is
 * [n][n request kinds][the backend's bytes]: n % 9 requests are announced (kind bit 0:
 * HEAD; bits 1-2: 1 Upgrade, 2 CONNECT), then the bytes are fed whole, and again in pieces
 * whose sizes come from the input itself, each piece from an exact-size heap copy so ASan
 * sees any read past the end. Both runs must end in the same state, and every state must
 * keep the reader's invariants. Deterministic: no clock, no global state.
 * Seeds: test/fuzz/corpus/httpresp. */
#include "sniroute/wire/httpresp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_invariants(const struct sr_http_resp *r)
{
    CHECK(r->n_pending <= SR_HTTP_RESP_PENDING_MAX);
    CHECK((r->status == SR_HTTP_RESP_LOST) == (r->reason != SR_HTTP_RESP_REASON_NONE));
    CHECK(strcmp(sr_http_resp_reason_str((enum sr_http_resp_reason)r->reason), "unknown") != 0);
    if (r->status == SR_HTTP_RESP_TUNNEL) {
        CHECK(r->n_pending == 0);
    }
    if (sr_http_resp_is_idle(r)) {
        CHECK(r->n_pending == 0 && r->status == SR_HTTP_RESP_FOLLOWING);
    }
    if (sr_http_resp_is_switch_pending(r)) {
        CHECK(r->n_pending > 0 && r->status == SR_HTTP_RESP_FOLLOWING);
    }
    if (r->n_pending < 64) {
        CHECK((r->head_bits >> r->n_pending) == 0 || r->status != SR_HTTP_RESP_FOLLOWING);
    }
}

static void
announce(struct sr_http_resp *r, const uint8_t *kinds, size_t n)
{
    sr_http_resp_init(r);
    for (size_t i = 0; i < n; i++) {
        unsigned sw = (kinds[i] >> 1) & 3;
        bool was_pending = sr_http_resp_is_switch_pending(r);
        bool ok = sr_http_resp_expect(r, (kinds[i] & 1) != 0,
                                      sw == 1   ? SR_HTTP_SWITCH_UPGRADE
                                      : sw == 2 ? SR_HTTP_SWITCH_CONNECT
                                                : SR_HTTP_SWITCH_NONE);

        CHECK(ok == !was_pending); /* only a pending switch refuses, at n <= 8 */
        check_invariants(r);
    }
}

static void
check_same(const struct sr_http_resp *a, const struct sr_http_resp *b)
{
    CHECK(a->status == b->status && a->reason == b->reason);
    CHECK(a->n_pending == b->n_pending && a->head_bits == b->head_bits);
    CHECK(a->tail_switch == b->tail_switch && a->state == b->state);
    CHECK(sr_http_resp_is_idle(a) == sr_http_resp_is_idle(b));
    CHECK(sr_http_resp_is_switch_pending(a) == sr_http_resp_is_switch_pending(b));
    if (a->status == SR_HTTP_RESP_FOLLOWING) {
        CHECK(a->remaining == b->remaining && a->flags == b->flags);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sr_http_resp whole;
    struct sr_http_resp piece;
    const uint8_t *stream;
    size_t n_req;
    size_t len;
    size_t at = 0;
    uint32_t h = 2166136261u; /* FNV-1a of the input picks the piece sizes */

    if (size == 0) {
        return 0;
    }
    n_req = data[0] % 9;
    if (size < 1 + n_req) {
        return 0;
    }
    stream = data + 1 + n_req;
    len = size - 1 - n_req;
    for (size_t i = 0; i < size; i++) {
        h = (h ^ data[i]) * 16777619u;
    }

    announce(&whole, data + 1, n_req);
    CHECK(sr_http_resp_feed(&whole, stream, len) == whole.status);
    check_invariants(&whole);

    announce(&piece, data + 1, n_req);
    while (at < len) {
        size_t step;
        uint8_t *copy;
        enum sr_http_resp_status before = (enum sr_http_resp_status)piece.status;

        h = h * 1103515245u + 12345u;
        step = 1 + (h >> 16) % ((h >> 8) % 4 == 0 ? 4096 : 16);
        step = step > len - at ? len - at : step;
        copy = malloc(step);
        CHECK(copy != NULL);
        memcpy(copy, stream + at, step);
        sr_http_resp_feed(&piece, copy, step);
        free(copy);
        check_invariants(&piece);
        /* TUNNEL and LOST are for good. */
        CHECK(before == SR_HTTP_RESP_FOLLOWING || piece.status == before);
        at += step;
    }
    check_same(&whole, &piece);
    if (whole.status != SR_HTTP_RESP_FOLLOWING) {
        CHECK(!sr_http_resp_expect(&whole, false, SR_HTTP_SWITCH_NONE));
    }
    return 0;
}
