/* SPDX-License-Identifier: MIT */
/* A QUIC client's first flight, built for tests and the self-test: long header packets,
 * Initial packet protection through the reader's libcrypto contexts (sniroute/quic.h), and
 * a ClientHello cut into CRYPTO frames in awkward shapes. It never reads anything back. */
#include "sniroute/wire/quicgen.h"

#include <string.h>

#define TAG_LEN     16
#define SAMPLE_LEN  16
#define PN_MAX_LEN  4
#define VARINT_MAX  ((UINT64_C(1) << 62) - 1)
#define LEN2_MAX    16383 /* the largest value a 2-byte varint holds */
#define FRAME_PING  0x01
#define PADDING_RUN 7 /* most PADDING bytes put before a CRYPTO frame with ping_padding */

/* Bounds of the flight builder's own arrays. */
#define MAX_FRAMES 512
#define MAX_ROOM   8192

size_t
sr_quicgen_varint(uint8_t *out, size_t cap, uint64_t v)
{
    size_t n;
    size_t i;

    if (v > VARINT_MAX) {
        return 0;
    }
    n = v < 64 ? 1 : v < 16384 ? 2 : v < (UINT64_C(1) << 30) ? 4 : 8;
    if (n > cap) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        out[n - 1 - i] = (uint8_t)(v >> (8 * i));
    }
    out[0] |= (uint8_t)((n == 1 ? 0 : n == 2 ? 1 : n == 4 ? 2 : 3) << 6);
    return n;
}

static size_t
varint_len(uint64_t v)
{
    uint8_t b[8];
    return sr_quicgen_varint(b, sizeof(b), v);
}

size_t
sr_quicgen_crypto_frame(uint8_t *out, size_t cap, uint64_t offset, const uint8_t *data, size_t len)
{
    size_t n = 0;
    size_t k;

    if (cap < 1) {
        return 0;
    }
    out[n++] = 0x06;
    k = sr_quicgen_varint(out + n, cap - n, offset);
    if (k == 0) {
        return 0;
    }
    n += k;
    k = sr_quicgen_varint(out + n, cap - n, len);
    if (k == 0 || len > cap - n - k) {
        return 0;
    }
    n += k;
    if (len > 0) {
        memcpy(out + n, data, len);
    }
    return n + len;
}

/* Byte 0's type bits: v1 numbering, shifted by one in v2 (RFC 9369 3.2). */
static uint8_t
type_bits(uint32_t version, enum sr_quicgen_type t)
{
    return (uint8_t)(version == SR_QUIC_V2 ? (unsigned)t + 1 : (unsigned)t);
}

