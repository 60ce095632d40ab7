/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the HTTP request-head reader. Parses the input whole, then again fed
 * in pieces whose sizes come from the input itself, each piece from an exact-size heap copy
 * so ASan sees any read past the end: each prefix parsed afresh, and read on by one reader
 * that keeps its place across the pieces (the copies move, as a growing buffer does). The
 * two must give the same answer for every prefix, views included; a prefix's answer, once
 * not NEED_MORE, must be the whole input's; every view must lie in the input; the reader
 * examines at most twice the bytes it is given. Deterministic: no clock, no global state.
 * Seeds: test/fuzz/corpus/http. */
#include "sniroute/wire/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
inside(struct sr_view v, const uint8_t *b, size_t cap)
{
    return v.len == 0 || (v.ptr >= b && v.ptr <= b + cap && v.len <= (size_t)(b + cap - v.ptr));
}

static void
parse_checked(const uint8_t *buf, size_t len, struct sr_http_head *h)
{
    char out[SR_HTTP_RESPONSE_MAX];

    sr_http_parse_head(buf, len, h);
    CHECK(inside(h->method, buf, len) && inside(h->target, buf, len));
    CHECK(inside(h->host, buf, len));
    CHECK((h->status == SR_HTTP_NEED_MORE) == (h->need > 0));
    CHECK((h->status == SR_HTTP_OK || h->status == SR_HTTP_NEED_MORE) ==
          (h->reason == SR_HTTP_REASON_NONE));
    CHECK(strcmp(sr_http_reason_str(h->reason), "unknown") != 0);
    if (h->status == SR_HTTP_OK) {
        CHECK(h->head_len >= 4 && h->head_len <= len);
        CHECK(memcmp(buf + h->head_len - 4, "\r\n\r\n", 4) == 0);
        CHECK(h->host.len > 0 && h->method.len > 0 && h->target.len > 0);
        CHECK(h->is_ip_literal || sr_name_validate(h->host.ptr, h->host.len) == SR_NAME_OK);
        CHECK(h->version_minor <= 1 && h->n_headers <= SR_HTTP_HEADERS_MAX);
        CHECK(!(h->is_chunked && h->has_content_length));
        /* no bare CR or LF inside the head */
        for (size_t i = 0; i < h->head_len; i++) {
            if (buf[i] == '\r') {
                CHECK(i + 1 < h->head_len && buf[i + 1] == '\n');
            } else if (buf[i] == '\n') {
                CHECK(i > 0 && buf[i - 1] == '\r');
            }
        }
    } else {
        CHECK(h->host.len == 0);
    }
    if (len > 0) {
        CHECK(sr_http_error_response(out, sizeof(out), 400 + (buf[0] & 31)) < sizeof(out));
    }
}

static bool
view_eq(struct sr_view a, struct sr_view b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void
check_same(const struct sr_http_head *a, const struct sr_http_head *b)
{
    CHECK(a->status == b->status && a->reason == b->reason);
    CHECK(a->name_error == b->name_error);
    if (a->status != SR_HTTP_OK) {
        return;
    }
    CHECK(a->head_len == b->head_len && a->n_headers == b->n_headers);
    CHECK(view_eq(a->method, b->method) && view_eq(a->target, b->target));
    CHECK(view_eq(a->host, b->host) && a->is_ip_literal == b->is_ip_literal);
    CHECK(a->version_minor == b->version_minor);
    CHECK(a->is_host_from_target == b->is_host_from_target);
    CHECK(a->has_content_length == b->has_content_length);
    CHECK(a->content_length == b->content_length);
    CHECK(a->is_chunked == b->is_chunked && a->is_upgrade == b->is_upgrade);
}

/* <a> and <b> answer the same bytes: every field equal, views to the same bytes. */
static void
check_identical(const struct sr_http_head *a, const struct sr_http_head *b)
{
    CHECK(a->status == b->status && a->reason == b->reason && a->need == b->need);
    CHECK(a->name_error == b->name_error && a->head_len == b->head_len);
    CHECK(a->method.ptr == b->method.ptr && a->method.len == b->method.len);
    CHECK(a->target.ptr == b->target.ptr && a->target.len == b->target.len);
    CHECK(a->host.ptr == b->host.ptr && a->host.len == b->host.len);
    CHECK(a->version_minor == b->version_minor && a->n_headers == b->n_headers);
    CHECK(a->is_ip_literal == b->is_ip_literal);
    CHECK(a->is_host_from_target == b->is_host_from_target);
    CHECK(a->has_content_length == b->has_content_length);
    CHECK(a->content_length == b->content_length);
    CHECK(a->is_chunked == b->is_chunked && a->is_upgrade == b->is_upgrade);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sr_http_reader reader;
    struct sr_http_head whole;
    struct sr_http_head piece;
    struct sr_http_head resumed;
    uint32_t h = 2166136261u; /* FNV-1a of the input picks the piece sizes */
    size_t have = 0;
    size_t i;

    for (i = 0; i < size; i++) {
        h = (h ^ data[i]) * 16777619u;
    }
    parse_checked(data, size, &whole);
    sr_http_reader_init(&reader);

    for (;;) {
        uint8_t *copy = malloc(have ? have : 1);
        size_t step;

        CHECK(copy != NULL);
        memcpy(copy, data, have);
        parse_checked(copy, have, &piece);
        sr_http_read_head(&reader, copy, have, &resumed);
        check_identical(&piece, &resumed);
        CHECK(reader.n_examined <= 2 * have);
        free(copy);
        if (piece.status != SR_HTTP_NEED_MORE) {
            /* views point into freed copies: compare the non-view fields only, then re-parse
             * the same prefix in place for the views */
            parse_checked(data, have, &piece);
            check_same(&piece, &whole);
            break;
        }
        CHECK(have < size || whole.status == SR_HTTP_NEED_MORE);
        if (have == size) {
            CHECK(whole.status == SR_HTTP_NEED_MORE);
            break;
        }
        if (whole.status == SR_HTTP_OK) {
            CHECK(have + piece.need <= whole.head_len);
        }
        /* Mostly follow need like the proxy does; sometimes a smaller, input-chosen step. */
        h = h * 1103515245u + 12345u;
        step = (h >> 16) % 4 == 0 ? 1 + (h >> 18) % 64 : piece.need;
        have = size - have < step ? size : have + step;
    }
    return 0;
}
