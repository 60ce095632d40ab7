/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the reader of a QUIC server's answers. The input is one datagram
 * from a server to the client of the RFC 9001 Appendix A examples (DCID 8394c8f03e515708,
 * an empty SCID), of v2 when the datagram's version field says so, else v1. If the input
 * starts with "PT", the rest is instead the plaintext frames of a server Initial, which the
 * builder protects with that client's server keys and pads to 1200 bytes: random bytes never
 * pass AES-GCM, so this is how the fuzzer reaches the frame walker. Checks: the answer's
 * invariants (a reason exactly when nothing was for the client, the token inside the
 * datagram and ending 16 bytes before it, the counts within bounds), and that reading the
 * same bytes again answers the same. Deterministic. Seeds: test/fuzz/corpus/quicanswer. */
#include "sniroute/wire/quicanswer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sniroute/wire/quicgen.h"

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t rfc_dcid[] = {0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08};
static const uint8_t server_scid[] = {0xf0, 0x67, 0xa5, 0x50, 0x2a, 0x42, 0x62, 0xb5};

static struct sr_quic_ctx ctx;
static uint8_t built[SR_QUIC_MAX_DATAGRAM];

static void
check_answer(const struct sr_quicanswer *a, const uint8_t *d, size_t len)
{
    CHECK((a->kind == SR_QUICANSWER_NONE) == (a->reason != SR_QUICANSWER_REASON_NONE));
    CHECK(a->hello_head_len <= SR_QUICANSWER_HELLO_HEAD);
    CHECK(a->scid_len <= SR_QUIC_MAX_CID);
    CHECK(a->close_reason_len <= sizeof(a->close_reason));
    CHECK(a->n_versions <= SR_QUICANSWER_MAX_VERSIONS);
    CHECK(a->has_close || (a->close_error == 0 && a->close_reason_len == 0));
    if (a->kind == SR_QUICANSWER_RETRY) {
        CHECK(a->token_len > 0 && a->token > d && a->token + a->token_len + 16 == d + len);
    } else {
        CHECK(a->token == NULL && a->token_len == 0);
    }
    if (a->kind != SR_QUICANSWER_INITIAL) {
        CHECK(a->n_initial == 0 && a->n_handshake == 0 && a->hello_head_len == 0 && !a->has_close);
    } else {
        CHECK(a->n_initial + a->n_handshake > 0);
    }
    if (a->kind != SR_QUICANSWER_VERSION_NEGOTIATION) {
        CHECK(a->n_versions == 0);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool is_ready;
    struct sr_quicanswer_client cl = {SR_QUIC_V1, rfc_dcid, sizeof(rfc_dcid), NULL, 0};
    struct sr_quicanswer a, b;
    const uint8_t *d = data;
    size_t len = size;

    if (!is_ready) {
        CHECK(sr_quic_ctx_init(&ctx));
        is_ready = true;
    }
    if (size >= 2 && memcmp(data, "PT", 2) == 0) {
        struct sr_quicgen_packet pk;

        memset(&pk, 0, sizeof(pk));
        pk.version = SR_QUIC_V1;
        pk.type = SR_QUICGEN_INITIAL;
        pk.scid = server_scid;
        pk.scid_len = sizeof(server_scid);
        pk.keys_dcid = rfc_dcid;
        pk.keys_dcid_len = sizeof(rfc_dcid);
        pk.is_server = true;
        pk.pn_len = 1;
        len = sr_quicgen_packet(&ctx, &pk, data + 2, size - 2, 1200, built, sizeof(built));
        if (len == 0) {
            return 0;
        }
        d = built;
    }
    if (len >= 5 &&
        ((uint32_t)d[1] << 24 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 8 | d[4]) == SR_QUIC_V2) {
        cl.version = SR_QUIC_V2;
    }
    sr_quicanswer_read(&ctx, &cl, d, len, &a);
    check_answer(&a, d, len);
    sr_quicanswer_read(&ctx, &cl, d, len, &b);
    CHECK(memcmp(&a, &b, sizeof(a)) == 0); /* memset first, so padding compares too */
    return 0;
}
