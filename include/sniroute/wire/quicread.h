/* SPDX-License-Identifier: MIT */
/* Small readers of QUIC wire fields (RFC 9000 16, 17.2, 19.3), shared by the Initial
 * reader (quic.c) and the self-test's reader of a server's answers (quicanswer.c): a
 * cursor over one block whose every read checks the block, variable-length integers, the
 * long header's packet type in v1 and v2 numbering, and the walk over an ACK frame. Pure,
 * header-only. */
#ifndef SR_QUICREAD_H
#define SR_QUICREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The frame types an Initial packet may carry (RFC 9000 17.2.2). */
#define SR_QUIC_FRAME_PADDING          0x00
#define SR_QUIC_FRAME_PING             0x01
#define SR_QUIC_FRAME_ACK              0x02
#define SR_QUIC_FRAME_ACK_ECN          0x03
#define SR_QUIC_FRAME_CRYPTO           0x06
#define SR_QUIC_FRAME_CONNECTION_CLOSE 0x1c

/* Long header packet types, in v1's numbering. */
enum sr_quic_ptype {
    SR_QUIC_PT_INITIAL,
    SR_QUIC_PT_0RTT,
    SR_QUIC_PT_HANDSHAKE,
    SR_QUIC_PT_RETRY,
};

/* The type of a long header packet whose first byte is <b0>: v2 (RFC 9369 3.2, <is_v2>)
 * rotates the v1 numbers by one. */
static inline enum sr_quic_ptype
sr_quic_packet_type(bool is_v2, uint8_t b0)
{
    unsigned t = (b0 >> 4) & 3;

    if (is_v2) {
        return t == 0 ? SR_QUIC_PT_RETRY : (enum sr_quic_ptype)(t - 1);
    }
    return (enum sr_quic_ptype)t;
}

/* A cursor over one block (a datagram, a packet's plaintext): <left> bytes at <p>. */
struct sr_quic_cur {
    const uint8_t *p;
    size_t left;
};

static inline bool
sr_quic_cur_u8(struct sr_quic_cur *c, uint8_t *v)
{
    if (c->left < 1) {
        return false;
    }
    *v = *c->p++;
    c->left--;
    return true;
}

/* A variable-length integer (RFC 9000 16): the top two bits of the first byte give its
 * length, 1, 2, 4 or 8 bytes. */
static inline bool
sr_quic_cur_varint(struct sr_quic_cur *c, uint64_t *v)
{
    size_t n;
    size_t i;
    uint64_t x;

    if (c->left < 1) {
        return false;
    }
    n = (size_t)1 << (c->p[0] >> 6);
    if (c->left < n) {
        return false;
    }
    x = c->p[0] & 0x3f;
    for (i = 1; i < n; i++) {
        x = x << 8 | c->p[i];
    }
    c->p += n;
    c->left -= n;
    *v = x;
    return true;
}

static inline bool
sr_quic_cur_skip(struct sr_quic_cur *c, uint64_t n)
{
    if (n > c->left) {
        return false;
    }
    c->p += n;
    c->left -= (size_t)n;
    return true;
}

/* Walk an ACK frame's fields after its type (RFC 9000 19.3): the ranges down from the
 * largest acknowledged, none below 0, and the ECN counts for <ecn>. False when the frame
 * runs past the block or its ranges do not fit. */
static inline bool
sr_quic_skip_ack(struct sr_quic_cur *c, bool ecn)
{
    uint64_t largest;
    uint64_t delay;
    uint64_t count;
    uint64_t range;
    uint64_t gap;
    uint64_t i;

    if (!sr_quic_cur_varint(c, &largest) || !sr_quic_cur_varint(c, &delay) ||
        !sr_quic_cur_varint(c, &count) || !sr_quic_cur_varint(c, &range) || range > largest) {
        return false;
    }
    largest -= range;             /* now the smallest acknowledged so far */
    for (i = 0; i < count; i++) { /* each round reads >= 2 bytes, so c->left bounds it */
        if (!sr_quic_cur_varint(c, &gap) || !sr_quic_cur_varint(c, &range) ||
            gap + 2 > largest || range > largest - gap - 2) {
            return false;
        }
        largest = largest - gap - 2 - range;
    }
    if (ecn) {
        return sr_quic_cur_varint(c, &gap) && sr_quic_cur_varint(c, &gap) &&
               sr_quic_cur_varint(c, &gap);
    }
    return true;
}

#endif
