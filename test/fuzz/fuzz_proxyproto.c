/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the PROXY protocol parser and builders. Parses the input whole, then
 * again fed in pieces whose sizes come from the input itself, each from an exact-size heap
 * copy so ASan sees any read past the end; every answer must agree and every view must lie
 * in the header. Then builds v1 and v2 headers for addresses, ports and an authority taken
 * from the input, followed by the input as payload, and requires the parser to give them
 * back exactly. Deterministic: no clock, no global state. Seeds: test/fixtures/proxyproto
 * and test/fuzz/corpus/proxyproto. */
#include "sniroute/wire/proxyproto.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
parse_checked(const uint8_t *buf, size_t len, struct sr_proxyproto_result *res)
{
    sr_proxyproto_parse(buf, len, res);
    CHECK((res->status == SR_PROXYPROTO_NEED_MORE) == (res->need > 0));
    CHECK((res->status == SR_PROXYPROTO_NOT_PROXY || res->status == SR_PROXYPROTO_INVALID) ==
          (res->reason != SR_PROXYPROTO_REASON_NONE));
    if (res->status != SR_PROXYPROTO_OK) {
        CHECK(res->header_len == 0 && !res->has_authority && res->authority == NULL);
        return;
    }
    CHECK(res->header_len > 0 && res->header_len <= len);
    CHECK(res->header_len <= SR_PROXYPROTO_PARSE_MAX);
    CHECK(res->version == 1 || res->version == 2);
    CHECK(res->version == 2 || res->header_len <= SR_PROXYPROTO_V1_MAX);
    if (res->has_authority) {
        CHECK(res->authority >= buf && res->authority <= buf + res->header_len);
        CHECK(res->authority_len <= (size_t)(buf + res->header_len - res->authority));
    } else {
        CHECK(res->authority == NULL && res->authority_len == 0);
    }
    switch (res->family) {
    case SR_PROXYPROTO_FAMILY_TCP4:
        CHECK(res->src.ss_family == AF_INET && res->dst.ss_family == AF_INET);
        break;
    case SR_PROXYPROTO_FAMILY_TCP6:
        CHECK(res->src.ss_family == AF_INET6 && res->dst.ss_family == AF_INET6);
        break;
    case SR_PROXYPROTO_FAMILY_UNSPEC:
        CHECK(res->src.ss_family == AF_UNSPEC && res->dst.ss_family == AF_UNSPEC);
        break;
    }
}

/* The same answer about the same bytes; views compared by content and offset. */
static void
check_same(const struct sr_proxyproto_result *a, const uint8_t *abuf,
           const struct sr_proxyproto_result *b, const uint8_t *bbuf)
{
    CHECK(a->status == b->status && a->reason == b->reason);
    if (a->status != SR_PROXYPROTO_OK) {
        return;
    }
    CHECK(a->header_len == b->header_len && a->version == b->version);
    CHECK(a->command == b->command && a->family == b->family);
    CHECK(memcmp(&a->src, &b->src, sizeof(a->src)) == 0);
    CHECK(memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0);
    CHECK(a->has_authority == b->has_authority && a->authority_len == b->authority_len);
    if (a->has_authority) {
        CHECK(a->authority - abuf == b->authority - bbuf);
    }
}

/* Fill <ss> with an AF_INET or AF_INET6 endpoint from <*p>, advancing it (bytes wrap). */
static void
take_endpoint(const uint8_t *data, size_t size, size_t *p, bool v6, struct sockaddr_storage *ss)
{
    uint8_t b[18];
    size_t i;

    for (i = 0; i < sizeof(b); i++) {
        b[i] = size ? data[(*p)++ % size] : (uint8_t)i;
    }
    memset(ss, 0, sizeof(*ss));
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, b, 16);
        memcpy(&sin6->sin6_port, b + 16, 2);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, b, 4);
        memcpy(&sin->sin_port, b + 16, 2);
    }
}

/* What a receiver must get for <ss> in a header of family <six>: v4-mapped if mixed. */
static void
expected(const struct sockaddr_storage *ss, bool six, struct sockaddr_storage *out)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
    struct sockaddr_in6 *o6 = (struct sockaddr_in6 *)out;

    if (!six || ss->ss_family == AF_INET6) {
        *out = *ss;
        return;
    }
    memset(out, 0, sizeof(*out));
    o6->sin6_family = AF_INET6;
    o6->sin6_addr.s6_addr[10] = 0xff;
    o6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&o6->sin6_addr.s6_addr[12], &sin->sin_addr, 4);
    o6->sin6_port = sin->sin_port;
}