size_t
sr_quicgen_packet(struct sr_quic_ctx *ctx, const struct sr_quicgen_packet *p,
                  const uint8_t *payload, size_t payload_len, size_t min_len, uint8_t *out,
                  size_t cap)
{
    bool initial = p->type == SR_QUICGEN_INITIAL;
    size_t tag = initial ? TAG_LEN : 0;
    size_t base;
    size_t lsize = 2;
    size_t pad = 0;
    size_t body;
    size_t n = 0;
    size_t pn_off;
    size_t i;
    int round;
    struct sr_quic_keys keys;
    uint8_t mask[5];

    if ((p->version != SR_QUIC_V1 && p->version != SR_QUIC_V2) || p->dcid_len > SR_QUIC_MAX_CID ||
        p->scid_len > SR_QUIC_MAX_CID || p->pn_len < 1 || p->pn_len > PN_MAX_LEN ||
        p->pn > VARINT_MAX || p->token_len > VARINT_MAX) {
        return 0;
    }
    base = 1 + 4 + 1 + p->dcid_len + 1 + p->scid_len;
    if (initial) {
        base += varint_len(p->token_len) + p->token_len;
    }
    /* Padding depends on the Length field's size, which depends on the padding: settle it in
     * two rounds. An Initial needs 4 bytes of packet number and payload before its tag, so
     * that the header protection sample fits (RFC 9001 5.4.2). */
    for (round = 0; round < 2; round++) {
        size_t have = base + lsize + p->pn_len + payload_len + tag;

        pad = have < min_len ? min_len - have : 0;
        if (initial && p->pn_len + payload_len + pad < PN_MAX_LEN) {
            pad = PN_MAX_LEN - p->pn_len - payload_len;
        }
        body = p->pn_len + payload_len + pad + tag;
        lsize = body <= LEN2_MAX ? 2 : 4;
    }
    body = p->pn_len + payload_len + pad + tag;
    if (body > (UINT64_C(1) << 30) - 1 || base + lsize + body > cap) {
        return 0;
    }

    out[n++] = (uint8_t)(0xc0 | type_bits(p->version, p->type) << 4 | (p->reserved_bits & 0x0c) |
                         (p->pn_len - 1));
    for (i = 0; i < 4; i++) {
        out[n++] = (uint8_t)(p->version >> (24 - 8 * i));
    }
    /* Each copy is guarded: an empty field may come as NULL, which memcpy may not take. */
    out[n++] = (uint8_t)p->dcid_len;
    if (p->dcid_len > 0) {
        memcpy(out + n, p->dcid, p->dcid_len);
    }
    n += p->dcid_len;
    out[n++] = (uint8_t)p->scid_len;
    if (p->scid_len > 0) {
        memcpy(out + n, p->scid, p->scid_len);
    }
    n += p->scid_len;
    if (initial) {
        n += sr_quicgen_varint(out + n, cap - n, p->token_len);
        if (p->token_len > 0) {
            memcpy(out + n, p->token, p->token_len);
        }
        n += p->token_len;
    }
    if (lsize == 2) {
        out[n++] = (uint8_t)(0x40 | body >> 8);
    } else {
        out[n++] = (uint8_t)(0x80 | body >> 24);
        out[n++] = (uint8_t)(body >> 16);
        out[n++] = (uint8_t)(body >> 8);
    }
    out[n++] = (uint8_t)body;
    pn_off = n;
    for (i = 0; i < p->pn_len; i++) {
        out[n++] = (uint8_t)(p->pn >> (8 * (p->pn_len - 1 - i)));
    }
    if (payload_len > 0) {
        memmove(out + n, payload, payload_len);
    }
    memset(out + n + payload_len, 0, pad); /* PADDING frames */
    if (!initial) {
        return n + payload_len + pad;
    }

    /* RFC 9001 5.3, then 5.4.1: protect the payload, then the header from a sample of it. */
    if (!sr_quic_initial_keys(ctx, p->version, p->keys_dcid != NULL ? p->keys_dcid : p->dcid,
                              p->keys_dcid != NULL ? p->keys_dcid_len : p->dcid_len, p->is_server,
                              &keys) ||
        !sr__quic_aead(ctx, &keys, p->pn, out, n, out + n, payload_len + pad, out + n, true) ||
        !sr__quic_hp_mask(ctx, keys.hp, out + pn_off + PN_MAX_LEN, mask)) {
        return 0;
    }
    out[0] ^= mask[0] & 0x0f;
    for (i = 0; i < p->pn_len; i++) {
        out[pn_off + i] ^= mask[1 + i];
    }
    return n + payload_len + pad + TAG_LEN;
}

struct piece {
    size_t off;
    size_t len;
};

/* A small deterministic generator for the shuffle (xorshift32). */
static uint32_t
next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Bytes one CRYPTO frame for <pc> takes, with its PING and PADDING if asked. */
static size_t
frame_size(const struct sr_quicgen_flight *fl, const struct piece *pc, size_t index)
{
    size_t n = 1 + varint_len(pc->off) + varint_len(pc->len) + pc->len;
    return fl->ping_padding ? n + 1 + 1 + index % PADDING_RUN : n;
}

/* Cut the hello into pieces, each small enough for a packet's room, in sending order. */
static size_t
cut_pieces(const struct sr_quicgen_flight *fl, size_t hello_len, size_t room, struct piece *pc)
{
    size_t n_frames = fl->n_frames == 0 ? 1 : fl->n_frames;
    size_t n = 0;
    size_t i;
    uint32_t seed = fl->shuffle_seed;

    for (i = 0; i < n_frames; i++) {
        size_t off = hello_len * i / n_frames;
        size_t end = hello_len * (i + 1) / n_frames;

        if (i + 1 < n_frames) {
            end = end + fl->overlap < hello_len ? end + fl->overlap : hello_len;
        }
        /* Split what does not fit a packet (headroom: offset, length, PING, PADDING). */
        while (off < end) {
            size_t len = end - off;
            if (len + 1 + 8 + 8 + 2 + PADDING_RUN > room) {
                len = room - (1 + 8 + 8 + 2 + PADDING_RUN);
            }
            if (n == MAX_FRAMES) {
                return 0;
            }
            pc[n].off = off;
            pc[n].len = len;
            n++;
            off += len;
        }
    }
    if (seed != 0) { /* Fisher-Yates */
        for (i = n; i > 1; i--) {
            size_t j = next_rand(&seed) % i;
            struct piece t = pc[i - 1];
            pc[i - 1] = pc[j];
            pc[j] = t;
        }
    }
    return n;
}

size_t
sr_quicgen_flight_build(struct sr_quic_ctx *ctx, const struct sr_quicgen_flight *fl,
                        const uint8_t *hello, size_t hello_len, uint8_t *out, size_t cap,
                        size_t *ends, size_t ends_cap, size_t *n_dgrams)
{
    static const uint8_t zrtt_payload[] = {
        0x0f, 0x00, 0x00, 0x09, 'G', 'E', 'T', ' ', '/', ' ', 'X', 'X', 'X', /* a STREAM shape */
    };
    struct piece pc[MAX_FRAMES];
    uint8_t frames[MAX_ROOM + 64];
    uint8_t zrtt[128];
    struct sr_quicgen_packet pk;
    size_t per = fl->per_datagram == 0 ? 1 : fl->per_datagram;
    size_t dlen = fl->datagram_len == 0 ? SR_QUIC_MIN_INITIAL_DATAGRAM : fl->datagram_len;
    size_t room = fl->packet_room;
    size_t zrtt_len = 0;
    size_t n_pieces;
    size_t next = 0; /* next piece to send */
    size_t n = 0;
    size_t headers;
    uint64_t pn = fl->first_pn;

    *n_dgrams = 0;
    if (fl->dcid_len < SR_QUIC_MIN_INITIAL_DCID || fl->dcid_len > SR_QUIC_MAX_CID ||
        hello_len == 0 || dlen > SR_QUIC_MAX_DATAGRAM || fl->token_len > SR_QUIC_MAX_DATAGRAM) {
        return 0;
    }
    headers = fl->dcid_len + fl->scid_len + fl->token_len;
    if (room == 0) { /* what keeps each datagram near <dlen>, less the headers */
        room = dlen / per > 100 + headers ? dlen / per - 60 - headers : 40;
    }
    if (room < 40 || room > MAX_ROOM) {
        return 0;
    }
    n_pieces = cut_pieces(fl, hello_len, room, pc);
    if (n_pieces == 0) {
        return 0;
    }

    memset(&pk, 0, sizeof(pk));
    pk.version = fl->version;
    pk.dcid = fl->dcid;
    pk.dcid_len = fl->dcid_len;
    pk.scid = fl->scid;
    pk.scid_len = fl->scid_len;
    pk.token = fl->token; /* written in Initials only */
    pk.token_len = fl->token_len;
    pk.pn_len = 2;
    if (fl->zero_rtt) {
        pk.type = SR_QUICGEN_0RTT;
        zrtt_len =
            sr_quicgen_packet(ctx, &pk, zrtt_payload, sizeof(zrtt_payload), 0, zrtt, sizeof(zrtt));
        if (zrtt_len == 0) {
            return 0;
        }
    }
    pk.type = SR_QUICGEN_INITIAL;

    while (next < n_pieces) {
        size_t start = n;
        size_t k;

        if (*n_dgrams == ends_cap) {
            return 0;
        }
        for (k = 0; k < per && next < n_pieces; k++) {
            size_t used = 0;
            size_t len;
            size_t min_len = 0;

            /* Fill one packet's room with frames, at least one. */
            while (next < n_pieces &&
                   (used == 0 || used + frame_size(fl, &pc[next], next) <= room)) {
                if (fl->ping_padding) {
                    size_t run = 1 + next % PADDING_RUN;
                    frames[used++] = FRAME_PING;
                    memset(frames + used, 0, run);
                    used += run;
                }
                len = sr_quicgen_crypto_frame(frames + used, sizeof(frames) - used, pc[next].off,
                                              hello + pc[next].off, pc[next].len);
                if (len == 0) {
                    return 0;
                }
                used += len;
                next++;
            }
            /* The datagram's last Initial pads it to <dlen>, leaving room for the 0-RTT. */
            if (k + 1 == per || next == n_pieces) {
                size_t so_far = n - start;
                size_t tail = next == n_pieces ? zrtt_len : 0;
                min_len = dlen > so_far + tail ? dlen - so_far - tail : 0;
            }
            pk.pn = pn++;
            len = sr_quicgen_packet(ctx, &pk, frames, used, min_len, out + n, cap - n);
            if (len == 0) {
                return 0;
            }
            n += len;
        }
        if (next == n_pieces && zrtt_len > 0) {
            if (zrtt_len > cap - n) {
                return 0;
            }
            memcpy(out + n, zrtt, zrtt_len);
            n += zrtt_len;
        }
        ends[(*n_dgrams)++] = n;
    }
    return n;
}