static void
round_trip(const uint8_t *data, size_t size, uint32_t h)
{
    struct sockaddr_storage src;
    struct sockaddr_storage dst;
    struct sockaddr_storage want_src;
    struct sockaddr_storage want_dst;
    size_t p = 0;
    bool src6 = (h & 1) != 0;
    bool dst6 = (h & 2) != 0;
    bool six = src6 || dst6;
    size_t auth_len = size ? (h >> 8) % (size < 256 ? size + 1 : 256) : 0;
    size_t tail = size < 64 ? size : 64;
    uint8_t *out = malloc(SR_PROXYPROTO_V2_BUILD_MAX + tail);
    struct sr_proxyproto_result res;
    int version;

    CHECK(out != NULL);
    take_endpoint(data, size, &p, src6, &src);
    take_endpoint(data, size, &p, dst6, &dst);
    expected(&src, six, &want_src);
    expected(&dst, six, &want_dst);
    for (version = 1; version <= 2; version++) {
        size_t n;
        uint8_t *copy;
        if (version == 1) {
            n = sr_proxyproto_build_v1((char *)out, SR_PROXYPROTO_V1_MAX,
                                       (const struct sockaddr *)&src,
                                       (const struct sockaddr *)&dst);
        } else {
            n = sr_proxyproto_build_v2(out, SR_PROXYPROTO_V2_BUILD_MAX,
                                       (const struct sockaddr *)&src, (const struct sockaddr *)&dst,
                                       (const char *)data, auth_len);
        }
        CHECK(n > 0);
        memcpy(out + n, data, tail); /* whatever follows must not change the answer */
        copy = malloc(n + tail);
        CHECK(copy != NULL);
        memcpy(copy, out, n + tail);
        parse_checked(copy, n + tail, &res);
        CHECK(res.status == SR_PROXYPROTO_OK);
        CHECK(res.header_len == n && res.version == (unsigned)version);
        CHECK(res.command == SR_PROXYPROTO_CMD_PROXY);
        CHECK(res.family == (six ? SR_PROXYPROTO_FAMILY_TCP6 : SR_PROXYPROTO_FAMILY_TCP4));
        CHECK(memcmp(&res.src, &want_src, sizeof(want_src)) == 0);
        CHECK(memcmp(&res.dst, &want_dst, sizeof(want_dst)) == 0);
        if (version == 2) {
            CHECK(res.has_authority == (auth_len > 0));
            CHECK(res.authority_len == auth_len);
            CHECK(auth_len == 0 || memcmp(res.authority, data, auth_len) == 0);
        }
        free(copy);
    }
    free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sr_proxyproto_result whole;
    struct sr_proxyproto_result piece;
    uint32_t h = 2166136261u; /* FNV-1a of the input picks piece sizes and families */
    size_t have = 0;
    size_t i;

    for (i = 0; i < size; i++) {
        h = (h ^ data[i]) * 16777619u;
    }
    parse_checked(data, size, &whole);

    /* In pieces: a prefix's answer, once it is not NEED_MORE, is final and must be the whole
     * input's; while it is NEED_MORE, a good header cannot end within <need> bytes. */
    for (;;) {
        uint8_t *copy = malloc(have ? have : 1);
        size_t step;

        CHECK(copy != NULL);
        memcpy(copy, data, have);
        parse_checked(copy, have, &piece);
        if (piece.status != SR_PROXYPROTO_NEED_MORE) {
            check_same(&piece, copy, &whole, data);
            free(copy);
            break;
        }
        free(copy);
        if (have == size) {
            CHECK(whole.status == SR_PROXYPROTO_NEED_MORE && whole.need == piece.need);
            break;
        }
        if (whole.status == SR_PROXYPROTO_OK) {
            CHECK(have < whole.header_len && have + piece.need <= whole.header_len);
        }
        h = h * 1103515245u + 12345u;
        step = (h >> 16) % 4 == 0 ? 1 + (h >> 18) % 64 : piece.need;
        have = size - have < step ? size : have + step;
    }

    round_trip(data, size, h);
    return 0;
}