/* Report order: the gentle cases first, so a broken path fails where it starts breaking. The
 * hellos: about 300 bytes without the post-quantum share, about 1.5 KB with it (so two
 * Initials, as Chrome's and curl's with X25519MLKEM768). */
const struct sr_quicgen_case sr_quicgen_cases[] = {
    {.name = "plain",
     .description = "one Initial in one 1200-byte datagram",
     .version = SR_QUIC_V1,
     .shape = {.n_frames = 1}},
    {.name = "two_datagrams",
     .description = "X25519MLKEM768 key share: the hello in two Initials, two datagrams",
     .version = SR_QUIC_V1,
     .has_pq_share = true,
     .shape = {.n_frames = 1}},
    /* Chrome cuts its hello into CRYPTO frames sent out of order with PING and PADDING
     * between them; here the shuffle spans both datagrams, so the first one lacks the start
     * of the hello (test_quic.c checks that this seed does so). */
    {.name = "reordered",
     .description = "CRYPTO frames out of order over two datagrams, PING and PADDING between",
     .version = SR_QUIC_V1,
     .has_pq_share = true,
     .shape = {.n_frames = 7, .shuffle_seed = 7, .ping_padding = true}},
    {.name = "coalesced",
     .description = "two Initials and a 0-RTT packet in one datagram",
     .version = SR_QUIC_V1,
     .shape = {.n_frames = 2, .packet_room = 200, .per_datagram = 2, .zero_rtt = true}},
    {.name = "v2",
     .description = "QUIC version 2 (RFC 9369), one Initial",
     .version = SR_QUIC_V2,
     .shape = {.n_frames = 1}},
};

const size_t sr_quicgen_n_cases = sizeof(sr_quicgen_cases) / sizeof(sr_quicgen_cases[0]);

const struct sr_quicgen_case *
sr_quicgen_case_find(const char *name)
{
    size_t i;

    for (i = 0; i < sr_quicgen_n_cases; i++) {
        if (strcmp(sr_quicgen_cases[i].name, name) == 0) {
            return &sr_quicgen_cases[i];
        }
    }
    return NULL;
}

size_t
sr_quicgen_case_build(struct sr_quic_ctx *ctx, const struct sr_quicgen_case *c,
                      const struct sr_quicgen_client *cl, uint8_t *out, size_t cap, size_t *ends,
                      size_t ends_cap, size_t *n_dgrams, size_t *hello_len)
{
    uint8_t hello[SR_HELLOGEN_MAX_LEN];
    struct sr_hellogen_opts o = {.name = cl->name,
                                 .name_len = cl->name_len,
                                 .alpn = cl->alpn,
                                 .has_pq_share = c->has_pq_share,
                                 .target_len = c->target_len,
                                 .rnd = cl->rnd,
                                 .is_quic = true,
                                 .quic_scid = cl->scid,
                                 .quic_scid_len = cl->scid_len};
    struct sr_quicgen_flight fl = c->shape;
    size_t len;

    *n_dgrams = 0;
    len = sr_hellogen_message(hello, sizeof(hello), &o);
    if (hello_len != NULL) {
        *hello_len = len;
    }
    if (len == 0) {
        return 0;
    }
    fl.version = c->version;
    fl.dcid = cl->dcid;
    fl.dcid_len = cl->dcid_len;
    fl.scid = cl->scid;
    fl.scid_len = cl->scid_len;
    fl.token = cl->token;
    fl.token_len = cl->token_len;
    fl.first_pn = cl->first_pn;
    return sr_quicgen_flight_build(ctx, &fl, hello, len, out, cap, ends, ends_cap, n_dgrams);
}
